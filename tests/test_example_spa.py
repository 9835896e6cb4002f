"""The example single-page app ``examples/spa`` (@azure/msal-browser 5) in real Chromium against fakests.

The app is plain JavaScript bundled by esbuild from the versions pinned in ``examples/spa/package-lock.json``,
served by ``examples/spa/serve.py`` on ``http://localhost:<free port>`` (a ``spa`` redirect URI of the default
directory's "fakests spa" app: loopback URIs match on any port). fakests runs in this process over TLS;
Chromium trusts exactly its certificate (SPKI pin, ``tests/chromium.py``). msal-browser is configured with
the sandbox's authority and ``knownAuthorities`` naming fakests' host, nothing else. Every check of what the
app shows is held against fakests' journal. Screenshots: ``tests/artifacts/spa-*.png``.

Needs ``npm ci --prefix examples/spa`` (CI runs it); the test builds the bundle when it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from playwright.sync_api import Page, Playwright

from examples.spa import serve
from fakests import FakeSTS
from fakests.state import defaults
from fakests.state.journal import JournalEntry
from fakests.testing.sandbox import StsSandbox
from tests.chromium import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, screenshot, spki_sha256
from tests.jwks import verify
from tests.serving import run_impersonating

SPA_DIR = Path(serve.__file__).resolve().parent
MSAL_BROWSER_VERSION = json.loads((SPA_DIR / "package.json").read_text())["dependencies"]["@azure/msal-browser"]


# --- the app, built and served ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle() -> Path:
    """``examples/spa/dist``, built from the pinned packages (fails, never skips, when they are missing)."""
    installed = SPA_DIR / "node_modules" / "@azure" / "msal-browser" / "package.json"
    if not installed.exists():
        pytest.fail(f"{SPA_DIR / 'node_modules'} is missing: run `npm ci --prefix examples/spa` (CI does it)",
                    pytrace=False)
    version = json.loads(installed.read_text())["version"]
    assert version == MSAL_BROWSER_VERSION, f"node_modules has msal-browser {version}: run npm ci again"
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not on PATH: the example SPA is bundled with esbuild from npm", pytrace=False)
    built = subprocess.run([npm, "run", "build", "--prefix", str(SPA_DIR)], capture_output=True, text=True,
                           timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    return SPA_DIR / "dist"


@pytest.fixture
def spa(fake_sts: StsSandbox, bundle: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The app served for this sandbox's SPA: (its URL on localhost, its live ``/config.json``)."""
    authority = fake_sts.authority()
    config: dict[str, Any] = {"authority": authority, "clientId": fake_sts.spa.client_id,
                              "knownAuthorities": [urlsplit(authority).netloc], "loginHint": "alice@contoso.com"}
    server = serve.start(config)
    try:
        yield f"http://localhost:{server.server_address[1]}", config
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def page(playwright_driver: Playwright, fake_sts_server: FakeSTS | None, tmp_path: Path) -> Iterator[Page]:
    """Chromium with a fresh profile that allows third-party cookies, trusting exactly fakests' certificate.

    Silent renewal loads fakests in a hidden iframe of the app, a third-party context, where the SSO
    cookie (SameSite=None; Secure) is sent only if the browser allows third-party cookies. Playwright's
    usual contexts are off-the-record profiles, which block them (measured: Chromium 156 reports the
    cookie blocked for "UserPreferences", and fakests answers login_required, as Entra would); a person's
    default profile allows them, so this is a persistent profile with that preference."""
    assert fake_sts_server is not None and fake_sts_server.runtime.tls is not None
    pin = spki_sha256(fake_sts_server.runtime.tls.cert.read_bytes())
    profile = tmp_path / "chromium-profile"
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text(json.dumps(
        {"profile": {"cookie_controls_mode": 0, "block_third_party_cookies": False}}))
    context = playwright_driver.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"],
        ignore_https_errors=False, viewport={"width": 1000, "height": 760}, locale="en-US", timeout=30_000)
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    try:
        yield context.pages[0] if context.pages else context.new_page()
    finally:
        context.close()


# --- what the person and the app do ----------------------------------------------------------------------


def shot(page: Page, name: str) -> None:
    screenshot(page, f"spa-{name}")


def open_app(page: Page, url: str) -> None:
    page.goto(url)
    page.locator("body[data-ready=true]").wait_for()


