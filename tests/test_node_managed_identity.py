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


def node() -> str:
    """Node, with the clients ``npm ci --prefix tests/node`` installs (CI installs them)."""
    path = shutil.which("node")
    if path is None or not (NODE_DIR / "node_modules" / "@azure" / "msal-node").is_dir():
        pytest.fail("needs node and `npm ci --prefix tests/node`")
    return path


def run(fake_sts: StsSandbox, library: str, resource: str, client_id: str | None = None) -> dict[str, Any]:
    done = subprocess.run([node(), "identity.mjs", library, resource, *([client_id] if client_id else [])],
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
PAST_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
INF = float("inf")

# (source, rule, [(min, max) of each wait] for msal-node, the same for @azure/identity), in seconds.
RETRY_CASES = {
    # msal-node: its exponential backoff's first step, Retry-After unread. @azure/identity: Retry-After.
    "imds-429-retry-after": ("imds", {"status": 429, "retry_after": RETRY_AFTER, "times": 1},
                             [(0.95, RETRY_AFTER - 0.5)], [(RETRY_AFTER - 0.05, INF)]),
    # msal-node: its 1 s minimum, the header lookup misses (above).
    "app-service-503-retry-after": ("app_service", {"status": 503, "retry_after": RETRY_AFTER, "times": 1},
                                    [(0.95, RETRY_AFTER - 0.5)], [(RETRY_AFTER - 0.05, INF)]),
    # A date already past: msal-node's 1 s minimum; @azure/identity again at once.
    "app-service-429-past-date": ("app_service", {"status": 429, "retry_after": PAST_DATE, "times": 1},
                                  [(0.95, INF)], [(0.0, 0.9)]),
    # msal-node: 1 s, then 2 s. @azure/identity: core-rest-pipeline's exponential backoff with jitter.
    "imds-500-twice": ("imds", {"status": 500, "times": 2}, [(0.95, 1.9), (1.95, 3.5)], [(0.0, 3.0), (0.0, 3.0)]),
}


@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
@pytest.mark.parametrize("case", list(RETRY_CASES))
def test_retry_policy(fake_sts: StsSandbox, library: str, case: str) -> None:
    source, rule, msal_node_waits, azure_identity_waits = RETRY_CASES[case]
    fake_sts.fail(source, **rule)
    with fake_sts.managed_identity(source):
        result = run(fake_sts, library, VAULT)
    assert result["ok"], result
    assert [e.status for e in fake_sts.journal.entries(source)] == [rule["status"]] * rule["times"] + [200]
    waits = fake_sts.journal.intervals(source)
    bounds = msal_node_waits if library == "msal-node" else azure_identity_waits
    assert len(waits) == len(bounds), waits
    assert all(low <= w < high for w, (low, high) in zip(waits, bounds, strict=True)), waits


# --- Azure Arc and Service Fabric -------------------------------------------------------------------------
@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
def test_arc_in_a_mount_namespace(fake_sts: StsSandbox, tmp_path: Path, library: str) -> None:
    """msal-node reads the key only at exactly ``/var/opt/azcmagent/tokens/<name>.key``: the client runs where
    that directory is the test's, into which fakests writes (``tests/arc.py``)."""
    from tests.arc import run_as_arc_client

    key_dir = tmp_path / "tokens"
    key_dir.mkdir()
    fake_sts.configure(arc_key_dir=key_dir)
    with fake_sts.managed_identity("arc"):
        result = run_as_arc_client([node(), "identity.mjs", library, VAULT], key_dir, dict(os.environ), cwd=NODE_DIR)
    assert result["ok"], result
    claims = verify(result["token"], fake_sts.http_client(), fake_sts.authority(), VAULT)
    assert claims["appid"] == fake_sts.system_identity.client_id
    assert [e.status for e in fake_sts.journal.entries("arc")] == [401, 200] and list(key_dir.iterdir()) == []


@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
def test_arc_user_assigned_echoed(fake_sts: StsSandbox, tmp_path: Path, library: str) -> None:
    from tests.arc import run_as_arc_client

    user = fake_sts.user_identity
    fake_sts.configure(arc_key_dir=tmp_path)
    with fake_sts.managed_identity("arc"):
        result = run_as_arc_client([node(), "identity.mjs", library, "api://fakests-api", user.client_id], tmp_path,
                                   dict(os.environ), cwd=NODE_DIR)
    assert result["ok"], result
    claims = verify(result["token"], fake_sts.http_client(), fake_sts.authority(), fake_sts.api.client_id)
    assert claims["azp"] == user.client_id and claims["roles"] == ["Data.Read", "Data.Write"]


@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
def test_arc_legacy_agent_refused_for_user_assigned(fake_sts: StsSandbox, tmp_path: Path, library: str) -> None:
    from tests.arc import run_as_arc_client

    fake_sts.configure(arc_key_dir=tmp_path, arc_user_assigned=False)
    with fake_sts.managed_identity("arc"):
        result = run_as_arc_client([node(), "identity.mjs", library, VAULT, fake_sts.user_identity.client_id], tmp_path,
                                   dict(os.environ), cwd=NODE_DIR)
    assert not result["ok"] and "user_assigned_managed_identity_not_confirmed" in result["message"], result


@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
def test_service_fabric_over_tls(fake_sts: StsSandbox, library: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither Node client checks IDENTITY_SERVER_THUMBPRINT: they verify the server's certificate as for any
    HTTPS call, so the process must trust fakests' CA (``NODE_EXTRA_CA_CERTS``)."""
    assert fake_sts.ca_path is not None
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", fake_sts.ca_path)
    with fake_sts.managed_identity("service_fabric"):
        result = run(fake_sts, library, VAULT)
    assert result["ok"], result
    claims = verify(result["token"], fake_sts.http_client(), fake_sts.authority(), VAULT)
    assert claims["appid"] == fake_sts.system_identity.client_id
    [entry] = fake_sts.journal.entries("service_fabric")
    assert entry.status == 200 and entry.params["api-version"] == "2019-07-01-preview"


@pytest.mark.parametrize("source", ["app_service", "azure_ml"])
@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
def test_date_expires_on(fake_sts: StsSandbox, library: str, source: str) -> None:
    """msal-node converts an ISO 8601 ``expires_on`` only: the date string gives no error but an
    ``expiresOn`` of about now (its arithmetic on the string gives NaN), so the token counts as expired at
    once; with epoch seconds, ``expiresOn`` is the token's ``exp``."""
    with fake_sts.managed_identity(source):
        epoch = run(fake_sts, library, VAULT)
        fake_sts.configure(identity_expires_on="date")
        date = run(fake_sts, library, VAULT)
    assert epoch["ok"] and date["ok"], (epoch, date)
    exp = verify(epoch["token"], fake_sts.http_client(), fake_sts.authority(), VAULT)["exp"]
    assert abs(epoch["expiresOn"] - exp * 1000) <= 1000
    asked = fake_sts.journal.entries(source)[-1].at
    claims = verify(date["token"], fake_sts.http_client(), fake_sts.authority(), VAULT)
    assert claims["exp"] - asked > 80_000  # the token is good for a day...
    assert abs(date["expiresOn"] / 1000 - asked) < 10  # ...and the client thinks it expires now


@pytest.mark.parametrize("library", ["msal-node", "azure-identity"])
def test_scripted_expired_and_malformed_tokens_are_handed_out(fake_sts: StsSandbox, library: str) -> None:
    """Neither client looks inside the token or refuses one already expired: the app gets it."""
    fake_sts.fail("imds", token="expired", times=1)
    fake_sts.fail("imds", token="malformed", times=1)
    with fake_sts.managed_identity("imds"):
        expired, malformed = run(fake_sts, library, VAULT), run(fake_sts, library, VAULT)
    assert expired["ok"] and malformed["ok"], (expired, malformed)
    claims = verify(expired["token"], fake_sts.http_client(), fake_sts.authority(), VAULT, leeway=330)
    assert abs(expired["expiresOn"] - claims["exp"] * 1000) <= 1000  # in the past: 300 s ago
    assert malformed["token"] == "dummy"
    assert [e.status for e in fake_sts.journal.entries("imds")] == [200, 200]


@pytest.mark.parametrize(("library", "outcome"), [
    ("msal-node", ""),  # no error: an empty access token, and no expiry
    ("azure-identity", 'Response had no "expiresOn" property.'),
])
def test_scripted_missing_token(fake_sts: StsSandbox, library: str, outcome: str) -> None:
    fake_sts.fail("imds", token="missing")
    with fake_sts.managed_identity("imds"):
        result = run(fake_sts, library, VAULT)
    if library == "msal-node":
        assert result["ok"] and result["token"] == outcome and result["expiresOn"] is None, result
    else:
        assert not result["ok"] and result["name"] == "AuthenticationRequiredError", result
        assert outcome in result["message"]
