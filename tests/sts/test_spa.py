"""What a single-page app gets from the token endpoint when it does everything right (clients-2026.md §3).

The refusals are rows of ``test_bad_inputs.CASES``; here: the CORS preflight, CORS on answers, a spa
code redeemed cross-origin with PKCE, 24-hour refresh tokens whose rotation keeps the first expiry,
the session cookie a hidden iframe needs, and the opener policy of the sign-in pages.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlencode

import requests

from fakests.testing.sandbox import StsSandbox

ORIGIN = "http://localhost:5173"
REDIRECT = "http://localhost:5173"
SCOPE = "openid profile offline_access User.Read"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()


def _code(sts: StsSandbox, session: requests.Session) -> str:
    params = {"client_id": sts.spa.client_id, "response_type": "code", "redirect_uri": REDIRECT, "scope": SCOPE,
              "response_mode": "fragment", "code_challenge": CHALLENGE, "code_challenge_method": "S256"}
    return sts.sign_in(f"{sts.authority()}/oauth2/v2.0/authorize?{urlencode(params)}", REDIRECT,
                       session=session)["code"]


def _token(sts: StsSandbox, session: requests.Session, data: dict[str, str]) -> requests.Response:
    return session.post(f"{sts.authority()}/oauth2/v2.0/token", data=data, headers={"Origin": ORIGIN})


def test_preflight_allows_what_msal_browser_sends(fake_sts: StsSandbox) -> None:
    http = fake_sts.http_client()
    r = http.options(f"{fake_sts.authority()}/oauth2/v2.0/token", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-anchormailbox,x-client-sku,client-request-id,x-evil"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in r.headers["access-control-allow-headers"].split(",")}
    assert allowed == {"content-type", "x-anchormailbox", "x-client-sku", "client-request-id"}
    # Without Access-Control-Request-Method it is no preflight: a wrong method, as before.
    plain = http.options(f"{fake_sts.authority()}/oauth2/v2.0/token", headers={"Origin": ORIGIN})
    assert plain.json()["error_codes"] == [900561]


def test_spa_code_and_refresh_tokens_cross_origin(fake_sts: StsSandbox) -> None:
    http = fake_sts.http_client()
    code = _code(fake_sts, http)
    r = _token(fake_sts, http, {"grant_type": "authorization_code", "client_id": fake_sts.spa.client_id,
                                "code": code, "redirect_uri": REDIRECT, "scope": SCOPE, "code_verifier": VERIFIER})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert {"x-ms-request-id", "client-request-id"} <= {
        h.strip() for h in r.headers["access-control-expose-headers"].split(",")}
    first = r.json()
    assert first["refresh_token_expires_in"] == 86400
    assert {"access_token", "id_token"} <= set(first)

    fake_sts.advance(3600 * 10)
    rotated = _token(fake_sts, http, {"grant_type": "refresh_token", "client_id": fake_sts.spa.client_id,
                                      "refresh_token": first["refresh_token"], "scope": SCOPE}).json()
    assert rotated["refresh_token_expires_in"] == 86400 - 36000  # inherits the remaining lifetime
    fake_sts.advance(3600 * 14)  # 24 h after sign-in, however recently the token was rotated
    expired = _token(fake_sts, http, {"grant_type": "refresh_token", "client_id": fake_sts.spa.client_id,
                                      "refresh_token": rotated["refresh_token"], "scope": SCOPE})
    assert expired.json()["error_codes"] == [700084]
    assert "fixed, limited lifetime of 1.00:00:00" in expired.json()["error_description"]
    assert expired.headers["access-control-allow-origin"] == ORIGIN


def test_scripted_failures_reach_the_browser_with_cors(fake_sts: StsSandbox) -> None:
    http = fake_sts.http_client()
    fake_sts.fail("token", status=503, aadsts=90033, retry_after=7, times=1)
    r = _token(fake_sts, http, {"grant_type": "refresh_token", "client_id": fake_sts.spa.client_id,
                                "refresh_token": "x", "scope": SCOPE})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "7"
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "Retry-After" in r.headers["access-control-expose-headers"]
    fake_sts.throttle("token", limit=0, per=60)
    throttled = _token(fake_sts, http, {"grant_type": "refresh_token", "client_id": fake_sts.spa.client_id,
                                        "refresh_token": "x", "scope": SCOPE})
    assert throttled.status_code == 429
    assert throttled.headers["access-control-allow-origin"] == ORIGIN


def test_session_cookie_and_pages_for_silent_renewal(fake_sts: StsSandbox) -> None:
    http = fake_sts.http_client()
    params = {"client_id": fake_sts.spa.client_id, "response_type": "code", "redirect_uri": REDIRECT,
              "scope": SCOPE, "response_mode": "fragment", "code_challenge": CHALLENGE,
              "code_challenge_method": "S256"}
    page = http.get(f"{fake_sts.authority()}/oauth2/v2.0/authorize?{urlencode(params)}")
    assert page.headers["x-frame-options"] == "DENY"  # the sign-in page is never framed
    assert page.headers["cross-origin-opener-policy"] == "same-origin"
    trusted = http.get(f"{fake_sts.authority()}/oauth2/v2.0/authorize?{urlencode({**params, 'pocd': '1'})}")
    assert "cross-origin-opener-policy" not in trusted.headers
    posted = http.post(f"{fake_sts.authority()}/oauth2/v2.0/authorize?{urlencode(params)}",
                       data={"login": "alice@contoso.com", "passwd": fake_sts.password}, allow_redirects=False)
    assert posted.status_code == 302 and posted.headers["location"].startswith(REDIRECT + "#code=")
    cookie = posted.headers["set-cookie"]
    assert "SameSite=none" in cookie and "Secure" in cookie  # sent from a third-party (iframe) context
    silent = http.get(f"{fake_sts.authority()}/oauth2/v2.0/authorize?{urlencode({**params, 'prompt': 'none'})}",
                      allow_redirects=False)
    assert silent.status_code == 302 and "#code=" in silent.headers["location"]
    assert "x-frame-options" not in silent.headers  # the answer to a hidden iframe may load in it
