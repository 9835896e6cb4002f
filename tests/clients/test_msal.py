"""Unmodified MSAL Python 1.39 completes every flow against fakests, in-process and over TLS.

Every issued token is verified against the JWKS fakests serves (signature, ``iss`` equal to the
discovery issuer, ``aud``, ``exp``), as a resource server would.
"""

from __future__ import annotations

import hashlib
import threading

import msal
import pytest

from fakests.testing.sandbox import StsSandbox
from tests.jwks import verify

REDIRECT = "http://localhost:5000/getAToken"
TRANSPORTS = [pytest.param(True, id="inprocess"), pytest.param(False, id="tls")]


def _token(result: dict[str, object], key: str = "access_token") -> str:
    assert key in result, result
    value = result[key]
    assert isinstance(value, str)
    return value


@pytest.mark.parametrize("inprocess", TRANSPORTS)
def test_client_credentials_with_secret(fake_sts: StsSandbox, inprocess: bool) -> None:
    app = fake_sts.msal_confidential("daemon", inprocess=inprocess)
    result = app.acquire_token_for_client([f"api://{fake_sts.api.client_id}/.default"])
    claims = verify(_token(result), fake_sts.http_client(inprocess=inprocess), fake_sts.authority(),
                    fake_sts.api.client_id)
    assert claims["roles"] == ["Data.Read"]
    assert claims["azp"] == fake_sts.daemon.client_id and claims["azpacr"] == "1"
    assert claims["tid"] == fake_sts.tenant_id and claims["idtyp"] == "app"
    assert result["expires_in"] > 300 and "refresh_token" not in result and "scope" not in result
    # A second call is answered from MSAL's cache: fakests sees one token request.
    assert app.acquire_token_for_client([f"api://{fake_sts.api.client_id}/.default"])["token_source"] == "cache"
    assert fake_sts.journal.attempts("token") == 1


@pytest.mark.parametrize("inprocess", TRANSPORTS)
def test_client_credentials_with_certificate(fake_sts: StsSandbox, inprocess: bool) -> None:
    app = fake_sts.msal_confidential("daemon", certificate=True, inprocess=inprocess)
    result = app.acquire_token_for_client(["api://fakests-api/.default"])
    claims = verify(_token(result), fake_sts.http_client(inprocess=inprocess), fake_sts.authority(),
                    fake_sts.api.client_id)
    assert claims["azpacr"] == "2"
    [entry] = fake_sts.journal.entries("token")
    assert entry.params["client_assertion"] == "***" and entry.status == 200


