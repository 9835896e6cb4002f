"""Shared state for several worker processes on one machine: an embedded SQLite database.

``fakests serve --workers N`` runs N processes, and a request may land on any of them, so anything
one request leaves for another must live outside the process: issued grants (codes, refresh
tokens, device codes, sign-in sessions), scenario rule counters, the journal, and the sandboxes'
definitions (directory, settings, scenarios, keys). SQLite in WAL mode needs no server, and its
write lock (``BEGIN IMMEDIATE``) makes "decide and count" atomic across processes, so a
``times: 2`` rule fires exactly twice however requests are spread. With one process (the default,
and every test fixture) none of this is used: state stays in plain objects.

For several replicas on different machines, ``redisstore.RedisStore`` keeps the same methods on Redis
(``--store redis://...``); ``Store`` below is the interface both keep and the rest of fakests uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import mmap
import os
import pickle
import sqlite3
import struct
import threading
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .journal import Journal, JournalEntry, entry_from_row, entry_row

# How many versions back the stores remember which sandboxes changed (``sandbox_changes``): a process
# further behind than this reads every sandbox's version once instead.
LOG_KEEP = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sandboxes (id TEXT PRIMARY KEY, version INTEGER NOT NULL, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
    sandbox TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, blob BLOB NOT NULL,
    redeemed INTEGER NOT NULL DEFAULT 0, expires_at REAL NOT NULL, lookup TEXT,
    PRIMARY KEY (sandbox, kind, key));
CREATE INDEX IF NOT EXISTS grants_lookup ON grants (kind, lookup);
CREATE TABLE IF NOT EXISTS rules (sandbox TEXT NOT NULL, name TEXT NOT NULL, blob BLOB NOT NULL,
    PRIMARY KEY (sandbox, name));
CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, sandbox TEXT NOT NULL, blob BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS journal_sandbox ON journal (sandbox, seq);
CREATE TABLE IF NOT EXISTS errors (seq INTEGER PRIMARY KEY AUTOINCREMENT, sandbox TEXT NOT NULL, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS used (id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS used_at ON used (at);
CREATE TABLE IF NOT EXISTS sandbox_log (id TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sandbox_log_version ON sandbox_log (version);
INSERT OR IGNORE INTO meta (key, value) VALUES ('version', 0);
"""


class Store(Protocol):
    """What sandboxes, the engine and the runtime need from a shared store (``SharedStore``: SQLite, one
    machine; ``redisstore.RedisStore``: Redis, several replicas). Blobs are pickles: a test double's
    private store, written and read only by fakests."""

    #: False when every process reads one state directory (workers on one machine); True when each
    #: replica has its own, so keys, the CA and the client certificate are shared too (``share``).
    remote: bool

    def exclusive(self, scope: str = "") -> contextlib.AbstractContextManager[None]:
        """Run the body alone among every process using the store (read, decide, write atomically);
        the store's methods called inside take part. ``scope`` may narrow the lock (a sandbox id)."""
        ...

    def share(self, name: str, offer: bytes) -> bytes:
        """Offer a value under ``name``: the first offer ever made wins, and is returned to everyone."""
        ...

    def version(self) -> int: ...
    def signal(self) -> int | None: ...
    def save_sandbox(self, sandbox_id: str, definition: Any) -> int: ...
    def seed_sandbox(self, sandbox_id: str, definition: Any) -> bool: ...
    def drop_sandbox(self, sandbox_id: str) -> None: ...
    def touch_sandboxes(self, used: dict[str, float]) -> None: ...
    def idle_sandboxes(self, before: float) -> list[str]: ...
    def sandboxes(self) -> dict[str, tuple[int, Any]]: ...
    def sandbox_versions(self) -> dict[str, int]: ...
    def sandbox_changes(self, since: int) -> dict[str, int | None] | None: ...
    def load_sandbox(self, sandbox_id: str) -> Any | None: ...
    def put_grant(self, sandbox: str, kind: str, key: str, value: Any, expires_at: float,
                  lookup: str | None = None) -> None: ...
    def get_grant(self, sandbox: str, kind: str, key: str) -> Any | None: ...
    def claim_grant(self, sandbox: str, kind: str, key: str) -> tuple[Any | None, bool]: ...
    def update_grant(self, sandbox: str, kind: str, key: str, value: Any) -> None: ...
    def find_grant(self, kind: str, lookup: str) -> tuple[str, str, Any] | None: ...
    def delete_grant(self, sandbox: str, kind: str, key: str) -> None: ...
    def expire_grants(self, now: float) -> None: ...
    def rule_state(self, sandbox: str, name: str) -> dict[str, Any] | None: ...
    def save_rule_state(self, sandbox: str, name: str, state: dict[str, Any]) -> None: ...
    def clear_rules(self, sandbox: str) -> None: ...
    def prune_rules(self, sandbox: str, keep: list[str]) -> None: ...
    def record(self, row: tuple[Any, ...], bound: int) -> None: ...
    def record_soon(self, row: tuple[Any, ...], bound: int) -> Awaitable[None] | None: ...
    def journal(self, sandbox: str, bound: int) -> list[JournalEntry]: ...
    def journal_count(self, sandbox: str, bound: int) -> int: ...
    def clear_journal(self, sandbox: str) -> None: ...
    def add_error(self, sandbox: str, text: str) -> None: ...
    def errors(self, sandbox: str) -> list[str]: ...


