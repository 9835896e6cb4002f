"""Unmodified @azure/msal-node 7.2.1 against fakests (entra-wire.md §8.1, §11).

``tests/node/flows.mjs`` runs each flow with the real library in a Node subprocess that trusts exactly
fakests' CA (``NODE_EXTRA_CA_CERTS``), verifies every token against the JWKS the discovery document
points at, and prints one JSON line per flow. These tests check those lines precisely and, on the
server side, what the sandbox journal recorded: msal-node sends its ``client-request-id`` in the
token request's query and body, and fakests must use it as the correlation id.

Needs ``npm ci --prefix tests/node`` (CI runs it); without it the tests fail and say so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fakests import FakeSTS
from fakests.state import defaults as d
from fakests.state.directory import Certificate
from fakests.state.journal import REDACTED, JournalEntry
from fakests.state.settings import Settings
from fakests.sts.clientauth import ASSERTION_TYPE

NODE_DIR = Path(__file__).parent / "node"
MSAL_NODE_VERSION = "7.2.1"
USERNAME = "alice@contoso.com"
ALICE_OID = "fa7e0000-0000-4000-8000-00000000b001"
TIMEOUT = 120  # seconds for the whole Node run; it normally takes about two
ALL_FLOWS = ("client_credentials_secret", "client_credentials_certificate_sha256",
             "client_credentials_certificate_sha1", "username_password", "device_code", "wrong_secret")


@dataclass(frozen=True)
class NodeRun:
    """One run of flows.mjs: its JSON lines by flow name, and how it ended."""

    results: dict[str, dict[str, Any]]
    returncode: int
    stderr: str


@pytest.fixture(scope="module")
def sts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSTS]:
    """A fakests over TLS; a 1 s device-code interval keeps msal-node's polling short."""
    server = FakeSTS(Settings(port=0, state_dir=tmp_path_factory.mktemp("fakests-node"), device_code_interval=1))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _require_node_modules() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: these tests need Node.js >= 20 (msal-node's requirement)")
    package = NODE_DIR / "node_modules" / "@azure" / "msal-node" / "package.json"
    if not package.is_file() or not (NODE_DIR / "node_modules" / "jose").is_dir():
        pytest.fail(f"{NODE_DIR / 'node_modules'} is missing or incomplete: run `npm ci --prefix tests/node` "
                    "(CI installs it) before running tests/test_node_clients.py")
    version = json.loads(package.read_text())["version"]
    if version != MSAL_NODE_VERSION:
        pytest.fail(f"tests/node/node_modules has @azure/msal-node {version}, not {MSAL_NODE_VERSION}: "
                    "run `npm ci --prefix tests/node`")
    return node


def _config(sts: FakeSTS) -> dict[str, Any]:
    pem = sts.runtime.client_cert_path.read_text()
    der = Certificate(pem).der
    return {
        "authority": sts.authority(),
        "knownAuthority": f"localhost:{sts.port}",
        "tenantId": d.TENANT_ID,
        "daemonClientId": d.DAEMON_ID,
        "daemonSecret": d.DAEMON_SECRET,
        "publicClientId": d.PUBLIC_ID,
        "apiScope": d.API_URI,
        "apiClientId": d.API_ID,
        "certPemPath": str(sts.runtime.client_cert_path),
        "thumbprintSha1": hashlib.sha1(der).hexdigest(),
        "thumbprintSha256": hashlib.sha256(der).hexdigest(),
        "username": USERNAME,
        "password": d.PASSWORD,
    }


@pytest.fixture(scope="module")
def node_run(sts: FakeSTS) -> NodeRun:
    """Runs every flow once; the per-flow tests read the outcome."""
    node = _require_node_modules()
    # Trust exactly fakests' CA, whatever the machine's environment says (entra-wire.md §11).
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": sts.ca_path}
    env.pop("NODE_OPTIONS", None)
    proc = subprocess.run(
        [node, str(NODE_DIR / "flows.mjs")], input=json.dumps(_config(sts)), env=env, cwd=NODE_DIR,
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )
    results: dict[str, dict[str, Any]] = {}
    for line in proc.stdout.splitlines():
        if line.strip():
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"flows.mjs printed a line that is not JSON: {line!r}\nstderr:\n{proc.stderr}")
            results[result["flow"]] = result
    return NodeRun(results, proc.returncode, proc.stderr)


def _result(run: NodeRun, flow: str) -> dict[str, Any]:
    assert flow in run.results, f"flows.mjs printed no result for {flow}; stderr:\n{run.stderr}"
    result = run.results[flow]
    assert result["ok"], f"{flow} failed in msal-node: {json.dumps(result, indent=1)}"
    return result


def _token_entries(sts: FakeSTS, client_request_id: str) -> list[JournalEntry]:
    return [e for e in sts.runtime.sandboxes.default.journal.entries("token")
            if e.client_request_id == client_request_id]


