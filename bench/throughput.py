"""fakests' token endpoint against the performance floor, side by side in one run (read the ratios).

    python bench/throughput.py [--rounds 5] [--duration 5] [--start-rounds 11] [--quick]
                               [--only throughput,coldstart,memory,peers,commit]

Install what it needs beyond fakests: ``pip install -e '.[bench]' && npm ci --prefix bench/peers`` (the peers
are optional: a missing one prints "not installed: <command>" and the rest runs).

Needs ``wrk`` (Debian/Ubuntu: ``apt-get install -y wrk``); without it a small Python load generator
stands in (slower than the servers: its requests/s say little, its CPU per request still holds).

The floor is ``bench/floor_app.py`` (a copy of ``../shared/bench/floor_app.py``): bare Starlette on
uvicorn parsing the same form and signing the same RS256 token. Servers run as subprocesses on
127.0.0.1 pinned to CPU 0 (``taskset -c 0``); wrk runs on CPU 1 (one thread, 16 keep-alive
connections) and so does this script. fakests runs as ``fakests serve --no-tls --no-log-requests``
(plain HTTP like the floor; one row over TLS for information) with the scenario engine on: 50 rules
loaded that never match (``match: {endpoint: token, client_id: <random guid>}``); the journal is on
(always) at its default bound. Both get the same client-credentials form on the same path.

Prints medians over ``--rounds`` interleaved rounds (floor and fakests alternate within each round):
- token endpoint, 1 worker and 2 workers (both also on CPU 0): server CPU per request (utime+stime of the
  server process and its children from /proc, divided by the requests served) and requests/s.
  Target: fakests <= 1.1x the floor's CPU per request. Without ``fakests serve --workers`` the 2-worker
  row says "n/a (no --workers)". Two workers share one listening socket and each keeps the connections it
  accepts; now and then one of them accepts all 16 and the run measures one busy process (10-15% cheaper
  per request, the floor's as much as fakests'). So a 2-worker run counts only when no process did more
  than 75% of the server's CPU; a lopsided run is done again (at most 6 times), a round where one stays
  lopsided is left out of the 2-worker rows, and the report says how often.
- commit (``--only commit``; not in the default run): two workers' CPU per token request for each
  ``journal_commit_turns`` setting (``COMMIT_TURNS``), each against floor x2 in the same interleaved rounds.
- cold start (``--start-rounds``, wall clock, polled every ms from CPU 1): process start until the first
  discovery request is answered. fakests with keys and CA
  already in the state directory vs the floor (FLOOR_KEYS=1; also the bare FLOOR_KEYS=0 app).
  Target: <= 1.3x. fakests' first start (keys and CA made) is reported apart.
- memory: RSS of the fakests server after 0, 50k, 100k, 150k, 200k token requests (the journal holds
  10,000). Target: flat once the journal is full (no growth from 100k to 200k).
- peers (``bench/_peers.py``), measured in the same interleaved rounds as floor x1 and fakests x1 (in
  ``--only peers`` alone, those two run with them), each also on CPU 0, reported as server CPU per request and
  requests/s with their ratios to floor x1 of the same round:
  - oauth2-mock-server (npm, pinned in ``bench/peers/package.json``; its 9.x needs Node >= 22.12, so 8.x on
    Debian's Node 20) run by ``bench/peers/oauth2-mock-server.mjs``: the same client-credentials form to its
    ``/token``, one RS256 access token (2048-bit key).
  - oidc-provider-mock (PyPI; 0.4.x needs Python >= 3.12): it has no client-credentials grant, so the request is
    an authorization-code redemption with a fresh code each (minted through its authorize endpoint before each
    run, untimed; the run stops before the codes run out), for an RS256 id_token plus opaque access and
    refresh tokens. Served the way its own CLI does (uvicorn ``--interface wsgi``), access log off. Plus, for
    information, its refresh_token grant (reusable refresh token, signs nothing): its stack without the
    signature.
  Each peer's token is fetched and checked once per run before measuring (200, RS256 JWT, signature verified
  against its JWKS, 2048-bit key). Not measured: calvinchengx/entra-emulator (Go) and navikt/mock-oauth2-server
  (JVM), which no registry this machine reaches (PyPI, npm, Debian) ships.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import cryptography
import jwt
import starlette
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peers import Peer, peers
from _proc import WRK_HINT, Load, Server, cpu_by_process, free_port, pin_self, run_load, wrk_path

from fakests.state import defaults as d

BENCH_DIR = Path(__file__).resolve().parent
SERVER_CPU, LOAD_CPU = 0, 1
TOKEN_PATH = f"/{d.TENANT_ID}/oauth2/v2.0/token"
DISCOVERY_PATH = f"/{d.TENANT_ID}/v2.0/.well-known/openid-configuration"
FORM = urlencode({"grant_type": "client_credentials", "client_id": d.DAEMON_ID, "client_secret": d.DAEMON_SECRET,
                  "scope": f"{d.API_URI}/.default"})
INACTIVE_RULES = 50
CPU_TARGET, START_TARGET = 1.10, 1.30
# A 2-worker run counts when no process did more than this share of the server's CPU (an even split is
# about 0.5); a run above it is done again, at most RESPLITS times, then kept and reported as lopsided.
SHARED_MAX, RESPLITS = 0.75, 6
COMMIT_TURNS = (0, 1, 2, 3, 5)  # --only commit: the journal_commit_turns settings compared (default 3)
FLAT_SLACK = 1 << 20  # RSS "flat": at most 1 MiB more at the end than at the half-way mark
NA_WORKERS = "n/a (no --workers)"
# ../shared/bench/README.md: "peers, CPU per token request relative to the floor".
PEER_REFERENCE = {"oauth2-mock-server": "1.60x", "oidc-provider-mock": "2.12x"}
MAX_MINTED = 100_000  # one-use request bodies minted for one run, at most


# --- servers ----------------------------------------------------------------------------------------
# Bytecode for the floor's and fakests' servers, as an installed package has it: a machine that sets
# PYTHONDONTWRITEBYTECODE (some CI images do) would otherwise compile every fakests module at each
# start (~50 ms here), which a cold start would measure instead of fakests. Written by the first start
# (each measurement's round 0 is dropped), read by the others; the same for both servers.
PYCACHE = Path(tempfile.gettempdir()) / "fakests-bench-pycache"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without FAKESTS_* settings (flags decide), bytecode cached (``PYCACHE``), plus
    ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("FAKESTS_")},
            "PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(PYCACHE), **extra}


def floor_server(*, workers: int = 1, keys: bool = True, cpu: int = SERVER_CPU) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "floor_app:app", "--app-dir", str(BENCH_DIR), "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    name = f"floor x{workers}" + ("" if keys else " (FLOOR_KEYS=0)")
    return Server(name, argv, port=port, ready_path=DISCOVERY_PATH, cpu=cpu, cwd=str(BENCH_DIR),
                  env=clean_env(FLOOR_KEYS="1" if keys else "0"))


def fakests_server(state_dir: Path, *, workers: int = 1, tls: bool = False, rules: Path | None = None,
                   cpu: int = SERVER_CPU, commit_turns: int | None = None) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "fakests", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--state-dir", str(state_dir), "--no-log-requests", "--tls" if tls else "--no-tls",
            "--identity-port", "0"]  # served as by default, on a free port: several servers run at once
    if rules is not None:
        argv += ["--scenarios", str(rules)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    if commit_turns is not None:
        argv += ["--journal-commit-turns", str(commit_turns)]
    name = f"fakests x{workers}" + (" TLS" if tls else "") + ("" if commit_turns is None else f" turns={commit_turns}")
    # cwd: away from any ./scenarios or ./fakests (python -m puts the cwd first on sys.path).
    return Server(name, argv, port=port, ready_path=DISCOVERY_PATH, tls=tls, cpu=cpu, env=clean_env(),
                  cwd=str(state_dir.parent))


def fakests_supports_workers() -> bool:
    """Whether ``fakests serve`` has ``--workers`` (the ``workers`` setting)."""
    out = subprocess.run([sys.executable, "-m", "fakests", "serve", "--help"], capture_output=True, text=True,
                         timeout=60, env=clean_env(), check=False)
    return "--workers" in out.stdout


def write_inactive_rules(path: Path, count: int = INACTIVE_RULES) -> Path:
    """A scenario file of ``count`` token rules that never match (a random client id each)."""
    lines = ["name: bench-inactive", "description: rules that never match, to keep the engine busy", "rules:"]
    for i in range(count):
        lines += [f"  - id: never-{i}", "    match:", "      endpoint: token", f"      client_id: {uuid.uuid4()}",
                  "    response:", "      aadsts: 70012"]
    path.write_text("\n".join(lines) + "\n")
    return path


def prepare_state(state_dir: Path) -> Path:
    """Make the signing key, client certificate and CA once, as a first ``fakests serve`` would."""
    from fakests.server.runtime import Runtime
    from fakests.state.settings import Settings

    Runtime.start(Settings(state_dir=state_dir, tls=True))
    return state_dir


@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[list[Server]]:
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


# --- measurements -----------------------------------------------------------------------------------
@dataclass
class Sample:
    """One load run against one server: requests/s, server CPU seconds per request, and the busiest
    process's share of that CPU (1.0 for one process; about 0.5 when two workers shared the load)."""

    load: Load
    cpu_per_request: float
    busiest: float = 1.0

    @property
    def rps(self) -> float:
        return self.load.rps


