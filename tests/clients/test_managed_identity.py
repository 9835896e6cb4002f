"""Unmodified managed-identity clients (azure-identity 1.27, MSAL Python 1.39) against fakests' managed-identity
endpoints, configured only by the environment variables Azure sets; faults measured in virtual time.

Each test runs as code on Azure compute (``fake_sts.managed_identity(source)``) whose identity endpoint is
its sandbox's, on the session's plain-HTTP managed-identity server. Every token is verified against the
JWKS of the STS that issued it.
"""

from __future__ import annotations

import time
from typing import Any

import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError, DefaultAzureCredential, ManagedIdentityCredential

from fakests.sts.identity import identity_header
from fakests.testing.sandbox import StsSandbox
from tests.jwks import verify

ARM = "https://management.azure.com"
SOURCES = ["imds", "app_service", "azure_ml", "cloud_shell"]


def _verified(fake_sts: StsSandbox, token: str, audience: str) -> dict[str, Any]:
    return verify(token, fake_sts.http_client(), fake_sts.authority(), audience)


@pytest.mark.parametrize("source", SOURCES)
def test_system_assigned_with_azure_identity(fake_sts: StsSandbox, source: str) -> None:
    with fake_sts.managed_identity(source):
        token = ManagedIdentityCredential().get_token(f"{ARM}/.default")
    claims = _verified(fake_sts, token.token, ARM)
    identity = fake_sts.system_identity
    # The claims Entra puts in a managed identity's token (v1, as ARM takes them).
    assert claims["appid"] == identity.client_id and claims["appidacr"] == "2" and claims["idtyp"] == "app"
    assert claims["oid"] == claims["sub"] == identity.object_id
    assert claims["xms_mirid"] == identity.resource_id and "/virtualMachines/" in identity.resource_id
    assert claims["iss"] == claims["idp"] == f"https://sts.windows.net/{fake_sts.tenant_id}/"
    assert token.expires_on == claims["exp"]
    [entry] = fake_sts.journal.entries(source)
    assert entry.status == 200 and entry.client_id == identity.client_id


@pytest.mark.parametrize("source", ["imds", "app_service"])
def test_user_assigned_with_roles(fake_sts: StsSandbox, source: str) -> None:
    user = fake_sts.user_identity
    with fake_sts.managed_identity(source):
        token = ManagedIdentityCredential(client_id=user.client_id).get_token("api://fakests-api/.default")
    claims = _verified(fake_sts, token.token, fake_sts.api.client_id)  # a v2 resource: aud is its client id
    assert claims["azp"] == user.client_id and claims["azpacr"] == "2"
    assert claims["roles"] == ["Data.Read", "Data.Write"]  # its app-role assignments
    assert claims["xms_mirid"] == user.resource_id
    assert claims["xms_az_rid"] == fake_sts.system_identity.resource_id  # where it ran
    assert claims["iss"] == f"{fake_sts.authority()}/v2.0"


@pytest.mark.parametrize("selector", ["client_id", "object_id", "resource_id"])
def test_msal_managed_identity_client_selects_user_assigned_identities(fake_sts: StsSandbox, selector: str) -> None:
    user = fake_sts.user_identity
    value = {"client_id": user.client_id, "object_id": user.object_id, "resource_id": user.resource_id}[selector]
    with fake_sts.managed_identity("imds"):
        client = msal.ManagedIdentityClient(msal.UserAssignedManagedIdentity(**{selector: value}),
                                            http_client=requests.Session())
        result = client.acquire_token_for_client(resource="https://vault.azure.net")
    assert "access_token" in result, result
    assert _verified(fake_sts, result["access_token"], "https://vault.azure.net")["oid"] == user.object_id
    [entry] = fake_sts.journal.entries("imds")
    assert entry.params[{"resource_id": "msi_res_id"}.get(selector, selector)] == value