def _check_msal_requests(sts: FakeSTS, result: dict[str, Any], grant_type: str) -> dict[str, Any]:
    """msal-node fetched the discovery document of the configured authority (no instance discovery),
    then sent its token requests with the result's correlation id in the query and the body, and got
    it echoed in the ``client-request-id`` response header. Returns the last token request."""
    requests = result["requests"]
    assert not [r for r in requests if r.get("refused")]
    assert requests[0]["method"] == "GET"
    assert requests[0]["path"] == f"/{d.TENANT_ID}/v2.0/.well-known/openid-configuration"
    assert requests[0]["status"] == 200
    token_requests = [r for r in requests if r["path"] == f"/{d.TENANT_ID}/oauth2/v2.0/token"]
    assert token_requests
    for r in token_requests:
        assert r["method"] == "POST"
        assert r["query"] == {"client-request-id": result["correlationId"]}
        assert r["bodyClientRequestId"] == result["correlationId"]
        assert r["bodyGrantType"] == grant_type
        assert r["responseClientRequestId"] == result["correlationId"]
    return token_requests[-1]


def test_every_flow_ran_and_passed(node_run: NodeRun) -> None:
    assert sorted(node_run.results) == sorted(ALL_FLOWS), node_run.stderr
    failed = {name: r.get("error") for name, r in node_run.results.items() if not r["ok"]}
    assert not failed, f"{failed}\nstderr:\n{node_run.stderr}"
    assert node_run.returncode == 0, node_run.stderr


@pytest.mark.parametrize(("flow", "azpacr", "assertion"), [
    pytest.param("client_credentials_secret", "1", None, id="secret"),
    pytest.param("client_credentials_certificate_sha256", "2", ("PS256", "x5t#S256"), id="certificate-sha256"),
    pytest.param("client_credentials_certificate_sha1", "2", ("RS256", "x5t"), id="certificate-sha1"),
])
def test_client_credentials(sts: FakeSTS, node_run: NodeRun, flow: str, azpacr: str,
                            assertion: tuple[str, str] | None) -> None:
    result = _result(node_run, flow)
    assert result["tokenType"] == "Bearer"
    assert result["scopes"] == [f"{d.API_URI}/.default"]
    assert result["account"] is None
    assert result["fromCache"] is False
    assert result["accessToken"]["kid"] == sts.runtime.keys.active.kid
    assert result["accessToken"]["claims"] == {
        "aud": d.API_ID, "iss": f"{sts.url}/{d.TENANT_ID}/v2.0", "tid": d.TENANT_ID, "ver": "2.0",
        "azp": d.DAEMON_ID, "azpacr": azpacr, "roles": ["Data.Read"], "idtyp": "app",
        "oid": "fa7e0000-0000-4000-8000-00000000d001", "sub": "fa7e0000-0000-4000-8000-00000000d001",
    }
    sent = _check_msal_requests(sts, result, "client_credentials")
    cert = Certificate(sts.runtime.client_cert_path.read_text())
    if assertion is None:
        assert "client_secret" in sent["bodyKeys"]
        assert "client_assertion" not in sent["bodyKeys"]
    else:
        alg, header = assertion
        assert "client_secret" not in sent["bodyKeys"]
        assert sent["assertionHeader"] == {"alg": alg, "typ": "JWT",
                                           header: cert.x5t_s256 if header == "x5t#S256" else cert.x5t}

    [entry] = _token_entries(sts, result["correlationId"])
    assert (entry.grant_type, entry.status, entry.aadsts, entry.client_id) == (
        "client_credentials", 200, None, d.DAEMON_ID)
    assert entry.correlation_id == result["correlationId"]
    if assertion is None:
        assert entry.params["client_secret"] == REDACTED
    else:
        assert entry.params["client_assertion"] == REDACTED
        assert entry.params["client_assertion_type"] == ASSERTION_TYPE


def _check_user_tokens(sts: FakeSTS, result: dict[str, Any]) -> None:
    issuer = f"{sts.url}/{d.TENANT_ID}/v2.0"
    assert result["tokenType"] == "Bearer"
    assert f"{d.API_URI}/access_as_user" in result["scopes"]
    assert result["account"] == {"username": USERNAME, "homeAccountId": f"{ALICE_OID}.{d.TENANT_ID}",
                                 "tenantId": d.TENANT_ID, "environment": f"localhost:{sts.port}"}
    access = result["accessToken"]["claims"]
    assert {k: v for k, v in access.items() if k != "sub"} == {
        "aud": d.API_ID, "iss": issuer, "tid": d.TENANT_ID, "ver": "2.0", "azp": d.PUBLIC_ID, "azpacr": "0",
        "scp": "access_as_user", "oid": ALICE_OID, "preferred_username": USERNAME, "name": "Alice Smith",
    }
    ident = result["idToken"]["claims"]
    assert {k: v for k, v in ident.items() if k != "sub"} == {
        "aud": d.PUBLIC_ID, "iss": issuer, "tid": d.TENANT_ID, "ver": "2.0", "oid": ALICE_OID,
        "preferred_username": USERNAME, "name": "Alice Smith",
    }
    assert ident["sub"] != access["sub"]  # pairwise per client