def measure(server: Server, *, connections: int, duration: float, force_python: bool = False,
            max_requests: int = 0, path: str = TOKEN_PATH, form: str = FORM, bodies: list[str] | None = None,
            headers: dict[str, str] | None = None) -> Sample:
    before = cpu_by_process(server.pid)
    load = run_load(server.port, path, form, connections=connections, duration=duration, tls=server.tls,
                    max_requests=max_requests, force_python=force_python, bodies=bodies, headers=headers)
    after = cpu_by_process(server.pid)
    shares = [after[p] - before.get(p, 0.0) for p in after]
    used = sum(shares)
    if load.requests == 0 or load.errors:
        raise RuntimeError(f"{server.name}: {load.errors} errors in {load.requests} requests:\n{server.output()}")
    return Sample(load, used / load.requests, max(shares) / used if used > 0 else 1.0)


@dataclass
class Series:
    """Per-round figures of one configuration."""

    name: str
    samples: list[Sample] = field(default_factory=list)
    short: int = 0  # runs that ended early because their one-use request bodies ran out
    redone: int = 0  # 2-worker runs done again because one worker took every connection
    lopsided: int = 0  # 2-worker runs kept although one worker still took every connection

    def median(self, key: Callable[[Sample], float]) -> float:
        return statistics.median(key(s) for s in self.samples)


