"""The authorize endpoint as people and MSAL meet it: pages, SSO, prompts, consent, response modes."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from fakests.testing.driver import forms_of
from fakests.testing.sandbox import StsSandbox

REDIRECT = "http://localhost:5000/getAToken"


def _authorize_url(fake_sts: StsSandbox, **params: str) -> str:
    base = {"client_id": fake_sts.web.client_id, "response_type": "code", "redirect_uri": REDIRECT,
            "scope": "openid profile offline_access User.Read", "state": "s-123", "nonce": "n-456"}
    return f"{fake_sts.authority()}/oauth2/v2.0/authorize?{urlencode({**base, **params})}"


def _redirect_params(location: str) -> dict[str, str]:
    parts = urlsplit(location)
    return dict(parse_qsl(parts.fragment or parts.query))


def test_sign_in_page_lists_accounts_and_asks_for_a_password(fake_sts: StsSandbox) -> None:
    page = fake_sts.http_client().get(_authorize_url(fake_sts))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    title, forms = forms_of(page.text)
    assert title == "Sign in to your account"
    picker, password = forms
    assert ("login", "alice@contoso.com") in picker.buttons and ("login", "disabled@contoso.com") not in picker.buttons
    assert {"login", "passwd", "client_id", "redirect_uri", "state", "nonce"} <= set(password.fields)
    assert "test double" in page.text  # every page says what this is


def test_wrong_password_is_shown_on_the_page_not_sent_to_the_client(fake_sts: StsSandbox) -> None:
    session = fake_sts.http_client()
    page = session.get(_authorize_url(fake_sts))
    _, forms = forms_of(page.text)
    data = {**forms[1].fields, "login": "alice@contoso.com", "passwd": "wrong"}
    again = session.post(forms[1].action, data=data, allow_redirects=False)
    assert again.status_code == 200 and "Your account or password is incorrect" in again.text


def test_sso_session_signs_in_silently_with_prompt_none(fake_sts: StsSandbox) -> None:
    session = fake_sts.http_client()
    first = fake_sts.sign_in(_authorize_url(fake_sts), REDIRECT, session=session)
    assert first["state"] == "s-123" and first["code"]
    silent = session.get(_authorize_url(fake_sts, prompt="none", state="s-2"), allow_redirects=False)
    assert silent.status_code == 302
    params = _redirect_params(silent.headers["location"])
    assert params["state"] == "s-2" and params["code"] != first["code"]
    # A different browser (no cookie) gets login_required (AADSTS50058), delivered to the client.
    cold = fake_sts.http_client().get(_authorize_url(fake_sts, prompt="none"), allow_redirects=False)
    error = _redirect_params(cold.headers["location"])
    assert error["error"] == "login_required" and error["error_description"].startswith("AADSTS50058:")
    assert error["state"] == "s-123" and "Correlation ID:" in error["error_description"]


def test_prompt_login_asks_again_despite_the_session(fake_sts: StsSandbox) -> None:
    session = fake_sts.http_client()
    fake_sts.sign_in(_authorize_url(fake_sts), REDIRECT, session=session)
    again = session.get(_authorize_url(fake_sts, prompt="login"), allow_redirects=False)
    assert again.status_code == 200 and forms_of(again.text)[0] == "Sign in to your account"


def test_logout_ends_the_session(fake_sts: StsSandbox) -> None:
    session = fake_sts.http_client()
    fake_sts.sign_in(_authorize_url(fake_sts), REDIRECT, session=session)
    logout = f"{fake_sts.authority()}/oauth2/v2.0/logout"
    # Not registered for any app named in the request: no redirect (no open redirect), the signed-out page.
    stray = session.get(f"{logout}?post_logout_redirect_uri=https%3A%2F%2Fevil.test%2F", allow_redirects=False)
    assert stray.status_code == 200 and "You signed out" in stray.text
    fake_sts.sign_in(_authorize_url(fake_sts), REDIRECT, session=session)
    target = "https://app.example.test/callback"  # registered on the web app
    out = session.get(logout, params={"post_logout_redirect_uri": target, "client_id": fake_sts.web.client_id,
                                      "state": "bye"}, allow_redirects=False)
    assert out.status_code == 302 and out.headers["location"] == f"{target}?state=bye"
    silent = session.get(_authorize_url(fake_sts, prompt="none"), allow_redirects=False)
    assert _redirect_params(silent.headers["location"])["error"] == "login_required"


def test_logout_encodes_state_and_trusts_only_an_id_token_hint_it_signed(fake_sts: StsSandbox) -> None:
    session = fake_sts.http_client()
    logout = f"{fake_sts.authority()}/oauth2/v2.0/logout"
    target = "https://app.example.test/callback"  # registered on the web app
    state = "a&admin=1#frag ment"
    out = session.get(logout, params={"post_logout_redirect_uri": target, "client_id": fake_sts.web.client_id,
                                      "state": state}, allow_redirects=False)
    location = urlsplit(out.headers["location"])
    assert out.status_code == 302 and location.fragment == ""
    assert parse_qsl(location.query) == [("state", state)]  # one parameter, exactly as sent
    # An id_token_hint names the app only when fakests signed it: a forged one (any key) redirects nowhere.
    code = fake_sts.sign_in(_authorize_url(fake_sts), REDIRECT, session=session)["code"]
    tokens = session.post(f"{fake_sts.authority()}/oauth2/v2.0/token", data={
        "grant_type": "authorization_code", "client_id": fake_sts.web.client_id,
        "client_secret": str(fake_sts.web.secret), "code": code, "redirect_uri": REDIRECT,
        "scope": "openid profile offline_access User.Read"}).json()
    genuine = tokens["id_token"]
    assert jwt.decode(genuine, options={"verify_signature": False})["aud"] == fake_sts.web.client_id
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"aud": fake_sts.web.client_id, "iss": "https://evil.example/"}, key, algorithm="RS256",
                        headers={"kid": jwt.get_unverified_header(genuine)["kid"]})
    hinted = {"post_logout_redirect_uri": target}
    assert session.get(logout, params={**hinted, "id_token_hint": genuine}, allow_redirects=False).status_code == 302
    refused = session.get(logout, params={**hinted, "id_token_hint": forged}, allow_redirects=False)
    assert refused.status_code == 200 and "You signed out" in refused.text


def test_logout_as_msal_browser_sends_it_returns_only_to_a_registered_uri(fake_sts: StsSandbox) -> None:
    """msal-browser's logoutRedirect names no app (no client_id, no id_token_hint): a URI registered for an
    app of the sandbox is honoured, as Entra honours the session app's; any other gets the signed-out page."""
    session = fake_sts.http_client()
    logout = f"{fake_sts.authority()}/oauth2/v2.0/logout"
    back = session.get(logout, params={"post_logout_redirect_uri": "http://localhost:5173/"}, allow_redirects=False)
    assert back.status_code == 302 and back.headers["location"] == "http://localhost:5173/"  # the spa app's
    elsewhere = session.get(logout, params={"post_logout_redirect_uri": "https://evil.example.test/"},
                            allow_redirects=False)
    assert elsewhere.status_code == 200 and "You signed out" in elsewhere.text


