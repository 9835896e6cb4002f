"""Per-test cost of fakests, measured side by side in one run (machines here are noisy: read ratios).

    python bench/isolation.py [--rounds N]

Prints medians (and p10-p90) for:
- the ``fake_sts`` fixture's work: a sandbox created and dropped on a running server, with 1, 1,000 and
  10,000 sandboxes alive beside it (a shared server in CI holds thousands), and the memory each live
  sandbox takes (Python allocations, tracemalloc), at 1,000 and at 10,000;
- a whole test's STS work: sandbox + fresh MSAL ConfidentialClientApplication + first token,
  in-process and over TLS;
- for comparison, what a server per test would cost: stock uvicorn started and stopped in a thread,
  and FakeSTS's own start/stop (event-driven stop).
Targets: fixture median <= 0.5 ms; no key generation per test (issue 2); the fixture with 10,000 live
sandboxes within 1.2x of the fixture with 1, and memory per sandbox flat (issue 9).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import msal
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fakests import FakeSTS, StsSandbox
from fakests.state.settings import Settings


def measure(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def stock_uvicorn_start_stop() -> None:
    app = Starlette(routes=[Route("/", lambda r: PlainTextResponse("ok"))])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.001)
    server.should_exit = True
    thread.join()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=500, help="rounds for the cheap measurements")
    args = parser.parse_args(argv)
    state = Path(tempfile.mkdtemp(prefix="fakests-bench-"))
    sts = FakeSTS(Settings(port=0, state_dir=state, log_requests=False, max_sandboxes=10_100)).start()
    rows: list[tuple[str, list[float]]] = []

    def fixture() -> None:
        sts.sandbox().drop()

    def whole_test(inprocess: bool) -> Callable[[], object]:
        def run() -> None:
            sb = sts.sandbox()
            app = sb.msal_confidential("daemon", inprocess=inprocess)
            result = app.acquire_token_for_client(["api://fakests-api/.default"])
            assert "access_token" in result, result
            sb.drop()
        return run

    measure(fixture, 50)  # warm-up
    measure(whole_test(True), 10)
    measure(whole_test(False), 10)
    # The same fixture beside many live sandboxes: costs must not grow with them. One server per count,
    # measured in interleaved rounds, so that drift over the run (a noisy neighbour) hits every row alike.
    counts = (1, 1_000, 10_000)
    servers = {count: FakeSTS(Settings(port=0, state_dir=state, log_requests=False, max_sandboxes=10_100)).start()
               for count in counts}
    memory: dict[int, float] = {}
    live: dict[int, list[StsSandbox]] = {}
    for count in counts[1:]:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        live[count] = [servers[count].sandbox() for _ in range(count - 1)]
        memory[count] = (tracemalloc.get_traced_memory()[0] - before) / (count - 1) / 1024
        tracemalloc.stop()
    by_count: dict[int, list[float]] = {count: [] for count in counts}
    for _ in range(20):
        for count in counts:
            server = servers[count]
            by_count[count] += measure(lambda server=server: server.sandbox().drop(), max(1, args.rounds // 5))
    for count in counts:
        alive = f"{count:,} sandbox{'es' if count > 1 else ''} alive"
        rows.append((f"fake_sts fixture (create + drop), {alive}", by_count[count]))
    started = time.perf_counter()
    for handle in live[10_000]:
        handle.drop()
    drop_all_ms = (time.perf_counter() - started) * 1000
    for server in servers.values():
        server.stop()
    rows.append(("fixture + new MSAL CCA + first token, in-process", measure(whole_test(True), args.rounds)))
    rows.append(("fixture + new MSAL CCA + first token, TLS", measure(whole_test(False), args.rounds // 2)))
    sts.stop()

    def fakests_start_stop() -> None:
        FakeSTS(Settings(port=0, state_dir=state, log_requests=False)).start().stop()

    rows.append(("FakeSTS start + stop (keys and CA on disk)", measure(fakests_start_stop, 20)))
    rows.append(("stock uvicorn in a thread: start + stop", measure(stock_uvicorn_start_stop, 10)))

    print(f"fakests isolation benchmark  (msal {msal.__version__}, uvicorn {uvicorn.__version__})")
    print(f"{'what':55} {'median ms':>10} {'p10':>8} {'p90':>8} {'n':>6}")
    medians = {}
    for name, values in rows:
        q = statistics.quantiles(values, n=10)
        medians[name] = statistics.median(values)
        print(f"{name:55} {medians[name]:10.3f} {q[0]:8.3f} {q[-1]:8.3f} {len(values):6d}")
    fixture_ms = medians["fake_sts fixture (create + drop), 1 sandbox alive"]
    server_ms = medians["stock uvicorn in a thread: start + stop"]
    print()
    print(f"server per test / fixture: {server_ms / fixture_ms:,.0f}x cheaper (target >= 300x)")
    print(f"fixture median {fixture_ms:.3f} ms (target <= 0.5 ms)")
    for count in counts[1:]:
        ratio = medians[f"fake_sts fixture (create + drop), {count:,} sandboxes alive"] / fixture_ms
        print(f"fixture with {count:,} alive / with 1: {ratio:.2f}x (target <= 1.2x)")
    print(f"memory per live sandbox: {memory[1_000]:.1f} KiB (1,000 alive), {memory[10_000]:.1f} KiB (10,000 alive)")
    print(f"dropping 9,999 sandboxes one by one: {drop_all_ms:,.0f} ms")


if __name__ == "__main__":
    main()
