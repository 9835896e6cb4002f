"""Helpers for the benchmark scripts: server subprocesses, their CPU time and memory, load generators.

Linux only (reads /proc). Everything is bounded: every wait has a deadline and every loop a count or a
deadline; servers are started in their own process group and ``Server.stop`` ends exactly that group.
Load goes to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
WRK_HINT = "wrk not found: install it with `apt-get install -y wrk` (Debian/Ubuntu); using the Python load generator"

# wrk script: POST the form; optionally stop after BENCH_MAX responses (per thread: run wrk with -t1; wrk's
# main thread then still sleeps out -d, so the script says BENCH_LIMIT and run_wrk sends the SIGINT that ends
# wrk's sleep); print one machine-readable line at the end. BENCH_HEADERS: extra "Name: value" lines. With
# BENCH_BODIES (a file, one body a line) each request gets the next body (for one-use grants such as
# authorization codes); past the last one it sends an empty body, which the server refuses, so running short
# shows up as errors rather than as reused grants.
WRK_LUA = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end
local bodies_file = os.getenv("BENCH_BODIES") or ""
if bodies_file ~= "" then
  local bodies, i = {}, 0
  for line in io.lines(bodies_file) do
    bodies[#bodies + 1] = line
  end
  request = function()
    i = i + 1
    return wrk.format(nil, nil, nil, bodies[i] or "")
  end
end
local limit = tonumber(os.getenv("BENCH_MAX") or "0") or 0
if limit > 0 then
  local n = 0
  response = function(status, headers, body)
    n = n + 1
    if n == limit then
      io.write("BENCH_LIMIT\\n")
      io.flush()
      wrk.thread:stop()
    end
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
                         e.connect, e.read, e.write, e.status, e.timeout))
end
"""


# --- processes --------------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pin_self(cpu: int) -> bool:
    """Pin this process to ``cpu`` if the machine has it (so the driver stays off the server's core)."""
    if cpu < (os.cpu_count() or 1) and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
        return True
    return False


