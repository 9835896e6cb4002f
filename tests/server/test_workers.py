"""``fakests serve --workers 2``: two processes keep every promise of one.

One real server with two worker processes serves the whole module; each test has its own sandbox,
made over the admin API as a test in another container would. The kernel hands each new connection to
one worker, so requests on fresh sessions land on both (the journal's ``worker`` pid shows which).
Where a promise is about *another* worker (a code issued by one, redeemed at the other), the test pins
two keep-alive sessions to two different workers first, so it does not depend on luck.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import jwt
import pytest
import requests

from fakests.testing import driver
from fakests.testing.remote import RemoteSandbox
from tests.serving import serve

REDIRECT = "https://localhost/callback"


@contextlib.contextmanager
def serving(state: Path, *extra: str) -> Iterator[str]:
    """``python -m fakests serve --workers 2 --port 0``; its URL once the banner says Ready. The whole
    process group (the parent and its workers) is killed afterwards, whatever happened."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKESTS_") and not k.endswith("_CA_BUNDLE")}
    args = ["--workers", "2", "--port", "0", "--state-dir", str(state), "--no-log-requests", *extra]
    with serve(args, env, merge_stderr=True, group=True) as served:
        yield served.url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("workers")) as url:
        yield url


@pytest.fixture
def sb(server: str) -> Iterator[RemoteSandbox]:
    sandbox = RemoteSandbox.create(server)
    yield sandbox
    sandbox.drop()


# --- helpers ------------------------------------------------------------------------------------------
def fresh(sb: RemoteSandbox, tag: str | None = None) -> requests.Session:
    """A new session (a new connection: the kernel picks the worker); ``tag`` is its client-request-id."""
    session = sb.http_client()
    if tag:
        session.headers["client-request-id"] = tag
    return session


def token(session: requests.Session, sb: RemoteSandbox, **form: str) -> requests.Response:
    return session.post(f"{sb.authority()}/oauth2/v2.0/token", data=form, timeout=30)


def workers_of(sb: RemoteSandbox, tag: str) -> set[int]:
    return {e.worker for e in sb.journal.entries() if e.client_request_id == tag}


def pinned_pair(sb: RemoteSandbox) -> tuple[tuple[requests.Session, str], tuple[requests.Session, str]]:
    """Two keep-alive sessions on two different workers, each with its tag (its client-request-id)."""
    found: dict[int, tuple[requests.Session, str]] = {}
    for _ in range(200):  # a few ms each; the same worker often wins several accepts in a row
        tag = uuid.uuid4().hex
        session = fresh(sb, tag)
        session.get(f"{sb.authority()}/v2.0/.well-known/openid-configuration", timeout=30).raise_for_status()
        [worker] = workers_of(sb, tag)
        if worker in found:
            session.close()
            continue
        found[worker] = (session, tag)
        if len(found) == 2:
            first, second = found.values()
            return first, second
    pytest.fail(f"200 connections, all served by one worker: {list(found)}")


def auth_uri(sb: RemoteSandbox, state: str, scope: str = "openid offline_access User.Read") -> str:
    query = {"client_id": sb.web.client_id, "response_type": "code", "redirect_uri": REDIRECT, "scope": scope,
             "state": state}
    return f"{sb.authority()}/oauth2/v2.0/authorize?{urlencode(query)}"


def redeem(session: requests.Session, sb: RemoteSandbox, code: str,
           scope: str = "openid offline_access User.Read") -> requests.Response:
    return token(session, sb, grant_type="authorization_code", client_id=sb.web.client_id,
                 client_secret=sb.web.secret or "", code=code, redirect_uri=REDIRECT, scope=scope)


def error_codes(response: requests.Response) -> list[int]:
    return list(response.json().get("error_codes", []))


