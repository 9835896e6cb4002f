"""``fakests serve`` as a real subprocess, for the tests of the CLI, limits and the compose setup."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Serving:
    """A running ``fakests serve``: its process, stdout until "Ready on" (``banner``), and both streams'
    lines as they come (``out`` and ``err``; with ``merge_stderr`` everything is in ``out``)."""

    proc: subprocess.Popen[str]
    banner: str
    lines: list[str]
    out: queue.Queue[str]
    err: queue.Queue[str] = field(default_factory=queue.Queue)
    pumps: list[threading.Thread] = field(default_factory=list, repr=False)
    group: bool = False  # started in its own process group (``serve --workers N``): stopped as a group

    @property
    def url(self) -> str:
        """The URL the banner's "Ready on" line names."""
        match = READY.search(self.banner)
        assert match, self.banner
        return match.group(1)


READY = re.compile(r"^Ready on (https?://\S+) ", re.MULTILINE)


def _pump(stream: IO[str], sink: queue.Queue[str]) -> None:
    for line in stream:
        sink.put(line)


def stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate, then kill if it does not go within 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM to the process group (``serve --workers N`` stops its workers), SIGKILL if it lingers,
    and SIGKILL again for workers that outlived their parent."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def start(args: list[str], env: Mapping[str, str], *, cwd: Path = REPO, merge_stderr: bool = False,
          group: bool = False) -> Serving:
    """``python -m fakests serve ARGS``, started and read in the background (``wait_ready`` next);
    ``group``: in its own process group, so that ``finish`` ends its workers too."""
    proc = subprocess.Popen([sys.executable, "-m", "fakests", "serve", *args], cwd=cwd,
                            env={"FAKESTS_IDENTITY_PORT": "0", **env, "PYTHONUNBUFFERED": "1"}, text=True,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, start_new_session=group)
    running = Serving(proc, "", [], queue.Queue(), group=group)
    running.pumps.append(threading.Thread(target=_pump, args=(proc.stdout, running.out), daemon=True))
    if not merge_stderr:
        running.pumps.append(threading.Thread(target=_pump, args=(proc.stderr, running.err), daemon=True))
    for pump in running.pumps:
        pump.start()
    return running


def wait_ready(running: Serving, timeout: float = 60) -> Serving:
    """Read its output until the banner says "Ready on" (fails if it exits or takes ``timeout`` s)."""
    proc, lines = running.proc, running.lines
    deadline = time.monotonic() + timeout
    while not any(line.startswith("Ready on ") for line in lines):
        assert proc.poll() is None, f"fakests exited {proc.returncode}: {''.join(lines)}{''.join(running.err.queue)}"
        assert time.monotonic() < deadline, f"no banner: {''.join(lines)}"
        with contextlib.suppress(queue.Empty):
            lines.append(running.out.get(timeout=0.5))
    running.banner = "".join(lines)
    return running


def finish(running: Serving) -> None:
    """Stop it (its whole group if it has one) and keep what it printed while stopping."""
    (kill_group if running.group else stop)(running.proc)
    for pump in running.pumps:
        pump.join(timeout=5)
    while not running.out.empty():  # what it printed while stopping, for tests that read the whole output
        running.lines.append(running.out.get())
    for stream in (running.proc.stdout, running.proc.stderr):
        if stream is not None:
            stream.close()


@contextlib.contextmanager
def serve(args: list[str], env: Mapping[str, str], *, cwd: Path = REPO, merge_stderr: bool = False,
          timeout: float = 60, group: bool = False) -> Iterator[Serving]:
    """``python -m fakests serve ARGS`` until its banner says "Ready on"; always stopped afterwards."""
    running = start(args, env, cwd=cwd, merge_stderr=merge_stderr, group=group)
    try:
        yield wait_ready(running, timeout)
    finally:
        finish(running)


# --- a private redis-server, for the replica and store-fault tests -------------------------------------
def _redis_server() -> str:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists()
                                             else None)
    if found is None:
        reason = "redis-server is not installed (apt-get install redis-server): the replica tests need a real Redis"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; under CI this is a failure, not a skip (.ci/run installs it)")
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A private ``redis-server`` on 127.0.0.1 and a free port, no persistence: its process and URL."""
    import redis

    binary = _redis_server()
    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # the port was free a moment ago; another process may take it first
        port = _free_port()
        proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
                                 "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        client.close()
        if proc.poll() is None and time.monotonic() < deadline:
            break
        stop(proc)
    else:
        pytest.fail("redis-server did not start on a free port (3 tries)")
    try:
        yield proc, f"redis://127.0.0.1:{port}/0"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # a test may have stopped it
        stop(proc)


# --- fakests serve --impersonate in a private network and mount namespace ---------------------------------
ENTRA_HOSTS = "127.0.0.1 localhost\n127.0.0.1 login.microsoftonline.com login.windows.net login.microsoft.com\n"


def run_impersonating(tmp_path: Path, serve_args: list[str], then: str,
                      env: Mapping[str, str]) -> tuple[subprocess.CompletedProcess[str], str]:
    """``fakests serve --impersonate SERVE_ARGS`` in a network and mount namespace of its own (``unshare``)
    whose ``/etc/hosts`` sends Entra's names to it (the machine's own is untouched), then the shell lines
    ``then`` with the CA variables set. Returns the run and fakests' log.
    Skips without root and unshare; under CI that is a failure."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        reason = "needs root and unshare (a private network and mount namespace with its own /etc/hosts)"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    hosts, state, log = tmp_path / "hosts", tmp_path / "state", tmp_path / "serve.log"
    hosts.write_text(ENTRA_HOSTS)
    python = sys.executable
    args = " ".join(shlex.quote(a) for a in serve_args)
    script = (
        "set -eu\nip link set lo up\n"
        f"mount --bind {hosts} /etc/hosts\n"
        f"{python} -m fakests serve --impersonate --state-dir {state} --no-log-requests {args} > {log} 2>&1 &\n"
        "server=$!\ntrap 'kill $server' EXIT\n"
        f"for i in $(seq 1 100); do {python} -m fakests health --port 443 --state-dir {state} >/dev/null 2>&1 "
        "&& break; sleep 0.1; done\n"
        f"bundle=$({python} -m fakests ca --bundle --state-dir {state})\n"
        f"export REQUESTS_CA_BUNDLE=$bundle SSL_CERT_FILE=$bundle NODE_EXTRA_CA_CERTS={state}/tls/ca.pem\n"
        + then)
    clean = {k: v for k, v in env.items() if not k.startswith(("FAKESTS_", "REQUESTS_CA", "SSL_CERT"))}
    done = subprocess.run(["unshare", "--net", "--mount", "bash", "-c", script], capture_output=True, text=True,
                          timeout=180, env=clean)
    return done, log.read_text() if log.exists() else ""
