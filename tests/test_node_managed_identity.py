"""Managed identity with unmodified Node clients: @azure/msal-node 7.2.1's ``ManagedIdentityApplication`` and
@azure/identity 4.14.1's ``ManagedIdentityCredential``, configured only by the environment (IMDS through
``AZURE_POD_IDENTITY_AUTHORITY_HOST``, App Service through ``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``...).

``tests/node/identity.mjs`` gets one token and prints it; the test verifies it against fakests' JWKS and
reads from the journal what the client asked. Needs ``npm ci --prefix tests/node`` (CI runs it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fakests.testing.sandbox import StsSandbox
from tests.jwks import verify

NODE_DIR = Path(__file__).parent / "node"
VAULT = "https://vault.azure.net"


def run(fake_sts: StsSandbox, library: str, resource: str, client_id: str | None = None) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@azure" / "msal-node").is_dir():
        pytest.fail("needs node and `npm ci --prefix tests/node`")
    done = subprocess.run([node, "identity.mjs", library, resource, *([client_id] if client_id else [])],
                          cwd=NODE_DIR, capture_output=True, text=True, timeout=120, env=dict(os.environ), check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stderr
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
@pytest.mark.parametrize("source", ["imds", "app_service", "azure_ml", "cloud_shell"])
def test_system_assigned(fake_sts: StsSandbox, library: str, source: str) -> None:
    with fake_sts.managed_identity(source):
        result = run(fake_sts, library, VAULT)
    assert result["ok"], result
    claims = verify(result["token"], fake_sts.http_client(), fake_sts.authority(), VAULT)
    assert claims["appid"] == fake_sts.system_identity.client_id and claims["idtyp"] == "app"
    entries = fake_sts.journal.entries(source)
    assert [e.status for e in entries] == [200]


@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
def test_user_assigned_over_imds(fake_sts: StsSandbox, library: str) -> None:
    user = fake_sts.user_identity
    with fake_sts.managed_identity("imds"):
        result = run(fake_sts, library, "api://fakests-api", user.client_id)
    assert result["ok"], result
    claims = verify(result["token"], fake_sts.http_client(), fake_sts.authority(), fake_sts.api.client_id)
    assert claims["azp"] == user.client_id and claims["roles"] == ["Data.Read", "Data.Write"]
    [entry] = fake_sts.journal.entries("imds")
    assert entry.params["client_id"] == user.client_id and entry.params["api-version"] == "2018-02-01"


@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
def test_imds_500_once_is_retried(fake_sts: StsSandbox, library: str) -> None:
    """msal-node's IMDS retry policy (since 3.5) retries a 5xx; @azure/identity goes through it."""
    fake_sts.fail("imds", status=500, times=1)
    with fake_sts.managed_identity("imds"):
        result = run(fake_sts, library, VAULT)
    assert result["ok"], result
    assert [e.status for e in fake_sts.journal.entries("imds")] == [500, 200]


@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
def test_identity_not_found(fake_sts: StsSandbox, library: str) -> None:
    fake_sts.use_scenario("managed-identity-not-assigned")
    with fake_sts.managed_identity("app_service"):
        result = run(fake_sts, library, VAULT)
    assert not result["ok"] and "Identity not found" in result["message"], result
    assert [e.status for e in fake_sts.journal.entries("app_service")] == [400]
