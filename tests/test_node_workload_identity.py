"""Workload identity with unmodified @azure/identity 4.14.1 in Node: ``WorkloadIdentityCredential`` and
``DefaultAzureCredential`` (``AZURE_TOKEN_CREDENTIALS=prod``: no developer tools probed), configured by the four
variables ``fake_sts.workload_identity()`` sets, over TLS trusting fakests' CA (``NODE_EXTRA_CA_CERTS``).

``tests/node/workload.mjs`` gets one token and prints it; the test verifies it against fakests' JWKS and reads
the journal. Needs ``npm ci --prefix tests/node`` (CI runs it).
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
GRAPH = "https://graph.microsoft.com"


def run(fake_sts: StsSandbox, kind: str, scope: str = f"{GRAPH}/.default") -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@azure" / "identity").is_dir():
        pytest.fail("needs node and `npm ci --prefix tests/node`")
    assert fake_sts.ca_path is not None
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AZURE_CLIENT_SECRET", "IDENTITY_", "MSI_"))},
           "NODE_EXTRA_CA_CERTS": fake_sts.ca_path, "AZURE_TOKEN_CREDENTIALS": "prod"}
    done = subprocess.run([node, "workload.mjs", kind, scope], cwd=NODE_DIR, capture_output=True, text=True,
                          timeout=120, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stderr
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.mark.parametrize("kind", ["workload", "default"])
def test_a_token_for_the_pods_service_account(fake_sts: StsSandbox, kind: str) -> None:
    with fake_sts.workload_identity():
        result = run(fake_sts, kind)
    assert result["ok"], result
    claims = verify(result["token"], fake_sts.http_client(), fake_sts.authority(), GRAPH)
    assert claims["appid"] == fake_sts.daemon.client_id and claims["appidacr"] == "2"
    [entry] = fake_sts.journal.entries("token")
    assert entry.params["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def test_wrong_service_account(fake_sts: StsSandbox) -> None:
    with fake_sts.workload_identity(service_account="intruder"):
        result = run(fake_sts, "workload")
    assert not result["ok"] and result["name"] == "AuthenticationRequiredError", result
    assert "AADSTS700213" in result["message"] and "system:serviceaccount:default:intruder" in result["message"]
    assert [e.status for e in fake_sts.journal.entries("token")] == [401]


def test_unknown_issuer(fake_sts: StsSandbox) -> None:
    with fake_sts.workload_identity(token=fake_sts.service_account_token(cluster="elsewhere")):
        result = run(fake_sts, "workload")
    assert not result["ok"] and result["name"] == "AuthenticationRequiredError", result
    assert "AADSTS700211" in result["message"], result


def test_expired_token_file(fake_sts: StsSandbox) -> None:
    with fake_sts.workload_identity(lifetime=300):
        fake_sts.advance(600)
        result = run(fake_sts, "workload")
    assert not result["ok"] and result["name"] == "AuthenticationRequiredError", result
    assert "AADSTS700024" in result["message"], result


def test_a_503_once_is_retried(fake_sts: StsSandbox) -> None:
    """core-rest-pipeline retries a 503 (honouring Retry-After); msal-node itself does not."""
    fake_sts.fail("token", aadsts=90033, shape="temporarily_unavailable", retry_after=0, times=1)
    with fake_sts.workload_identity():
        result = run(fake_sts, "workload")
    assert result["ok"], result
    assert [e.status for e in fake_sts.journal.entries("token")] == [503, 200]