# --- (a) authorization codes ------------------------------------------------------------------------------
def test_codes_issued_by_one_worker_redeem_at_the_other_once(sb: RemoteSandbox) -> None:
    for i in range(20):
        with fresh(sb) as signing_in:
            response = sb.sign_in(auth_uri(sb, f"flow-{i}"), REDIRECT, session=signing_in)
        assert response["state"] == f"flow-{i}"
        with fresh(sb) as redeeming:
            result = redeem(redeeming, sb, response["code"])
        assert result.status_code == 200, result.text
        assert {"access_token", "refresh_token", "id_token"} <= set(result.json())
    entries = sb.journal.entries()
    assert len({e.worker for e in entries}) == 2, "fresh connections should reach both workers"
    assert len([e for e in entries if e.endpoint == "token" and e.status == 200]) == 20

    # Deterministically across workers, with a consent given on the first (a directory change).
    (one, one_tag), (other, other_tag) = pinned_pair(sb)
    scope = "openid offline_access Mail.Read"  # not admin-consented: the user consents on the page
    response = sb.sign_in(auth_uri(sb, "pinned", scope), REDIRECT, session=one)
    result = redeem(other, sb, response["code"], scope)
    assert result.status_code == 200, result.text
    assert "Mail.Read" in result.json()["scope"]
    again = redeem(one, sb, response["code"], scope)
    assert again.status_code == 400 and error_codes(again) == [54005], again.text
    assert workers_of(sb, one_tag).isdisjoint(workers_of(sb, other_tag))


# --- (b) refresh tokens -----------------------------------------------------------------------------------
def test_refresh_tokens_from_one_worker_refresh_at_the_other(sb: RemoteSandbox) -> None:
    (one, one_tag), (other, other_tag) = pinned_pair(sb)
    issued = token(one, sb, grant_type="password", client_id=sb.public.client_id, username="alice@contoso.com",
                   password=sb.password, scope="openid offline_access User.Read")
    assert issued.status_code == 200, issued.text
    refresh_token = issued.json()["refresh_token"]
    for session in (other, one, other):
        refreshed = token(session, sb, grant_type="refresh_token", client_id=sb.public.client_id,
                          refresh_token=refresh_token, scope="openid offline_access User.Read")
        assert refreshed.status_code == 200, refreshed.text
        refresh_token = refreshed.json()["refresh_token"]
    assert workers_of(sb, one_tag).isdisjoint(workers_of(sb, other_tag))
    bogus = token(other, sb, grant_type="refresh_token", client_id=sb.public.client_id, refresh_token="1.AXoAnope")
    assert error_codes(bogus) == [9002313]


# --- (c) + (d) rule counters and a complete journal under concurrency --------------------------------
def test_times_two_fires_exactly_twice_across_workers_and_the_journal_is_complete(sb: RemoteSandbox) -> None:
    sb.fail("token", aadsts=70012, times=2)
    daemon = sb.daemon

    def one_request(i: int) -> requests.Response:
        with fresh(sb, f"burst-{i}") as session:
            return token(session, sb, grant_type="client_credentials", client_id=daemon.client_id,
                         client_secret=daemon.secret or "", scope="https://graph.microsoft.com/.default")

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(one_request, range(20)))
    failed = [a for a in answers if a.status_code != 200]
    assert [error_codes(a) for a in failed] == [[70012], [70012]], [a.text for a in failed]
    [rule] = sb.scenarios
    assert (rule["matched"], rule["fired"]) == (20, 2)
    entries = sb.journal.entries()
    assert sorted(e.client_request_id or "" for e in entries) == sorted(f"burst-{i}" for i in range(20))
    assert len({e.seq for e in entries}) == 20  # one order across processes
    assert len({e.worker for e in entries}) == 2
    assert sorted(e.aadsts or 0 for e in entries)[-2:] == [70012, 70012]


# --- (e) device code ----------------------------------------------------------------------------------------
def test_device_code_approved_at_one_worker_polls_to_success_at_the_other(sb: RemoteSandbox) -> None:
    (one, one_tag), (other, other_tag) = pinned_pair(sb)
    flow = one.post(f"{sb.authority()}/oauth2/v2.0/devicecode", data={"client_id": sb.public.client_id,
                                                                     "scope": "openid offline_access User.Read"},
                    timeout=30).json()
    poll = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": sb.public.client_id,
            "device_code": flow["device_code"]}
    pending = token(other, sb, **poll)
    assert pending.json()["error"] == "authorization_pending", pending.text
    title = driver.approve_device_code(one, flow["verification_uri"], flow["user_code"],
                                       username="bob@contoso.com", password=sb.password)
    assert title == "You have signed in"
    done = token(other, sb, **poll)
    assert done.status_code == 200, done.text
    assert error_codes(token(one, sb, **poll)) == [54005]  # single use, whichever worker is asked
    assert workers_of(sb, one_tag).isdisjoint(workers_of(sb, other_tag))


