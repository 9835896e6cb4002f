"""Per-test cost of fakests, measured side by side in one run (machines here are noisy: read ratios).

    python bench/isolation.py [--rounds N]

Prints medians (and p10-p90) for:
- the ``fake_sts`` fixture's work: a sandbox created and dropped on a running server;
- a whole test's STS work: sandbox + fresh MSAL ConfidentialClientApplication + first token,
  in-process and over TLS;
- for comparison, what a server per test would cost: stock uvicorn started and stopped in a thread,
  and FakeSTS's own start/stop (event-driven stop).
Targets (issue 2): fixture median <= 0.5 ms; no key generation per test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msal
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fakests import FakeSTS
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
    sts = FakeSTS(Settings(port=0, state_dir=state, log_requests=False)).start()
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
    rows.append(("fake_sts fixture (sandbox create + drop)", measure(fixture, args.rounds * 4)))
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
    fixture_ms = medians[rows[0][0]]
    server_ms = medians["stock uvicorn in a thread: start + stop"]
    print()
    print(f"server per test / fixture: {server_ms / fixture_ms:,.0f}x cheaper (target >= 300x)")
    print(f"fixture median {fixture_ms:.3f} ms (target <= 0.5 ms)")


if __name__ == "__main__":
    main()