def ratios(a: list[float], b: list[float]) -> list[float]:
    """Per-round ratios a/b (rounds are interleaved, so each pair saw the same machine)."""
    return [x / y for x, y in zip(a, b, strict=True) if y > 0]


@dataclass
class Target:
    """One configuration measured in the rounds: how to start it and what to POST."""

    name: str
    make: Callable[[], Server]
    path: str = TOKEN_PATH
    form: str = FORM
    peer: Peer | None = None
    workers: int = 1


def load_once(args: argparse.Namespace, target: Target, server: Server, duration: float,
              rps_guess: dict[str, float]) -> Sample:
    """One load run; for a peer whose requests are one-use, mint enough bodies first (untimed)."""
    bodies, form, headers = None, target.form, None
    if target.peer is not None:
        form, headers = target.peer.form, target.peer.headers  # the form as its setup left it
        if target.peer.mint is not None:
            seconds = max(1, round(duration))
            wanted = math.ceil(rps_guess.get(target.name, 800.0) * seconds * 1.5) + 4 * args.connections + 50
            bodies = target.peer.mint(server, min(wanted, MAX_MINTED))
    sample = measure(server, connections=args.connections, duration=duration, force_python=args.python_load,
                     path=target.path, form=form, bodies=bodies, headers=headers)
    rps_guess[target.name] = sample.rps
    return sample


def lopsided(target: Target, sample: Sample) -> bool:
    """Whether one of a multi-worker server's processes did nearly all the work of ``sample``."""
    return target.workers > 1 and sample.busiest > SHARED_MAX