def test_username_password(sts: FakeSTS, node_run: NodeRun) -> None:
    result = _result(node_run, "username_password")
    _check_user_tokens(sts, result)
    sent = _check_msal_requests(sts, result, "password")
    assert {"username", "password", "client_id", "scope", "client_info"} <= set(sent["bodyKeys"])

    [entry] = _token_entries(sts, result["correlationId"])
    assert (entry.grant_type, entry.status, entry.aadsts, entry.client_id) == ("password", 200, None, d.PUBLIC_ID)
    assert entry.correlation_id == result["correlationId"]
    assert entry.params["username"] == USERNAME
    assert entry.params["password"] == REDACTED


def test_device_code(sts: FakeSTS, node_run: NodeRun) -> None:
    result = _result(node_run, "device_code")
    _check_user_tokens(sts, result)
    assert result["deviceCode"] == {"verificationUri": f"{sts.url}/common/oauth2/deviceauth", "userCodeLength": 9,
                                    "interval": 1, "expiresIn": 900, "hasMessage": True}
    assert result["approvalStatus"] == 200
    # msal-node 7.2.1 polls with the short grant type (§11), not the URN MSAL Python sends.
    _check_msal_requests(sts, result, "device_code")

    journal = sts.runtime.sandboxes.default.journal
    # The device authorization request carries no client-request-id at all (msal-node
    # DeviceCodeClient.createQueryString adds only scope and client_id): fakests makes one up.
    [start] = journal.entries("devicecode", client_id=d.PUBLIC_ID)
    assert (start.status, start.client_request_id) == (200, None)
    [login] = journal.entries("device_login")
    assert login.status == 200
    # flows.mjs approves only after the first poll was answered: pending first, then the tokens.
    polls = _token_entries(sts, result["correlationId"])
    assert len(polls) >= 2
    for poll in polls[:-1]:
        assert (poll.grant_type, poll.status, poll.aadsts, poll.error) == (
            "device_code", 400, 70016, "authorization_pending")
        assert poll.seq < login.seq
    last = polls[-1]
    assert (last.grant_type, last.status, last.aadsts, last.client_id) == ("device_code", 200, None, d.PUBLIC_ID)
    assert last.seq > login.seq
    assert all(p.correlation_id == result["correlationId"] for p in polls)
    assert last.params["device_code"] == REDACTED


def test_wrong_secret_is_a_server_error_with_the_correlation_id(sts: FakeSTS, node_run: NodeRun) -> None:
    result = _result(node_run, "wrong_secret")
    assert result["name"] == "ServerError"
    assert result["isServerError"] is True
    assert (result["errorCode"], result["errorNo"], result["status"], result["subError"]) == (
        "invalid_client", "7000215", 401, None)
    assert result["errorMessage"].startswith("Error(s): 7000215 - Timestamp: ")
    assert "Description: AADSTS7000215: Invalid client secret provided." in result["errorMessage"]
    # The correlation id msal-node reports is the one fakests put in the error body, which is
    # the client-request-id msal-node sent.
    assert result["messageCorrelationId"] == result["correlationId"]
    [sent] = [r for r in result["requests"] if r["path"].endswith("/oauth2/v2.0/token")]
    assert sent["query"] == {"client-request-id": result["correlationId"]}
    assert sent["bodyClientRequestId"] == result["correlationId"]
    assert (sent["status"], sent["responseClientRequestId"]) == (401, result["correlationId"])

    [entry] = _token_entries(sts, result["correlationId"])
    assert (entry.grant_type, entry.status, entry.aadsts, entry.error, entry.client_id) == (
        "client_credentials", 401, 7000215, "invalid_client", d.DAEMON_ID)
    assert entry.correlation_id == result["correlationId"]
    assert entry.params["client_secret"] == REDACTED


def test_node_needs_the_fakests_ca(sts: FakeSTS) -> None:
    """Harness check: without NODE_EXTRA_CA_CERTS naming fakests' CA, Node refuses its certificate,
    so the runs above really went over TLS that the fixture's NODE_EXTRA_CA_CERTS made trusted."""
    node = _require_node_modules()
    env = {k: v for k, v in os.environ.items() if k not in ("NODE_EXTRA_CA_CERTS", "NODE_OPTIONS")}
    config = {**_config(sts), "flows": ["client_credentials_secret"]}
    proc = subprocess.run([node, str(NODE_DIR / "flows.mjs")], input=json.dumps(config), env=env, cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 1
    assert "UNABLE_TO_VERIFY_LEAF_SIGNATURE" in proc.stderr, proc.stderr
