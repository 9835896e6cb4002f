"""The fixture's remote mode (``FAKESTS_URL``): the same handle over the admin API, as in docker-compose."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import msal
import pytest
import requests
from azure.identity import CredentialUnavailableError, DefaultAzureCredential, ManagedIdentityCredential

from fakests import FakeSTS, ManagedIdentity
from fakests.state.settings import Settings
from fakests.testing.remote import RemoteSandbox
from tests.jwks import verify


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSTS]:
    with FakeSTS(Settings(port=0, state_dir=tmp_path_factory.mktemp("remote"), device_code_interval=1,
                          log_requests=False)) as sts:
        yield sts


@pytest.fixture
def remote(server: FakeSTS) -> Iterator[RemoteSandbox]:
    sandbox = RemoteSandbox.create(server.url)  # fetches the CA from the server, as a container would
    yield sandbox
    sandbox.drop()
    assert server.runtime.sandboxes.get(sandbox.sandbox_id) is None


def test_remote_sandbox_is_isolated_and_real_clients_work(remote: RemoteSandbox, server: FakeSTS) -> None:
    assert Path(remote.ca_path or "").read_text() == Path(server.ca_path).read_text()
    local = server.runtime.sandboxes.get(remote.sandbox_id)
    assert local is not None and remote.tenant_id == local.home_tenant.tenant_id
    result = remote.msal_confidential("daemon").acquire_token_for_client(["api://fakests-api/.default"])
    verify(result["access_token"], remote.http_client(), remote.authority(), remote.api.client_id)
    certified = remote.msal_confidential("daemon", certificate=True).acquire_token_for_client(
        ["api://fakests-api/.default"])
    assert "access_token" in certified
    [first, second] = remote.journal.entries("token")
    assert first.status == second.status == 200 and first.client_id == remote.daemon.client_id


def test_remote_failures_journal_and_clock(remote: RemoteSandbox) -> None:
    rule = remote.fail("token", aadsts=70012, times=1)
    with pytest.raises(msal.exceptions.MsalServiceError):
        remote.msal_confidential().acquire_token_for_client(["api://fakests-api/.default"])
    assert "access_token" in remote.msal_confidential().acquire_token_for_client(["api://fakests-api/.default"])
    assert (rule.matched, rule.fired) == (2, 1)
    assert [e.aadsts for e in remote.journal.entries("token")] == [70012, None]
    remote.clear_scenarios()
    with remote.outage("token", seconds=30):
        remote.advance(31)  # the window is over on the sandbox clock
        assert "access_token" in remote.msal_confidential().acquire_token_for_client(["api://fakests-api/.default"])


def test_remote_scenario_from_the_library_and_sign_in(remote: RemoteSandbox) -> None:
    remote.use_scenario("msa-transient-70012")
    assert [r["rule"] for r in remote.scenarios] == ["msa-server-error"]
    app = remote.msal_confidential("web")
    flow = app.initiate_auth_code_flow(["User.Read"], redirect_uri="http://localhost:5000/getAToken",
                                       response_mode="form_post")
    response = remote.sign_in(flow["auth_uri"], "http://localhost:5000/getAToken", "bob@contoso.com")
    result = app.acquire_token_by_auth_code_flow(flow, response)
    assert result["id_token_claims"]["preferred_username"] == "bob@contoso.com"  # a work account: no match


def test_remote_configure_changes_only_this_sandbox(remote: RemoteSandbox, server: FakeSTS) -> None:
    remote.configure(access_token_lifetime=400)
    result = remote.msal_confidential().acquire_token_for_client(["api://fakests-api/.default"])
    assert result["expires_in"] == 400
    assert server.runtime.sandboxes.default.settings.access_token_lifetime == 3599


# --- managed identity through a remote sandbox ------------------------------------------------------------
ARM = "https://management.azure.com"


@pytest.fixture
def no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing but the variables a managed-identity host sets: none of a developer's AZURE_* left over."""
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE",
                 "AZURE_USERNAME", "AZURE_AUTHORITY_HOST"):
        monkeypatch.delenv(name, raising=False)