def throughput(args: argparse.Namespace, targets: list[Target]) -> tuple[dict[str, Series], dict[str, str]]:
    """Per-target series over ``args.rounds`` interleaved rounds, and each peer's one-time check."""
    series = {t.name: Series(t.name) for t in targets}
    checks: dict[str, str] = {}
    rps_guess: dict[str, float] = {}
    servers: dict[str, Server] = {}
    with running([]) as started:
        for t in targets:
            servers[t.name] = t.make()
            started.append(servers[t.name])
        for t in targets:
            server = servers[t.name]
            server.wait_ready()
            if t.peer is not None:
                checks[t.name] = t.peer.check(server)
            if args.warmup > 0:
                load_once(args, t, server, args.warmup, rps_guess)
        for r in range(args.rounds):
            for t in targets if r % 2 == 0 else reversed(targets):
                sample = load_once(args, t, servers[t.name], args.duration, rps_guess)
                # N workers share one listening socket and each keeps the connections it accepts: now and
                # then one worker accepts all 16, and the run measures one process in disguise (10-15%
                # cheaper per request, for the floor as for fakests). Compare like with like: a
                # multi-worker run counts only when every worker served.
                for _ in range(RESPLITS):
                    if not lopsided(t, sample):
                        break
                    series[t.name].redone += 1
                    sample = load_once(args, t, servers[t.name], args.duration, rps_guess)
                series[t.name].lopsided += lopsided(t, sample)
                series[t.name].samples.append(sample)
                if sample.load.seconds < 0.9 * max(1, round(args.duration)):
                    series[t.name].short += 1
            print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return series, checks


def targets_for(sections: set[str], state_dir: Path, rules: Path, workers_ok: bool,
                found_peers: list[Peer]) -> list[Target]:
    out: list[Target] = []
    if "throughput" in sections:
        out += [
            Target("floor x1", lambda: floor_server()),
            Target("fakests x1", lambda: fakests_server(state_dir, rules=rules)),
            Target("fakests x1 TLS", lambda: fakests_server(state_dir, rules=rules, tls=True)),
            Target("floor x2", lambda: floor_server(workers=2), workers=2),
        ]
        if workers_ok:
            out.append(Target("fakests x2", lambda: fakests_server(state_dir, rules=rules, workers=2), workers=2))
    if "commit" in sections and workers_ok:  # the journal's group commit, each setting against floor x2
        if "throughput" not in sections:
            out.append(Target("floor x2", lambda: floor_server(workers=2), workers=2))
        for turns in COMMIT_TURNS:
            out.append(Target(f"fakests x2 turns={turns}", lambda turns=turns: fakests_server(
                state_dir, rules=rules, workers=2, commit_turns=turns), workers=2))
    if "peers" in sections and found_peers:
        if "throughput" not in sections:
            out += [Target("floor x1", lambda: floor_server()),
                    Target("fakests x1", lambda: fakests_server(state_dir, rules=rules))]
        for peer in found_peers:
            out.append(Target(peer.name, lambda peer=peer: peer.make(SERVER_CPU), path=peer.path, peer=peer))
    return out


def cold_start(args: argparse.Namespace, state_dir: Path, tmp: Path) -> dict[str, list[float]]:
    fresh = iter(range(1, 10_000))
    kinds: list[tuple[str, Callable[[], Server]]] = [
        ("floor", lambda: floor_server()),
        ("floor bare", lambda: floor_server(keys=False)),
        ("fakests", lambda: fakests_server(state_dir)),
        ("fakests TLS", lambda: fakests_server(state_dir, tls=True)),
        ("fakests first start", lambda: fakests_server(tmp / f"fresh-{next(fresh)}", tls=True)),
    ]
    out: dict[str, list[float]] = {name: [] for name, _ in kinds}
    for r in range(args.start_rounds + 1):  # round 0 warms the file caches and is dropped
        for name, make in kinds if r % 2 == 0 else reversed(kinds):
            with running([make()]) as (server,):
                seconds = server.wait_ready()
            if r > 0:
                out[name].append(seconds)
    return out


def memory(args: argparse.Namespace, state_dir: Path, rules: Path) -> list[tuple[int, int]]:
    """(requests served, RSS bytes) at 0 and after each quarter of ``args.memory_requests``."""
    step = args.memory_requests // 4
    points: list[tuple[int, int]] = []
    with running([fakests_server(state_dir, rules=rules)]) as (server,):
        server.wait_ready()
        points.append((0, server.rss()))
        served = 0
        for _ in range(4):
            sample = measure(server, connections=args.connections, duration=600, max_requests=step,
                             force_python=args.python_load)
            served += sample.load.requests
            points.append((served, server.rss()))
            print(f"  memory: {served:,} requests", file=sys.stderr, flush=True)
    return points


