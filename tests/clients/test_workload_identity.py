"""Workload identity federation with unmodified clients: a pod's service-account token exchanged at /token.

``fake_sts.workload_identity()`` does what the AKS webhook does (a projected token in a file, ``AZURE_TENANT_ID``,
``AZURE_CLIENT_ID``, ``AZURE_FEDERATED_TOKEN_FILE``, ``AZURE_AUTHORITY_HOST``); azure-identity 1.27's
``WorkloadIdentityCredential`` and ``DefaultAzureCredential`` read nothing else, and ``intercept()`` answers
Entra's own host in-process, so the app keeps its production authority. MSAL Python takes the file's contents as
``client_credential={"client_assertion": ...}``. Every token is verified against the STS's JWKS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DefaultAzureCredential, WorkloadIdentityCredential

from fakests.testing.sandbox import StsSandbox
from tests.jwks import verify

GRAPH = "https://graph.microsoft.com"
ENTRA = "https://login.microsoftonline.com"


@pytest.fixture(autouse=True)
def _no_other_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Nothing from the machine's environment that would steer DefaultAzureCredential elsewhere."""
    for name in ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT",
                 "MSI_SECRET", "IMDS_ENDPOINT", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH"):
        monkeypatch.delenv(name, raising=False)
    yield


def _verified(fake_sts: StsSandbox, token: str, audience: str = GRAPH, *,
              intercepted: bool = False) -> dict[str, object]:
    """Verified against the JWKS of the authority the client used: Entra's host (inside ``intercept``, where
    plain ``requests`` reaches this sandbox) or fakests' own."""
    if intercepted:
        session = requests.Session()
        session.trust_env = False
        claims = verify(token, session, f"{ENTRA}/{fake_sts.tenant_id}", audience)
    else:
        claims = verify(token, fake_sts.http_client(), fake_sts.authority(), audience)
    v1 = claims["ver"] == "1.0"
    assert claims["appid" if v1 else "azp"] == fake_sts.daemon.client_id
    assert claims["appidacr" if v1 else "azpacr"] == "2"  # a client assertion, not a secret
    return claims


def _exchanged(fake_sts: StsSandbox) -> list[int]:
    """The statuses of the token requests that carried a jwt-bearer client assertion."""
    entries = fake_sts.journal.entries("token")
    assert all(e.params.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
               for e in entries)
    return [e.status for e in entries]


def test_workload_identity_credential_from_the_environment_alone(fake_sts: StsSandbox) -> None:
    """Inside ``intercept()``, AZURE_AUTHORITY_HOST is Entra's own host: the production configuration."""
    with fake_sts.intercept(), fake_sts.workload_identity() as env:
        assert env["AZURE_AUTHORITY_HOST"] == ENTRA
        token = WorkloadIdentityCredential().get_token(f"{GRAPH}/.default")
        _verified(fake_sts, token.token, intercepted=True)
    assert env["AZURE_CLIENT_ID"] == fake_sts.daemon.client_id
    [entry] = fake_sts.journal.entries("token")
    assert entry.status == 200 and entry.params["grant_type"] == "client_credentials"
    assert entry.client_id == fake_sts.daemon.client_id


def test_default_azure_credential_picks_workload_identity(fake_sts: StsSandbox) -> None:
    """With the four variables set, DefaultAzureCredential's chain reaches WorkloadIdentityCredential before
    managed identity: no IMDS probe, one token request."""
    with fake_sts.intercept(), fake_sts.workload_identity():
        credential = DefaultAzureCredential(exclude_cli_credential=True, exclude_developer_cli_credential=True,
                                            exclude_powershell_credential=True)
        token = credential.get_token("api://fakests-api/.default")
        claims = _verified(fake_sts, token.token, fake_sts.api.client_id, intercepted=True)
    assert claims["roles"] == ["Data.Read"]
    assert _exchanged(fake_sts) == [200] and fake_sts.journal.entries("imds") == []


def test_async_workload_identity_credential(fake_sts: StsSandbox) -> None:
    """azure-identity's aio credential goes through aiohttp, which ``intercept()`` answers too."""
    import asyncio

    from azure.identity.aio import WorkloadIdentityCredential as AsyncWorkloadIdentityCredential

    async def main() -> str:
        async with AsyncWorkloadIdentityCredential() as credential:
            return (await credential.get_token(f"{GRAPH}/.default")).token

    with fake_sts.intercept(), fake_sts.workload_identity():
        token = asyncio.run(main())
        _verified(fake_sts, token, intercepted=True)
    assert _exchanged(fake_sts) == [200]


