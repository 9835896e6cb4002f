"""Trace and correlation ids, and Entra's timestamp formats.

Entra uses the client's ``client-request-id`` (MSAL sends a uuid4 per call) as the correlation id
and echoes it in a ``client-request-id`` response header; ``x-ms-request-id`` carries the trace id,
a fresh GUID per request (entra-wire.md §5.1, §5.3). msal-node puts ``client-request-id`` in the
query string and the form body instead of a header (§2.10); azure-identity adds
``x-ms-client-request-id``.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class RequestIds:
    """The ids of one request: ``trace_id`` (ours) and ``correlation_id`` (the client's, or ours)."""

    trace_id: str
    correlation_id: str
    client_request_id: str | None  # what the client sent, verbatim, if anything

    @classmethod
    def new(cls, *sources: Mapping[str, str] | None) -> RequestIds:
        """Ids for a request whose client-request-id may be in any of ``sources`` (headers first)."""
        sent: str | None = None
        for src in sources:
            if not src:
                continue
            sent = src.get("client-request-id") or src.get("x-ms-client-request-id")
            if sent:
                break
        return cls(new_guid(), sent if sent and _is_guid(sent) else new_guid(), sent)

    def headers(self) -> dict[str, str]:
        """The response headers Entra sets on every answer: the client's own id echoed, or ours. An id
        that cannot be a header value (not printable ASCII: CR/LF, other text) is not echoed."""
        sent = self.client_request_id
        echoed = sent if sent and sent.isascii() and sent.isprintable() else self.correlation_id
        return {"client-request-id": echoed, "x-ms-request-id": self.trace_id}


class _RandomPool:
    """``os.urandom`` served from a 4 KiB buffer: one system call per hundred-odd ids instead of one per
    id (a token request needs five). For ids and claim nonces only, never for keys or secrets."""

    size = 4096

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buffer = b""
        self.at = 0

    def take(self, n: int) -> bytes:
        with self.lock:
            if self.at + n > len(self.buffer):
                self.buffer, self.at = os.urandom(max(self.size, n)), 0
            chunk = self.buffer[self.at:self.at + n]
            self.at += n
        return chunk


_pool = _RandomPool()


def _new_pool_after_fork() -> None:  # a forked child must not hand out its parent's bytes again
    global _pool
    _pool = _RandomPool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_pool_after_fork)


def random_bytes(n: int) -> bytes:
    """``n`` random bytes (``os.urandom`` quality) for ids and nonces; see ``_RandomPool``."""
    return _pool.take(n)


def new_guid() -> str:
    """``str(uuid.uuid4())`` in a third of the time (two per request add up)."""
    b = bytearray(random_bytes(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _is_guid(value: str) -> bool:
    """Entra takes the client's id as the correlation id only when it is a GUID (entra-wire.md §10.9)."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) in (32, 36, 38)


LAST_TIMESTAMP = 253402300799.0  # 9999-12-31T23:59:59Z: the last second a timestamp (or datetime) can name


def entra_timestamp(when: datetime | float) -> str:
    """``yyyy-MM-dd HH:mm:ssZ``: the form of ``timestamp`` in Entra's error JSON (§5.1)."""
    dt = when if isinstance(when, datetime) else datetime.fromtimestamp(when, UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%SZ")


def page_timestamp(when: float) -> str:
    """``yyyy-MM-ddTHH:mm:ss.fffZ``: the form on Entra's HTML sign-in error page."""
    dt = datetime.fromtimestamp(when, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
