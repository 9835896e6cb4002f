"""Two ``fakests serve --store redis://`` replicas keep every promise of one server.

Replicas behind a load balancer run on different machines: here, two processes with two state
directories, sharing one real ``redis-server`` (started by the module's fixture on a free port, without
persistence, and killed afterwards). Replica A has one process, replica B two workers (a replica may be
either). They start at the same moment, so they race to seed the store and must still agree. Each test
sends its requests to A and to B explicitly (a code issued by A is redeemed at B, and so on), which a
load balancer would do by chance.

Without redis-server (``apt-get install redis-server``) the module is skipped, except under CI (the
``CI`` environment variable), where a skipped proof would be a silent hole: there it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fakests.testing import driver
from fakests.testing.remote import RemoteSandbox
from fakests.testing.sessions import trusting_session
from tests.serving import Serving, finish, redis_server, start, wait_ready

REDIRECT = "https://localhost/callback"
SEED_HEADER = "x-replica-seed-test"  # only the default sandbox's seeded rule matches requests carrying it
SEED_SCENARIO = f"""\
name: replica-seed
rules:
  - id: once
    match: {{endpoint: token, headers: {{{SEED_HEADER}: "1"}}}}
    response: {{aadsts: 70012}}
    schedule: {{times: 1}}
"""


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private ``redis-server`` on 127.0.0.1 and a free port, no persistence; its URL."""
    with redis_server(tmp_path_factory.mktemp("redis")) as (_, url):
        yield url


@dataclass
class Replica:
    """A running ``fakests serve`` replica: its URL, its parent process, and its state directory."""

    url: str
    proc: subprocess.Popen[str]
    state: Path