# --- report -----------------------------------------------------------------------------------------
def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f} ms"


def verdict(ratio: float, target: float) -> str:
    return f"<= {target:.2f}x {'OK' if ratio <= target else 'MISSED'}"


def report(args: argparse.Namespace, tool: str, workers_ok: bool, series: dict[str, Series] | None,
           starts: dict[str, list[float]] | None, mem: list[tuple[int, int]] | None) -> str:
    rows: list[tuple[str, str, str, str, str]] = []
    if series is not None:
        floor1 = series["floor x1"]

        def pair(label: str, fk: Series, base: Series, target: float | None, *, shared: bool = False) -> None:
            if shared:
                fk, base = both_serving(fk, base)
                if not fk.samples:
                    rows.append((f"{label}: server CPU/request", "", "n/a (every round lopsided)", "", ""))
                    return
            cpu = ratios([s.cpu_per_request for s in fk.samples], [s.cpu_per_request for s in base.samples])
            rps = ratios([s.rps for s in fk.samples], [s.rps for s in base.samples])
            rc = statistics.median(cpu)
            rows.append((f"{label}: server CPU/request", us(base.median(lambda s: s.cpu_per_request)),
                         us(fk.median(lambda s: s.cpu_per_request)),
                         f"{rc:.3f}x ({min(cpu):.3f}-{max(cpu):.3f})",  # 3 places: 1.102 must not read 1.10
                         verdict(rc, target) if target else "info"))
            rows.append((f"{label}: requests/s", f"{base.median(lambda s: s.rps):,.0f}",
                         f"{fk.median(lambda s: s.rps):,.0f}", f"{statistics.median(rps):.2f}x", ""))

        pair("token, 1 worker", series["fakests x1"], floor1, CPU_TARGET)
        if workers_ok:
            pair("token, 2 workers (both serving)", series["fakests x2"], series["floor x2"], CPU_TARGET, shared=True)
        else:
            floor2 = series["floor x2"]
            rows.append(("token, 2 workers: server CPU/request", us(floor2.median(lambda s: s.cpu_per_request)),
                         NA_WORKERS, "", ""))
            rows.append(("token, 2 workers: requests/s", f"{floor2.median(lambda s: s.rps):,.0f}", NA_WORKERS, "", ""))
        pair("token over TLS (floor: HTTP), 1 worker", series["fakests x1 TLS"], floor1, None)
    if starts is not None:
        floor, bare = starts["floor"], starts["floor bare"]
        for label, name, base, target in (
            ("cold start to first discovery answer", "fakests", floor, START_TARGET),
            ("  the same vs the bare floor (FLOOR_KEYS=0)", "fakests", bare, None),
            ("  fakests over TLS (keys, CA on disk)", "fakests TLS", floor, None),
            ("  fakests first start (keys and CA made)", "fakests first start", floor, None),
        ):
            r = ratios(starts[name], base)
            rows.append((label, ms(statistics.median(base)), ms(statistics.median(starts[name])),
                         f"{statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})",
                         verdict(statistics.median(r), target) if target else "info"))
    if mem is not None:
        for served, rss in mem:
            rows.append((f"memory: fakests RSS after {served:,} token requests", "", f"{rss / 2**20:,.1f} MiB", "",
                         ""))
        half, end = mem[2][1], mem[-1][1]
        growth = end - half
        rows.append((f"memory: growth {mem[2][0]:,} -> {mem[-1][0]:,} requests", "", f"{growth / 2**20:+,.1f} MiB",
                     "", f"flat (<= +1 MiB) {'OK' if growth <= FLAT_SLACK else 'MISSED'}"))
    notes = []
    if series is not None:
        for name in ("floor x2", "fakests x2"):
            if name in series:
                cur = series[name]
                shares = ", ".join(f"{s.busiest:.2f}" for s in cur.samples)
                notes.append(f"{name}: busiest worker's share of the CPU per run {shares}; {cur.redone} runs done "
                             f"again because one worker took every connection, {cur.lopsided} still lopsided "
                             "(their rounds are left out of the 2-worker rows)")
    widths = [max(len(r[i]) for r in [*rows, ("what", "floor", "fakests", "ratio", "target")]) for i in range(5)]
    head = (f"fakests vs the floor: {args.rounds} interleaved rounds x {args.duration:g} s (cold starts: "
            f"{args.start_rounds} rounds), {args.connections} "
            f"keep-alive connections, load by {tool} on CPU {LOAD_CPU}, servers on CPU {SERVER_CPU}; "
            f"{INACTIVE_RULES} inactive rules, journal on; medians (ratio: median of per-round ratios, min-max)\n"
            f"Python {platform.python_version()}, uvicorn {uvicorn.__version__}, starlette {starlette.__version__}, "
            f"PyJWT {jwt.__version__}, cryptography {cryptography.__version__}, {os.cpu_count()} CPUs")
    lines = [head, ""]
    for i, row in enumerate([("what", "floor", "fakests", "ratio", "target"), *rows]):
        lines.append("  ".join([row[0].ljust(widths[0]), *(c.rjust(widths[j + 1]) for j, c in enumerate(row[1:4])),
                                row[4]]).rstrip())
        if i == 0:
            lines.append("-" * len(lines[-1]))
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def both_serving(fk: Series, base: Series) -> tuple[Series, Series]:
    """The rounds of two multi-worker series where no run stayed lopsided (a lopsided run measured one
    process), both sides."""
    kept = [i for i, (a, b) in enumerate(zip(fk.samples, base.samples, strict=True))
            if max(a.busiest, b.busiest) <= SHARED_MAX]
    return Series(fk.name, [fk.samples[i] for i in kept]), Series(base.name, [base.samples[i] for i in kept])


