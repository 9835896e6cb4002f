"""Limits and exposure: what keeps one fakests healthy under a careless test suite or a load test.

* Request bodies over ``max_body`` get an Entra-shaped 413; request heads over 64 KiB get a 431 and the
  connection is closed (over a real socket: uvicorn's httptools protocol has no limit of its own).
* Each sandbox journal keeps the newest ``journal_size`` requests; ``max_sandboxes`` is a 429 on the
  admin API and a clear ``SandboxLimit`` from ``FakeSTS.sandbox()``; a sandbox idle for
  ``sandbox_idle_ttl`` is dropped and its tenant answers AADSTS90002.
* 64 clients redeeming one authorization code at once: one token, 63 AADSTS54005, all journaled.
* Secrets (client secrets, passwords, assertions, codes, refresh tokens, device codes, PKCE verifiers,
  SSO session ids) never appear in the request log, the journal, the admin journal or any error body.
* ``fakests serve`` binds 127.0.0.1 by default; bound elsewhere, its admin API wants the token the
  banner prints once, and the banner says the tokens must never be trusted in production.

Loopback only; every wait and loop is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import logging
import os
import queue
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import msal
import pytest
import requests
from click.testing import CliRunner

from fakests import FakeSTS, cli
from fakests.failures.faults import MAX_HEAD_BYTES
from fakests.server.app import create_app
from fakests.server.runtime import Runtime
from fakests.state import defaults as d
from fakests.state.journal import SECRET_PARAMS
from fakests.state.sandbox import SandboxLimit
from fakests.state.settings import Settings
from fakests.sts.pages import BANNER
from fakests.testing.driver import forms_of
from fakests.testing.sandbox import StsSandbox
from fakests.testing.transport import session_for
from tests import serving

REPO = Path(__file__).resolve().parents[2]
ORIGIN = "https://fakests.test"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
USER_SCOPE = "openid profile offline_access User.Read"
WEB_REDIRECT = "http://localhost:5000/getAToken"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state directory for this module's servers: keys and the CA are made once."""
    return tmp_path_factory.mktemp("limits-state")


def _settings(state_dir: Path, **overrides: Any) -> Settings:
    return Settings(port=0, state_dir=state_dir, log_requests=False, **overrides)


def _in_process(state_dir: Path, **overrides: Any) -> tuple[Runtime, requests.Session]:
    runtime = Runtime.start(_settings(state_dir, tls=False, **overrides))
    return runtime, session_for(create_app(runtime=runtime), ORIGIN)


def _sandbox(runtime: Runtime, app: Any = None, **kw: Any) -> StsSandbox:
    """An ``StsSandbox`` on an in-process runtime (its clients reach ``ORIGIN`` in-process)."""
    sb = runtime.sandboxes.create()
    sb.auto_sign_in = kw.pop("auto_sign_in", False)
    return StsSandbox(sb, runtime.sandboxes, url=ORIGIN, ca_path=None, app=app or create_app(runtime=runtime),
                      client_cert_path=str(runtime.client_cert_path))


def _client_credentials(sts: StsSandbox) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": sts.daemon.client_id,
            "client_secret": str(sts.daemon.secret), "scope": GRAPH_DEFAULT}


