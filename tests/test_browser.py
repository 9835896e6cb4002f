"""fakests' pages in a real browser: headless Chromium, driven by Playwright, over TLS.

The plain-HTTP driver (``fakests.testing.driver``) proves the forms; this proves what only a browser can:
that a person can click through the account picker, password and consent pages, that the
``form_post`` page submits itself (JavaScript), that the ``Secure`` SSO cookie is stored and sent
back, and that errors which cannot go to the client show Entra's error page with its ids.

TLS trust: Chromium does not read a CA file, and importing fakests' CA into an NSS database would
change ``~/.pki/nssdb`` for every browser on the machine. Instead the browser is launched with
``--ignore-certificate-errors-spki-list`` holding the SHA-256 of exactly the fakests server
certificate's public key, so only that certificate is accepted: a server with another certificate
still fails (``test_only_the_fakests_certificate_is_trusted``). ``ignore_https_errors`` is never set.

Chromium is Debian's ``/usr/bin/chromium`` (``FAKESTS_CHROMIUM`` overrides); Playwright's own
browser download is not used. Screenshots of every page go to ``tests/artifacts/``.
"""

from __future__ import annotations

import http.server
import re
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page
from playwright.sync_api import Error as PlaywrightError

from fakests.state.tls import ensure_tls
from fakests.testing.sandbox import StsSandbox
from tests.chromium import fresh_context, screenshot

ERROR_HEADING = "Sorry, but we're having trouble signing you in."


