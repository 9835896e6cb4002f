"""``fake_sts.intercept()``: an app written the way production apps are, tested unmodified, in-process.

The app's code below never mentions fakests: its authority is ``https://login.microsoftonline.com/<its
tenant>``, its ids are its own, MSAL gets no ``http_client`` and keeps instance discovery, azure-identity
is configured by ``AZURE_*`` variables alone. The test adds those ids to its sandbox and intercepts; the
tokens carry Entra's own issuer, verify against the keys the app's metadata URL names, and a scripted
AADSTS error reaches the app with its correlation id, while other tests with the same ids stay apart.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import jwt
import msal
import pytest
import requests
from azure.identity import ClientSecretCredential, DefaultAzureCredential
from requests.adapters import HTTPAdapter

from fakests import App, StsSandbox
from fakests.state.directory import Secret

# The app's production configuration (what a config file or Key Vault would hold).
from .conftest import API_SCOPE, APP_CLIENT_ID, APP_DOMAIN, APP_SECRET, APP_TENANT


# --- the app under test: production code, unmodified -------------------------------------------------------
def app_token_with_msal() -> dict[str, Any]:
    app = msal.ConfidentialClientApplication(APP_CLIENT_ID, client_credential=APP_SECRET,
                                             authority=f"https://login.microsoftonline.com/{APP_TENANT}")
    result: dict[str, Any] = app.acquire_token_for_client(scopes=[API_SCOPE])
    return result


def app_metadata() -> dict[str, Any]:  # what a resource server fetches
    answer: dict[str, Any] = requests.get(
        f"https://login.microsoftonline.com/{APP_TENANT}/v2.0/.well-known/openid-configuration", timeout=10).json()
    return answer


# --- the tests ------------------------------------------------------------------------------------------------
def _verified(token: str) -> dict[str, Any]:
    """The token checked the way a resource server checks it: keys from the metadata's jwks_uri."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    metadata = app_metadata()
    keys = requests.get(metadata["jwks_uri"], timeout=10).json()["keys"]
    key = jwt.PyJWK(next(k for k in keys if k["kid"] == header["kid"])).key
    verified: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256"], audience=claims["aud"])
    return verified


def test_an_unmodified_msal_app_gets_a_token_with_entras_issuer(app_ids: StsSandbox) -> None:
    with app_ids.intercept() as active:
        result = app_token_with_msal()
        assert "access_token" in result, result
        claims = _verified(result["access_token"])
        assert app_metadata()["issuer"] == f"https://login.microsoftonline.com/{APP_TENANT}/v2.0"
    assert claims["tid"] == APP_TENANT and claims["appid"] == APP_CLIENT_ID  # Graph tokens are v1
    assert claims["iss"] == f"https://sts.windows.net/{APP_TENANT}/"
    assert active.requests >= 3  # the token, the metadata, the keys: answered here, never on the network
    token_requests = app_ids.journal.entries("token")
    assert [(e.client_id, e.status) for e in token_requests] == [(APP_CLIENT_ID, 200)]
    assert HTTPAdapter.send.__name__ == "send"  # the wrapper stays, inert outside the block


def test_a_scripted_error_reaches_the_app_with_its_correlation_id(app_ids: StsSandbox) -> None:
    # A 4xx comes back to MSAL Python's caller as a dict (a 5xx would raise MsalServiceError).
    app_ids.fail("token", aadsts=7000222, times=1)  # the client secret expired
    with app_ids.intercept():
        first = app_token_with_msal()
        second = app_token_with_msal()
    assert first.get("error") == "invalid_client" and 7000222 in first["error_codes"], first
    entry = app_ids.journal.entries("token")[0]
    assert first["correlation_id"] == entry.correlation_id and entry.status == 401
    assert "access_token" in second


def test_azure_identity_from_its_environment_and_with_its_own_arguments(app_ids: StsSandbox,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AZURE_TENANT_ID", APP_TENANT), ("AZURE_CLIENT_ID", APP_CLIENT_ID),
                        ("AZURE_CLIENT_SECRET", APP_SECRET)):
        monkeypatch.setenv(name, value)
    with app_ids.intercept():
        from_env = DefaultAzureCredential().get_token(API_SCOPE)
        explicit = ClientSecretCredential(APP_TENANT, APP_CLIENT_ID, APP_SECRET).get_token(API_SCOPE)
    for token in (from_env.token, explicit.token):
        assert jwt.decode(token, options={"verify_signature": False})["appid"] == APP_CLIENT_ID


def test_httpx_sync_and_async_are_intercepted_and_other_hosts_are_not(app_ids: StsSandbox) -> None:
    url = f"https://login.microsoftonline.com/{APP_DOMAIN}/v2.0/.well-known/openid-configuration"

    async def fetch() -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            answer: dict[str, Any] = (await client.get(url)).json()
            return answer

    with app_ids.intercept() as active:
        assert httpx.get(url).json()["issuer"] == f"https://login.microsoftonline.com/{APP_TENANT}/v2.0"
        assert asyncio.run(fetch())["token_endpoint"].startswith(f"https://login.microsoftonline.com/{APP_TENANT}/")
        assert not active.takes("https://graph.microsoft.com/v1.0/me")  # other hosts go where they go
        assert not active.takes("http://login.microsoftonline.com/")  # https only, as Entra
    assert active.requests == 2


def test_the_fixture_intercepts_for_the_whole_test(fake_sts_intercepted: StsSandbox) -> None:
    fake_sts_intercepted.add_tenant(APP_TENANT, APP_DOMAIN)
    fake_sts_intercepted.add_app(App(client_id=APP_CLIENT_ID, display_name="the app", tenant_id=APP_TENANT,
                                     secrets=[Secret(APP_SECRET)]))
    assert "access_token" in app_token_with_msal()
    assert [e.client_id for e in fake_sts_intercepted.journal.entries("token")] == [APP_CLIENT_ID]


def test_two_sandboxes_with_the_same_fixed_ids_stay_apart(app_ids: StsSandbox, other_app_ids: StsSandbox) -> None:
    """Interception routes by test, not by tenant: another sandbox with the same ids never sees this one's
    rules or requests."""
    other = other_app_ids
    app_ids.fail("token", aadsts=7000222, times=5)
    with other.intercept():
        assert "access_token" in app_token_with_msal()
    with app_ids.intercept():
        assert app_token_with_msal().get("error") == "invalid_client"
    assert [e.status for e in other.journal.entries("token")] == [200]
    assert [e.status for e in app_ids.journal.entries("token")] == [401]
    assert uuid.UUID(APP_TENANT)


def test_httpx_sees_transport_faults_as_its_own_exceptions(app_ids: StsSandbox) -> None:
    """A scripted fault raises what httpx raises over a socket, never an exception of another library."""
    url = f"https://login.microsoftonline.com/{APP_TENANT}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": APP_CLIENT_ID, "client_secret": APP_SECRET,
            "scope": API_SCOPE}

    async def post_async() -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.post(url, data=form)

    with app_ids.intercept():
        app_ids.fail("token", fault="reset", times=1)
        with pytest.raises(httpx.ReadError):
            httpx.post(url, data=form)
        app_ids.fail("token", fault="close_mid_body", times=1)
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            asyncio.run(post_async())
        app_ids.fail("token", fault="hang", hang_seconds=30, times=1)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url, data=form, timeout=httpx.Timeout(5, read=0.2))
        assert httpx.post(url, data=form).json()["token_type"] == "Bearer"
    assert [(e.fault, e.status) for e in app_ids.journal.entries("token")] == [
        ("reset", 0), ("close_mid_body", 200), ("hang", 0), (None, 200)]