def sign_in_at_fakests(page: Page, username: str, password: str | None) -> None:
    """Pick the account and type the password on fakests' sign-in page (``None``: only pick it, when
    fakests is scripted to refuse the account at once)."""
    page.get_by_role("heading", name="Pick an account").wait_for()
    page.locator(f'button.tile[value="{username}"]').click()
    if password is None:
        return
    page.locator('input[name="passwd"]').fill(password)
    page.locator("#idSIButton9").click()


def outcome(page: Page, operation: str, *, previous: Any = None) -> dict[str, Any]:
    """What the app shows after ``operation`` (its ``window.lastOutcome``), once a new one is there."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        found = page.evaluate("window.lastOutcome || null")
        if found and found.get("operation") == operation and found != previous:
            return dict(found)
        assert time.monotonic() < deadline, f"no outcome of {operation}; last: {found}"
        time.sleep(0.05)


def click_for(page: Page, button: str, operation: str) -> dict[str, Any]:
    page.evaluate("window.lastOutcome = null")
    page.locator(button).click()
    return outcome(page, operation)


def force_refresh(page: Page, operation: str) -> dict[str, Any]:
    """``acquireTokenSilent`` with ``forceRefresh`` (it skips the cached access token), called from the
    page; the outcome as the app saw it, recorded under ``operation``."""
    page.evaluate("window.lastOutcome = null")
    page.evaluate("""(operation) => msal.acquireTokenSilent({scopes: ["User.Read"], forceRefresh: true})
        .then((r) => { window.lastOutcome = {operation, fromCache: r.fromCache, accessToken: r.accessToken,
                                             idToken: r.idToken, username: r.account.username}; },
              (e) => { window.lastOutcome = {operation, error: {errorCode: e.errorCode,
                                                                message: e.errorMessage}}; })""", operation)
    return outcome(page, operation)


def entries_after(fake_sts: StsSandbox, seq: int, endpoint: str | None = None) -> list[JournalEntry]:
    return [e for e in fake_sts.journal.entries(endpoint) if e.seq > seq and e.method != "OPTIONS"]


def last_seq(fake_sts: StsSandbox) -> int:
    entries = fake_sts.journal.entries()
    return entries[-1].seq if entries else 0


def login_redirect(page: Page, url: str, fake_sts: StsSandbox, username: str = "alice@contoso.com",
                   *, password: bool = True) -> dict[str, Any]:
    open_app(page, url)
    page.evaluate("window.lastOutcome = null")
    page.locator("#login-redirect").click()
    sign_in_at_fakests(page, username, fake_sts.password if password else None)
    page.wait_for_url(f"{url}/**")
    page.locator("body[data-ready=true]").wait_for()
    return outcome(page, "loginRedirect")


def check_tokens(fake_sts: StsSandbox, result: dict[str, Any]) -> None:
    """The id token and access token the app holds verify against the JWKS fakests serves (times checked
    against the sandbox clock, on which they were issued)."""
    http = fake_sts.http_client()
    skew = fake_sts.sandbox.clock_offset
    id_claims = verify(result["idToken"], http, fake_sts.authority(), fake_sts.spa.client_id, leeway=skew)
    assert id_claims["preferred_username"] == result["username"]
    assert abs(id_claims["iat"] - fake_sts.sandbox.now()) < 300
    at_claims = verify(result["accessToken"], http, fake_sts.authority(), "https://graph.microsoft.com", leeway=skew)
    assert at_claims["appid"] == fake_sts.spa.client_id and "User.Read" in at_claims["scp"].split()


# --- tests -----------------------------------------------------------------------------------------------


def test_login_redirect_shows_the_user_and_tokens_verify(fake_sts: StsSandbox, spa: tuple[str, dict[str, Any]],
                                                         page: Page) -> None:
    url, _ = spa
    result = login_redirect(page, url, fake_sts)
    assert page.locator("#user-name").inner_text() == "Alice Smith"
    shot(page, "1-login-redirect")
    check_tokens(fake_sts, result)
    [authorize] = [e for e in fake_sts.journal.entries("authorize") if e.status == 302]
    assert authorize.params["response_mode"] == "fragment"
    [redeemed] = fake_sts.journal.entries("token", grant_type="authorization_code")
    assert redeemed.status == 200
    # msal-browser's own correlation id travels as client-request-id: the app and the journal agree.
    assert redeemed.correlation_id == result["correlationId"]


def test_login_popup_then_silent_renewal_cache_refresh_token_and_iframe(
        fake_sts: StsSandbox, spa: tuple[str, dict[str, Any]], page: Page) -> None:
    url, _ = spa
    open_app(page, url)
    page.evaluate("window.lastOutcome = null")
    with page.expect_popup() as popup_info:
        page.locator("#login-popup").click()
    popup = popup_info.value
    sign_in_at_fakests(popup, "alice@contoso.com", fake_sts.password)
    result = outcome(page, "loginPopup")
    assert "error" not in result, result
    assert page.locator("#user-name").inner_text() == "Alice Smith"
    shot(page, "2-login-popup")
    check_tokens(fake_sts, result)

    # 1. From the cache: no request at all.
    seq = last_seq(fake_sts)
    cached = click_for(page, "#silent", "acquireTokenSilent")
    assert cached["fromCache"] is True and not entries_after(fake_sts, seq)

    # 2. Through the refresh token (forceRefresh skips the access token), cross-origin.
    seq = last_seq(fake_sts)
    refreshed = force_refresh(page, "forceRefresh")
    assert "error" not in refreshed and refreshed["fromCache"] is False, refreshed
    [rt] = entries_after(fake_sts, seq, "token")
    assert (rt.grant_type, rt.status) == ("refresh_token", 200)
    check_tokens(fake_sts, refreshed)

    # 3. 24 h later (the sandbox clock): the SPA's refresh token is dead (AADSTS700084), and msal-browser
    # renews through a hidden iframe with prompt=none and the SSO cookie, then redeems that code.
    fake_sts.advance(24 * 3600 + 60)
    seq = last_seq(fake_sts)
    renewed = force_refresh(page, "afterDay")
    assert "error" not in renewed, renewed
    steps = [(e.endpoint, e.grant_type, e.aadsts, e.status) for e in entries_after(fake_sts, seq)]
    assert steps[0] == ("token", "refresh_token", 700084, 400), steps
    silent = [e for e in entries_after(fake_sts, seq, "authorize")]
    assert [(e.params.get("prompt"), e.status) for e in silent] == [("none", 302)], steps
    assert steps[-1] == ("token", "authorization_code", None, 200), steps
    check_tokens(fake_sts, renewed)
    shot(page, "3-renewed-after-24h")


def test_after_sign_out_silent_sso_is_login_required(fake_sts: StsSandbox, spa: tuple[str, dict[str, Any]],
                                                     page: Page) -> None:
    url, _ = spa
    login_redirect(page, url, fake_sts)
    page.locator("#logout").click()
    page.wait_for_url(f"{url}/**")
    page.locator("body[data-ready=true]").wait_for()
    assert page.locator("#who").inner_text() == "Not signed in."
    seq = last_seq(fake_sts)
    failed = click_for(page, "#sso-silent", "ssoSilent")
    assert failed["error"]["errorCode"] == "login_required", failed
    assert failed["error"]["interactionRequired"] is True
    [silent] = entries_after(fake_sts, seq, "authorize")
    assert (silent.params.get("prompt"), silent.aadsts) == ("none", 50058)
    assert failed["error"]["correlationId"] == silent.correlation_id
    shot(page, "4-login-required-after-sign-out")


def test_scripted_70012_on_authorize_reaches_the_app_with_its_correlation_id(
        fake_sts: StsSandbox, spa: tuple[str, dict[str, Any]], page: Page) -> None:
    url, _ = spa
    fake_sts.fail("authorize", aadsts=70012, account_type="msa", times=1)
    # The rule fires as soon as the personal account is picked (the POST names it), before any password.
    failed = login_redirect(page, url, fake_sts, username="carol@outlook.com", password=False)
    assert failed["error"]["errorCode"] == "server_error" or "70012" in failed["error"]["errorMessage"], failed
    assert "AADSTS70012" in failed["error"]["errorMessage"]
    [fired] = [e for e in fake_sts.journal.entries("authorize") if e.aadsts == 70012]
    assert failed["error"]["correlationId"] == fired.correlation_id
    assert page.locator("#correlation-id").inner_text() == fired.correlation_id
    shot(page, "5-aadsts70012")


def test_503_on_token_is_a_server_error_with_the_correlation_id(
        fake_sts: StsSandbox, spa: tuple[str, dict[str, Any]], page: Page) -> None:
    url, _ = spa
    fake_sts.fail("token", status=503, aadsts=90033, retry_after=1)
    failed = login_redirect(page, url, fake_sts)
    assert failed["error"]["name"] == "ServerError", failed
    tokens = [e for e in fake_sts.journal.entries("token") if e.method == "POST"]
    assert tokens and all(e.status == 503 for e in tokens)
    assert failed["error"]["correlationId"] == tokens[-1].correlation_id
    assert "AADSTS90033" in failed["error"]["errorMessage"]
    shot(page, "6-token-503")
    print(f"msal-browser {MSAL_BROWSER_VERSION} under a 503 on /token: {len(tokens)} POST(s); "
          f"error {failed['error']}")


def test_a_web_redirect_uri_from_the_browser_gets_9002326_not_a_cors_failure(
        fake_sts: StsSandbox, spa: tuple[str, dict[str, Any]], page: Page) -> None:
    url, config = spa
    # The web app (confidential, untyped redirect URIs) with this page's redirect URI registered as web.
    fake_sts.sandbox.directory.apps[fake_sts.web.client_id].web_redirect_uris.append(f"{url}/redirect.html")
    config["clientId"] = fake_sts.web.client_id
    failed = login_redirect(page, url, fake_sts)
    assert failed["error"]["name"] == "ServerError", failed
    assert "AADSTS9002326" in failed["error"]["errorMessage"]
    assert f"Request origin: '{url}'" in failed["error"]["errorMessage"]
    [refused] = fake_sts.journal.entries("token", status=400)
    assert refused.aadsts == 9002326 and failed["error"]["correlationId"] == refused.correlation_id
    shot(page, "7-web-redirect-uri-9002326")


@pytest.mark.parametrize(("body", "name", "code"), [("json", "ServerError", "temporarily_unavailable"),
                                                     ("text", "BrowserAuthError", "failed_to_parse_response")])
def test_429_on_token_reaches_the_app_as_msal_browser_parses_it(
        fake_sts: StsSandbox, spa: tuple[str, dict[str, Any]], page: Page, body: str, name: str, code: str) -> None:
    """Measured: msal-browser sends the redemption once and does not retry a 429. Entra's JSON 429
    (AADSTS90055) is a ServerError with the correlation id; a plain-text 429 (a gateway's) is a
    BrowserAuthError ``failed_to_parse_response``, still with msal's correlation id, which the journal has."""
    url, _ = spa
    fake_sts.throttle("token", limit=0, per=60, retry_after=30, body=body)
    failed = login_redirect(page, url, fake_sts)
    assert (failed["error"]["name"], failed["error"]["errorCode"]) == (name, code), failed
    tokens = [e for e in fake_sts.journal.entries("token") if e.method == "POST"]
    assert [e.status for e in tokens] == [429]
    assert failed["error"]["correlationId"] == tokens[0].correlation_id
    shot(page, f"8-token-429-{body}")


def test_a_reset_connection_on_token_is_a_network_error(
        fake_sts: StsSandbox, spa: tuple[str, dict[str, Any]], page: Page) -> None:
    url, _ = spa
    fake_sts.fail("token", fault="reset")
    failed = login_redirect(page, url, fake_sts)
    assert failed["error"]["name"] == "BrowserAuthError", failed
    tokens = [e for e in fake_sts.journal.entries("token") if e.method == "POST"]
    assert tokens and all(e.fault == "reset" for e in tokens)
    assert failed["error"]["errorCode"] == "post_request_failed"
    assert failed["error"]["correlationId"] == tokens[-1].correlation_id
    shot(page, "9-token-reset")
    print(f"msal-browser {MSAL_BROWSER_VERSION} under a reset on /token: {len(tokens)} POST(s); "
          f"error {failed['error']}")


def test_the_same_bundle_with_its_production_authority_against_impersonation(bundle: Path, tmp_path: Path) -> None:
    """The app keeps ``https://login.microsoftonline.com/<tenant>`` and no knownAuthorities: Chromium, in a
    namespace whose /etc/hosts sends Entra's names to ``fakests serve --impersonate`` (the machine's own is
    untouched), signs in, and the tokens carry Entra's own issuer."""
    script = Path(__file__).resolve().parent / "spa_impersonated.py"
    then = f"{sys.executable} {script} {tmp_path / 'state'}\n"
    done, log = run_impersonating(tmp_path, [], then, dict(os.environ))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n--- fakests:\n{log}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    assert "sign-in page at https://login.microsoftonline.com/" in done.stderr
    claims = jwt.decode(result["idToken"], options={"verify_signature": False})
    assert claims["iss"] == f"https://login.microsoftonline.com/{defaults.TENANT_ID}/v2.0"
    assert (claims["aud"], result["username"]) == (defaults.SPA_ID, "alice@contoso.com")