def taskset(cpu: int) -> list[str]:
    """``taskset -c cpu`` as a command prefix, or nothing where taskset or the CPU is missing."""
    if shutil.which("taskset") and cpu < (os.cpu_count() or 1):
        return ["taskset", "-c", str(cpu)]
    return []


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from "state" on (the name may hold spaces)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo and len(out) < 10_000:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants (plus the times of children they have reaped)."""
    ticks = 0
    for p in process_tree(pid):
        fields = _stat_fields(p)
        if fields is not None:  # fields[11:15]: utime, stime, cutime, cstime (stat fields 14-17)
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / _CLK_TCK


def cpu_by_process(pid: int) -> dict[int, float]:
    """utime + stime (plus reaped children's) of ``pid`` and each live descendant, apart: how a
    multi-process server's work was shared out."""
    out: dict[int, float] = {}
    for p in process_tree(pid):
        fields = _stat_fields(p)
        if fields is not None:
            out[p] = sum(int(f) for f in fields[11:15]) / _CLK_TCK
    return out


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def http_get(port: int, path: str, *, tls: bool = False, timeout: float = 2.0) -> int:
    """One GET on a new connection; the status code (raises OSError if nothing listens yet)."""
    with contextlib.ExitStack() as stack:
        sock: socket.socket = stack.enter_context(socket.create_connection((HOST, port), timeout=timeout))
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            sock = stack.enter_context(ctx.wrap_socket(sock, server_hostname="localhost"))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head and len(head) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionResetError("closed before a status line")
            head += chunk
        return int(head.split(b" ", 2)[1])


class Server:
    """A server subprocess in its own process group, pinned with taskset; ``stop`` ends the group."""

    def __init__(self, name: str, argv: Sequence[str], *, port: int, ready_path: str, tls: bool = False,
                 env: dict[str, str] | None = None, cpu: int = 0, cwd: str | None = None) -> None:
        self.name, self.port, self.ready_path, self.tls = name, port, ready_path, tls
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  (closed by stop())
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen([*taskset(cpu), *argv], stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        self.ready_after: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0, poll: float = 0.001) -> float:
        """Seconds from process start until ``ready_path`` first answered 200 (polled every ``poll`` s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if http_get(self.port, self.ready_path, tls=self.tls) == 200:
                    self.ready_after = time.perf_counter() - self.started_at
                    return self.ready_after
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(poll)
        raise RuntimeError(f"{self.name} did not answer {self.ready_path} within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()[-4000:].decode(errors="replace")

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


# --- load -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Load:
    """What one load run did: responses received, failures (connection errors and HTTP >= 400), seconds."""

    requests: int
    errors: int
    seconds: float
    tool: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


def bodies_limit(bodies: Sequence[str] | None, connections: int, max_requests: int) -> int:
    """The response count to stop at so that no more than ``len(bodies)`` requests are ever sent.

    Each keep-alive connection has at most one request in flight, and wrk may finish one more response per
    connection in the event-loop pass that stops it: so stop ``2 * connections`` short of the last body."""
    if bodies is None:
        return max_requests
    limit = len(bodies) - 2 * connections
    if limit < 1:
        raise ValueError(f"{len(bodies)} one-use bodies are too few for {connections} connections")
    return min(limit, max_requests) if max_requests else limit


def run_wrk(port: int, path: str, body: str, *, connections: int, duration: float, tls: bool = False,
            max_requests: int = 0, cpu: int = 1, bodies: Sequence[str] | None = None,
            headers: Mapping[str, str] | None = None) -> Load:
    """POST ``body`` to ``path`` with wrk (one thread, keep-alive), for ``duration`` s or ``max_requests``.

    With ``bodies``, request n gets ``bodies[n]`` instead, and the run stops before they run out."""
    wrk = wrk_path()
    assert wrk is not None, WRK_HINT
    max_requests = bodies_limit(bodies, connections, max_requests)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_LUA)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as bodies_file:
        if bodies is not None:
            assert not any("\n" in b for b in bodies), "one body a line"
            bodies_file.write("".join(f"{b}\n" for b in bodies))
    try:
        url = f"{'https' if tls else 'http'}://{HOST}:{port}{path}"
        seconds = max(1, round(duration))
        argv = [*taskset(cpu), wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                "-s", script.name, url]
        env = {**os.environ, "BENCH_BODY": body, "BENCH_MAX": str(max_requests),
               "BENCH_BODIES": bodies_file.name if bodies is not None else "",
               "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in (headers or {}).items())}
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
            watchdog = threading.Timer(seconds + 60, proc.kill)
            watchdog.start()
            try:
                lines = []
                assert proc.stdout is not None and proc.stderr is not None
                for line in proc.stdout:  # ends when wrk exits: after -d at the latest
                    lines.append(line)
                    if line.startswith("BENCH_LIMIT"):
                        proc.send_signal(signal.SIGINT)
                stdout, stderr = "".join(lines), proc.stderr.read()
                proc.wait(timeout=30)
            finally:
                watchdog.cancel()
                if proc.poll() is None:
                    proc.kill()
    finally:
        os.unlink(script.name)
        os.unlink(bodies_file.name)
    m = re.search(r"^BENCH (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", stdout, re.MULTILINE)
    if m is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {stdout}\n{stderr}")
    n, micros, *errs = (int(g) for g in m.groups())
    return Load(n, sum(errs), micros / 1e6, "wrk")


def _post(port: int, path: str, body: str, headers: Mapping[str, str] | None = None) -> bytes:
    payload = body.encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{extra}"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(payload)}\r\n\r\n"
            ).encode() + payload


async def _python_load(port: int, path: str, body: str, connections: int, duration: float, tls: bool,
                       max_requests: int, bodies: Sequence[str] | None = None,
                       headers: Mapping[str, str] | None = None) -> Load:
    request = _post(port, path, body, headers)
    next_body = iter(bodies) if bodies is not None else None
    ctx: ssl.SSLContext | None = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    started = time.perf_counter()
    deadline = started + duration
    counts = {"ok": 0, "errors": 0}
    limit = max_requests or 1 << 62

    async def connection() -> None:
        try:
            reader, writer = await asyncio.open_connection(HOST, port, ssl=ctx)
        except OSError:
            counts["errors"] += 1
            return
        try:
            while time.perf_counter() < deadline and counts["ok"] + counts["errors"] < limit:
                if next_body is not None:
                    one = next(next_body, None)
                    if one is None:
                        break
                    writer.write(_post(port, path, one, headers))
                else:
                    writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                counts["ok" if status < 400 else "errors"] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            counts["errors"] += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    await asyncio.wait_for(asyncio.gather(*(connection() for _ in range(connections))), timeout=duration + 30)
    return Load(counts["ok"] + counts["errors"], counts["errors"], time.perf_counter() - started, "python")


def run_python_load(port: int, path: str, body: str, *, connections: int, duration: float, tls: bool = False,
                    max_requests: int = 0, bodies: Sequence[str] | None = None,
                    headers: Mapping[str, str] | None = None) -> Load:
    """The same load as ``run_wrk`` from a small asyncio client in this process (much slower than wrk:
    a fallback so the benchmark runs anywhere, not a source of throughput figures)."""
    return asyncio.run(_python_load(port, path, body, connections, duration, tls, max_requests, bodies, headers))


def run_load(port: int, path: str, body: str, *, connections: int, duration: float, tls: bool = False,
             max_requests: int = 0, force_python: bool = False, bodies: Sequence[str] | None = None,
             headers: Mapping[str, str] | None = None) -> Load:
    """wrk when installed (on CPU 1), else the Python load generator. ``bodies``: one body per request
    (each used once) instead of ``body`` for all; ``headers``: extra request headers."""
    if wrk_path() and not force_python:
        return run_wrk(port, path, body, connections=connections, duration=duration, tls=tls,
                       max_requests=max_requests, bodies=bodies, headers=headers)
    return run_python_load(port, path, body, connections=connections, duration=duration, tls=tls,
                           max_requests=max_requests, bodies=bodies, headers=headers)
