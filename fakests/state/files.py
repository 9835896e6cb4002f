"""Writing the state directory's files: whole or not at all."""

from __future__ import annotations

from pathlib import Path


def write_atomic(path: Path, data: bytes, *, private: bool) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it, so a reader (another worker,
    a replica adopting a file, a process killed mid-write) never sees half a key or certificate.
    ``private``: owner-only (keys); otherwise world-readable (certificates, the exported CA)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o600 if private else 0o644)
    tmp.replace(path)
