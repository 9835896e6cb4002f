"""The SQLite store that ``serve --workers N`` shares: its change signal and its group-committed journal.

Two ``SharedStore`` objects on one file stand for two worker processes (each maps the signal file and
opens its own connections, as a worker does). ``tests/server/test_workers.py`` proves the same promises with
real worker processes over HTTP.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from fakests.state import store as store_module
from fakests.state.defaults import default_directory
from fakests.state.keys import KeySet
from fakests.state.sandbox import Sandboxes
from fakests.state.settings import Settings
from fakests.state.store import SharedStore


def _row(seq: int, sandbox: str = "sb1") -> tuple[Any, ...]:
    return (seq, sandbox, "token", "POST", "/t/oauth2/v2.0/token", time.time(), {}, "client", "client_credentials",
            None, f"trace-{seq}", f"corr-{seq}", 200, None, None, None, None, None, 1.0, "ua", False, 1)


def _statements(store: SharedStore) -> list[str]:
    seen: list[str] = []
    store.db.set_trace_callback(seen.append)
    return seen


def test_a_commit_in_one_process_moves_the_signal_the_other_reads(tmp_path: Path) -> None:
    a, b = SharedStore(tmp_path / "shared.sqlite"), SharedStore(tmp_path / "shared.sqlite")
    before = b.signal()
    assert a.signal() == before
    with a.exclusive():
        pass
    assert b.signal() == before + 1
    a.clear_rules("sb1")  # written outside a transaction: it moves the signal itself
    assert b.signal() == before + 2
    a.save_rule_state("sb1", "rule", {"fired": 1})
    assert b.signal() == before + 3


def test_a_worker_that_sees_the_same_signal_asks_the_store_nothing(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    keys = KeySet.load_or_create(tmp_path)
    a_store, b_store = SharedStore(tmp_path / "shared.sqlite"), SharedStore(tmp_path / "shared.sqlite")
    a = Sandboxes(settings, keys, default_directory(), a_store)
    b = Sandboxes(settings, keys, default_directory(), b_store)
    a.save(a.default)
    b.sync()
    queries = _statements(b_store)
    for _ in range(100):
        b.sync()
    assert queries == []  # nothing changed: not even the version query
    made = a.create()
    b.sync()  # the create moved the signal: b loads it
    assert queries and b.get(made.sandbox_id) is not None
    assert b.resolve(made.home_tenant.tenant_id, None)[0].sandbox_id == made.sandbox_id
    a.drop(made.sandbox_id)
    assert b.get(made.sandbox_id) is None


def test_a_worker_that_keeps_up_reads_only_what_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync costs what changed, not what exists; a worker further behind than the log reads everything."""
    settings = Settings(state_dir=tmp_path, max_sandboxes=1000)
    keys = KeySet.load_or_create(tmp_path)
    a_store, b_store = SharedStore(tmp_path / "shared.sqlite"), SharedStore(tmp_path / "shared.sqlite")
    a = Sandboxes(settings, keys, default_directory(), a_store)
    made = [a.create() for _ in range(200)]
    b = Sandboxes(settings, keys, default_directory(), b_store)  # its first sync reads every version
    assert {sb.sandbox_id for sb in b.all()} == {sb.sandbox_id for sb in a.all()}
    queries = _statements(b_store)
    a.drop(made[0].sandbox_id)
    fresh = a.create()
    b.sync()
    assert not any(q.startswith("SELECT id, version FROM sandboxes") for q in queries)  # no full read
    assert [q for q in queries if q.startswith("SELECT blob FROM sandboxes")] != []  # the new one, loaded
    assert len([q for q in queries if "FROM sandboxes WHERE id" in q]) == 1
    assert b.get(made[0].sandbox_id) is None and b.get(fresh.sandbox_id) is not None
    # Further behind than the log remembers: one full read, and the same sandboxes as the writer.
    monkeypatch.setattr(store_module, "LOG_KEEP", 5)
    for sb in made[1:20]:
        a.drop(sb.sandbox_id)
    queries.clear()
    b.sync()
    assert any(q.startswith("SELECT id, version FROM sandboxes") for q in queries)
    assert {sb.sandbox_id for sb in b.all()} == {sb.sandbox_id for sb in a.all()}


def test_rows_recorded_in_one_turn_of_the_loop_share_one_commit(tmp_path: Path) -> None:
    store = SharedStore(tmp_path / "shared.sqlite")
    reader = SharedStore(tmp_path / "shared.sqlite")

    async def request(seq: int) -> list[str | None]:
        done = store.record_soon(_row(seq), 1000)
        assert done is not None
        assert reader.journal("sb1", 1000) == []  # not before the commit, which waits for the loop's turn
        await done
        # Awaited: the row is in the database for every other process.
        return [e.correlation_id for e in reader.journal("sb1", 1000)]

    async def main() -> list[list[str | None]]:
        return await asyncio.gather(*(request(i) for i in (1, 2, 3)))

    statements = _statements(store)
    seen = asyncio.run(main())
    assert seen == [["corr-1", "corr-2", "corr-3"]] * 3
    assert statements.count("COMMIT") == 1 and statements.count("BEGIN IMMEDIATE") == 1
    entries = reader.journal("sb1", 1000)
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    # Outside a running loop there is nothing to await: the row is written at once.
    assert store.record_soon(_row(4), 1000) is None
    assert [e.correlation_id for e in reader.journal("sb1", 1000)][-1] == "corr-4"


def test_a_failed_group_commit_fails_every_request_in_it(tmp_path: Path) -> None:
    store = SharedStore(tmp_path / "shared.sqlite")

    async def main() -> list[BaseException | None]:
        waits = [store.record_soon(_row(i), 1000) for i in (1, 2)]
        store.db.execute("DROP TABLE journal")  # the commit will fail
        return await asyncio.gather(*(w for w in waits if w is not None), return_exceptions=True)

    results = asyncio.run(main())
    assert len(results) == 2 and all(isinstance(r, Exception) for r in results)
    assert not store.db.in_transaction