@pytest.fixture(scope="module")
def replicas(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Replica, Replica]]:
    """Replicas A (one process) and B (``--workers 2``), started at once on separate state directories, both
    arming the same scenario in the default sandbox. Both process groups are killed afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKESTS_") and not k.endswith("_CA_BUNDLE")}
    scenario = tmp_path_factory.mktemp("scenario") / "replica-seed.yaml"
    scenario.write_text(SEED_SCENARIO)
    running: list[tuple[Serving, Path]] = []
    try:
        for name, extra in (("a", []), ("b", ["--workers", "2"])):
            state = tmp_path_factory.mktemp(f"replica-{name}")
            args = ["--port", "0", "--store", redis_url, "--state-dir", str(state), "--no-log-requests",
                    "--scenarios", str(scenario), *extra]
            running.append((start(args, env, merge_stderr=True, group=True), state))
        started = [Replica(wait_ready(served).url, served.proc, state) for served, state in running]
        yield started[0], started[1]
    finally:
        for served, _ in running:
            finish(served)


@pytest.fixture
def pair(replicas: tuple[Replica, Replica]) -> Iterator[tuple[RemoteSandbox, RemoteSandbox]]:
    """One sandbox, created through A's admin API, as seen through A and through B. B's handle trusts the
    CA that A published: every request to B also proves that B's certificate chains to A's CA."""
    a, b = replicas
    sb_a = RemoteSandbox.create(a.url)
    yield sb_a, at(sb_a, b.url)
    sb_a.drop()


def at(sb: RemoteSandbox, url: str) -> RemoteSandbox:
    """The handle of ``sb`` on another replica (same sandbox id, same CA file)."""
    return RemoteSandbox(url, sb._detail, trusting_session(sb.ca_path, url), sb.ca_path, sb.client_cert_path)


# --- helpers ------------------------------------------------------------------------------------------
def fresh(sb: RemoteSandbox, tag: str | None = None) -> requests.Session:
    session = sb.http_client()
    if tag:
        session.headers["client-request-id"] = tag
    return session


def token(sb: RemoteSandbox, session: requests.Session | None = None, **form: str) -> requests.Response:
    with contextlib.nullcontext(session) if session is not None else fresh(sb) as http:
        return http.post(f"{sb.authority()}/oauth2/v2.0/token", data=form, timeout=30)


def error_codes(response: requests.Response) -> list[int]:
    return list(response.json().get("error_codes", []))


def auth_uri(sb: RemoteSandbox, state: str, scope: str = "openid offline_access User.Read") -> str:
    query = {"client_id": sb.web.client_id, "response_type": "code", "redirect_uri": REDIRECT, "scope": scope,
             "state": state}
    return f"{sb.authority()}/oauth2/v2.0/authorize?{urlencode(query)}"


def redeem(sb: RemoteSandbox, code: str, scope: str = "openid offline_access User.Read") -> requests.Response:
    return token(sb, grant_type="authorization_code", client_id=sb.web.client_id, client_secret=sb.web.secret or "",
                 code=code, redirect_uri=REDIRECT, scope=scope)


def client_credentials(sb: RemoteSandbox, session: requests.Session | None = None) -> requests.Response:
    return token(sb, session, grant_type="client_credentials", client_id=sb.daemon.client_id,
                 client_secret=sb.daemon.secret or "", scope="https://graph.microsoft.com/.default")


# --- the replicas are one issuer ----------------------------------------------------------------------------
def test_both_replicas_serve_certificates_of_one_ca_and_one_client_certificate(
        replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    ca_file = str(a.state / "tls" / "ca.pem")  # A's CA verifies B's certificate (or this request fails)
    pems = [requests.get(f"{r.url}/_fakests/ca.pem", verify=ca_file, timeout=10).text for r in (a, b)]
    assert pems[0] == pems[1] == (a.state / "tls" / "ca.pem").read_text() == (b.state / "tls" / "ca.pem").read_text()
    ca = x509.load_pem_x509_certificate(pems[0].encode())
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    served = []
    for replica in (a, b):  # each replica made its own server certificate, signed by the shared CA
        port = urlsplit(replica.url).port
        assert port is not None
        context = ssl.create_default_context(cadata=pems[0])  # the handshake itself verifies the chain
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        cert = x509.load_der_x509_certificate(der)
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        served.append(cert)
    assert served[0].serial_number != served[1].serial_number
    client_pems = {requests.get(f"{r.url}/_fakests/client-cert.pem", verify=ca_file, timeout=10).text
                   for r in (a, b)}
    assert len(client_pems) == 1
    assert sorted(p.name for p in (a.state / "signing").glob("key-*.pem")) == \
        sorted(p.name for p in (b.state / "signing").glob("key-*.pem"))


def test_a_token_from_a_verifies_against_b_jwks(pair: tuple[RemoteSandbox, RemoteSandbox]) -> None:
    sb_a, sb_b = pair
    issued = client_credentials(sb_a)
    assert issued.status_code == 200, issued.text
    access_token = issued.json()["access_token"]
    with sb_b.http_client() as http:
        jwks = http.get(f"{sb_b.authority()}/discovery/v2.0/keys", timeout=30).json()
    kid = jwt.get_unverified_header(access_token)["kid"]
    [key] = [k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == kid]
    claims = jwt.decode(access_token, key.key, algorithms=["RS256"], audience="https://graph.microsoft.com",
                        issuer=f"https://sts.windows.net/{sb_a.tenant_id}/")  # Graph's tokens are v1 tokens
    assert claims["appid"] == sb_a.daemon.client_id


def test_a_service_account_token_from_a_is_exchanged_at_b(pair: tuple[RemoteSandbox, RemoteSandbox]) -> None:
    """The fake Kubernetes cluster's key is state material the replicas share: B checks A's token."""
    sb_a, sb_b = pair
    exchanged = token(sb_b, None, grant_type="client_credentials", client_id=sb_b.daemon.client_id,
                      client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                      client_assertion=sb_a.service_account_token(), scope="https://graph.microsoft.com/.default")
    assert exchanged.status_code == 200, exchanged.text


def test_the_first_replica_seeded_the_default_sandbox_and_the_other_took_it(
        replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    ca = str(a.state / "tls" / "ca.pem")
    details = [requests.get(f"{r.url}/_fakests/sandboxes/default", verify=ca, timeout=10).json() for r in (a, b)]
    assert details[0]["directory"] == details[1]["directory"]
    rules = [requests.get(f"{r.url}/_fakests/sandboxes/default/scenarios", verify=ca, timeout=10).json()
             for r in (a, b)]
    rules = [r.get("rules", r) if isinstance(r, dict) else r for r in rules]
    assert [(r["scenario"], r["rule"]) for r in rules[0]] == [("replica-seed", "once")], rules  # one seed, not two
    assert rules[0] == rules[1]
    default = at(RemoteSandbox(a.url, details[0], trusting_session(ca, a.url), ca, ""), b.url)
    with fresh(default) as http:
        http.headers[SEED_HEADER] = "1"
        answers = [client_credentials(default, http) for _ in range(3)]
    assert [a.status_code for a in answers] == [500, 200, 200], [a.text for a in answers]
    assert error_codes(answers[0]) == [70012]
    counted = requests.get(f"{a.url}/_fakests/sandboxes/default/scenarios", verify=ca, timeout=10).json()
    counted = counted.get("rules", counted) if isinstance(counted, dict) else counted
    assert (counted[0]["matched"], counted[0]["fired"]) == (3, 1)


# --- (a) authorization codes ------------------------------------------------------------------------------
def test_a_code_issued_by_a_is_redeemed_at_b_once(pair: tuple[RemoteSandbox, RemoteSandbox]) -> None:
    sb_a, sb_b = pair
    response = sb_a.sign_in(auth_uri(sb_a, "raw"), REDIRECT)
    assert response["state"] == "raw"
    result = redeem(sb_b, response["code"])
    assert result.status_code == 200, result.text
    assert {"access_token", "refresh_token", "id_token"} <= set(result.json())
    again = redeem(sb_a, response["code"])
    assert again.status_code == 400 and error_codes(again) == [54005], again.text

    # The same with real MSAL Python: the flow starts at A (PKCE, state, nonce), A signs alice in and she
    # consents to Mail.Read there (not admin-consented: a directory change B must see), B redeems the code.
    flow = sb_a.msal_confidential("web").initiate_auth_code_flow(["Mail.Read"], redirect_uri=REDIRECT,
                                                                        response_mode="form_post")
    auth_response = sb_a.sign_in(flow["auth_uri"], REDIRECT)
    result_msal = sb_b.msal_confidential("web").acquire_token_by_auth_code_flow(flow, auth_response)
    assert "access_token" in result_msal, result_msal
    assert "Mail.Read" in result_msal["scope"]
    assert result_msal["id_token_claims"]["preferred_username"] == "alice@contoso.com"
    replay = sb_a.msal_confidential("web").acquire_token_by_auth_code_flow(flow, auth_response)
    assert replay.get("error_codes") == [54005], replay


# --- (b) refresh tokens -----------------------------------------------------------------------------------
def test_a_refresh_token_from_a_refreshes_at_b(pair: tuple[RemoteSandbox, RemoteSandbox]) -> None:
    sb_a, sb_b = pair
    scope = "openid offline_access User.Read"
    issued = token(sb_a, grant_type="password", client_id=sb_a.public.client_id, username="alice@contoso.com",
                   password=sb_a.password, scope=scope)
    assert issued.status_code == 200, issued.text
    refresh_token = issued.json()["refresh_token"]
    for sb in (sb_b, sb_a, sb_b):
        refreshed = token(sb, grant_type="refresh_token", client_id=sb.public.client_id,
                          refresh_token=refresh_token, scope=scope)
        assert refreshed.status_code == 200, refreshed.text
        refresh_token = refreshed.json()["refresh_token"]
    bogus = token(sb_b, grant_type="refresh_token", client_id=sb_b.public.client_id, refresh_token="1.AXoAnope")
    assert error_codes(bogus) == [9002313]


# --- (c) + (d) rule counters and a complete journal under concurrency --------------------------------
def test_times_two_fires_exactly_twice_across_replicas_and_the_journal_is_complete(
        pair: tuple[RemoteSandbox, RemoteSandbox], replicas: tuple[Replica, Replica]) -> None:
    sb_a, sb_b = pair
    sb_a.fail("token", aadsts=70012, times=2)  # through A's admin API

    def one_request(i: int) -> requests.Response:
        sb = sb_a if i % 2 == 0 else sb_b
        with fresh(sb, f"burst-{i}") as session:
            return client_credentials(sb, session)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(one_request, range(20)))
    failed = [a for a in answers if a.status_code != 200]
    assert [error_codes(a) for a in failed] == [[70012], [70012]], [a.text for a in failed]
    [rule_at_b] = sb_b.scenarios
    [rule_at_a] = sb_a.scenarios
    assert (rule_at_a["matched"], rule_at_a["fired"]) == (rule_at_b["matched"], rule_at_b["fired"]) == (20, 2)

    a_pid = replicas[0].proc.pid  # A serves in its one process; B's workers are other processes
    journals = [sb.journal.entries() for sb in (sb_a, sb_b)]
    assert journals[0] == journals[1]  # the same journal, read through either replica
    entries = journals[0]
    assert sorted(e.client_request_id or "" for e in entries) == sorted(f"burst-{i}" for i in range(20))
    assert len({e.seq for e in entries}) == 20 and [e.seq for e in entries] == sorted(e.seq for e in entries)
    assert {e.worker for e in entries if int(e.client_request_id.split("-")[1]) % 2 == 0} == {a_pid}
    assert a_pid not in {e.worker for e in entries if int(e.client_request_id.split("-")[1]) % 2 == 1}
    assert sorted(e.aadsts or 0 for e in entries)[-2:] == [70012, 70012]
    assert len(sb_b.journal) == 20


# --- (e) device code ----------------------------------------------------------------------------------------
def test_a_device_code_from_a_approved_at_b_polls_to_success_at_a(pair: tuple[RemoteSandbox, RemoteSandbox]) -> None:
    sb_a, sb_b = pair
    with fresh(sb_a) as http:
        flow = http.post(f"{sb_a.authority()}/oauth2/v2.0/devicecode",
                         data={"client_id": sb_a.public.client_id, "scope": "openid offline_access User.Read"},
                         timeout=30).json()
    poll = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": sb_a.public.client_id,
            "device_code": flow["device_code"]}
    pending = token(sb_b, **poll)
    assert pending.json()["error"] == "authorization_pending", pending.text
    at_b = sb_b.url + urlsplit(flow["verification_uri"]).path  # the user types the code into B's page
    with fresh(sb_b) as browser:
        title = driver.approve_device_code(browser, at_b, flow["user_code"], username="bob@contoso.com",
                                           password=sb_b.password)
    assert title == "You have signed in"
    done = token(sb_a, **poll)
    assert done.status_code == 200, done.text
    assert jwt.decode(done.json()["id_token"], options={"verify_signature": False})["preferred_username"] == \
        "bob@contoso.com"
    assert error_codes(token(sb_b, **poll)) == [54005]  # single use, whichever replica is asked


# --- (f) admin changes made at A are seen at B -----------------------------------------------------------------
def test_admin_changes_at_a_apply_at_b(pair: tuple[RemoteSandbox, RemoteSandbox]) -> None:
    sb_a, sb_b = pair
    sb_a.configure(access_token_lifetime=400)
    assert client_credentials(sb_b).json()["expires_in"] == 400
    sb_a.add_user("dave@contoso.com", password="Dave-Passw0rd!", display_name="Dave")
    dave = token(sb_b, grant_type="password", client_id=sb_b.public.client_id, username="dave@contoso.com",
                 password="Dave-Passw0rd!", scope="openid User.Read")
    assert dave.status_code == 200, dave.text
    rotated = sb_a._call("POST", "/keys/rotate")
    assert jwt.get_unverified_header(client_credentials(sb_b).json()["access_token"])["kid"] == rotated["kid"]
    sb_a.advance(3600)
    client_credentials(sb_b)
    assert abs(sb_b.journal.entries()[-1].at - time.time() - 3600) < 60
    sb_a.clear_scenarios()
    sb_a.fail("token", aadsts=90033, client_id=sb_a.daemon.client_id)
    assert error_codes(client_credentials(sb_b)) == [90033]
    sb_a._call("DELETE", "/journal")
    assert len(sb_b.journal) == 0


def test_a_sandbox_dropped_at_a_is_gone_at_b(replicas: tuple[Replica, Replica]) -> None:
    sb_a = RemoteSandbox.create(replicas[0].url)
    sb_b = at(sb_a, replicas[1].url)
    assert client_credentials(sb_b).status_code == 200
    sb_a.drop()
    for _ in range(4):  # fresh connections: both of B's workers
        with fresh(sb_b) as http:
            discovery = http.get(f"{sb_b.authority()}/v2.0/.well-known/openid-configuration", timeout=30)
        assert discovery.status_code == 400 and error_codes(discovery) == [90002]


# --- start-up: the setting, checked ---------------------------------------------------------------------------
def test_replicas_share_a_generated_admin_token_and_the_state_material(
        redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Off loopback, ``serve`` generates an admin token: replicas must share the first one's. Run in-process
    with the foreground server replaced, on a prefix of its own (the replicas above keep theirs)."""
    from fakests import cli

    for name in [n for n in os.environ if n.startswith("FAKESTS_")]:
        monkeypatch.delenv(name)
    runs: list[Any] = []
    monkeypatch.setattr(cli, "serve_forever", lambda runtime, on_started: (runs.append(runtime), on_started(4321)))
    store = f"{redis_url}?prefix=token-test-{uuid.uuid4().hex[:8]}:"
    tokens = []
    for name in ("one", "two"):
        assert cli.main(["serve", "--host", "0.0.0.0", "--store", store, "--state-dir", str(tmp_path / name)]) == 0
        out = capsys.readouterr().out
        tokens += re.findall(r"Authorization: Bearer (\S+)", out)
        assert f"Store      {store}" in out
    assert len(tokens) == 2 and tokens[0] == tokens[1]
    assert runs[0].settings.admin_token == runs[1].settings.admin_token == tokens[0]
    assert [k.kid for k in runs[0].keys.keys] == [k.kid for k in runs[1].keys.keys]
    clusters = [[k.kid for k in run.sandboxes.clusters.keys.keys] for run in runs]
    assert clusters[0] == clusters[1]
    for relative in ("tls/ca.pem", "tls/ca-key.pem", "client/client-cert.pem", "signing/key-0001.pem",
                     "kubernetes/key-0001.pem"):
        assert (tmp_path / "one" / relative).read_bytes() == (tmp_path / "two" / relative).read_bytes(), relative
    assert (tmp_path / "one" / "tls/server.pem").read_bytes() != (tmp_path / "two" / "tls/server.pem").read_bytes()


