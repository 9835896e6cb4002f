"""The worked example ``examples/webapp`` in a real browser, against fakests over TLS.

The example app runs with uvicorn on 127.0.0.1 (a free port) in a thread, configured the way its
README says (authority, client id and secret, the CA bundle), with the sandbox's web app and its
callback URL registered. Headless Chromium (Debian's, as in ``tests/test_browser.py``, trusting
exactly fakests' certificate by its SPKI pin) is the person: it clicks through the app and fakests'
sign-in pages. Every test checks what the user sees against fakests' journal: the correlation id on
the app's error page is the one of the failed request. Screenshots: ``tests/artifacts/example-*.png``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect

from examples.webapp.app import Settings, create_app
from fakests.state.journal import JournalEntry
from fakests.testing.sandbox import StsSandbox
from tests.chromium import WAIT_MS, fresh_context, screenshot

SERVICE_PROBLEM = "The sign-in service had a problem (HTTP 500). Try again."


# --- the example app, served ---------------------------------------------------------------------------


@pytest.fixture
def start_webapp(fake_sts: StsSandbox) -> Iterator[Callable[[str], str]]:
    """``start_webapp(authority)`` serves the example app for the sandbox's web app; returns its URL."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(authority: str) -> str:
        assert fake_sts.ca_path is not None and fake_sts.web.secret is not None
        app = create_app(Settings(authority=authority, client_id=fake_sts.web.client_id,
                                  client_secret=fake_sts.web.secret, ca_bundle=fake_sts.ca_path))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                                               timeout_graceful_shutdown=2))
        thread = threading.Thread(target=server.run, name="example-webapp", daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the example app did not start"
            time.sleep(0.01)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        # The callback, and the home page for sign-out (post_logout_redirect_uri must be registered).
        fake_sts.sandbox.directory.apps[fake_sts.web.client_id].redirect_uris += [f"{url}/auth/callback", f"{url}/"]
        return url

    try:
        yield start
    finally:
        for server, _ in running:
            server.should_exit = True
        for _, thread in running:
            thread.join(timeout=10)
            assert not thread.is_alive(), "the example app did not stop within 10 s"


# --- the browser (as in tests/test_browser.py) --------------------------------------------------------


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with fresh_context(browser) as context:
        yield context.new_page()


def shot(page: Page, name: str) -> None:
    screenshot(page, f"example-{name}")


# --- what the person does ---------------------------------------------------------------------------------


def sign_in_at_fakests(page: Page, username: str, password: str, *, consent: str = "accept",
                       shots: str | None = None) -> bool:
    """Pick the account, type the password, answer the consent page if it shows (``accept`` or
    ``cancel``). Returns whether the consent page showed. Ends when the browser is back at the app."""
    page.get_by_role("heading", name="Pick an account").wait_for()
    if shots:
        shot(page, f"{shots}-account-picker")
    page.locator(f'button.tile[value="{username}"]').click()
    page.locator('input[name="passwd"]').fill(password)
    page.locator("#idSIButton9").click()
    consent_button = page.locator("#idBtn_Accept")
    consent_button.or_(page.locator("#app-header")).wait_for()
    if not consent_button.is_visible():
        return False
    if shots:
        shot(page, f"{shots}-consent")
    page.locator("#idBtn_Accept" if consent == "accept" else "#idBtn_Back").click()
    page.locator("#app-header").wait_for()
    return True


def signed_in(page: Page) -> None:
    """Wait for the app's home page with a user, or fail at once with the error page's message."""
    page.locator("#user-name").or_(page.locator("#message")).wait_for()
    assert page.locator("#user-name").is_visible(), f"the app shows an error: {text(page, '#message')}"


def token_attempts(fake_sts: StsSandbox, count: int, timeout: float = WAIT_MS / 1000) -> list[JournalEntry]:
    """The journal's token requests, once there are ``count`` of them (waiting at most ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while len(entries := fake_sts.journal.entries("token")) < count:
        assert time.monotonic() < deadline, f"{len(entries)} token requests after {timeout} s, expected {count}"
        time.sleep(0.02)
    return entries


def text(page: Page, selector: str) -> str:
    return page.locator(selector).inner_text()


# --- tests ---------------------------------------------------------------------------------------------------


def test_a_person_signs_in_and_sees_their_name(fake_sts: StsSandbox, start_webapp: Callable[[str], str],
                                               page: Page) -> None:
    fake_sts.sandbox.directory.consents.clear()  # so the consent page shows
    url = start_webapp(fake_sts.authority())
    page.goto(url)
    assert page.locator("#sign-in").inner_text() == "Sign in"
    shot(page, "1-home")

    page.locator("#sign-in").click()
    assert sign_in_at_fakests(page, "alice@contoso.com", fake_sts.password, shots="2")
    signed_in(page)
    assert page.url == f"{url}/"
    assert text(page, "#user-name") == "Alice Smith"
    assert text(page, "#username") == "alice@contoso.com"
    shot(page, "3-signed-in")
    [token] = fake_sts.journal.entries("token")
    assert (token.status, token.grant_type) == (200, "authorization_code")

    # Sign out: the app forgets the session, fakests ends its SSO session and sends the browser back.
    page.locator("#sign-out").click()
    page.locator("#sign-in").wait_for()
    assert page.url == f"{url}/"
    assert [e.status for e in fake_sts.journal.entries("logout")] == [302]
    page.locator("#sign-in").click()
    page.get_by_role("heading", name="Pick an account").wait_for()  # no session left: the picker again


def test_transient_70012_shows_the_correlation_id_and_try_again_recovers(
        fake_sts: StsSandbox, start_webapp: Callable[[str], str], page: Page) -> None:
    fake_sts.use_scenario("msa-transient-70012")  # the next two MSA token requests: HTTP 500, AADSTS70012
    url = start_webapp(fake_sts.authority("consumers"))
    page.goto(url)
    page.locator("#sign-in").click()
    sign_in_at_fakests(page, "carol@outlook.com", fake_sts.password)

    shown = []
    for attempt in (1, 2):
        # The page of the previous attempt stays until the new one loads: wait for the new id on it.
        failed = token_attempts(fake_sts, attempt)[-1]
        expect(page.locator("#correlation-id")).to_have_text(failed.correlation_id, timeout=WAIT_MS)
        shot(page, f"70012-{attempt}-error")
        assert (failed.status, failed.aadsts) == (500, 70012)
        assert text(page, "h1") == "Sign-in failed"
        assert text(page, "#message") == SERVICE_PROBLEM
        assert text(page, "#error-code") == "AADSTS70012"
        # The id the app shows is the client-request-id MSAL sent, which fakests answered as the correlation id.
        assert text(page, "#correlation-id") == failed.correlation_id == failed.client_request_id
        assert text(page, "#request-id") == failed.trace_id
        shown.append(text(page, "#correlation-id"))
        page.locator("#try-again").click()  # a new sign-in: fakests' SSO session, no pages this time

    expect(page).to_have_url(f"{url}/", timeout=WAIT_MS)  # the error pages are at /auth/callback
    signed_in(page)
    assert text(page, "#user-name") == "Carol Consumer"
    assert text(page, "#username") == "carol@outlook.com"
    shot(page, "70012-3-signed-in")

    attempts = fake_sts.journal.entries("token")
    assert [(e.status, e.aadsts, e.rule) for e in attempts] == [
        (500, 70012, "msa-transient-70012/msa-server-error"),
        (500, 70012, "msa-transient-70012/msa-server-error"),
        (200, None, None)]
    assert shown == [e.correlation_id for e in attempts[:2]] and len({e.correlation_id for e in attempts}) == 3


@pytest.mark.parametrize("case", ["consent_declined", "scripted"])
def test_authorize_errors_show_the_aadsts_code_and_correlation_id(
        fake_sts: StsSandbox, start_webapp: Callable[[str], str], page: Page, case: str) -> None:
    url = start_webapp(fake_sts.authority())
    page.goto(url)
    if case == "consent_declined":
        fake_sts.sandbox.directory.consents.clear()
        page.locator("#sign-in").click()
        assert sign_in_at_fakests(page, "alice@contoso.com", fake_sts.password, consent="cancel")
    else:
        fake_sts.fail("authorize", aadsts=65004, error="access_denied")
        page.locator("#sign-in").click()
    page.get_by_role("heading", name="Sign-in failed").wait_for()
    shot(page, f"authorize-error-{case}")

    [entry] = [e for e in fake_sts.journal.entries("authorize") if e.aadsts is not None]
    assert (entry.aadsts, entry.error) == (65004, "access_denied")
    assert text(page, "#error-code") == "AADSTS65004"
    assert text(page, "#message").startswith("AADSTS65004: ")
    assert text(page, "#correlation-id") == entry.correlation_id
    assert text(page, "#request-id") == entry.trace_id
    assert page.locator("#try-again").get_attribute("href") == "/login"
    assert fake_sts.journal.attempts("token") == 0


def test_a_token_error_shows_entras_correlation_id(fake_sts: StsSandbox, start_webapp: Callable[[str], str],
                                                    page: Page) -> None:
    """A 4xx from the token endpoint: MSAL returns Entra's error JSON, ids and all."""
    fake_sts.use_scenario("blocked-by-conditional-access")  # bob@contoso.com: HTTP 400, AADSTS53003
    url = start_webapp(fake_sts.authority())
    page.goto(url)
    page.locator("#sign-in").click()
    sign_in_at_fakests(page, "bob@contoso.com", fake_sts.password)
    page.get_by_role("heading", name="Sign-in failed").wait_for()
    shot(page, "token-error-53003")

    [entry] = fake_sts.journal.entries("token")
    assert (entry.status, entry.aadsts) == (400, 53003)
    assert text(page, "#error-code") == "AADSTS53003"
    assert text(page, "#message").startswith("AADSTS53003: Access has been blocked by Conditional Access policies")
    assert text(page, "#correlation-id") == entry.correlation_id == entry.client_request_id
    assert text(page, "#request-id") == entry.trace_id


def test_discovery_down_shows_the_request_id(fake_sts: StsSandbox, start_webapp: Callable[[str], str],
                                             page: Page) -> None:
    """MSAL sends no client-request-id with OpenID discovery; the page shows the answer's request id."""
    url = start_webapp(fake_sts.authority())
    fake_sts.fail("discovery", status=502, body="<html>Bad Gateway</html>", content_type="text/html")
    page.goto(f"{url}/login")
    page.get_by_role("heading", name="Sign-in failed").wait_for()
    shot(page, "discovery-502")

    [entry] = fake_sts.journal.entries("discovery")
    assert (entry.status, entry.client_request_id) == (502, None)
    assert text(page, "#message") == "The sign-in service had a problem (HTTP 502). Try again."
    assert text(page, "#request-id") == entry.trace_id
    assert page.locator("#correlation-id").count() == 0  # none was sent, none is made up
