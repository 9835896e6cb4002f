"""``examples/imds_app``: code on an Azure VM, unmodified, against fakests' IMDS at its own address.

In pytest, ``fake_sts.intercept()`` answers ``http://169.254.169.254`` from the test's sandbox (this file);
in a container engine, docker-compose.yml's ``imds`` profile gives fakests that address on a network of its
own (``.ci/containers.sh``, asserted by ``tests/server/test_container_engine.py``). Either way the app sets
nothing: no ``AZURE_*`` variable, no endpoint.
"""

from __future__ import annotations

import pytest

from examples.imds_app import app as imds_app
from fakests import StsSandbox
from fakests.sts.identity import SOURCE_VARIABLES
from tests.jwks import verify


@pytest.fixture
def vm(fake_sts: StsSandbox, monkeypatch: pytest.MonkeyPatch) -> StsSandbox:
    """This test's sandbox, with the process's environment as on a VM: no variable names another source."""
    for name in (*SOURCE_VARIABLES, "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET",
                 "AZURE_FEDERATED_TOKEN_FILE", "AZURE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    return fake_sts


def test_every_client_of_the_app_gets_the_vms_token(vm: StsSandbox) -> None:
    with vm.intercept():
        tokens = [imds_app.managed_identity_token(), imds_app.default_credential_token(), imds_app.msal_token()]
    identity = vm.system_identity
    for token in tokens:
        claims = verify(token, vm.http_client(), vm.authority(), imds_app.RESOURCE)
        assert (claims["appid"], claims["xms_mirid"]) == (identity.client_id, identity.resource_id)
    # DefaultAzureCredential probes first, without the Metadata header: IMDS's 400 says it is there.
    entries = vm.journal.entries("imds")
    assert [e.status for e in entries] == [200, 400, 200, 200]
    assert {e.path for e in entries} == {"/metadata/identity/oauth2/token"}  # IMDS's own path, no tenant
    assert entries[1].error == "bad_request_102"  # "Required metadata header not specified"


def test_the_app_rides_out_imds_throttling(vm: StsSandbox) -> None:
    """429 with Retry-After, once: azure-identity sleeps what IMDS asked (virtual seconds), then gets its token."""
    rule = vm.fail("imds", status=429, retry_after=7, times=1)
    with vm.intercept(), vm.virtual_time() as clock:
        token = imds_app.managed_identity_token()
        verify(token, vm.http_client(), vm.authority(), imds_app.RESOURCE)
    assert [e.status for e in vm.journal.entries("imds")] == [429, 200]
    assert vm.journal.waited("imds") == [(7.0, 7.0)] and clock.slept == [7.0]
    assert rule.fired == 1
