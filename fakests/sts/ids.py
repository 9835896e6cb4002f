"""Trace and correlation ids, and Entra's timestamp formats.

Entra uses the client's ``client-request-id`` (MSAL sends a uuid4 per call) as the correlation id
and echoes it in a ``client-request-id`` response header; ``x-ms-request-id`` carries the trace id,
a fresh GUID per request (entra-wire.md §5.1, §5.3). msal-node puts ``client-request-id`` in the
query string and the form body instead of a header (§2.10); azure-identity adds
``x-ms-client-request-id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ..state.guids import new_guid


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
