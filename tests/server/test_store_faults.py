"""A test double keeps answering when its journal cannot be written (a full disk, a failing store).

With ``serve --workers`` the journal lives in SQLite. A full disk used to turn every token request into
500 AADSTS50000 or a connection reset (the error path wrote to the full store again). Now the request is
answered as usual, the lost row is counted (admin API, dashboard), and the fixture fails the test whose
journal is incomplete. The disk is made full for real: SQLite's ``max_page_count`` caps the database
file, which fails writes with SQLITE_FULL, "database or disk is full", as a full disk does.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from fakests.server.app import create_app
from fakests.server.runtime import Runtime
from fakests.state import defaults as d
from fakests.state.settings import Settings
from fakests.state.store import SharedStore
from fakests.testing.transport import session_for
from tests.inprocess import ADMIN, ORIGIN

TOKEN = f"{ORIGIN}/{d.TENANT_ID}/oauth2/v2.0/token"
FORM = {"grant_type": "client_credentials", "client_id": d.DAEMON_ID, "client_secret": d.DAEMON_SECRET,
        "scope": f"{d.API_URI}/.default"}


def _worker(state_dir: Path) -> tuple[Runtime, SharedStore, requests.Session]:
    """One in-process worker of ``serve --workers``: the runtime on the shared SQLite store."""
    store = SharedStore(state_dir / "shared.sqlite")
    runtime = Runtime.start(Settings(state_dir=state_dir, tls=False, log_requests=False), store=store)
    return runtime, store, session_for(create_app(runtime=runtime), ORIGIN)


def _fill_the_disk(store: SharedStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on the database cannot grow: every connection caps it at the pages it has."""
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    connect = SharedStore._connect

    def capped(self: SharedStore) -> sqlite3.Connection:
        db = connect(self)
        db.execute(f"PRAGMA max_page_count = {pages}")
        return db

    monkeypatch.setattr(SharedStore, "_connect", capped)
    store._local = threading.local()  # reconnect, capped


def test_a_full_disk_loses_journal_rows_not_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, store, http = _worker(tmp_path)
    assert http.post(TOKEN, data=FORM).status_code == 200
    default = runtime.sandboxes.default
    before = len(default.journal)
    _fill_the_disk(store, monkeypatch)
    answers = [http.post(TOKEN, data=FORM) for _ in range(60)]
    assert [r.status_code for r in answers] == [200] * 60
    assert all("access_token" in r.json() for r in answers)
    assert default.journal_lost > 0  # rows stopped fitting
    assert default.journal_lost + (len(default.journal) - before) == 60  # each request journaled or counted
    assert not default.internal_errors
    summary = http.get(f"{ADMIN}/sandboxes/default").json()
    assert summary["journal_lost"] == default.journal_lost


def test_a_crash_while_the_store_is_full_is_still_entras_500(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from fakests.sts import endpoints

    async def broken(ctx: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(endpoints, "user_realm", broken)  # before the app is made: routes() takes it then
    runtime, store, http = _worker(tmp_path)
    for _ in range(40):  # fill the last page's room with error records first
        http.get(f"{ORIGIN}/common/userrealm/alice@contoso.com")
    _fill_the_disk(store, monkeypatch)
    for _ in range(30):
        r = http.get(f"{ORIGIN}/common/userrealm/alice@contoso.com")
        assert r.status_code == 500 and r.json()["error_codes"] == [50000], r.text
    assert runtime.sandboxes.default.journal_lost > 0


def test_the_fixture_fails_a_test_whose_requests_were_not_journaled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lost="""
        def test_requests_answered_but_not_journaled(fake_sts):
            fake_sts.sandbox.journal_lost = 2   # what the request path counts when a row cannot be written

        def test_nothing_lost(fake_sts):
            assert fake_sts.journal_lost == 0
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)  # the test itself passed; its teardown failed it
    result.stdout.fnmatch_lines(["*fakests answered 2 of this test's requests but could not journal them*"])