def test_default_azure_credential_from_the_environment_alone(fake_sts: StsSandbox,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``DefaultAzureCredential`` with nothing but Azure's variables: App Service's identity endpoint, and
    ``AZURE_CLIENT_ID`` naming the user-assigned identity."""
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    with fake_sts.managed_identity("app_service", client_id=fake_sts.user_identity.client_id):
        token = DefaultAzureCredential().get_token(f"{ARM}/.default")
    assert _verified(fake_sts, token.token, ARM)["appid"] == fake_sts.user_identity.client_id
    [entry] = fake_sts.journal.entries("app_service")
    assert entry.params["client_id"] == fake_sts.user_identity.client_id


def test_imds_wire_rules(fake_sts: StsSandbox) -> None:
    """What IMDS asks of a request, checked with plain HTTP: ``Metadata: true`` (DefaultAzureCredential's
    probe sends none and takes the 400 as "IMDS is there"), GET, string-typed JSON."""
    url = fake_sts.identity_url("imds") + "/metadata/identity/oauth2/token"
    params = {"api-version": "2018-02-01", "resource": ARM}
    probe = requests.get(url, params=params, timeout=5)
    assert probe.status_code == 400
    assert probe.json() == {"error": "bad_request_102", "error_description": "Required metadata header not specified"}
    assert requests.post(url, params=params, headers={"Metadata": "true"}, timeout=5).status_code == 405
    ok = requests.get(url, params=params, headers={"Metadata": "true"}, timeout=5)
    assert ok.status_code == 200 and all(isinstance(v, str) for v in ok.json().values())
    assert set(ok.json()) >= {"access_token", "expires_in", "expires_on", "not_before", "resource", "token_type"}
    unknown = requests.get(url, params={**params, "client_id": "00000000-0000-0000-0000-00000000dead"},
                           headers={"Metadata": "true"}, timeout=5)
    assert (unknown.status_code, unknown.json()["error_description"]) == (400, "Identity not found")
    bad = requests.get(url, params={**params, "resource": "https://nothing.example"}, headers={"Metadata": "true"},
                       timeout=5)
    assert bad.status_code == 400 and bad.json()["error_description"].startswith("AADSTS500011:")
    app_service = fake_sts.identity_url("app_service")
    wrong = requests.get(app_service, params={"api-version": "2019-08-01", "resource": ARM},
                         headers={"X-IDENTITY-HEADER": "wrong"}, timeout=5)
    assert wrong.status_code == 401 and set(wrong.json()) == {"statusCode", "message", "correlationId"}
    good = requests.get(app_service, params={"api-version": "2019-08-01", "resource": ARM},
                        headers={"X-IDENTITY-HEADER": identity_header(fake_sts.tenant_id)}, timeout=5)
    assert int(good.json()["expires_on"]) > time.time()


# --- faults, in virtual time ------------------------------------------------------------------------------
def test_imds_upgrading_then_available(fake_sts: StsSandbox) -> None:
    fake_sts.fail("imds", status=410, times=3)
    with fake_sts.managed_identity("imds"), fake_sts.virtual_time():
        token = ManagedIdentityCredential().get_token(f"{ARM}/.default")
        _verified(fake_sts, token.token, ARM)  # on the virtual clock too: it was issued 15 virtual s from now
    assert [e.status for e in fake_sts.journal.entries("imds")] == [410, 410, 410, 200]
    assert fake_sts.journal.intervals("imds") == pytest.approx([0.0, 5.0, 10.0], abs=1e-3)


@pytest.mark.parametrize(("retry_after", "waits"), [(7, [7.0, 7.0]), ("Wed, 21 Oct 2015 07:28:00 GMT", [0.0, 1.6])])
def test_imds_throttled_retry_after_seconds_and_date(fake_sts: StsSandbox, retry_after: int | str,
                                                     waits: list[float]) -> None:
    """A 429's Retry-After is slept when it is seconds; a date already past falls back to azure-core's
    backoff (0, then 1.6 s)."""
    fake_sts.fail("imds", status=429, retry_after=retry_after, times=2)
    with fake_sts.managed_identity("imds"), fake_sts.virtual_time():
        ManagedIdentityCredential().get_token(f"{ARM}/.default")
    entries = fake_sts.journal.entries("imds")
    assert [e.status for e in entries] == [429, 429, 200] and entries[0].retry_after == str(retry_after)
    assert fake_sts.journal.intervals("imds") == pytest.approx(waits, abs=1e-3)


@pytest.mark.parametrize(("status", "raised", "attempts"), [
    (400, CredentialUnavailableError, 1),  # "Identity not found": no identity assigned, try the next credential
    (403, CredentialUnavailableError, 1),  # Docker Desktop's proxy: "unreachable"
    (500, CredentialUnavailableError, 6),  # retried 5 times: 0, 1.6, 3.2, 6.4, 12.8 s
])
def test_imds_errors_azure_identity(fake_sts: StsSandbox, status: int, raised: type[Exception],
                                    attempts: int) -> None:
    fake_sts.fail("imds", status=status)
    with fake_sts.managed_identity("imds"), fake_sts.virtual_time(), pytest.raises(raised) as info:
        ManagedIdentityCredential().get_token(f"{ARM}/.default")
    assert fake_sts.journal.attempts("imds") == attempts
    if status == 403:
        assert "unreachable" in str(info.value)


@pytest.mark.parametrize(("status", "error", "asked"), [
    (410, "gone", 2),  # not retried; a 4xx without Retry-After is not cached: the second call asks again
    (500, "unknown", 1),  # not retried; replayed from MSAL's throttle cache (5xx): the second call asks nobody
    (429, "too_many_requests", 1),  # likewise for a 429 with Retry-After
])
def test_msal_python_managed_identity_under_imds_faults(fake_sts: StsSandbox, status: int, error: str,
                                                        asked: int) -> None:
    """MSAL Python's own ``ManagedIdentityClient`` (its own session, no azure-core): no retry at all; its
    throttle cache answers an identical second call for a 5xx or a 429 (README's table)."""
    fake_sts.fail("imds", status=status, retry_after=7 if status == 429 else None)
    with fake_sts.managed_identity("imds"), fake_sts.virtual_time() as clock:
        client = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(), http_client=requests.Session())
        first = client.acquire_token_for_client(resource="https://vault.azure.net")
        second = client.acquire_token_for_client(resource="https://vault.azure.net")
    assert first.get("error") == second.get("error") == error
    assert fake_sts.journal.attempts("imds") == asked and clock.slept == []


def test_an_outage_of_45_seconds_in_virtual_time(fake_sts: StsSandbox) -> None:
    """``outage(seconds=45)`` on the sandbox clock: a client that sleeps past it gets through, in virtual
    time. azure-identity's 5xx backoff (0, 1.6, 3.2, 6.4, 12.8 s: 24 s) does not reach 45 s; an app that
    follows the advice "retry after 30-60 s" once does."""
    with fake_sts.managed_identity("imds"), fake_sts.virtual_time(), fake_sts.outage("imds", seconds=45):
        with pytest.raises((CredentialUnavailableError, ClientAuthenticationError)):
            ManagedIdentityCredential().get_token(f"{ARM}/.default")
        time.sleep(30)  # the app's own wait, then one more try
        token = ManagedIdentityCredential().get_token(f"{ARM}/.default")
        _verified(fake_sts, token.token, ARM)
    statuses = [e.status for e in fake_sts.journal.entries("imds")]
    assert statuses[-1] == 200 and statuses.count(503) == 6


# --- IMDS's own address, intercepted in-process -----------------------------------------------------------
def test_intercept_answers_imds_at_its_own_address(fake_sts: StsSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """No managed-identity variable at all: the clients go to http://169.254.169.254, as on a VM, and
    ``fake_sts.intercept()`` answers there from this sandbox (requests: azure-identity, MSAL)."""
    for name in ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT",
                 "MSI_SECRET", "IMDS_ENDPOINT", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    fake_sts.fail("imds", status=410, times=1)
    with fake_sts.intercept(), fake_sts.virtual_time():
        token = ManagedIdentityCredential().get_token(f"{ARM}/.default")
        _verified(fake_sts, token.token, ARM)
        chain = DefaultAzureCredential(exclude_cli_credential=True, exclude_developer_cli_credential=True,
                                       exclude_powershell_credential=True)
        default = chain.get_token("https://vault.azure.net/.default")
        _verified(fake_sts, default.token, "https://vault.azure.net")
        client = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(), http_client=requests.Session())
        assert "access_token" in client.acquire_token_for_client(resource="https://storage.azure.com")
    entries = fake_sts.journal.entries("imds")
    assert entries[0].path == "/metadata/identity/oauth2/token" and [e.status for e in entries][:2] == [410, 200]
    # DefaultAzureCredential probed IMDS first (no Metadata header: 400), then asked for its token.
    assert [e.status for e in entries[2:4]] == [400, 200] and entries[2].aadsts is None


def test_intercept_answers_imds_for_async_azure_identity(fake_sts: StsSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential

    for name in ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)

    async def main() -> str:
        async with AsyncManagedIdentityCredential() as credential:
            return (await credential.get_token(f"{ARM}/.default")).token

    with fake_sts.intercept():
        token = asyncio.run(main())
    _verified(fake_sts, token, ARM)
    assert [e.status for e in fake_sts.journal.entries("imds")] == [200]


# --- no answer: a reset, a hang ---------------------------------------------------------------------------
def test_imds_reset_is_retried_by_azure_identity(fake_sts: StsSandbox) -> None:
    """A dropped connection on IMDS (over a real socket): azure-core retries it as it retries a 5xx, at once and
    then after 1.6 s (in virtual time); the app gets its token."""
    fake_sts.fail("imds", fault="reset", times=2)
    with fake_sts.managed_identity("imds"), fake_sts.virtual_time() as clock:
        token = ManagedIdentityCredential().get_token(f"{ARM}/.default")
        _verified(fake_sts, token.token, ARM)
    entries = fake_sts.journal.entries("imds")
    assert [e.fault for e in entries] == ["reset", "reset", None] and entries[-1].status == 200
    assert clock.slept == pytest.approx([1.6], abs=1e-3)
    assert fake_sts.journal.intervals("imds") == pytest.approx([0.0, 1.6], abs=1e-3)


def test_imds_that_accepts_and_never_answers_holds_the_probe(fake_sts: StsSandbox,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """IMDS that takes the connection and never answers: ``DefaultAzureCredential``'s probe bounds only the
    connect (``connection_timeout=1``, azure-identity ``imds.py``), not the read, so it waits as long as the hang
    (else azure-core's 300 s read timeout), then calls IMDS unavailable and the chain moves on. A VM with no
    IMDS at all (the connect itself times out) costs it 1 s."""
    for name in ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT",
                 "MSI_SECRET", "IMDS_ENDPOINT", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    hang = 3.0
    rule = fake_sts.fail("imds", fault="hang", hang_seconds=hang)
    started = time.monotonic()
    with fake_sts.intercept():
        chain = DefaultAzureCredential(exclude_cli_credential=True, exclude_developer_cli_credential=True,
                                       exclude_powershell_credential=True, exclude_environment_credential=True,
                                       exclude_workload_identity_credential=True)
        with pytest.raises(ClientAuthenticationError, match="no response from the IMDS endpoint"):
            chain.get_token(f"{ARM}/.default")
    assert time.monotonic() - started >= hang - 0.05  # the whole hang: no read timeout of its own
    assert rule.fired == 1  # the probe alone: no token request, no retry
    [entry] = fake_sts.journal.entries("imds")
    assert entry.fault == "hang" and entry.path == "/metadata/identity/oauth2/token"