def report_commit(args: argparse.Namespace, tool: str, series: dict[str, Series]) -> str:
    """--only commit: two workers' CPU per token request for each ``journal_commit_turns``, against floor x2
    in the same rounds (both serving)."""
    lines = [f"the journal's group commit, 2 workers: {args.rounds} interleaved rounds x {args.duration:g} s, "
             f"load by {tool}; ratio: median of per-round ratios to floor x2 (rounds with a lopsided run left out)",
             ""]
    rows = [("journal_commit_turns", "CPU/request", "ratio", "rounds")]
    for turns in COMMIT_TURNS:
        fk, base = both_serving(series[f"fakests x2 turns={turns}"], series["floor x2"])
        if not fk.samples:
            rows.append((str(turns), "n/a", "every round lopsided", "0"))
            continue
        cpu = ratios([x.cpu_per_request for x in fk.samples], [x.cpu_per_request for x in base.samples])
        rows.append((f"{turns}{' (default)' if turns == 3 else ''}", us(fk.median(lambda x: x.cpu_per_request)),
                     f"{statistics.median(cpu):.3f}x ({min(cpu):.3f}-{max(cpu):.3f})", str(len(fk.samples))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        lines.append("  ".join([row[0].ljust(widths[0]), *(c.rjust(widths[j + 1]) for j, c in enumerate(row[1:]))]))
        if i == 0:
            lines.append("-" * len(lines[-1]))
    return "\n".join(lines)


def report_peers(args: argparse.Namespace, tool: str, series: dict[str, Series] | None, checks: dict[str, str],
                 found_peers: list[Peer], missing: list[tuple[str, str]]) -> str:
    lines = [f"peers vs the floor: the same {args.rounds} interleaved rounds x {args.duration:g} s, "
             f"{args.connections} keep-alive connections, load by {tool} on CPU {LOAD_CPU}, every server on "
             f"CPU {SERVER_CPU}; medians (ratio: median of per-round ratios to floor x1, min-max)", ""]
    if series is not None and found_peers:
        floor = series["floor x1"]
        floor_cpu = [s.cpu_per_request for s in floor.samples]
        floor_rps = [s.rps for s in floor.samples]
        rows = [("what", "CPU/request", "ratio", "requests/s", "ratio", "reference CPU ratio")]
        for name in ["floor x1", "fakests x1", *(p.name for p in found_peers)]:
            cur = series[name]
            cpu = ratios([s.cpu_per_request for s in cur.samples], floor_cpu)
            rps = ratios([s.rps for s in cur.samples], floor_rps)
            ref = next((v for k, v in PEER_REFERENCE.items() if name.startswith(k)), "")
            rows.append((name, us(cur.median(lambda s: s.cpu_per_request)),
                         f"{statistics.median(cpu):.2f}x ({min(cpu):.2f}-{max(cpu):.2f})",
                         f"{cur.median(lambda s: s.rps):,.0f}", f"{statistics.median(rps):.2f}x", ref))
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for i, row in enumerate(rows):
            lines.append("  ".join([row[0].ljust(widths[0]), *(c.rjust(widths[j + 1]) for j, c in
                                                               enumerate(row[1:5])), row[5]]).rstrip())
            if i == 0:
                lines.append("-" * len(lines[-1]))
        lines += ["", "what one request is:",
                  "  floor x1, fakests x1: POST client_credentials form, 1 RS256 access token (Entra-shaped claims)"]
        for peer in found_peers:
            lines.append(f"  {peer.name.strip()}: POST {peer.path} {peer.request}")
            lines.append(f"    checked once before measuring: {checks.get(peer.name, 'not checked')}")
            if series[peer.name].short:
                lines.append(f"    {series[peer.name].short} of {args.rounds} runs ended early: one-use codes "
                             "ran out (their figures still hold)")
        lines.append("  reference: ../shared/bench/README.md (same machine kind, its own rounds)")
    for name, why in missing:
        lines.append(f"{name}: {why}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per round and server")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load per server first (0: none)")
    parser.add_argument("--start-rounds", type=int, default=11,
                        help="interleaved rounds of cold starts (default 11: wall-clock figures are the noisiest)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--memory-requests", type=int, default=200_000, help="token requests in the memory run")
    parser.add_argument("--only", default="throughput,coldstart,memory,peers",
                        help="comma-separated sections to run (peers: only those installed; commit: the "
                             "journal_commit_turns settings, not run by default)")
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator even if wrk is here")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (2 rounds x 1 s, 20k requests)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.start_rounds, args.duration, args.warmup, args.memory_requests = 2, 3, 1.0, 1.0, 20_000
    args.rounds = max(1, min(args.rounds, 100))
    args.start_rounds = max(1, min(args.start_rounds, 100))
    args.duration = max(0.2, min(args.duration, 120.0))  # wrk runs whole seconds (at least 1)
    args.warmup = max(0.0, min(args.warmup, 60.0))
    args.connections = max(1, min(args.connections, 256))
    args.memory_requests = max(4, min(args.memory_requests, 2_000_000))
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    sections = {s.strip() for s in args.only.split(",")}
    if not pin_self(LOAD_CPU):
        print(f"warning: fewer than {LOAD_CPU + 1} CPUs: server and load share a core", file=sys.stderr)
    if not wrk_path() and not args.python_load:
        print(WRK_HINT, file=sys.stderr)
        args.python_load = True
    tool = "the Python load generator" if args.python_load else "wrk"
    workers_ok = fakests_supports_workers()
    found_peers, missing = peers(FORM) if "peers" in sections else ([], [])
    with tempfile.TemporaryDirectory(prefix="fakests-bench-") as tmp_name:
        tmp = Path(tmp_name)
        state_dir = prepare_state(tmp / "state")
        rules = write_inactive_rules(tmp / "inactive.yaml")
        targets = targets_for(sections, state_dir, rules, workers_ok, found_peers)
        series, checks = throughput(args, targets) if targets else (None, {})
        starts = cold_start(args, state_dir, tmp) if "coldstart" in sections else None
        mem = memory(args, state_dir, rules) if "memory" in sections else None
    parts = []
    if sections & {"throughput", "coldstart", "memory"}:
        parts.append(report(args, tool, workers_ok, series if "throughput" in sections else None, starts, mem))
        if not workers_ok and "throughput" in sections:
            parts[-1] += f"\n\nfakests serve has no --workers yet: the 2-worker row is {NA_WORKERS}."
    if "commit" in sections and series is not None and workers_ok:
        parts.append(report_commit(args, tool, series))
    if "peers" in sections:
        parts.append(report_peers(args, tool, series, checks, found_peers, missing))
    text = "\n\n".join(parts)
    print(text)
    return text


if __name__ == "__main__":
    main()