# --- (f) admin changes reach every worker -------------------------------------------------------------------
def test_scenarios_and_settings_set_over_the_admin_api_apply_on_every_worker(sb: RemoteSandbox) -> None:
    daemon = sb.daemon
    form = {"grant_type": "client_credentials", "client_id": daemon.client_id, "client_secret": daemon.secret or "",
            "scope": "https://graph.microsoft.com/.default"}

    # Both workers, deterministically: fresh connections may all land on one (the kernel picks).
    (one, _), (other, _) = pinned_pair(sb)

    def burst(n: int = 6) -> list[requests.Response]:
        return [token(one if i % 2 else other, sb, **form) for i in range(n)]

    sb.use_scenario("msa-transient-70012")  # matches MSA users only: these pass
    sb.fail("token", aadsts=90033, client_id=daemon.client_id)
    assert {error_codes(a)[0] for a in burst()} == {90033}
    assert len({e.worker for e in sb.journal.entries(status=503)}) == 2
    sb.clear_scenarios()
    sb.configure(access_token_lifetime=400)
    assert {a.json()["expires_in"] for a in burst()} == {400}
    rotated = sb._call("POST", "/keys/rotate")  # this sandbox's keys, on whichever worker took the call
    assert {jwt.get_unverified_header(a.json()["access_token"])["kid"] for a in burst()} == {rotated["kid"]}
    sb.advance(3600)
    burst()
    later = sb.journal.entries()[-6:]
    assert all(abs(e.at - time.time() - 3600) < 60 for e in later) and len({e.worker for e in later}) == 2


def test_a_sandbox_dropped_at_one_worker_is_gone_at_every_worker(server: str) -> None:
    sandbox = RemoteSandbox.create(server)
    authority = sandbox.authority()
    sandbox.drop()
    for _ in range(4):
        with sandbox.http_client() as session:
            discovery = session.get(f"{authority}/v2.0/.well-known/openid-configuration", timeout=30)
        assert discovery.status_code == 400 and discovery.json()["error_codes"] == [90002]



def test_workers_must_be_at_least_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fakests.cli import main

    assert main(["serve", "--workers", "0", "--state-dir", str(tmp_path)]) == 2
    assert "--workers: must be at least 1, got 0" in capsys.readouterr().err


# --- (g) idle sandboxes expire, judged by every worker's use -----------------------------------------------
def test_an_idle_sandbox_expires_but_one_used_on_the_other_worker_stays(tmp_path: Path) -> None:
    """Each worker sees only its own share of a sandbox's use. ``busy`` is used only through worker one,
    ``idle`` not at all, while worker two keeps running its idle checks (requests to the default
    sandbox): ``idle`` goes everywhere, ``busy`` stays, also as worker two sees it."""
    ttl = 2
    with serving(tmp_path, "--sandbox-idle-ttl", str(ttl)) as url:
        busy, idle = RemoteSandbox.create(url), RemoteSandbox.create(url)
        (one, one_tag), (two, two_tag) = pinned_pair(busy)
        daemon = busy.daemon
        form = {"grant_type": "client_credentials", "client_id": daemon.client_id,
                "client_secret": daemon.secret or "", "scope": "https://graph.microsoft.com/.default"}
        default_discovery = f"{url}/common/v2.0/.well-known/openid-configuration"
        deadline = time.monotonic() + ttl + 3.5  # the ttl, the second a use may lag, and some slack
        while time.monotonic() < deadline:
            assert token(one, busy, **form).status_code == 200
            two.get(default_discovery, timeout=30).raise_for_status()
            time.sleep(0.2)
        # Both workers have run their idle checks many times by now.
        for session in (one, two):
            gone = session.post(f"{idle.authority()}/oauth2/v2.0/token", timeout=30, data={
                **form, "client_id": idle.daemon.client_id, "client_secret": idle.daemon.secret or ""})
            assert gone.status_code == 400 and error_codes(gone) == [90002], gone.text
        with busy.http_client() as admin:
            assert admin.get(f"{url}/_fakests/sandboxes/{idle.sandbox_id}", timeout=30).status_code == 404
        answered = token(two, busy, **form)
        assert answered.status_code == 200, answered.text
        assert workers_of(busy, two_tag) and workers_of(busy, one_tag).isdisjoint(workers_of(busy, two_tag))
        busy.drop()
