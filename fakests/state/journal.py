"""The request journal: what every client did, bounded, with secrets redacted.

Each request to a sandbox leaves one ``JournalEntry``: endpoint, parameters (secrets replaced by
``"***"``), the client's ``client-request-id``, our trace id, the correlation id we answered with,
the rule that fired, the status and AADSTS code, and when it arrived on the sandbox clock. Tests
read it through ``Journal.entries`` and the helpers below, which phrase the questions users ask:
how many attempts, how far apart, and did each retry honour the ``Retry-After`` it was given.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Never stored, never logged: these carry credentials or grants (issue 5, "Secrets").
SECRET_PARAMS = frozenset({
    "client_secret", "password", "passwd", "client_assertion", "assertion", "code", "refresh_token",
    "device_code", "code_verifier", "id_token_hint", "otc", "fakests_sid",  # the SSO session id signs a user in
})
REDACTED = "***"


def redact(params: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k in SECRET_PARAMS and v else v) for k, v in params.items()}


@dataclass(frozen=True)
class JournalEntry:
    """One request as the sandbox saw it. ``at`` is on the sandbox clock (epoch seconds)."""

    seq: int
    sandbox: str
    endpoint: str
    method: str
    path: str
    at: float
    params: dict[str, str]
    client_id: str | None
    grant_type: str | None
    client_request_id: str | None
    trace_id: str
    correlation_id: str
    status: int
    aadsts: int | None = None
    error: str | None = None
    rule: str | None = None
    retry_after: str | None = None
    fault: str | None = None
    duration_ms: float = 0.0
    user_agent: str | None = None
    early_retry: bool = False  # came back before the Retry-After this client was given had passed
    worker: int = 0  # pid of the process that answered (``serve --workers N`` spreads requests over N)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


FIELDS = tuple(f.name for f in fields(JournalEntry))


def entry_row(entry: JournalEntry) -> tuple[Any, ...]:
    """``entry`` as the row ``Journal.record_row`` and the shared stores keep: its fields, in order."""
    return tuple(getattr(entry, name) for name in FIELDS)


def entry_from_row(row: tuple[Any, ...] | dict[str, Any], seq: int) -> JournalEntry:
    """The entry a stored row holds, numbered ``seq`` (the store's order across processes). A dict is a
    row written by an earlier fakests into a Redis store that outlived it."""
    if isinstance(row, dict):
        return JournalEntry(**{**row, "seq": seq})
    return JournalEntry(seq, *row[1:])


_seq = itertools.count(1)


@dataclass
class Journal:
    """A bounded, thread-safe list of ``JournalEntry`` (oldest dropped first)."""

    size: int = 10_000
    _entries: deque[JournalEntry | tuple[Any, ...]] = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._entries = deque(maxlen=self.size)

    def record(self, entry: JournalEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def record_row(self, row: tuple[Any, ...]) -> Awaitable[None] | None:
        """Record ``JournalEntry(*row)``, built when read: every request writes an entry and few are
        ever read, and a frozen dataclass of 22 fields costs more to build than the rest of the journal.
        A shared journal may return an awaitable: the request must await it before it answers."""
        with self._lock:
            self._entries.append(row)
        return None

    def last_seq(self) -> int:
        """The ``seq`` of the newest entry (0 when empty), at no cost: whether anything came since."""
        with self._lock:
            if not self._entries:
                return 0
            last = self._entries[-1]
        return int(last[0] if isinstance(last, tuple) else last.seq)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[JournalEntry]:
        with self._lock:
            items = list(self._entries)
        return iter([e if type(e) is JournalEntry else JournalEntry(*e) for e in items])

    def entries(
        self,
        endpoint: str | None = None,
        *,
        client_id: str | None = None,
        grant_type: str | None = None,
        status: int | None = None,
        correlation_id: str | None = None,
        since: int = 0,
    ) -> list[JournalEntry]:
        """Entries matching every given filter, oldest first."""
        return [
            e for e in self
            if (endpoint is None or e.endpoint == endpoint)
            and (client_id is None or e.client_id == client_id)
            and (grant_type is None or e.grant_type == grant_type)
            and (status is None or e.status == status)
            and (correlation_id is None or e.correlation_id == correlation_id)
            and e.seq > since
        ]

    def attempts(self, endpoint: str = "token", **filters: Any) -> int:
        """How many requests reached ``endpoint`` (after any filters)."""
        return len(self.entries(endpoint, **filters))

    def intervals(self, endpoint: str = "token", **filters: Any) -> list[float]:
        """Seconds between consecutive matching requests."""
        at = [e.at for e in self.entries(endpoint, **filters)]
        return [b - a for a, b in itertools.pairwise(at)]

    def early_retries(self, endpoint: str | None = None, **filters: Any) -> list[JournalEntry]:
        """Requests that came back before the ``Retry-After`` this client had been given ran out."""
        return [e for e in self.entries(endpoint, **filters) if e.early_retry]

    def waited(self, endpoint: str = "token", **filters: Any) -> list[tuple[float, float]]:
        """For each answer that carried ``Retry-After`` (seconds) and was followed by another matching
        request: (seconds asked, seconds the client actually waited)."""
        entries = self.entries(endpoint, **filters)
        return [(float(a.retry_after), b.at - a.at) for a, b in itertools.pairwise(entries)
                if a.retry_after and a.retry_after.isascii() and a.retry_after.isdigit()]


def next_seq() -> int:
    return next(_seq)