@pytest.mark.parametrize(("store", "reason"), [
    ("http://127.0.0.1:6379", "--store: expected redis://host:port/db, rediss://... or unix:///path.sock, got"),
    ("redis://:hunter2@127.0.0.1:1/0", "--store: cannot use the Redis at redis://:***@127.0.0.1:1/0: "),
])
def test_a_bad_or_unreachable_store_stops_start_up(store: str, reason: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from fakests.cli import main

    assert main(["serve", "--store", store, "--state-dir", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert reason in err and "hunter2" not in err


# --- the store itself, beside the SQLite one ------------------------------------------------------------------
def test_the_redis_store_answers_as_the_sqlite_store_does(redis_url: str, tmp_path: Path) -> None:
    """The same calls on both stores give the same answers; then what only Redis does: TTLs from
    ``expires_at``, a bounded journal, a prefix that isolates, and a drop that deletes exactly its keys."""
    from fakests.state.journal import JournalEntry, entry_row
    from fakests.state.redisstore import GRANT_GRACE, RedisStore
    from fakests.state.store import SharedStore

    prefix = f"unit-{uuid.uuid4().hex[:8]}:"
    store = RedisStore.connect(f"{redis_url}?prefix={prefix}")
    now = time.time()

    def exercise(s: Any) -> list[Any]:
        out: list[Any] = [s.version(), s.save_sandbox("sb", {"v": 1}), s.seed_sandbox("sb", {"v": 2}),
                          s.seed_sandbox("other", {"v": 3}), s.load_sandbox("sb"), s.sandbox_versions(),
                          s.sandbox_changes(-1), s.sandbox_changes(0), s.sandbox_changes(1), s.sandbox_changes(2)]
        s.put_grant("sb", "code", "c1", {"g": 1}, now + 600)
        out += [s.claim_grant("sb", "code", "c1"), s.claim_grant("sb", "code", "c1"), s.claim_grant("sb", "code", "x")]
        s.update_grant("sb", "code", "c1", {"g": 2})
        s.update_grant("sb", "code", "missing", {"g": 3})
        s.put_grant("sb", "device", "d1", {"d": 1}, now + 900, lookup="ABCD-EFGH")
        out += [s.get_grant("sb", "code", "c1"), s.get_grant("sb", "code", "missing"),
                s.find_grant("device", "ABCD-EFGH"), s.find_grant("device", "NOPE")]
        with s.exclusive("sb"):
            s.save_rule_state("sb", "r1", {"fired": 1})
            s.save_rule_state("sb", "r2", {"fired": 2})
        s.prune_rules("sb", ["r2"])
        out += [s.rule_state("sb", "r1"), s.rule_state("sb", "r2")]
        for i in range(30):
            entry = JournalEntry(1000 + i, "sb", "token", "POST", "/t", now, {}, None, None, f"r{i}", "t", "c", 200)
            s.record(entry_row(entry), 10)
        entries = s.journal("sb", 10)
        out += [[e.client_request_id for e in entries], s.journal_count("sb", 10), len({e.seq for e in entries})]
        s.add_error("sb", "boom")
        out += [s.errors("sb")]
        s.touch_sandboxes({"sb": now - 100, "other": now - 50})
        s.touch_sandboxes({"sb": now - 200, "other": now - 5})  # an older use reported late changes nothing
        out += [sorted(s.idle_sandboxes(now - 60)), sorted(s.idle_sandboxes(now - 1))]
        s.drop_sandbox("sb")
        out += [s.sandbox_changes(2), s.sandbox_changes(0)]
        out += [s.sandbox_versions(), s.get_grant("sb", "code", "c1"), s.journal("sb", 10), s.errors("sb"),
                s.rule_state("sb", "r2"), s.idle_sandboxes(now)]
        return out

    answers = exercise(store)
    assert answers == exercise(SharedStore(tmp_path / "shared.sqlite"))
    # The change log: nothing known before the first version, then what changed after each version; a
    # dropped sandbox is None (index 6 on: changes since -1, 0, 1, 2; after the drop, since 2 and 0).
    assert answers[6:10] == [None, {"sb": 1, "other": 2}, {"other": 2}, {}]
    assert answers[-8:-6] == [{"sb": None}, {"sb": None, "other": 2}]
    assert answers[-10:-8] == [["sb"], ["other", "sb"]] and answers[-1] == ["other"]

    store.put_grant("other", "refresh", "rt", {"r": 1}, now + 3600)
    ttl = store.redis.pttl(f"{prefix}grant:other:refresh:rt") / 1000
    assert 3600 + GRANT_GRACE - 60 < ttl <= 3600 + GRANT_GRACE
    neighbour = RedisStore.connect(f"{redis_url}?prefix=neighbour-{prefix}")
    assert neighbour.sandbox_versions() == {} and neighbour.get_grant("other", "refresh", "rt") is None
    store.drop_sandbox("other")
    assert store.redis.keys(f"{prefix}grant:*") == [] and store.redis.keys(f"{prefix}grants:*") == []