# --- the client's redirect URI: a tiny HTTP receiver ------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    params: dict[str, str]


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records what the browser brings to the redirect URI."""

    port: int
    hits: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def wait(self, count: int = 1, timeout: float = 15.0) -> Received:
        """The ``count``-th request (1-based), waiting at most ``timeout`` seconds for it."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.hits) >= count, timeout):
                raise AssertionError(f"nothing reached the redirect URI within {timeout} s (got {self.hits})")
            return self.hits[count - 1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _record(self, body: bytes) -> None:
            parts = urlsplit(self.path)
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            params.update(parse_qsl(body.decode(), keep_blank_values=True))
            with state.arrived:
                state.hits.append(Received(self.command, parts.path, params))
                state.arrived.notify_all()
            page = b"<!DOCTYPE html><html><body><h1>Received by the client</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def do_GET(self) -> None:
            if self.path == "/favicon.ico":
                self.send_error(404)
                return
            self._record(b"")

        def do_POST(self) -> None:
            self._record(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- the browser ---------------------------------------------------------------------------------


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    with fresh_context(browser) as ctx:
        yield ctx


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def shot(page: Page, name: str) -> Path:
    return screenshot(page, name)


def assert_banner(page: Page) -> None:
    assert "test double of Microsoft Entra ID" in page.locator(".banner").inner_text()


# --- tests ---------------------------------------------------------------------------------------


def test_a_person_signs_in_and_msal_redeems_the_code(fake_sts: StsSandbox, page: Page, context: BrowserContext,
                                                      receiver: Receiver) -> None:
    fake_sts.sandbox.directory.consents.clear()  # so the consent page shows
    redirect_uri = f"{receiver.url}/callback"  # registered as http://localhost/callback: any loopback port
    app = fake_sts.msal_confidential("web", inprocess=False)
    flow = app.initiate_auth_code_flow(["User.Read"], redirect_uri=redirect_uri, response_mode="form_post")

    page.goto(flow["auth_uri"])
    assert page.title() == "Sign in to your account"
    assert page.get_by_role("heading", name="Pick an account").is_visible()
    assert_banner(page)
    alice = page.locator('button.tile[value="alice@contoso.com"]')
    assert alice.is_visible() and "Alice Smith" in alice.inner_text()
    shot(page, "signin-1-account-picker")

    alice.click()
    password = page.locator('input[name="passwd"]')
    password.wait_for()
    assert page.locator('input[name="login"]').input_value() == "alice@contoso.com"
    password.fill(fake_sts.password)
    shot(page, "signin-2-password")
    page.locator("#idSIButton9").click()

    page.get_by_role("heading", name="Permissions requested").wait_for()
    assert "fakests web app" in page.locator(".box").inner_text()
    assert page.get_by_text("User.Read").is_visible()
    shot(page, "signin-3-consent")
    page.locator("#idBtn_Accept").click()

    # Entra's form_post page submits itself with JavaScript; the browser ends at the client.
    hit = receiver.wait()
    page.wait_for_url(f"{redirect_uri}*")
    page.get_by_text("Received by the client").wait_for()
    shot(page, "signin-4-received-by-client")
    assert (hit.method, hit.path) == ("POST", "/callback")
    assert hit.params["state"] == flow["state"] and hit.params["code"].startswith("1.")

    result = app.acquire_token_by_auth_code_flow(flow, hit.params)
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == "alice@contoso.com"

    # The SSO cookie is Secure, HttpOnly, SameSite=None (as ESTSAUTH: a hidden iframe is a third-party
    # context), and the browser sends it back: prompt=none works.
    [cookie] = [c for c in context.cookies() if c["name"] == f"fakests-session-{fake_sts.sandbox_id}"]
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "None"
    silent = app.initiate_auth_code_flow(["User.Read"], redirect_uri=redirect_uri, response_mode="form_post",
                                         prompt="none")
    page.goto(silent["auth_uri"])
    again = receiver.wait(2)
    assert again.params["state"] == silent["state"] and "code" in again.params and "error" not in again.params
    assert "access_token" in app.acquire_token_by_auth_code_flow(silent, again.params)


def test_only_the_fakests_certificate_is_trusted(page: Page, tmp_path: Path) -> None:
    """The SPKI pin trusts fakests' certificate only: a server with another CA's certificate fails."""
    tls = ensure_tls(tmp_path / "other-ca")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with pytest.raises(PlaywrightError, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto(f"https://localhost:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("case", ["unknown_client", "unregistered_redirect", "scenario_with_bad_redirect"])
def test_untrusted_redirect_shows_entras_error_page(fake_sts: StsSandbox, page: Page, receiver: Receiver,
                                                     case: str) -> None:
    client_id, redirect_uri, code = fake_sts.web.client_id, f"{receiver.url}/callback", 0
    if case == "unknown_client":
        client_id, code = str(uuid.uuid4()), 700016
    elif case == "unregistered_redirect":
        redirect_uri, code = f"{receiver.url}/not-registered", 50011
    else:
        fake_sts.fail("authorize", aadsts=70012)
        redirect_uri, code = f"{receiver.url}/not-registered", 70012
    request_id = str(uuid.uuid4())
    query = {"client_id": client_id, "response_type": "code", "redirect_uri": redirect_uri, "scope": "openid",
             "state": "st-1", "client-request-id": request_id}
    response = page.goto(f"{fake_sts.authority()}/oauth2/v2.0/authorize?{urlencode(query)}")
    assert response is not None
    shot(page, f"error-page-{case}")

    [entry] = fake_sts.journal.entries("authorize", correlation_id=request_id)
    assert response.status == entry.status >= 400 and entry.aadsts == code
    assert response.headers["client-request-id"] == request_id
    assert page.title() == "Sign in"
    assert page.locator("h1").inner_text() == ERROR_HEADING
    assert page.locator("#error-message").inner_text().startswith(f"AADSTS{code}: ")
    assert page.locator("#correlation-id").inner_text() == request_id == entry.correlation_id
    assert page.locator("#request-id").inner_text() == entry.trace_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", page.locator("#timestamp").inner_text())
    assert_banner(page)
    assert receiver.hits == []  # nothing went to a redirect URI that cannot be trusted

    if case == "scenario_with_bad_redirect":
        # The same rule with a registered redirect URI: the error goes to the client instead, with state.
        page.goto(f"{fake_sts.authority()}/oauth2/v2.0/authorize?"
                  + urlencode({**query, "redirect_uri": f"{receiver.url}/callback", "state": "st-2"}))
        hit = receiver.wait()
        assert hit.params["error"] == "server_error" and hit.params["state"] == "st-2"
        assert hit.params["error_description"].startswith("AADSTS70012:")


def test_device_code_page_then_msal_gets_a_token(fake_sts: StsSandbox, page: Page) -> None:
    app = fake_sts.msal_public(inprocess=False)
    flow = app.initiate_device_flow(scopes=["User.Read"])
    assert "user_code" in flow, flow
    flow["expires_at"] = time.time() + 60  # bound MSAL's polling loop
    outcome: dict[str, Any] = {}
    poller = threading.Thread(target=lambda: outcome.update(app.acquire_token_by_device_flow(flow)), daemon=True)
    poller.start()

    page.goto(flow["verification_uri"])
    assert page.get_by_role("heading", name="Enter code").is_visible()
    assert_banner(page)
    page.locator('input[name="otc"]').fill(flow["user_code"])
    shot(page, "device-1-enter-code")
    page.locator("#idSIButton9").click()

    page.locator('input[name="passwd"]').wait_for()
    assert page.title() == "Sign in to your account"
    page.locator('input[name="login"]').fill("alice@contoso.com")
    page.locator('input[name="passwd"]').fill(fake_sts.password)
    shot(page, "device-2-sign-in")
    page.locator("#idSIButton9").click()

    heading = page.get_by_role("heading", name=re.compile("Are you trying to sign in to"))
    heading.wait_for()
    assert "fakests desktop" in heading.inner_text()
    shot(page, "device-3-confirm")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="You have signed in").wait_for()
    shot(page, "device-4-signed-in")

    poller.join(timeout=30)
    assert not poller.is_alive(), "MSAL was still polling 30 s after the user approved"
    assert "access_token" in outcome, outcome
    assert outcome["id_token_claims"]["preferred_username"] == "alice@contoso.com"