def _assert_entra_error(response: requests.Response, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    body: dict[str, Any] = response.json()
    assert body["error_codes"] == [code] and body["error_description"].startswith(f"AADSTS{code}: "), body
    assert body["trace_id"] == response.headers["x-ms-request-id"]
    uuid.UUID(body["correlation_id"])
    return body


# --- request size -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_server(state_dir: Path) -> Iterator[FakeSTS]:
    """fakests over TLS on 127.0.0.1 with a 4 KiB body limit."""
    with FakeSTS(_settings(state_dir, max_body=4096)) as server:
        yield server


def test_body_over_max_body_is_an_entra_413(small_server: FakeSTS) -> None:
    sts = small_server.sandbox()
    http = sts.http_client(inprocess=False)
    token_url = f"{sts.authority()}/oauth2/v2.0/token"
    big = {**_client_credentials(sts), "padding": "x" * 5000}
    declared = http.post(token_url, data=big)  # Content-Length says it all
    _assert_entra_error(declared, 413, 9002313)
    assert "too large" in declared.json()["error_description"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while the body streams in
        yield urlencode(_client_credentials(sts)).encode()
        for _ in range(10):
            yield b"&padding=" + b"y" * 1000

    streamed = http.post(token_url, data=chunks(), headers=FORM)
    _assert_entra_error(streamed, 413, 9002313)
    admin = http.post(f"{small_server.url}/_fakests/sandboxes/{sts.sandbox_id}/scenarios",
                      data=b'{"rules": [], "x": "' + b"z" * 5000 + b'"}', headers={"Content-Type": "application/json"})
    assert admin.status_code == 413 and admin.json()["error"] == "invalid_request"
    # Both refusals are journaled; a body at the limit still works.
    assert [e.status for e in sts.journal.entries("token")] == [413, 413]
    assert http.post(token_url, data=_client_credentials(sts)).status_code == 200
    assert not sts.internal_errors
    sts.drop()


def _raw_exchange(server: FakeSTS, head: bytes) -> bytes:
    """Send ``head`` over TLS in pieces and read the answer; b"" if the server closed the connection
    (or reset it) before answering."""
    context = ssl.create_default_context(cafile=server.ca_path)
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as conn:
        try:
            for i in range(0, len(head), 65536):
                conn.sendall(head[i:i + 65536])
            while len(answer) < 65536:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass
    return answer


@pytest.mark.parametrize(("name", "headers"), [
    ("one-1MiB-header", b"X-Big: " + b"a" * (1 << 20) + b"\r\n"),
    ("one-16MiB-cookie", b"Cookie: big=" + b"c" * (16 << 20) + b"\r\n"),
    ("100k-small-headers", b"".join(b"X-H%d: v\r\n" % i for i in range(100_000))),
    ("1MiB-url", b""),
])
def test_huge_request_head_is_a_clean_431_and_close(small_server: FakeSTS, name: str, headers: bytes) -> None:
    """uvicorn's httptools protocol buffers any header size; fakests' protocol stops at MAX_HEAD_BYTES
    with 431 and a closed connection, and the server keeps serving."""
    path = b"/common/v2.0/.well-known/openid-configuration"
    target = path + b"?x=" + b"u" * (1 << 20) if name == "1MiB-url" else path
    head = b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\n" + headers + b"Connection: close\r\n\r\n"
    answer = _raw_exchange(small_server, head)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:300]
    assert b"Traceback" not in answer
    # A head just under the limit is served; so is the next client.
    fits = b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES - 1024) + \
        b"\r\nConnection: close\r\n\r\n"
    assert _raw_exchange(small_server, fits).startswith(b"HTTP/1.1 200 ")
    assert small_server.session().get(f"{small_server.url}/_fakests/health", timeout=10).json() == {"status": "ok"}


