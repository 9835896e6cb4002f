"""``fakests serve`` as a real subprocess, for the tests of the CLI, limits and the compose setup."""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

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


def _pump(stream: IO[str], sink: queue.Queue[str]) -> None:
    for line in stream:
        sink.put(line)


def stop(proc: subprocess.Popen[str]) -> None:
    """Terminate, then kill if it does not go within 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def serve(args: list[str], env: Mapping[str, str], *, cwd: Path = REPO, merge_stderr: bool = False,
          timeout: float = 60) -> Iterator[Serving]:
    """``python -m fakests serve ARGS`` until its banner says "Ready on"; always stopped afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "fakests", "serve", *args], cwd=cwd,
                            env={**env, "PYTHONUNBUFFERED": "1"}, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE)
    out: queue.Queue[str] = queue.Queue()
    err: queue.Queue[str] = queue.Queue()
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, out), daemon=True)]
    if not merge_stderr:
        pumps.append(threading.Thread(target=_pump, args=(proc.stderr, err), daemon=True))
    for pump in pumps:
        pump.start()
    lines: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while not any(line.startswith("Ready on ") for line in lines):
            assert proc.poll() is None, f"fakests exited {proc.returncode}: {''.join(lines)}{''.join(err.queue)}"
            assert time.monotonic() < deadline, f"no banner: {''.join(lines)}"
            with contextlib.suppress(queue.Empty):
                lines.append(out.get(timeout=0.5))
        yield Serving(proc, "".join(lines), lines, out, err)
    finally:
        stop(proc)
        for pump in pumps:
            pump.join(timeout=5)
        while not out.empty():  # what it printed while stopping, for tests that read the whole output
            lines.append(out.get())
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