class SharedStore:
    """State shared by the worker processes of one fakests, in ``{state_dir}/shared.sqlite``."""

    remote = False  # the workers read one state directory: keys and certificates need no sharing

    def __init__(self, path: Path, *, commit_turns: int = 3) -> None:
        self.path = path
        self.commit_turns = commit_turns  # ``Settings.journal_commit_turns``; see ``_commit``
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(_SCHEMA)
        # The change signal: a counter in shared memory that every write transaction bumps once it has
        # committed. A reader that sees the value it saw last needs no query to know nothing changed
        # (``signal``); the version query it saves was a fifth of what workers added to a request.
        fd = os.open(path.with_name(path.name + ".signal"), os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(fd).st_size < _SIGNAL.size:
            os.ftruncate(fd, _SIGNAL.size)
        self._signal_fd = fd
        self._signal = mmap.mmap(fd, _SIGNAL.size)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")  # a crash may lose recent journal rows; tests restart anyway
        return db

    @property
    def db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    @contextlib.contextmanager
    def exclusive(self, scope: str = "") -> Iterator[None]:
        """A write transaction that holds SQLite's lock: read, decide and write atomically. The methods
        called inside run in it (``db`` is one connection per thread). ``scope``: SQLite has one lock."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL does)
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._bump()

    def signal(self) -> int:
        """The change counter, read without a lock or a query: equal to a value read earlier, no write
        transaction has committed since (a torn read can only differ, which costs one query)."""
        return int(_SIGNAL.unpack_from(self._signal)[0])

    def _bump(self) -> None:
        # After COMMIT, so a reader that sees the new value and then queries finds the change. The file
        # lock orders writers, so no bump is lost to another's read-modify-write.
        fcntl.flock(self._signal_fd, fcntl.LOCK_EX)
        try:
            _SIGNAL.pack_into(self._signal, 0, (self.signal() + 1) & 0xFFFF_FFFF_FFFF_FFFF)
        finally:
            fcntl.flock(self._signal_fd, fcntl.LOCK_UN)

    def share(self, name: str, offer: bytes) -> bytes:
        """Nothing to share: every worker reads the same state directory."""
        return offer

    # --- sandbox definitions -------------------------------------------------------------------------
    def version(self) -> int:
        return int(self.db.execute("SELECT value FROM meta WHERE key='version'").fetchone()[0])

    def save_sandbox(self, sandbox_id: str, definition: Any) -> int:
        """Store a sandbox's definition; returns its new version (the writer need not reload it)."""
        with self.exclusive():
            return self._save(sandbox_id, definition)

    def seed_sandbox(self, sandbox_id: str, definition: Any) -> bool:
        """``save_sandbox`` unless the store holds that sandbox already; True if this call wrote it."""
        with self.exclusive():
            if self.db.execute("SELECT 1 FROM sandboxes WHERE id = ?", (sandbox_id,)).fetchone() is not None:
                return False
            self._save(sandbox_id, definition)
        return True

    def _save(self, sandbox_id: str, definition: Any) -> int:
        """Write a definition under a new version (call inside ``exclusive``); returns the version."""
        blob = pickle.dumps(definition, protocol=pickle.HIGHEST_PROTOCOL)
        db = self.db
        db.execute("UPDATE meta SET value = value + 1 WHERE key='version'")
        db.execute("INSERT INTO sandboxes (id, version, blob) VALUES (?, (SELECT value FROM meta WHERE "
                   "key='version'), ?) ON CONFLICT (id) DO UPDATE SET version=excluded.version, blob=excluded.blob",
                   (sandbox_id, blob))
        return self._log(sandbox_id)

    def _log(self, sandbox_id: str) -> int:
        """Note that ``sandbox_id`` changed at the current version (inside ``exclusive``); forget what is
        older than ``LOG_KEEP`` versions. Returns the version."""
        db = self.db
        version = int(db.execute("SELECT value FROM meta WHERE key='version'").fetchone()[0])
        db.execute("INSERT INTO sandbox_log (id, version) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET "
                   "version=excluded.version", (sandbox_id, version))
        db.execute("DELETE FROM sandbox_log WHERE version <= ?", (version - LOG_KEEP,))
        return version

    def drop_sandbox(self, sandbox_id: str) -> None:
        with self.exclusive():
            db = self.db
            db.execute("UPDATE meta SET value = value + 1 WHERE key='version'")
            self._log(sandbox_id)
            for table in ("sandboxes", "used", "grants", "rules", "journal", "errors"):
                column = "id" if table in ("sandboxes", "used") else "sandbox"
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (sandbox_id,))

    def touch_sandboxes(self, used: dict[str, float]) -> None:
        """Record that these sandboxes were used at these (epoch) times; the latest time wins."""
        self.db.executemany("INSERT INTO used (id, at) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET "
                            "at = max(at, excluded.at)", list(used.items()))

    def idle_sandboxes(self, before: float) -> list[str]:
        """Sandboxes no process has used since ``before`` (epoch seconds)."""
        return [r[0] for r in self.db.execute("SELECT id FROM used WHERE at < ?", (before,))]

    def sandboxes(self) -> dict[str, tuple[int, Any]]:
        """Every sandbox: id -> (version, definition)."""
        rows = self.db.execute("SELECT id, version, blob FROM sandboxes").fetchall()
        return {row[0]: (row[1], pickle.loads(row[2])) for row in rows}

    def sandbox_versions(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT id, version FROM sandboxes").fetchall())

    def sandbox_changes(self, since: int) -> dict[str, int | None] | None:
        """The sandboxes changed after version ``since``: id -> its version now, or None if dropped. None
        when ``since`` is older than the log remembers (then read ``sandbox_versions``). What a process
        that keeps up pays per change, whatever the number of sandboxes."""
        db = self.db
        db.execute("BEGIN")  # one snapshot (WAL): the log and the versions as of one moment
        try:
            version = int(db.execute("SELECT value FROM meta WHERE key='version'").fetchone()[0])
            if since < 0 or since <= version - LOG_KEEP:
                return None
            rows = db.execute("SELECT l.id, s.version FROM sandbox_log l LEFT JOIN sandboxes s ON s.id = l.id "
                              "WHERE l.version > ?", (since,)).fetchall()
        finally:
            db.execute("COMMIT")
        return {sandbox_id: v for sandbox_id, v in rows}

    def load_sandbox(self, sandbox_id: str) -> Any | None:
        row = self.db.execute("SELECT blob FROM sandboxes WHERE id = ?", (sandbox_id,)).fetchone()
        return pickle.loads(row[0]) if row else None

    # --- grants -----------------------------------------------------------------------------------------
    def put_grant(self, sandbox: str, kind: str, key: str, value: Any, expires_at: float,
                  lookup: str | None = None) -> None:
        self.db.execute("INSERT OR REPLACE INTO grants (sandbox, kind, key, blob, expires_at, lookup) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (sandbox, kind, key, pickle.dumps(value), expires_at, lookup))

    def get_grant(self, sandbox: str, kind: str, key: str) -> Any | None:
        row = self.db.execute("SELECT blob FROM grants WHERE sandbox=? AND kind=? AND key=?",
                              (sandbox, kind, key)).fetchone()
        return pickle.loads(row[0]) if row else None

    def claim_grant(self, sandbox: str, kind: str, key: str) -> tuple[Any | None, bool]:
        """The grant and whether this call was the first to claim it (single use across processes)."""
        with self.exclusive():
            db = self.db
            row = db.execute("SELECT blob, redeemed FROM grants WHERE sandbox=? AND kind=? AND key=?",
                             (sandbox, kind, key)).fetchone()
            if row is None:
                return None, False
            if not row[1]:
                db.execute("UPDATE grants SET redeemed=1 WHERE sandbox=? AND kind=? AND key=?", (sandbox, kind, key))
        return pickle.loads(row[0]), not row[1]

    def update_grant(self, sandbox: str, kind: str, key: str, value: Any) -> None:
        self.db.execute("UPDATE grants SET blob=? WHERE sandbox=? AND kind=? AND key=?",
                        (pickle.dumps(value), sandbox, kind, key))

    def find_grant(self, kind: str, lookup: str) -> tuple[str, str, Any] | None:
        """(sandbox, key, value) of the grant of ``kind`` whose lookup value is ``lookup``."""
        row = self.db.execute("SELECT sandbox, key, blob FROM grants WHERE kind=? AND lookup=?",
                              (kind, lookup)).fetchone()
        return (row[0], row[1], pickle.loads(row[2])) if row else None

    def delete_grant(self, sandbox: str, kind: str, key: str) -> None:
        self.db.execute("DELETE FROM grants WHERE sandbox=? AND kind=? AND key=?", (sandbox, kind, key))

    def expire_grants(self, now: float) -> None:
        self.db.execute("DELETE FROM grants WHERE expires_at < ?", (now - 86400,))

    # --- rule counters --------------------------------------------------------------------------------
    def rule_state(self, sandbox: str, name: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT blob FROM rules WHERE sandbox=? AND name=?", (sandbox, name)).fetchone()
        return pickle.loads(row[0]) if row else None

    def save_rule_state(self, sandbox: str, name: str, state: dict[str, Any]) -> None:
        db = self.db
        db.execute("INSERT OR REPLACE INTO rules (sandbox, name, blob) VALUES (?, ?, ?)",
                   (sandbox, name, pickle.dumps(state)))
        if not db.in_transaction:  # inside ``exclusive`` the commit bumps the signal
            self._bump()

    def clear_rules(self, sandbox: str) -> None:
        self.db.execute("DELETE FROM rules WHERE sandbox=?", (sandbox,))
        self._bump()  # the shared ``not_before`` is a rule state that readers keep under the signal

    def prune_rules(self, sandbox: str, keep: list[str]) -> None:
        """Forget the counters of rules no longer loaded (a scenario loaded again starts from zero)."""
        marks = ",".join("?" * len(keep))
        self.db.execute(f"DELETE FROM rules WHERE sandbox=? AND name NOT IN ({marks})",
                        (sandbox, *keep))
        self._bump()

    # --- journal and internal errors --------------------------------------------------------------------
    _INSERT = "INSERT INTO journal (sandbox, blob) VALUES (?, ?)"
    _TRIM = ("DELETE FROM journal WHERE sandbox=? AND seq <= (SELECT seq FROM journal WHERE sandbox=? "
             "ORDER BY seq DESC LIMIT 1 OFFSET ?)")

    def record(self, row: tuple[Any, ...], bound: int) -> None:
        """Journal ``row`` (``journal.entry_row``: a tuple pickles in a fraction of a dataclass's time)."""
        db = self.db
        db.execute(self._INSERT, (row[1], pickle.dumps(row)))
        if row[0] % 256 == 0:  # keep each sandbox's journal near its bound without a query per request
            db.execute(self._TRIM, (row[1], row[1], bound))

    def record_soon(self, row: tuple[Any, ...], bound: int) -> Awaitable[None] | None:
        """Journal ``row`` in this event loop's next group commit, and return what to await before answering.

        A transaction per row is most of what a request costs with workers (SQLite's commit, not the
        insert), so the rows of every request that finishes within a few turns of the loop share one. The
        caller awaits the commit before its response leaves: a row is in the database before its client can
        read the journal, and a later request (on any worker) is numbered after it. Outside a running
        loop it is ``record``, at once."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.record(row, bound)
            return None
        batch: _Batch | None = getattr(self._local, "batch", None)
        if batch is None:
            batch = self._local.batch = _Batch(loop.create_future())
            loop.call_soon(self._commit, batch)
        batch.rows.append((row, bound))
        return batch.done

    def _commit(self, batch: _Batch) -> None:
        # Wait a few turns of the loop first, so that requests read in those turns join this commit: two
        # workers sharing a core each read only one or two requests per turn, and a commit's fixed cost
        # is most of a row's. A turn with nothing else to do costs microseconds.
        # ``python bench/throughput.py --only commit`` compares the settings side by side.
        if batch.turns < self.commit_turns:
            batch.turns += 1
            asyncio.get_running_loop().call_soon(self._commit, batch)
            return
        self._local.batch = None
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(self._INSERT, [(row[1], pickle.dumps(row)) for row, _ in batch.rows])
                for row, bound in batch.rows:
                    if row[0] % 256 == 0:
                        db.execute(self._TRIM, (row[1], row[1], bound))
            except BaseException:
                if db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL does)
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except Exception as exc:  # every request of the batch fails as its own write would have
            batch.done.set_exception(exc)
        else:
            batch.done.set_result(None)

    def journal(self, sandbox: str, bound: int) -> list[JournalEntry]:
        rows = self.db.execute("SELECT seq, blob FROM (SELECT seq, blob FROM journal WHERE sandbox=? ORDER BY seq "
                               "DESC LIMIT ?) ORDER BY seq", (sandbox, bound)).fetchall()
        # The database's sequence, not the worker's: it orders requests across every process.
        return [entry_from_row(pickle.loads(r[1]), r[0]) for r in rows]

    def journal_count(self, sandbox: str, bound: int) -> int:
        row = self.db.execute("SELECT COUNT(*) FROM journal WHERE sandbox=?", (sandbox,)).fetchone()
        return min(int(row[0]), bound)

    def clear_journal(self, sandbox: str) -> None:
        self.db.execute("DELETE FROM journal WHERE sandbox=?", (sandbox,))

    def add_error(self, sandbox: str, text: str) -> None:
        self.db.execute("INSERT INTO errors (sandbox, text) VALUES (?, ?)", (sandbox, text))

    def errors(self, sandbox: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT text FROM errors WHERE sandbox=? ORDER BY seq", (sandbox,))]

    def now(self) -> float:
        return time.time()


_SIGNAL = struct.Struct("=Q")


@dataclass
class _Batch:
    """The journal rows of one turn of an event loop, committed together (``SharedStore.record_soon``)."""

    done: asyncio.Future[None]
    rows: list[tuple[tuple[Any, ...], int]] = field(default_factory=list)
    turns: int = 0  # turns of the loop this batch has waited for more rows



class SharedJournal(Journal):
    """A sandbox's journal kept in the store, so it holds the requests every worker served.

    Entries carry the database's ``seq`` (one order across processes), so ``since`` works as in one
    process. Reading fetches at most ``size`` rows, the newest."""

    def __init__(self, store: Store, sandbox_id: str, size: int = 10_000) -> None:
        super().__init__(size)
        self.store = store
        self.sandbox_id = sandbox_id

    def record(self, entry: JournalEntry) -> None:
        self.store.record(entry_row(entry), self.size)

    def record_row(self, row: tuple[Any, ...]) -> Awaitable[None] | None:
        return self.store.record_soon(row, self.size)

    def clear(self) -> None:
        self.store.clear_journal(self.sandbox_id)

    def __len__(self) -> int:
        return self.store.journal_count(self.sandbox_id, self.size)

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(self.store.journal(self.sandbox_id, self.size))


class SharedErrors(list[str]):
    """A sandbox's internal errors kept in the store (a ``list`` to its readers), so the pytest fixture
    and the admin API see a 500 whichever worker answered it."""

    def __init__(self, store: Store, sandbox_id: str) -> None:
        super().__init__()
        self.store = store
        self.sandbox_id = sandbox_id

    def append(self, text: str) -> None:
        self.store.add_error(self.sandbox_id, text)

    def _all(self) -> list[str]:
        return self.store.errors(self.sandbox_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __bool__(self) -> bool:
        return bool(self._all())

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __eq__(self, other: object) -> bool:
        return self._all() == other

    __hash__ = None  # type: ignore[assignment]
