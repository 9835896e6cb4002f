"""A broken state directory stops start-up with one line: the file, what is wrong, what to do.

Each case used to exit with a Python traceback, or, for a corrupted client certificate and a CA that
does not match its key, to start and serve broken state (500s at certificate logins, certificates
that do not chain). ``Runtime.start`` is what ``fakests serve``, ``FakeSTS`` and every worker run.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fakests.server.runtime import Runtime
from fakests.state import files as files_module
from fakests.state.errors import ConfigError
from fakests.state.settings import Settings

GARBAGE = b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"


def _ec_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory as a first start leaves it."""
    state = tmp_path_factory.mktemp("state-template")
    Runtime.start(Settings(state_dir=state, tls=True))
    return state


def _copy(made: Path, tmp_path: Path) -> Path:
    state = tmp_path / "state"
    subprocess.run(["cp", "-a", str(made), str(state)], check=True)
    return state


def _other_ca(state: Path) -> None:
    other = state.parent / "other"
    Runtime.start(Settings(state_dir=other, tls=True))
    (state / "tls" / "ca.pem").write_bytes((other / "tls" / "ca.pem").read_bytes())


BREAKAGES: list[tuple[str, Callable[[Path], object], str, str]] = [
    ("corrupted signing key", lambda s: (s / "signing" / "key-0001.pem").write_bytes(GARBAGE),
     "signing/key-0001.pem", "not a valid signing key"),
    ("emptied signing key", lambda s: (s / "signing" / "key-0001.pem").write_bytes(b""),
     "signing/key-0001.pem", "not a valid signing key"),
    ("EC key as signing key", lambda s: (s / "signing" / "key-0001.pem").write_bytes(_ec_pem()),
     "signing/key-0001.pem", "signing keys must be RSA"),
    ("corrupted CA key", lambda s: (s / "tls" / "ca-key.pem").write_bytes(GARBAGE),
     "tls/ca-key.pem", "not a valid CA key"),
    ("corrupted CA certificate", lambda s: (s / "tls" / "ca.pem").write_bytes(b"not a certificate"),
     "tls/ca.pem", "not a valid CA certificate"),
    ("CA that does not match its key", _other_ca, "tls/ca.pem", "does not belong to its key ca-key.pem"),
    ("corrupted server names", lambda s: (s / "tls" / "server-names.json").write_text("{oops"),
     "tls/server-names.json", "not a valid list of server names"),
    ("corrupted client certificate", lambda s: (s / "client" / "client-cert.pem").write_bytes(GARBAGE),
     "client/client-cert.pem", "not a valid client certificate"),
    ("a file where the signing directory goes", lambda s: _replace_with_file(s / "signing"),
     "signing", "exists"),
]


def _replace_with_file(path: Path) -> None:
    subprocess.run(["rm", "-r", str(path)], check=True)
    path.write_text("a file")


@pytest.mark.parametrize(("case", "break_it", "file", "reason"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_a_broken_state_file_is_one_line_naming_it(made: Path, tmp_path: Path, case: str,
                                                    break_it: Callable[[Path], object], file: str, reason: str) -> None:
    state = _copy(made, tmp_path)
    break_it(state)
    with pytest.raises(ConfigError) as raised:
        Runtime.start(Settings(state_dir=state, tls=True))
    line = str(raised.value)
    assert str(state / file) in line and reason in line, line
    assert "\n" not in line


def test_a_state_path_that_is_a_file_and_a_full_disk_are_one_line(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("a file")
    with pytest.raises(ConfigError, match="it must be a writable directory"):
        Runtime.start(Settings(state_dir=not_a_dir, tls=True))

    def full(path: Path, data: bytes, *, private: bool) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(files_module, "write_atomic", full)
    for module in ("fakests.state.keys", "fakests.state.tls", "fakests.server.runtime"):
        monkeypatch.setattr(f"{module}.write_atomic", full)
    with pytest.raises(ConfigError, match="No space left on device"):
        Runtime.start(Settings(state_dir=tmp_path / "fresh", tls=True))


def test_serve_exits_2_with_the_one_line(made: Path, tmp_path: Path) -> None:
    state = _copy(made, tmp_path)
    (state / "tls" / "ca-key.pem").write_bytes(GARBAGE)
    done = subprocess.run([sys.executable, "-m", "fakests", "serve", "--port", "0", "--state-dir", str(state)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(state / "tls" / "ca-key.pem") in lines[0] and "delete it" in lines[0], lines


def test_a_read_only_state_directory_is_one_line(tmp_path: Path) -> None:
    """Root ignores file modes, so the directory is made read-only the way a volume is: a read-only bind
    mount, in a private mount namespace this test makes (the machine's own mounts are untouched)."""
    import shutil

    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs unshare and root for a private read-only mount")
    ro = tmp_path / "ro"
    ro.mkdir()
    script = (f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && "
              f"exec {sys.executable} -m fakests serve --port 0 --state-dir {ro / 'state'}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Read-only file system" in lines[0] and str(ro / "state") in lines[0], lines
    assert "Traceback" not in done.stderr
