"""The state directory's files: written whole or not at all, and read with one clear line when broken."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError

REMAKE = "delete it (fakests makes a new one at start; clients must then trust the new CA or keys)"


@contextlib.contextmanager
def state_file(path: Path, what: str) -> Iterator[None]:
    """Turn a failure to read or parse ``path`` into ``ConfigError(path, "", "<what>: <why>; delete it...")``:
    start-up stops with one line naming the file, what is wrong and what to do, not a traceback."""
    try:
        yield
    except ConfigError:
        raise
    except OSError as exc:
        raise ConfigError(str(exc.filename or path), "", f"cannot be read or written: {exc.strerror or exc}") from None
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"not a valid {what} ({exc}); {REMAKE}") from None


@contextlib.contextmanager
def state_directory(path: Path) -> Iterator[None]:
    """Any other file-system failure while the state directory is read or made (read-only, a file where a
    directory should be, a full disk) as one line naming the path and the reason."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or path
        reason = exc.strerror or str(exc)
        raise ConfigError(str(where), "", f"{reason} (the state directory is {path}: it must be a writable "
                                          "directory; --state-dir or FAKESTS_STATE_DIR names another)") from None


def write_atomic(path: Path, data: bytes, *, private: bool) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it, so a reader (another worker,
    a replica adopting a file, a process killed mid-write) never sees half a key or certificate.
    ``private``: owner-only (keys); otherwise world-readable (certificates, the exported CA)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o600 if private else 0o644)
    tmp.replace(path)