def test_remote_managed_identity_with_azure_identity(remote: RemoteSandbox, server: FakeSTS,
                                                     no_azure_env: None) -> None:
    """azure-identity's ``ManagedIdentityCredential`` (IMDS, system-assigned) and ``DefaultAzureCredential``
    against the server's managed-identity endpoints, found through the admin API alone."""
    identity = remote.system_identity
    assert identity.kind == "system" and "/virtualMachines/" in identity.resource_id
    base = remote.identity_url()
    assert base == f"http://localhost:{server.identity_url.rsplit(':', 1)[1]}/{remote.tenant_id}"
    with remote.managed_identity("imds") as env:
        assert env == {"AZURE_POD_IDENTITY_AUTHORITY_HOST": base}
        token = ManagedIdentityCredential().get_token(f"{ARM}/.default")
        chained = DefaultAzureCredential().get_token(f"{ARM}/.default")
    for access_token in (token.token, chained.token):
        claims = verify(access_token, remote.http_client(), remote.authority(), ARM)
        assert claims["appid"] == identity.client_id and claims["oid"] == identity.object_id
        assert claims["xms_mirid"] == identity.resource_id and claims["idtyp"] == "app"
    entries = remote.journal.entries("imds")
    assert [(e.status, e.client_id) for e in entries] == [(200, identity.client_id)] * 2
    assert not server.runtime.sandboxes.default.journal.entries("imds")  # the sandbox's own, not the default


def test_remote_user_assigned_identity_over_app_service(remote: RemoteSandbox, no_azure_env: None) -> None:
    user = remote.user_identity
    assert user.kind == "user" and user.client_id != remote.system_identity.client_id
    with remote.managed_identity("app_service") as env:
        assert env["IDENTITY_ENDPOINT"] == remote.identity_url("app_service")
        token = ManagedIdentityCredential(client_id=user.client_id).get_token("api://fakests-api/.default")
    claims = verify(token.token, remote.http_client(), remote.authority(), remote.api.client_id)
    assert claims["azp"] == user.client_id and claims["roles"] == ["Data.Read", "Data.Write"]
    assert claims["iss"] == f"{remote.authority()}/v2.0"  # the STS the resource validates against


def test_remote_add_identity_then_the_endpoints_run_on_it(remote: RemoteSandbox, no_azure_env: None) -> None:
    """``add_identity(..., hosted_on=True)`` over the admin API: MSAL Python's ``ManagedIdentityClient``
    (system-assigned, no selector) then gets the new identity's tokens."""
    vm = ManagedIdentity(str(uuid.uuid4()), str(uuid.uuid4()), remote.system_identity.resource_id + "-2",
                         remote.tenant_id, display_name="second vm")
    assert remote.add_identity(vm, hosted_on=True) == vm
    assert remote.system_identity == vm
    with remote.managed_identity("imds"):
        client = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(), http_client=requests.Session())
        result = client.acquire_token_for_client(resource=ARM)
    assert "access_token" in result, result
    claims = verify(result["access_token"], remote.http_client(), remote.authority(), ARM)
    assert (claims["appid"], claims["oid"], claims["xms_mirid"]) == (vm.client_id, vm.object_id, vm.resource_id)
    with pytest.raises(RuntimeError, match=r"400 .*duplicate client_id"):
        remote.add_identity(vm)


def test_remote_identity_fault_reaches_the_client(remote: RemoteSandbox, no_azure_env: None) -> None:
    """A rule armed over the admin API on the ``imds`` endpoint: IMDS's 400 "Identity not found", which
    azure-identity turns into ``CredentialUnavailableError`` at once (``DefaultAzureCredential`` moves on)."""
    rule = remote.fail("imds", status=400, times=1)
    with remote.managed_identity("imds"), pytest.raises(CredentialUnavailableError, match="Identity not found"):
        ManagedIdentityCredential().get_token(f"{ARM}/.default")
    assert rule.fired == 1
    [entry] = remote.journal.entries("imds")
    assert (entry.status, entry.error) == (400, "invalid_request")


def test_remote_workload_identity(remote: RemoteSandbox, server: FakeSTS) -> None:
    """The server mints the service-account token (it holds the cluster's key); azure-identity exchanges it."""
    from azure.identity import WorkloadIdentityCredential

    with remote.workload_identity() as env:
        assert env["AZURE_AUTHORITY_HOST"] == remote.url
        credential = WorkloadIdentityCredential(authority=remote.url, disable_instance_discovery=True,
                                                connection_verify=remote.ca_path)
        token = credential.get_token("api://fakests-api/.default").token
    claims = verify(token, remote.http_client(), remote.authority(), remote.api.client_id)
    assert claims["azp"] == remote.daemon.client_id and claims["azpacr"] == "2"
    [entry] = remote.journal.entries("token")
    assert entry.status == 200 and entry.params["client_assertion"] == "***"