def test_a_user_assigned_identity_as_the_workload_identity(fake_sts: StsSandbox) -> None:
    """AKS's own walkthrough federates a user-assigned managed identity, not an app: AZURE_CLIENT_ID names the
    identity, and the token is a managed-identity token (its principal id as ``oid``, its ARM id as
    ``xms_mirid``, its app roles)."""
    identity = fake_sts.user_identity
    with fake_sts.intercept(), fake_sts.workload_identity(identity.client_id):
        credential = DefaultAzureCredential(exclude_cli_credential=True, exclude_developer_cli_credential=True,
                                            exclude_powershell_credential=True)
        token = credential.get_token("api://fakests-api/.default")
        session = requests.Session()
        session.trust_env = False
        claims = verify(token.token, session, f"{ENTRA}/{fake_sts.tenant_id}", fake_sts.api.client_id)
    assert claims["azp"] == identity.client_id and claims["oid"] == identity.object_id == claims["sub"]
    assert claims["xms_mirid"] == identity.resource_id and "xms_az_rid" not in claims
    assert claims["roles"] == ["Data.Read", "Data.Write"] and claims["idtyp"] == "app"
    [entry] = fake_sts.journal.entries("token")
    assert entry.status == 200 and entry.client_id == identity.client_id


def test_workload_identity_credential_over_tls(fake_sts: StsSandbox) -> None:
    """Tenant, client and token file from the environment; fakests' TLS origin and CA given explicitly."""
    with fake_sts.workload_identity() as env:
        assert env["AZURE_AUTHORITY_HOST"] == fake_sts.url
        credential = WorkloadIdentityCredential(**fake_sts.azure_kwargs(inprocess=False))
        token = credential.get_token(f"{GRAPH}/.default")
    _verified(fake_sts, token.token)


def test_msal_python_with_the_token_file_as_client_assertion(fake_sts: StsSandbox) -> None:
    """MSAL's recommended form: a callable, so each request reads the file the kubelet keeps fresh."""
    with fake_sts.workload_identity() as env:
        token_file = Path(env["AZURE_FEDERATED_TOKEN_FILE"])
        app = msal.ConfidentialClientApplication(
            env["AZURE_CLIENT_ID"], client_credential={"client_assertion": token_file.read_text},
            authority=f"{env['AZURE_AUTHORITY_HOST']}/{env['AZURE_TENANT_ID']}", instance_discovery=False,
            http_client=fake_sts.http_client(inprocess=False))
        result = app.acquire_token_for_client([f"{GRAPH}/.default"])
    assert "access_token" in result, result
    _verified(fake_sts, result["access_token"])


# --- failures: what each client raises ------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "code"), [
    ({"service_account": "other"}, "AADSTS700213"),
    ({"namespace": "kube-system"}, "AADSTS700213"),
    ({"audience": "api://AzureADTokenExchangeChina"}, "AADSTS700212"),
    ({"cluster": "elsewhere"}, "AADSTS700211"),
])
def test_no_matching_federated_credential(fake_sts: StsSandbox, kwargs: dict[str, str], code: str) -> None:
    token = fake_sts.service_account_token(**kwargs)
    with fake_sts.intercept(), fake_sts.workload_identity(token=token), \
            pytest.raises(ClientAuthenticationError, match=code) as raised:
        WorkloadIdentityCredential().get_token(f"{GRAPH}/.default")
    assert "No matching federated identity record found for presented assertion" in str(raised.value)
    assert _exchanged(fake_sts) == [401]  # invalid_client: not retried


def test_expired_token_file(fake_sts: StsSandbox) -> None:
    """The kubelet refreshes the file; a pod whose file went stale gets AADSTS700024."""
    with fake_sts.intercept(), fake_sts.workload_identity(lifetime=600):
        fake_sts.advance(900)
        with pytest.raises(ClientAuthenticationError, match="AADSTS700024"):
            WorkloadIdentityCredential().get_token(f"{GRAPH}/.default")
    assert [e.aadsts for e in fake_sts.journal.entries("token")] == [700024]


def test_msal_python_with_an_unknown_issuer(fake_sts: StsSandbox) -> None:
    token = fake_sts.service_account_token(cluster="elsewhere")
    app = msal.ConfidentialClientApplication(
        fake_sts.daemon.client_id, client_credential={"client_assertion": lambda: token},
        authority=fake_sts.authority(), instance_discovery=False, http_client=fake_sts.http_client())
    result = app.acquire_token_for_client([f"{GRAPH}/.default"])
    assert result["error"] == "invalid_client" and result["error_codes"] == [700211], result
    assert "'" + fake_sts.kubernetes_issuer("elsewhere") + "'" in result["error_description"]


def test_a_503_on_token_is_retried(fake_sts: StsSandbox) -> None:
    """azure-core retries a 503 with Retry-After; the same file's token goes again and succeeds."""
    fake_sts.fail("token", aadsts=90033, shape="temporarily_unavailable", retry_after=1, times=1)
    with fake_sts.intercept(), fake_sts.workload_identity(), fake_sts.virtual_time():
        token = WorkloadIdentityCredential().get_token(f"{GRAPH}/.default")
        _verified(fake_sts, token.token, intercepted=True)
    assert _exchanged(fake_sts) == [503, 200]


def test_a_503_that_persists_surfaces(fake_sts: StsSandbox) -> None:
    fake_sts.fail("token", aadsts=90033, shape="temporarily_unavailable", retry_after=0)
    with fake_sts.intercept(), fake_sts.workload_identity(), fake_sts.virtual_time(), \
            pytest.raises(ClientAuthenticationError, match="AADSTS90033"):
        WorkloadIdentityCredential().get_token(f"{GRAPH}/.default")
    assert set(_exchanged(fake_sts)) == {503} and len(_exchanged(fake_sts)) > 1