def test_consent_page_then_consent_is_remembered(fake_sts: StsSandbox) -> None:
    scope = f"openid api://{fake_sts.api.client_id}/access_as_user"
    fake_sts.sandbox.directory.consents.clear()
    session = fake_sts.http_client()
    fake_sts.auto_sign_in = True
    page = session.get(_authorize_url(fake_sts, scope=scope, login_hint="alice@contoso.com"), allow_redirects=False)
    title, forms = forms_of(page.text)
    assert title == "Permissions requested" and ("consent", "accept") in forms[0].buttons
    declined = session.post(forms[0].action, data={**forms[0].fields, "consent": "cancel"}, allow_redirects=False)
    error = _redirect_params(declined.headers["location"])
    assert error["error"] == "access_denied" and error["error_subcode"] == "cancel"
    assert error["error_description"].startswith("AADSTS65004:")
    accepted = session.post(forms[0].action, data={**forms[0].fields, "consent": "accept"}, allow_redirects=False)
    assert "code" in _redirect_params(accepted.headers["location"])
    # Consent is stored for the user: no page the next time.
    again = session.get(_authorize_url(fake_sts, scope=scope, prompt="none"), allow_redirects=False)
    assert "code" in _redirect_params(again.headers["location"])


@pytest.mark.parametrize("mode", ["query", "fragment", "form_post"])
def test_response_modes(fake_sts: StsSandbox, mode: str) -> None:
    fake_sts.auto_sign_in = True
    response = fake_sts.http_client().get(_authorize_url(fake_sts, response_mode=mode, login_hint="bob@contoso.com"),
                                          allow_redirects=False)
    if mode == "form_post":
        _, [form] = forms_of(response.text)
        assert form.action == REDIRECT and form.method == "POST"
        params = form.fields
    else:
        location = response.headers["location"]
        assert ("#" in location) == (mode == "fragment")
        params = _redirect_params(location)
    assert params["state"] == "s-123" and params["code"].startswith("1.")


def test_loopback_redirect_any_port_but_not_another_path(fake_sts: StsSandbox) -> None:
    client = fake_sts.public.client_id
    ok = fake_sts.http_client().get(_authorize_url(fake_sts, client_id=client, redirect_uri="http://localhost:53119"),
                                    allow_redirects=False)
    assert ok.status_code == 200
    bad = fake_sts.http_client().get(_authorize_url(fake_sts, client_id=client,
                                                    redirect_uri="http://localhost:53119/elsewhere"))
    assert bad.status_code == 400 and "AADSTS50011" in bad.text and "Correlation Id:" in bad.text


def test_plain_pkce_and_msal_public_client_flow(fake_sts: StsSandbox) -> None:
    app = fake_sts.msal_public()
    flow = app.initiate_auth_code_flow(["User.Read"], redirect_uri="http://localhost:8400", response_mode="form_post")
    response = fake_sts.sign_in(flow["auth_uri"], "http://localhost:8400", "alice@contoso.com")
    result = app.acquire_token_by_auth_code_flow(flow, response)
    assert result["id_token_claims"]["preferred_username"] == "alice@contoso.com"
    assert "refresh_token" in result and "client_info" in result


def test_msa_user_signs_in_through_consumers(fake_sts: StsSandbox) -> None:
    app = fake_sts.msal_confidential("web", authority=fake_sts.authority("consumers"))
    flow = app.initiate_auth_code_flow(["User.Read"], redirect_uri=REDIRECT, response_mode="form_post")
    response = fake_sts.sign_in(flow["auth_uri"], REDIRECT, "carol@outlook.com")
    result = app.acquire_token_by_auth_code_flow(flow, response)
    claims = result["id_token_claims"]
    assert claims["tid"] == "9188040d-6c67-4c5b-b112-36a304b66dad" and "idp" in claims
    assert claims["iss"] == f"{fake_sts.url}/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
