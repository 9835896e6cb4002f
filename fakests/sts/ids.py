"""Trace and correlation ids, and Entra's timestamp formats.

Entra uses the client's ``client-request-id`` (MSAL sends a uuid4 per call) as the correlation id
and echoes it in a ``client-request-id`` response header; ``x-ms-request-id`` carries the trace id,
a fresh GUID per request (entra-wire.md §5.1, §5.3). msal-node puts ``client-request-id`` in the
query string and the form body instead of a header (§2.10); azure-identity adds
``x-ms-client-request-id``.
"""

from __future__ import annotations

import os
import random
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


class _Ids:
    """The generator of ids (trace and correlation ids) and claim nonces (``aio``, ``rh``, ``uti``): a
    Mersenne Twister seeded from ``os.urandom``, re-seeded in a forked child. A token request needs five
    such values; a system call or a lock per value cost more than the rest of them. Its output can be
    predicted from enough of it, which is harmless for ids: never use it for keys, codes or secrets
    (those come from ``secrets``)."""

    rng = random.Random(os.urandom(32))

    @classmethod
    def reseed(cls) -> None:  # a forked child must not repeat its parent's ids
        cls.rng = random.Random(os.urandom(32))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Ids.reseed)

_GUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_GUID_SET = (0x8000 << 48) | (4 << 76)  # RFC 4122 variant, version 4 (as uuid.UUID(version=4) sets them)


def random_bytes(n: int) -> bytes:
    """``n`` random bytes for ids and nonces; see ``_Ids``."""
    return _Ids.rng.randbytes(n)


def new_guid() -> str:
    """A random (version 4) GUID string, as ``str(uuid.uuid4())`` gives, in a third of the time."""
    h = "%032x" % (_Ids.rng.getrandbits(128) & _GUID_CLEAR | _GUID_SET)
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
