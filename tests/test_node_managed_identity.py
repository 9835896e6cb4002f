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



# --- retry policies, measured in real time (short waits only: a Node process has no virtual clock) ------------
# msal-node 7.2.1 (lib/msal-node.cjs): IMDS retries 404/408/410/429/5xx three times after 1, 2, 4 s (a 410 seven
# times, 10 s apart) and never reads Retry-After (``ImdsRetryPolicy.pauseForRetry`` has no such argument). The
# other sources' ``DefaultManagedIdentityRetryPolicy`` means to wait ``max(1 s, Retry-After)``, but it looks the
# header up as ``headers["Retry-After"]`` in a dictionary built from fetch's ``Headers``, whose names are lower
# case (``getHeaderDict``): it never finds it and always waits 1 s. @azure/identity 4.14.1 answers Retry-After.
RETRY_AFTER = 3


def intervals(fake_sts: StsSandbox, source: str) -> list[float]:
    return fake_sts.journal.intervals(source)


@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
def test_imds_429_with_retry_after(fake_sts: StsSandbox, library: str) -> None:
    fake_sts.fail("imds", status=429, retry_after=RETRY_AFTER, times=1)
    with fake_sts.managed_identity("imds"):
        result = run(fake_sts, library, VAULT)
    assert result["ok"], result
    assert [e.status for e in fake_sts.journal.entries("imds")] == [429, 200]
    [waited] = intervals(fake_sts, "imds")
    if library == "msal-node":
        assert 0.95 <= waited < RETRY_AFTER - 0.5  # its exponential backoff's first step, Retry-After unread
    else:
        assert waited >= RETRY_AFTER - 0.05


@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
def test_app_service_503_with_retry_after(fake_sts: StsSandbox, library: str) -> None:
    fake_sts.fail("app_service", status=503, retry_after=RETRY_AFTER, times=1)
    with fake_sts.managed_identity("app_service"):
        result = run(fake_sts, library, VAULT)
    assert result["ok"], result
    [waited] = intervals(fake_sts, "app_service")
    if library == "msal-node":
        assert 0.95 <= waited < RETRY_AFTER - 0.5  # its 1 s minimum: the header lookup misses (above)
    else:
        assert waited >= RETRY_AFTER - 0.05


@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
def test_app_service_429_with_a_past_http_date(fake_sts: StsSandbox, library: str) -> None:
    fake_sts.fail("app_service", status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT", times=1)
    with fake_sts.managed_identity("app_service"):
        result = run(fake_sts, library, VAULT)
    assert result["ok"], result
    [waited] = intervals(fake_sts, "app_service")
    if library == "msal-node":
        assert waited >= 0.95  # the 1 s minimum
    else:
        assert waited < 0.9  # a date already past: again at once


@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
def test_imds_500_twice(fake_sts: StsSandbox, library: str) -> None:
    fake_sts.fail("imds", status=500, times=2)
    with fake_sts.managed_identity("imds"):
        result = run(fake_sts, library, VAULT)
    assert result["ok"], result
    assert [e.status for e in fake_sts.journal.entries("imds")] == [500, 500, 200]
    first, second = intervals(fake_sts, "imds")
    if library == "msal-node":
        assert 0.95 <= first < 1.9 and 1.95 <= second < 3.5  # 1 s, then 2 s
    else:
        assert first < 3 and second < 3  # azure-core's exponential backoff with jitter