def test_a_header_that_never_ends_is_cut_off_at_the_cap(small_server: FakeSTS) -> None:
    """httptools reports a header only once it ends: a value that never ends was buffered without bound
    (232 MiB on one connection), and no answer came. fakests answers 431 once the head passes the cap."""
    context = ssl.create_default_context(cafile=small_server.ca_path)
    with socket.create_connection(("127.0.0.1", small_server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(b"GET /common/v2.0/.well-known/openid-configuration HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            for _ in range(16):  # 1 MiB, never a line end
                conn.sendall(b"a" * 65536)
        answer = conn.recv(65536)  # a TimeoutError here: the server is still reading the header
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert small_server.session().get(f"{small_server.url}/_fakests/health", timeout=10).json() == {"status": "ok"}


def test_the_admin_api_refuses_a_declared_oversized_body_without_reading_it(small_server: FakeSTS) -> None:
    """A Content-Length over max_body is refused at once: the 100 MB never has to arrive (nor be held)."""
    context = ssl.create_default_context(cafile=small_server.ca_path)
    answer = b""
    with socket.create_connection(("127.0.0.1", small_server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(b"POST /_fakests/sandboxes HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000000\r\n\r\n{\"auto_sign_in\": false, ")
        while b"too large" not in answer:  # before the rest is sent: a TimeoutError means it waited for 100 MB
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ") and b"too large" in answer, answer[:300]


def test_internal_error_records_are_bounded(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash repeated by every request keeps the first MAX_INTERNAL_ERRORS tracebacks (about 3 KB each),
    not one per request; every request still gets Entra's 500."""
    from fakests.sts import endpoints
    from fakests.sts.context import MAX_INTERNAL_ERRORS

    async def broken(ctx: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(endpoints, "user_realm", broken)  # before the app is made: routes() takes it then
    runtime, http = _in_process(state_dir)
    for _ in range(MAX_INTERNAL_ERRORS + 50):
        _assert_entra_error(http.get(f"{ORIGIN}/common/userrealm/alice@contoso.com"), 500, 50000)
    errors = runtime.sandboxes.default.internal_errors
    assert len(errors) == MAX_INTERNAL_ERRORS and "RuntimeError: boom" in errors[0]


# --- journal, sandboxes -------------------------------------------------------------------------------------

def test_journal_keeps_the_newest_journal_size_entries(state_dir: Path) -> None:
    runtime, http = _in_process(state_dir, journal_size=50)
    sts = _sandbox(runtime)
    ids = [str(uuid.uuid4()) for _ in range(120)]
    for cid in ids:
        response = http.get(f"{ORIGIN}/{sts.tenant_id}/v2.0/.well-known/openid-configuration",
                            headers={"client-request-id": cid})
        assert response.status_code == 200
    entries = sts.journal.entries()
    assert len(sts.journal) == 50 and [e.correlation_id for e in entries] == ids[70:]  # oldest dropped
    assert all(a.seq < b.seq for a, b in itertools.pairwise(entries))
    listed = http.get(f"{ORIGIN}/_fakests/sandboxes/{sts.sandbox_id}/journal").json()["entries"]
    assert [e["correlation_id"] for e in listed] == ids[70:]
    summary = http.get(f"{ORIGIN}/_fakests/sandboxes/{sts.sandbox_id}").json()
    assert summary["journal_entries"] == 50


def test_max_sandboxes_is_a_429_and_a_clear_error(state_dir: Path) -> None:
    runtime = Runtime.start(_settings(state_dir, tls=False, max_sandboxes=3))  # default + 2
    server = FakeSTS(runtime=runtime)  # not started: sandbox() needs no socket
    http = session_for(server.app, ORIGIN)
    first = server.sandbox()
    created = http.post(f"{ORIGIN}/_fakests/sandboxes")
    assert created.status_code == 201
    with pytest.raises(SandboxLimit, match=r"3 sandboxes are alive, the max_sandboxes limit: drop sandboxes"):
        server.sandbox()
    refused = http.post(f"{ORIGIN}/_fakests/sandboxes")
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "too_many_sandboxes" and "max_sandboxes" in body["error_description"]
    assert "DELETE /_fakests/sandboxes/{id}" in body["error_description"]
    # Dropping one makes room again.
    assert http.delete(f"{ORIGIN}/_fakests/sandboxes/{created.json()['sandbox_id']}").status_code == 204
    assert server.sandbox().sandbox_id != first.sandbox_id


def test_idle_sandbox_expires_and_its_tenant_is_gone(state_dir: Path) -> None:
    runtime, http = _in_process(state_dir, sandbox_idle_ttl=1)
    idle, busy = _sandbox(runtime), _sandbox(runtime)
    token = f"{ORIGIN}/{idle.tenant_id}/oauth2/v2.0/token"
    assert http.post(token, data=_client_credentials(idle)).status_code == 200
    # Idle sandboxes are looked for at most once a second, so one is gone within ttl + 1 s. The busy
    # sandbox is used all along; the idle one is not.
    deadline = time.monotonic() + 2.2
    while time.monotonic() < deadline:
        assert http.get(f"{ORIGIN}/{busy.tenant_id}/discovery/v2.0/keys").status_code == 200
        time.sleep(0.2)
    discovery = http.get(f"{ORIGIN}/{idle.tenant_id}/v2.0/.well-known/openid-configuration")
    assert _assert_entra_error(discovery, 400, 90002)["error"] == "invalid_tenant"
    _assert_entra_error(http.post(token, data=_client_credentials(idle)), 400, 90002)
    assert http.get(f"{ORIGIN}/_fakests/sandboxes/{idle.sandbox_id}").status_code == 404
    alive = {s["sandbox_id"] for s in http.get(f"{ORIGIN}/_fakests/sandboxes").json()["sandboxes"]}
    assert busy.sandbox_id in alive and idle.sandbox_id not in alive and "default" in alive
    assert http.post(f"{ORIGIN}/{busy.tenant_id}/oauth2/v2.0/token", data=_client_credentials(busy)).status_code == 200


# --- concurrency ----------------------------------------------------------------------------------------------

def test_64_concurrent_redemptions_of_one_code(fake_sts: StsSandbox) -> None:
    """Over TLS, 64 clients at once: exactly one gets tokens, 63 get AADSTS54005, and the journal has
    every one of them."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"client_id": fake_sts.web.client_id, "response_type": "code", "redirect_uri": WEB_REDIRECT,
              "scope": USER_SCOPE, "code_challenge": challenge, "code_challenge_method": "S256"}
    code = fake_sts.sign_in(f"{fake_sts.authority()}/oauth2/v2.0/authorize?{urlencode(params)}", WEB_REDIRECT)["code"]
    body = {"grant_type": "authorization_code", "client_id": fake_sts.web.client_id,
            "client_secret": str(fake_sts.web.secret), "code": code, "redirect_uri": WEB_REDIRECT,
            "scope": USER_SCOPE, "code_verifier": verifier}
    sessions = [fake_sts.http_client(inprocess=False) for _ in range(64)]
    for session in sessions:  # connect first, so the 64 requests really arrive together
        session.get(f"{fake_sts.url}/_fakests/health", timeout=30)
    start = threading.Barrier(64, timeout=30)
    token_url = f"{fake_sts.authority()}/oauth2/v2.0/token"

    def redeem(session: requests.Session) -> requests.Response:
        start.wait()
        return session.post(token_url, data=body, timeout=60)

    with ThreadPoolExecutor(max_workers=64) as pool:
        responses = list(pool.map(redeem, sessions))
    for session in sessions:
        session.close()
    assert Counter(r.status_code for r in responses) == {200: 1, 400: 63}
    winner = next(r for r in responses if r.status_code == 200).json()
    assert winner["access_token"] and winner["refresh_token"]
    for response in (r for r in responses if r.status_code == 400):
        _assert_entra_error(response, 400, 54005)
    entries = fake_sts.journal.entries("token", grant_type="authorization_code")
    assert len(entries) == 64
    assert Counter((e.status, e.aadsts) for e in entries) == {(200, None): 1, (400, 54005): 63}
    assert len({e.trace_id for e in entries}) == 64


# --- secrets ------------------------------------------------------------------------------------------------

class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def _captured_logs() -> Iterator[_Records]:
    """Every ``fakests`` log record at DEBUG (``fakests.requests`` included), whatever propagation says."""
    handler = _Records()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("fakests")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class _Wire:
    """Records what crosses the in-process wire: secret-looking values sent, and every error body."""

    SENT = (*SECRET_PARAMS, "fakests_sid")

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.error_bodies: list[str] = []

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = response.request
        body = request.body or b""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        pairs = parse_qsl(text, keep_blank_values=True) + parse_qsl(urlsplit(request.url or "").query)
        self.secrets.update(v for k, v in pairs if k in self.SENT and v)
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            self.secrets.add(base64.b64decode(auth[6:]).decode().partition(":")[2])
        if response.status_code >= 400 or "error" in response.headers.get("location", ""):
            self.error_bodies.append(response.text + response.headers.get("location", ""))
        if response.headers.get("content-type", "").startswith("application/json"):
            with contextlib.suppress(ValueError):
                data = response.json()
                if isinstance(data, dict):
                    self.secrets.update(str(data[k]) for k in ("refresh_token", "device_code") if data.get(k))

    def session(self, sts: StsSandbox) -> requests.Session:
        session = sts.http_client()
        session.hooks["response"].append(self.hook)
        return session


def _realistic_mix(sts: StsSandbox, wire: _Wire) -> None:
    """Every grant, the way the real clients send them, plus failures and malformed requests."""
    http = wire.session(sts)
    token_url = f"{sts.authority()}/oauth2/v2.0/token"
    # Client credentials: secret (MSAL) and certificate (MSAL's client assertion); secret via Basic.
    daemon = sts.msal_confidential("daemon", http_client=http)
    assert "access_token" in daemon.acquire_token_for_client([GRAPH_DEFAULT])
    with_cert = sts.msal_confidential("daemon", certificate=True, http_client=http)
    assert "access_token" in with_cert.acquire_token_for_client([GRAPH_DEFAULT])
    basic = base64.b64encode(f"{sts.daemon.client_id}:{sts.daemon.secret}".encode()).decode()
    assert http.post(token_url, data={"grant_type": "client_credentials", "scope": GRAPH_DEFAULT},
                     headers={"Authorization": f"Basic {basic}"}).status_code == 200
    # ROPC, then the refresh token it brought.
    ropc = http.post(token_url, data={"grant_type": "password", "client_id": sts.public.client_id,
                                      "username": "alice@contoso.com", "password": sts.password,
                                      "scope": USER_SCOPE}).json()
    web = sts.msal_confidential("web", http_client=http)
    public = sts.msal_public(http_client=http)
    assert "access_token" in public.acquire_token_by_refresh_token(ropc["refresh_token"], ["User.Read"])
    # Authorization code with PKCE (MSAL's flow), through the sign-in pages.
    flow = web.initiate_auth_code_flow(["User.Read"], redirect_uri=WEB_REDIRECT, response_mode="form_post")
    wire.secrets.add(flow["code_verifier"])
    auth_response = sts.sign_in(flow["auth_uri"], WEB_REDIRECT, session=http)
    wire.secrets.add(auth_response["code"])
    result = web.acquire_token_by_auth_code_flow(flow, auth_response)
    assert "access_token" in result, result
    # On-behalf-of: the API trades the user's token for a Graph token.
    api_token = public.acquire_token_by_refresh_token(ropc["refresh_token"], [f"{d.API_URI}/access_as_user"])
    wire.secrets.add(api_token["access_token"])
    api = sts.msal_confidential("api", http_client=http)
    assert "access_token" in api.acquire_token_on_behalf_of(api_token["access_token"], ["User.Read"])
    # Device code: start, approve on the pages, poll.
    device = public.initiate_device_flow(["User.Read"])
    sts.approve_device_code(device)
    polled = http.post(token_url, data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                        "client_id": sts.public.client_id, "device_code": device["device_code"]})
    assert polled.status_code == 200, polled.text

    # Failures: wrong secret and password, reused code, wrong verifier, bad tokens and assertions.
    wire.secrets.update({"wrong-secret-value-7", "Wrong-P@ssword-9", "garbage-refresh-token-123"})
    wrong = msal.ConfidentialClientApplication(sts.daemon.client_id, client_credential="wrong-secret-value-7",
                                               authority=sts.authority(), http_client=http, instance_discovery=False)
    assert "error" in wrong.acquire_token_for_client([GRAPH_DEFAULT])
    bad_basic = base64.b64encode(f"{sts.daemon.client_id}:wrong-secret-value-7".encode()).decode()
    failures = [
        ({"grant_type": "client_credentials", "scope": GRAPH_DEFAULT}, {"Authorization": f"Basic {bad_basic}"}),
        ({"grant_type": "password", "client_id": sts.public.client_id, "username": "alice@contoso.com",
          "password": "Wrong-P@ssword-9", "scope": USER_SCOPE}, {}),
        ({"grant_type": "authorization_code", "client_id": sts.web.client_id, "client_secret": str(sts.web.secret),
          "code": auth_response["code"], "redirect_uri": WEB_REDIRECT, "code_verifier": flow["code_verifier"]}, {}),
        ({"grant_type": "refresh_token", "client_id": sts.public.client_id, "scope": USER_SCOPE,
          "refresh_token": "garbage-refresh-token-123"}, {}),
        ({"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": sts.public.client_id,
          "device_code": device["device_code"]}, {}),  # redeemed already
        ({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "client_id": sts.api.client_id,
          "client_secret": "wrong-secret-value-7", "assertion": api_token["access_token"],
          "requested_token_use": "on_behalf_of", "scope": "User.Read"}, {}),
        ({"grant_type": "client_credentials", "client_id": sts.daemon.client_id, "scope": GRAPH_DEFAULT,
          "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
          "client_assertion": api_token["access_token"]}, {}),  # a JWT, but not the client's
    ]
    for data, headers in failures:
        assert http.post(token_url, data=data, headers=headers).status_code in (400, 401)
    # A second fresh code, redeemed with a wrong verifier (the code is then used up).
    flow2 = web.initiate_auth_code_flow(["User.Read"], redirect_uri=WEB_REDIRECT, response_mode="form_post")
    code2 = sts.sign_in(flow2["auth_uri"], WEB_REDIRECT, session=http)["code"]
    wire.secrets.update({code2, flow2["code_verifier"]})
    assert http.post(token_url, data={"grant_type": "authorization_code", "client_id": sts.web.client_id,
                                      "client_secret": str(sts.web.secret), "code": code2,
                                      "redirect_uri": WEB_REDIRECT, "code_verifier": "x" * 43}).status_code == 400
    # A wrong password typed on the sign-in page; secrets in the query string (msal-node puts extras there).
    browser = wire.session(sts)  # no SSO cookie yet: the sign-in page
    form = forms_of(browser.get(flow2["auth_uri"], allow_redirects=False).text)[1][-1]
    again = browser.post(form.action, data={**form.fields, "login": "alice@contoso.com", "passwd": "Wrong-P@ssword-9"},
                         allow_redirects=False)
    assert "Your account or password is incorrect" in again.text
    http.post(f"{token_url}?{urlencode({'client_secret': 'wrong-secret-value-7'})}",
              data={"grant_type": "client_credentials", "client_id": sts.daemon.client_id, "scope": GRAPH_DEFAULT})
    # Malformed bodies that still carry secrets: not UTF-8, too large, JSON instead of a form.
    secret = str(sts.daemon.secret).encode()
    http.post(token_url, data=b"client_secret=" + secret + b"&password=Wrong-P@ssword-9&x=\xff", headers=FORM)
    http.post(token_url, data=b"client_secret=" + secret + b"&pad=" + b"p" * (1 << 20), headers=FORM)
    http.post(token_url, json={"grant_type": "password", "password": "Wrong-P@ssword-9",
                               "client_secret": "wrong-secret-value-7"})
    # The SSO session id is a credential too (it signs the user in again).
    wire.secrets.update(sts.sandbox.sessions)


def test_no_secret_reaches_logs_journal_admin_output_or_errors(state_dir: Path) -> None:
    runtime = Runtime.start(Settings(port=0, state_dir=state_dir, tls=False, log_requests=True))
    app = create_app(runtime=runtime)
    sts = _sandbox(runtime, app)
    wire = _Wire()
    wire.secrets.update({d.DAEMON_SECRET, d.WEB_SECRET, d.API_SECRET, d.PASSWORD})
    with _captured_logs() as logs:
        _realistic_mix(sts, wire)
    http = session_for(app, ORIGIN)
    admin = [http.get(f"{ORIGIN}/_fakests/sandboxes/{sb}/journal").text for sb in (sts.sandbox_id, "default")]
    all_journals = http.get(f"{ORIGIN}/_fakests/journal")
    if all_journals.status_code == 200:  # the dashboard's view of every journal
        admin.append(all_journals.text)
    journal = [json.dumps(e.to_json()) for sb in runtime.sandboxes.all() for e in sb.journal]
    places = {"log": "\n".join(logs.lines), "journal": "\n".join(journal), "admin": "\n".join(admin),
              "errors": "\n".join(wire.error_bodies)}
    assert len(logs.lines) >= 30 and len(journal) >= 30 and len(wire.error_bodies) >= 12  # the mix really ran
    secret_values = {s for s in wire.secrets if len(s) >= 8}
    assert len(secret_values) >= 15, secret_values
    leaks = {(place, value[:40]) for value in secret_values for place, text in places.items() if value in text}
    assert not leaks
    assert '"client_secret": "***"' in places["journal"] and '"password": "***"' in places["journal"]
    assert not [e for sb in runtime.sandboxes.all() for e in sb.internal_errors]


# --- exposure -------------------------------------------------------------------------------------------------

def test_serve_defaults_to_loopback() -> None:
    assert Settings().host == "127.0.0.1"
    result = CliRunner().invoke(cli.cli, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0 and re.search(r"--host TEXT\s+Address to listen on\..*default: 127\.0\.0\.1",
                                               " ".join(result.output.split()))


@contextlib.contextmanager
def _serve(args: list[str], state: Path) -> Iterator[tuple[str, list[str], queue.Queue[str]]]:
    """``fakests serve ARGS`` in a subprocess: yields (stdout until "Ready on", stdout lines, stderr queue)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKESTS_")}
    with serving.serve(["--port", "0", "--state-dir", str(state), *args], env) as served:
        yield served.banner, served.lines, served.err



def _https(state: Path) -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    http.verify = str(state / "tls" / "ca.pem")
    return http


def test_serve_off_loopback_wants_the_printed_admin_token(tmp_path: Path) -> None:
    """Bound to 0.0.0.0 (reached here only through 127.0.0.1), the admin API needs the generated token,
    printed once; the STS endpoints and /health stay open."""
    state = tmp_path / "state"
    with _serve(["--host", "0.0.0.0"], state) as (banner, lines, err):
        port = int(re.search(r"Listening\s+0\.0\.0\.0:(\d+)", banner).group(1))  # type: ignore[union-attr]
        found = re.search(r"Admin token for /_fakests/ \(shown once\): Authorization: Bearer (\S+)", banner)
        assert found, banner
        token = found.group(1)
        assert BANNER in banner and "must never be trusted in production" in banner
        base = f"https://127.0.0.1:{port}"
        http = _https(state)
        missing = http.get(f"{base}/_fakests/sandboxes", timeout=10)
        assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = http.get(f"{base}/_fakests/sandboxes", headers={"Authorization": "Bearer " + "x" * len(token)})
        assert wrong.status_code == 401
        good = http.get(f"{base}/_fakests/sandboxes", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert good.status_code == 200 and good.json()["sandboxes"][0]["sandbox_id"] == "default"
        assert http.post(f"{base}/_fakests/sandboxes", timeout=10).status_code == 401
        assert http.get(f"{base}/_fakests/health", timeout=10).json() == {"status": "ok"}
        meta = http.get(f"{base}/{d.TENANT_ID}/v2.0/.well-known/openid-configuration", timeout=10)
        assert meta.status_code == 200
    assert "".join(lines).count(token) == 1  # shown once
    assert token not in "".join(err.queue)  # and never logged


def test_serve_on_loopback_needs_no_token(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with _serve([], state) as (banner, _, _):
        port = int(re.search(r"Listening\s+127\.0\.0\.1:(\d+)", banner).group(1))  # type: ignore[union-attr]
        assert "Admin token" not in banner and BANNER in banner
        response = _https(state).get(f"https://127.0.0.1:{port}/_fakests/sandboxes", timeout=10)
        assert response.status_code == 200


def test_in_memory_grants_are_pruned_and_capped(fake_sts: StsSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-lived fakests must not grow without bound: expired grants go, and each kind is capped."""
    from fakests.state import sandbox as sandbox_module
    from fakests.state.sandbox import IssuedCode, RefreshGrant

    sb = fake_sts.sandbox
    now = sb.now()
    for i in range(2048):  # expired two hours ago
        sb.put_code(f"old-{i}", IssuedCode("c", "u", "t", "r", [], None, None, None, now - 7200, now - 7300))
    assert len(sb.codes) < 1024 + 1  # the expired ones were dropped at the 1024th and 2048th inserts
    monkeypatch.setattr(sandbox_module, "GRANT_CAP", 1500)
    for i in range(2048):
        sb.put_refresh(f"rt-{i}", RefreshGrant("c", "u", "t", [], now, now + 86400, now))
    assert len(sb.refresh_tokens) <= 1500 + 1024 and "rt-0" not in sb.refresh_tokens and "rt-2047" in sb.refresh_tokens


# Rules armed only to fill the sandbox up to its bound never match: that is the point.
@pytest.mark.filterwarnings("ignore::fakests.FakeStsWarning")
def test_rules_per_sandbox_are_bounded(fake_sts: StsSandbox) -> None:
    from fakests.state.errors import ConfigError

    fake_sts.configure(max_rules=3)
    for _ in range(3):
        fake_sts.fail("token", aadsts=70012, client_id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(ConfigError, match=r"3 rules are loaded and this scenario adds 1: at most 3 per sandbox"):
        fake_sts.fail("token", aadsts=70012)
    assert len(fake_sts.scenarios) == 3
    fake_sts.clear_scenarios()
    assert fake_sts.fail("token", aadsts=70012, times=1).fired == 0


# The scenario is armed to show the bound, not to match.
@pytest.mark.filterwarnings("ignore::fakests.FakeStsWarning")
def test_rules_limit_over_the_admin_api_is_a_clear_400(fake_sts: StsSandbox) -> None:
    fake_sts.configure(max_rules=1)
    admin = f"{fake_sts.url}/_fakests/sandboxes/{fake_sts.sandbox_id}/scenarios"
    http = fake_sts.http_client()
    assert http.post(admin, json={"name": "msa-transient-70012"}).status_code == 201
    over = http.post(admin, json={"name": "throttling-429"})
    assert over.status_code == 400 and over.json()["error"] == "invalid_scenario"
    assert "at most 1 per sandbox (max_rules)" in over.json()["reason"]


def test_throttle_memory_forgets_clients_whose_window_is_over(fake_sts: StsSandbox) -> None:
    """Throttle windows and Retry-After times are kept per client id; clients that come and go (a load
    test, generated ids) must not grow them for ever, and a client still inside its window keeps it."""
    from fakests.failures.engine import SWEEP_FROM

    fake_sts.throttle("token", limit=1, per=10)
    session = fake_sts.http_client()
    url = f"{fake_sts.authority()}/oauth2/v2.0/token"
    engine = fake_sts.sandbox.engine
    (state,) = engine.states

    def token(client_id: str) -> int:
        return session.post(url, data={"grant_type": "client_credentials", "client_id": client_id}).status_code

    steady = str(uuid.uuid4())
    assert token(steady) != 429 and token(steady) == 429
    largest = (0, 0)
    for _ in range(5):
        fake_sts.advance(11)  # every window and Retry-After so far is over
        assert token(steady) != 429  # its window passed too: a fresh allowance
        for _ in range(800):
            client = str(uuid.uuid4())
            assert token(client) != 429 and token(client) == 429
        assert token(steady) == 429  # still inside its window: not forgotten by a sweep
        largest = max(largest, (len(state.hits), len(engine.not_before)))
    # 4,000 clients passed through; what is kept stays near the clients of the current window.
    assert max(largest) <= SWEEP_FROM + 801, largest
    assert len(fake_sts.journal.entries("token", status=429)) == 4000 + 6


def test_a_client_that_drops_the_connection_mid_body_is_journaled_not_an_internal_error(
        small_server: FakeSTS) -> None:
    """A client that gives up half-way through its body (a timeout, a killed process) is the client's
    doing: it is journaled as 499 "client closed request", never recorded as a fakests error (which
    would fail the test using the fixture), and the server keeps serving."""
    sts = small_server.sandbox()
    form = urlencode(_client_credentials(sts)).encode()
    head = (f"POST /{sts.tenant_id}/oauth2/v2.0/token HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form) + 500}\r\n"
            "client-request-id: 4b0e8e0c-6f57-4c39-9d7e-2f1cbb3b2d11\r\n\r\n").encode()
    context = ssl.create_default_context(cafile=small_server.ca_path)
    with socket.create_connection(("127.0.0.1", small_server.port), timeout=20) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(head + form)  # 500 bytes short of what it announced; then the connection closes
    deadline = time.monotonic() + 10
    while not sts.journal.entries("token") and time.monotonic() < deadline:
        time.sleep(0.02)
    [entry] = sts.journal.entries("token")
    assert (entry.status, entry.error, entry.correlation_id) == (499, "client_disconnected",
                                                                 "4b0e8e0c-6f57-4c39-9d7e-2f1cbb3b2d11")
    assert not sts.internal_errors
    http = sts.http_client(inprocess=False)
    assert http.post(f"{sts.authority()}/oauth2/v2.0/token", data=_client_credentials(sts)).status_code == 200
    sts.drop()
