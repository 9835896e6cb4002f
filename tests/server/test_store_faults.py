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
import time
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
from tests.serving import redis_server

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


# --- Redis: hung, then wiped --------------------------------------------------------------------------------
def _replica(state_dir: Path, url: str) -> tuple[Runtime, requests.Session]:
    from fakests.state.redisstore import RedisStore

    settings = Settings(state_dir=state_dir, tls=True, log_requests=False, store=url)  # TLS: a CA to share
    runtime = Runtime.start(settings, store=RedisStore.connect(url))
    return runtime, session_for(create_app(runtime=runtime), ORIGIN)


def _ropc(http: requests.Session, tenant: str, client_id: str) -> requests.Response:
    return http.post(f"{ORIGIN}/{tenant}/oauth2/v2.0/token", timeout=20, data={
        "grant_type": "password", "client_id": client_id, "username": "alice@contoso.com", "password": d.PASSWORD,
        "scope": "openid offline_access User.Read"})


def test_a_hung_redis_gets_503s_with_retry_after_and_memory_still_answers(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped (SIGSTOP) Redis: requests waited ~10 s and health and discovery timed out. Now a store call
    gives up after a short timeout and, while Redis stays unreachable, requests that need it get Entra's 503
    with Retry-After at once, and discovery, the JWKS and client credentials answer from memory."""
    import os
    import signal

    from fakests.state import redisstore

    monkeypatch.setattr(redisstore, "DOWN_FOR", 1)  # the breaker's window, short for the test
    with redis_server(tmp_path / "redis") as (proc, url):
        _, http = _replica(tmp_path / "a", f"{url}?prefix=hung:")
        assert _ropc(http, d.TENANT_ID, d.PUBLIC_ID).status_code == 200
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            discovery = http.get(f"{ORIGIN}/{d.TENANT_ID}/v2.0/.well-known/openid-configuration", timeout=20)
            assert discovery.status_code == 200
            assert http.get(f"{ORIGIN}/{d.TENANT_ID}/discovery/v2.0/keys", timeout=20).status_code == 200
            assert http.get(f"{ORIGIN}/_fakests/health", timeout=20).json() == {"status": "ok"}
            refused = _ropc(http, d.TENANT_ID, d.PUBLIC_ID)  # a refresh token must be stored: the store is needed
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "1", refused.text
            assert refused.json()["error"] == "temporarily_unavailable" and refused.json()["error_codes"] == [90033]
            assert http.post(TOKEN, data=FORM, timeout=20).status_code == 200  # no grant to store
            admin = http.post(f"{ADMIN}/sandboxes", json={}, timeout=20)
            assert admin.status_code == 503 and admin.headers["Retry-After"] == "1"
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 20
        while _ropc(http, d.TENANT_ID, d.PUBLIC_ID).status_code != 200:  # back once the breaker closes
            assert time.monotonic() < deadline, "the replica did not recover once Redis answered again"
            time.sleep(0.2)


def test_a_wiped_redis_gets_the_running_replicas_state_back(tmp_path: Path) -> None:
    """Redis restarted empty (no persistence, as in many CI set-ups): the running replica notices (its epoch
    marker is gone) and offers its keys, CA and sandboxes again, so a replica started afterwards is the same
    issuer, and a refresh token whose record vanished is expired (AADSTS70008), not malformed."""
    import redis

    with redis_server(tmp_path / "redis") as (_, url):
        store_url = f"{url}?prefix=wiped:"
        _, http_a = _replica(tmp_path / "a", store_url)
        made = http_a.post(f"{ADMIN}/sandboxes", json={}).json()
        sandbox_id, tenant = made["sandbox_id"], made["tenant_id"]
        public = made["id_map"][d.PUBLIC_ID]
        refresh_token = _ropc(http_a, tenant, public).json()["refresh_token"]
        client = redis.Redis.from_url(url)
        client.flushall()
        deadline = time.monotonic() + 15  # the replica looks every second
        while not client.hexists("wiped:sandboxes", sandbox_id):
            assert time.monotonic() < deadline, "the running replica did not offer its sandboxes again"
            time.sleep(0.1)
        _, http_b = _replica(tmp_path / "b", store_url)  # started after the wipe: adopts, does not invent
        keys_a = http_a.get(f"{ORIGIN}/{d.TENANT_ID}/discovery/v2.0/keys").json()
        keys_b = http_b.get(f"{ORIGIN}/{d.TENANT_ID}/discovery/v2.0/keys").json()
        assert [k["kid"] for k in keys_a["keys"]] == [k["kid"] for k in keys_b["keys"]]
        assert (tmp_path / "a" / "tls" / "ca.pem").read_bytes() == (tmp_path / "b" / "tls" / "ca.pem").read_bytes()
        assert _ropc(http_b, tenant, public).status_code == 200  # the sandbox made before the wipe, at B
        gone = http_a.post(f"{ORIGIN}/{tenant}/oauth2/v2.0/token", data={
            "grant_type": "refresh_token", "client_id": public, "refresh_token": refresh_token,
            "scope": "openid offline_access User.Read"})
        assert gone.status_code == 400 and gone.json()["error_codes"] == [70008], gone.text
        client.close()
