"""Azure Arc's clients read the agent's key file from ``/var/opt/azcmagent/tokens`` and refuse any other place
(MSAL Python, msal-node, azure-identity). ``run_as_arc_client`` runs a client in a mount namespace of its own
(``unshare --mount``; we are root) where that directory is a bind mount of the test's ``key_dir``, the
directory fakests writes its keys into (``arc_key_dir``). The machine's ``/var/opt`` is untouched: the
namespace mounts a tmpfs over it first, so nothing is created on the real file system.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

ARC_DIR = "/var/opt/azcmagent/tokens"
ROOT = Path(__file__).resolve().parent.parent


def require_namespaces() -> None:
    """Skip without root, ``unshare`` or ``/var/opt`` to mount over; under CI that is a failure."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or not Path("/var/opt").is_dir():
        reason = "needs root, unshare and /var/opt (a private mount namespace with Arc's key directory)"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def run_as_arc_client(argv: Sequence[str], key_dir: Path, env: Mapping[str, str],
                      cwd: Path = ROOT) -> dict[str, Any]:
    """Run ``argv`` where ``/var/opt/azcmagent/tokens`` is ``key_dir``; its last JSON line, parsed."""
    require_namespaces()
    script = ("set -eu\nmount -t tmpfs -o size=1m fakests-arc /var/opt\nmkdir -p " + ARC_DIR + "\n"
              f"mount --bind {shlex.quote(str(key_dir))} {ARC_DIR}\nexec " + " ".join(map(shlex.quote, argv)))
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script], cwd=cwd,
                          env=dict(env), capture_output=True, text=True, timeout=120, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"exit {done.returncode}: {done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def python_client(library: str, resource: str, client_id: str | None = None) -> list[str]:
    """The argv of ``tests/mi_client.py`` (an unmodified Python client) under this interpreter."""
    script = str(ROOT / "tests" / "mi_client.py")
    return [sys.executable, script, library, resource, *([client_id] if client_id else [])]