@pytest.mark.parametrize("inprocess", TRANSPORTS)
def test_auth_code_flow_with_pkce_and_nonce(fake_sts: StsSandbox, inprocess: bool) -> None:
    app = fake_sts.msal_confidential("web", inprocess=inprocess)
    flow = app.initiate_auth_code_flow(["User.Read"], redirect_uri=REDIRECT, response_mode="form_post",
                                       login_hint="bob@contoso.com")
    auth_response = fake_sts.sign_in(flow["auth_uri"], REDIRECT, "bob@contoso.com", inprocess=inprocess)
    assert auth_response["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    session = fake_sts.http_client(inprocess=inprocess)
    id_claims = verify(_token(result, "id_token"), session, fake_sts.authority(), fake_sts.web.client_id)
    # MSAL sent sha256(nonce) and checked it came back; so do we, from the verified token.
    assert id_claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()
    assert id_claims["preferred_username"] == "bob@contoso.com"
    assert verify(_token(result), session, fake_sts.authority(), "https://graph.microsoft.com")["scp"] == "User.Read"
    [account] = app.get_accounts()
    assert account["username"] == "bob@contoso.com"
    assert account["home_account_id"] == f"{fake_sts.user('bob@contoso.com').oid}.{fake_sts.tenant_id}"
    # The code is single-use: the journal shows one redemption and the authorize steps.
    assert [e.grant_type for e in fake_sts.journal.entries("token")] == ["authorization_code"]
    assert fake_sts.journal.attempts("authorize") >= 2


@pytest.mark.parametrize("inprocess", TRANSPORTS)
def test_silent_refresh_after_the_access_token_expires(fake_sts: StsSandbox, inprocess: bool) -> None:
    fake_sts.configure(access_token_lifetime=300)  # MSAL counts <300 s left as expired
    app = fake_sts.msal_public(inprocess=inprocess)
    first = app.acquire_token_by_username_password("alice@contoso.com", fake_sts.password, ["User.Read"])
    [account] = app.get_accounts()
    again = app.acquire_token_silent(["User.Read"], account)
    assert again is not None and again["token_source"] == "identity_provider"
    assert _token(again) != _token(first)
    grants = [e.grant_type for e in fake_sts.journal.entries("token")]
    assert grants == ["password", "refresh_token"]
    # Refresh tokens rotate: the response carried a new one, which MSAL stored.
    assert again["refresh_token"] != first["refresh_token"]
    verify(_token(again), fake_sts.http_client(inprocess=inprocess), fake_sts.authority(),
           "https://graph.microsoft.com")


@pytest.mark.parametrize("inprocess", TRANSPORTS)
def test_device_flow_approved_from_another_thread(fake_sts: StsSandbox, inprocess: bool) -> None:
    app = fake_sts.msal_public(inprocess=inprocess)
    flow = app.initiate_device_flow(["User.Read"])
    assert flow["verification_uri"].startswith(fake_sts.url) and len(flow["user_code"]) == 9
    pages: list[str] = []
    approver = threading.Thread(target=lambda: pages.append(fake_sts.approve_device_code(flow, inprocess=inprocess)))
    approver.start()
    result = app.acquire_token_by_device_flow(flow)
    approver.join(timeout=10)
    assert pages == ["You have signed in"]
    claims = verify(_token(result, "id_token"), fake_sts.http_client(inprocess=inprocess), fake_sts.authority(),
                    fake_sts.public.client_id)
    assert claims["preferred_username"] == "alice@contoso.com"
    polls = fake_sts.journal.entries("token")
    assert polls[-1].status == 200 and all(p.aadsts == 70016 for p in polls[:-1])
    # MSAL reuses the device flow's correlation id for every poll (entra-wire.md §7.10).
    assert {p.correlation_id for p in polls} == {fake_sts.journal.entries("devicecode")[0].correlation_id}


@pytest.mark.parametrize("inprocess", TRANSPORTS)
def test_username_password(fake_sts: StsSandbox, inprocess: bool) -> None:
    """Over TLS, MSAL asks ``https://localhost/common/userrealm/...`` on port 443 (it drops the
    authority's port, entra-wire.md §7.9); the helper session routes that one path to our port."""
    app = fake_sts.msal_public(inprocess=inprocess)
    result = app.acquire_token_by_username_password("alice@contoso.com", fake_sts.password, ["User.Read"])
    verify(_token(result, "id_token"), fake_sts.http_client(inprocess=inprocess), fake_sts.authority(),
           fake_sts.public.client_id)
    [token] = fake_sts.journal.entries("token")
    assert token.params["password"] == "***"
    # The lookup names no tenant or client, so it is journaled in the default sandbox; MSAL sends it
    # with the token request's correlation id.
    [realm] = fake_sts.default_journal.entries("userrealm", correlation_id=token.correlation_id)
    assert realm.status == 200 and realm.path == "/common/userrealm/alice@contoso.com"


@pytest.mark.parametrize("inprocess", TRANSPORTS)
def test_on_behalf_of(fake_sts: StsSandbox, inprocess: bool) -> None:
    api_scope = f"api://{fake_sts.api.client_id}/access_as_user"
    user = fake_sts.msal_public(inprocess=inprocess).acquire_token_by_username_password(
        "alice@contoso.com", fake_sts.password, [api_scope])
    incoming = _token(user)
    session = fake_sts.http_client(inprocess=inprocess)
    assert verify(incoming, session, fake_sts.authority(), fake_sts.api.client_id)["scp"] == "access_as_user"
    middle_tier = fake_sts.msal_confidential("api", inprocess=inprocess)
    result = middle_tier.acquire_token_on_behalf_of(incoming, ["https://graph.microsoft.com/User.Read"])
    claims = verify(_token(result), session, fake_sts.authority(), "https://graph.microsoft.com")
    assert claims["upn"] == "alice@contoso.com" and claims["appid"] == fake_sts.api.client_id
    assert fake_sts.journal.entries("token")[-1].grant_type == "urn:ietf:params:oauth:grant-type:jwt-bearer"


def test_msal_caches_an_error_per_app(fake_sts: StsSandbox) -> None:
    """MSAL Python answers an identical request after a 400 from its own cache for 60 s
    (entra-wire.md §7.7): the second call never reaches fakests. Build a fresh app per attempt."""
    fake_sts.sandbox.directory.apps[fake_sts.daemon.client_id].secrets.clear()
    app = msal.ConfidentialClientApplication(
        fake_sts.daemon.client_id, client_credential="wrong", authority=fake_sts.authority(),
        http_client=fake_sts.http_client(), instance_discovery=False)
    for _ in range(2):
        assert app.acquire_token_for_client(["api://fakests-api/.default"])["error_codes"] == [7000215]
    # 401 is not cached by MSAL, so both reached fakests.
    assert fake_sts.journal.attempts("token") == 2
