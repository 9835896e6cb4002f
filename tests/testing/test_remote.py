"""The fixture's remote mode (``FAKESTS_URL``): the same handle over the admin API, as in docker-compose."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msal
import pytest

from fakests import FakeSTS
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
