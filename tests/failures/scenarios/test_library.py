"""The scenario library (``scenarios/*.yaml``): every file loads strictly, and every file does to
unmodified clients (MSAL Python 1.39, azure-identity 1.27) what its description promises, as the
clients experience it and as the journal records it.

Each client test is registered with ``@covers(name)``; ``test_every_scenario_has_a_client_test``
fails when a file is added without one.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import jwt
import msal
import msal.oauth2cli.oauth2
import pytest
import requests
import yaml
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    CertificateCredential,
    ClientSecretCredential,
    CredentialUnavailableError,
    ManagedIdentityCredential,
)

from fakests.failures import scenarios
from fakests.state.journal import JournalEntry
from fakests.sts.catalog import CATALOG
from fakests.testing.sandbox import StsSandbox
from tests.jwks import verify

LIBRARY = scenarios.bundled_dir()
FILES = sorted(LIBRARY.glob("*.y*ml"))
REDIRECT = "http://localhost:5000/getAToken"
API_SCOPE = "api://fakests-api/.default"
ALICE, BOB, CAROL = "alice@contoso.com", "bob@contoso.com", "carol@outlook.com"

COVERED: dict[str, str] = {}
F = TypeVar("F", bound=Callable[..., None])


def covers(name: str) -> Callable[[F], F]:
    """Registers the client test of the scenario file ``name``."""

    def register(test: F) -> F:
        assert name not in COVERED, f"{name} has two client tests"
        COVERED[name] = test.__name__
        return test

    return register


# --- the files ---------------------------------------------------------------------------------------
def test_the_library_has_the_required_scenarios() -> None:
    assert len(FILES) >= 16
    assert {p.stem for p in FILES} >= {
        "msa-transient-70012", "msa-outage", "throttling-429", "service-unavailable-90033", "slow-sts",
        "connection-resets", "discovery-down", "key-rotation-mid-run", "mfa-required",
        "blocked-by-conditional-access", "consent-required", "expired-client-secret", "revoked-refresh-token",
        "password-expired", "account-locked", "device-code-pending", "device-code-slow-down",
        "device-code-expired", "device-code-declined", "loop-detected"}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_file_loads_strictly_and_documents_itself(path: Path) -> None:
    scenario = scenarios.load_file(path)  # strict: raises ConfigError on any problem
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert raw["name"] == scenario.name == path.stem  # named explicitly, not defaulted from the file name
    assert len(scenario.description) > 80, "the description says what a client will see"
    for i, rule in enumerate(raw["rules"]):
        assert rule.get("id") and rule.get("description"), f"rules[{i}] needs an id and a description"
        if "aadsts" in rule.get("response", {}):
            assert rule["response"]["aadsts"] in CATALOG
    for rule in scenario.rules:
        if rule.response is not None and rule.response.aadsts is not None:
            assert f"{rule.response.aadsts}" in scenario.description.replace("AADSTS", "")


def test_every_scenario_has_a_client_test() -> None:
    assert sorted(COVERED) == sorted(p.stem for p in FILES)


# --- helpers -------------------------------------------------------------------------------------------
def client_token(fake_sts: StsSandbox, role: Any = "daemon", **kwargs: Any) -> dict[str, Any]:
    """One app-only token request from a fresh MSAL app (MSAL caches tokens and errors per app)."""
    return fake_sts.msal_confidential(role, **kwargs).acquire_token_for_client([API_SCOPE])


def ropc(fake_sts: StsSandbox, username: str, scopes: list[str] | None = None,
         app: msal.PublicClientApplication | None = None) -> dict[str, Any]:
    app = app or fake_sts.msal_public()
    return app.acquire_token_by_username_password(username, fake_sts.password, scopes or ["User.Read"])


def secret_credential(fake_sts: StsSandbox, *, inprocess: bool = True, **kwargs: Any) -> ClientSecretCredential:
    return ClientSecretCredential(fake_sts.tenant_id, fake_sts.daemon.client_id, fake_sts.daemon.secret or "",
                                  **kwargs, **fake_sts.azure_kwargs(inprocess=inprocess))


def outcomes(entries: list[JournalEntry]) -> list[tuple[int, int | None, str | None]]:
    return [(e.status, e.aadsts, e.rule) for e in entries]


@pytest.fixture
def virtual_sleep(fake_sts: StsSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """MSAL's device-flow polling runs unchanged, but on a virtual clock: its ``time.sleep`` moves the
    sandbox clock (and MSAL's own ``time.time``) forward instead of waiting. Tests stay fast while the
    journal shows the intervals MSAL really kept. Yields the sleeps MSAL asked for."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        fake_sts.advance(seconds)

    clock = SimpleNamespace(time=lambda: time.time() + sum(slept), sleep=sleep)
    monkeypatch.setattr(msal.oauth2cli.oauth2, "time", clock)
    yield slept


def device_flow(fake_sts: StsSandbox, *, approve: bool) -> tuple[msal.PublicClientApplication, dict[str, Any]]:
    app = fake_sts.msal_public()
    flow = app.initiate_device_flow(["User.Read"])
    assert flow["interval"] == 1 and "user_code" in flow, flow  # tests/conftest.py: interval 1
    if approve:
        assert fake_sts.approve_device_code(flow) == "You have signed in"
    return app, flow


# --- transient server errors and outages -------------------------------------------------------------------
def redeem_with_retries(fake_sts: StsSandbox, username: str, attempts: int = 5) -> tuple[dict[str, Any], list[str]]:
    """A careful web app: sign the user in, redeem the code, and on a server error retry with a fresh
    MSAL app (MSAL caches 5xx answers per app object)."""
    authority = fake_sts.authority("consumers")
    flow = fake_sts.msal_confidential("web", authority=authority).initiate_auth_code_flow(
        ["User.Read"], redirect_uri=REDIRECT, response_mode="form_post")
    auth_response = fake_sts.sign_in(flow["auth_uri"], REDIRECT, username)
    failures = []
    for _ in range(attempts):
        try:
            app = fake_sts.msal_confidential("web", authority=authority)
            return app.acquire_token_by_auth_code_flow(dict(flow), auth_response), failures
        except msal.exceptions.MsalServiceError as exc:
            failures.append(str(exc))
    raise AssertionError(failures)


@covers("msa-transient-70012")
def test_msa_transient_70012(fake_sts: StsSandbox) -> None:
    rule = "msa-transient-70012/msa-server-error"
    [armed] = fake_sts.use_scenario("msa-transient-70012")
    assert "access_token" in ropc(fake_sts, ALICE)  # a work account: not matched, not counted
    assert (armed.matched, armed.fired) == (0, 0)
    result, failures = redeem_with_retries(fake_sts, CAROL)
    assert result["id_token_claims"]["preferred_username"] == CAROL
    assert failures == ["HTTP Error: 500"] * 2
    msa = [e for e in fake_sts.journal.entries("token") if e.grant_type == "authorization_code"]
    assert outcomes(msa) == [(500, 70012, rule), (500, 70012, rule), (200, None, None)]
    assert {e.error for e in msa[:2]} == {"server_error"}
    assert len({e.correlation_id for e in msa}) == 3  # three separate MSAL calls
    assert (armed.matched, armed.fired) == (3, 2)


@covers("msa-outage")
def test_msa_outage(fake_sts: StsSandbox) -> None:
    rule = "msa-outage/msa-backend-down"
    authority = fake_sts.authority("consumers")
    app = fake_sts.msal_confidential("web", authority=authority)
    before = app.initiate_auth_code_flow(["User.Read"], redirect_uri=REDIRECT, response_mode="form_post")
    signed_in = fake_sts.sign_in(before["auth_uri"], REDIRECT, CAROL)  # just before the outage
    fake_sts.use_scenario("msa-outage")

    # Redeeming the code fails with 503; a new sign-in comes back to the app with the error.
    with pytest.raises(msal.exceptions.MsalServiceError, match="HTTP Error: 503"):
        app.acquire_token_by_auth_code_flow(dict(before), signed_in)
    flow = app.initiate_auth_code_flow(["User.Read"], redirect_uri=REDIRECT, response_mode="form_post")
    response = fake_sts.sign_in(flow["auth_uri"], REDIRECT, CAROL)
    assert response["error"] == "temporarily_unavailable" and response["state"] == flow["state"]
    assert response["error_description"].startswith("AADSTS70012:")
    result = app.acquire_token_by_auth_code_flow(flow, response)
    assert result["error"] == "temporarily_unavailable" and "access_token" not in result
    assert "access_token" in ropc(fake_sts, ALICE)  # work accounts keep working

    # 31 s later the outage is over: the code from before still redeems (fresh app: MSAL cached the 503).
    fake_sts.advance(31)
    late = fake_sts.msal_confidential("web", authority=authority).acquire_token_by_auth_code_flow(
        dict(before), signed_in)
    assert late["id_token_claims"]["preferred_username"] == CAROL
    flow = app.initiate_auth_code_flow(["User.Read"], redirect_uri=REDIRECT, response_mode="form_post")
    assert "code" in fake_sts.sign_in(flow["auth_uri"], REDIRECT, CAROL)

    tokens = fake_sts.journal.entries("token")
    assert outcomes([e for e in tokens if e.grant_type == "authorization_code"]) == [
        (503, 70012, rule), (200, None, None)]
    assert [e.status for e in tokens if e.grant_type == "password"] == [200]
    failed_authorize = [e for e in fake_sts.journal.entries("authorize") if e.rule]
    assert outcomes(failed_authorize) == [(200, 70012, rule)]  # response_mode=form_post: an auto-posting page


@covers("service-unavailable-90033")
def test_service_unavailable_90033(fake_sts: StsSandbox) -> None:
    rule = "service-unavailable-90033/token-503"
    fake_sts.use_scenario("service-unavailable-90033")
    # MSAL Python raises on the 503 and replays it from its cache for Retry-After (1 s).
    app = fake_sts.msal_confidential("web")
    for _ in range(2):
        with pytest.raises(msal.exceptions.MsalServiceError, match="HTTP Error: 503"):
            app.acquire_token_for_client([API_SCOPE])
    assert fake_sts.journal.attempts("token") == 1
    # azure-identity waits for Retry-After and tries again.
    daemon = fake_sts.daemon.client_id
    assert secret_credential(fake_sts).get_token(API_SCOPE).token
    journal = fake_sts.journal
    assert outcomes(journal.entries("token")) == [(503, 90033, rule), (503, 90033, rule), (200, None, None)]
    assert {e.error for e in journal.entries("token", status=503)} == {"temporarily_unavailable"}
    assert {e.retry_after for e in journal.entries("token", status=503)} == {"1"}
    [(asked, waited)] = journal.waited("token", client_id=daemon)
    assert asked == 1.0 and waited >= 1.0
    assert journal.early_retries() == []


@covers("flaky-token-endpoint")
def test_flaky_token_endpoint_fails_the_same_requests_every_run(fake_sts: StsSandbox) -> None:
    rng = random.Random(3)
    expected = [rng.random() >= 0.5 for _ in range(8)]  # True: the request passes

    def run() -> list[bool]:
        fake_sts.clear_scenarios()
        fake_sts.use_scenario("flaky-token-endpoint")
        passed = []
        for _ in range(8):
            try:
                passed.append("access_token" in client_token(fake_sts))
            except msal.exceptions.MsalServiceError as exc:
                assert str(exc) == "HTTP Error: 503"
                passed.append(False)
        return passed

    first, second = run(), run()
    assert first == second == expected and True in first and False in first
    failed = fake_sts.journal.entries("token", status=503)
    assert len(failed) == 2 * expected.count(False)
    assert {(e.aadsts, e.error, e.rule, e.retry_after) for e in failed} == {
        (90033, "temporarily_unavailable", "flaky-token-endpoint/coin-flip-503", None)}


# --- throttling ------------------------------------------------------------------------------------------
@covers("throttling-429")
def _within_one_window(entries: list[JournalEntry]) -> bool:
    """Whether these requests all arrived within the scenario's 1-second window. On a machine loaded
    enough to stretch them past it, the throttle rightly lets the third through, and the run is repeated
    on a fresh window rather than read as a throttling bug."""
    return bool(entries) and entries[-1].at - entries[0].at < 1.0


def test_throttling_429(fake_sts: StsSandbox) -> None:
    rule = "throttling-429/two-per-second-per-client"
    fake_sts.use_scenario("throttling-429")
    for _ in range(3):
        mark = fake_sts.journal.entries()[-1].seq if fake_sts.journal.entries() else 0
        assert "access_token" in client_token(fake_sts) and "access_token" in client_token(fake_sts)
        # The third request within the second: 429 "Too Many Requests" in plain text, which MSAL cannot parse.
        app = fake_sts.msal_confidential()
        try:
            app.acquire_token_for_client([API_SCOPE])
        except json.JSONDecodeError:
            break
        assert not _within_one_window(fake_sts.journal.entries("token", since=mark)), "not throttled in time"
        fake_sts.advance(2)  # a fresh window for every client
    else:
        pytest.fail("three requests never fitted in one second")
    [throttled] = fake_sts.journal.entries("token", status=429)
    assert (throttled.rule, throttled.aadsts, throttled.retry_after) == (rule, None, "1")
    # MSAL replays the 429 from its own cache until Retry-After passes: nothing reaches fakests.
    attempts = fake_sts.journal.attempts("token")
    with pytest.raises(json.JSONDecodeError):
        app.acquire_token_for_client([API_SCOPE])
    assert fake_sts.journal.attempts("token") == attempts
    # Another app (another client id) has its own allowance.
    assert "access_token" in client_token(fake_sts, "web")
    # Once the Retry-After second has passed, the daemon gets tokens again.
    fake_sts.advance(1)
    assert "access_token" in client_token(fake_sts)

    # azure-identity: the second credential is throttled, sleeps Retry-After (1 s, real time) and retries.
    for _ in range(3):
        fake_sts.advance(2)
        mark = fake_sts.journal.entries()[-1].seq
        assert "access_token" in client_token(fake_sts)
        for _ in range(2):
            assert secret_credential(fake_sts).get_token(API_SCOPE).token
        azure = fake_sts.journal.entries("token", since=mark)[1:]
        if _within_one_window([fake_sts.journal.entries("token", since=mark)[0], *azure[:2]]):
            break
    else:
        pytest.fail("three requests never fitted in one second")
    assert [(e.status, e.rule) for e in azure] == [(200, None), (429, rule), (200, None)]
    asked, waited = fake_sts.journal.waited("token", since=azure[0].seq - 1)[0]
    assert asked == 1.0 and waited >= 1.0
    assert fake_sts.journal.early_retries() == []
    assert all(e.user_agent and "azsdk-python-identity" in e.user_agent for e in azure)


@covers("tenant-throttled-90055")
def test_tenant_throttled_90055(fake_sts: StsSandbox) -> None:
    rule = "tenant-throttled-90055/three-per-second-per-tenant"
    fake_sts.use_scenario("tenant-throttled-90055")
    for _ in range(3):
        assert "access_token" in client_token(fake_sts)
    # The tenant's allowance is shared: a different app of the same tenant is throttled too, and
    # MSAL returns the JSON error instead of raising.
    result = client_token(fake_sts, "web")
    assert result["error"] == "temporarily_unavailable" and result["error_codes"] == [90055]
    assert result["error_description"].startswith("AADSTS90055:")
    [throttled] = fake_sts.journal.entries("token", status=429)
    assert (throttled.rule, throttled.aadsts, throttled.retry_after, throttled.client_id) == (
        rule, 90055, "1", fake_sts.web.client_id)
    # azure-identity (the daemon) is throttled as well, honours Retry-After and gets its token.
    mark = throttled.seq
    assert secret_credential(fake_sts).get_token(API_SCOPE).token
    azure = fake_sts.journal.entries("token", since=mark)
    assert outcomes(azure) == [(429, 90055, rule), (200, None, None)]
    [(asked, waited)] = fake_sts.journal.waited("token", since=mark)
    assert asked == 1.0 and waited >= 1.0
    assert fake_sts.journal.early_retries() == []


# --- latency and broken transports -----------------------------------------------------------------------
@covers("slow-sts")
def test_slow_sts(fake_sts: StsSandbox) -> None:
    rng = random.Random(7)
    delays = [rng.uniform(0.1, 0.3) for _ in range(3)]  # the file's seeded jitter
    fake_sts.use_scenario("slow-sts")
    for delay in delays:
        started = time.monotonic()
        assert "access_token" in client_token(fake_sts)
        assert time.monotonic() - started >= delay
    entries = fake_sts.journal.entries("token")
    assert [(e.status, e.rule) for e in entries] == [(200, "slow-sts/token-latency")] * 3
    for entry, delay in zip(entries, delays, strict=True):
        assert delay * 1000 <= entry.duration_ms < delay * 1000 + 250
    assert len({round(e.duration_ms, -1) for e in entries}) > 1  # jitter, not a fixed delay


@covers("connection-resets")
def test_connection_resets(fake_sts: StsSandbox) -> None:
    """Over real TLS connections: the reset is a real TCP RST."""
    rule = "connection-resets/reset-every-second-request"
    fake_sts.use_scenario("connection-resets")
    assert "access_token" in client_token(fake_sts, inprocess=False)
    with pytest.raises(requests.exceptions.ConnectionError):
        client_token(fake_sts, inprocess=False)
    assert "access_token" in client_token(fake_sts, inprocess=False)
    # azure-identity retries the connection error at once (request 4 is reset, request 5 passes).
    assert secret_credential(fake_sts, inprocess=False).get_token(API_SCOPE).token
    entries = fake_sts.journal.entries("token")
    assert [(e.status, e.rule, e.fault) for e in entries] == [
        (200, None, None), (0, rule, "reset"), (200, None, None), (0, rule, "reset"), (200, None, None)]
    assert [e.user_agent is not None and "azsdk" in e.user_agent for e in entries] == [False] * 3 + [True] * 2


@covers("gateway-502-html")
def test_gateway_502_html(fake_sts: StsSandbox) -> None:
    rule = "gateway-502-html/token-gateway-502"
    fake_sts.use_scenario("gateway-502-html")
    with pytest.raises(msal.exceptions.MsalServiceError, match="HTTP Error: 502"):
        client_token(fake_sts)
    assert secret_credential(fake_sts).get_token(API_SCOPE).token  # azure-core retries a 502
    assert [(e.status, e.rule) for e in fake_sts.journal.entries("token")] == [(502, rule), (502, rule), (200, None)]
    assert "access_token" in client_token(fake_sts)


@covers("truncated-json")
def test_truncated_json(fake_sts: StsSandbox) -> None:
    rule = "truncated-json/token-body-truncated"
    fake_sts.use_scenario("truncated-json")
    with pytest.raises(json.JSONDecodeError):
        client_token(fake_sts)
    with pytest.raises(ClientAuthenticationError, match="JSON is invalid"):
        secret_credential(fake_sts).get_token(API_SCOPE)  # a 200 is not retried
    assert "access_token" in client_token(fake_sts)
    entries = fake_sts.journal.entries("token")
    assert [(e.status, e.rule, e.fault) for e in entries] == [
        (200, rule, "truncated_json"), (200, rule, "truncated_json"), (200, None, None)]


@covers("discovery-down")
def test_discovery_down(fake_sts: StsSandbox) -> None:
    rule = "discovery-down/metadata-gateway-502"
    session = fake_sts.http_client()
    earlier = client_token(fake_sts)["access_token"]  # issued before the outage
    fake_sts.use_scenario("discovery-down")
    mark = fake_sts.journal.entries()[-1].seq

    with pytest.raises(msal.exceptions.MsalServiceError, match="HTTP Error: 502"):
        fake_sts.msal_confidential()  # MSAL reads discovery in its constructor
    with pytest.raises(ClientAuthenticationError):
        secret_credential(fake_sts, retry_backoff_factor=0.01).get_token(API_SCOPE)
    with pytest.raises(requests.HTTPError, match="502"):
        verify(earlier, session, fake_sts.authority(), fake_sts.api.client_id)  # a resource server
    keys = session.get(f"{fake_sts.authority()}/discovery/v2.0/keys")
    assert keys.status_code == 502 and keys.headers["content-type"].startswith("text/html")
    assert "502 Bad Gateway" in keys.text
    down = fake_sts.journal.entries(since=mark)
    assert [(e.endpoint, e.status, e.rule) for e in down] == (
        [("discovery", 502, rule)] * 6 + [("jwks", 502, rule)])  # MSAL 1, azure-identity 1 + 3 retries, verify 1
    assert fake_sts.journal.attempts("token", since=mark) == 0

    fake_sts.advance(31)
    assert "access_token" in client_token(fake_sts)
    assert secret_credential(fake_sts).get_token(API_SCOPE).token
    assert verify(earlier, session, fake_sts.authority(), fake_sts.api.client_id)["roles"] == ["Data.Read"]


@covers("key-rotation-mid-run")
def test_key_rotation_mid_run(fake_sts: StsSandbox) -> None:
    session = fake_sts.http_client()
    jwks_url = f"{fake_sts.authority()}/discovery/v2.0/keys"
    cached = {k["kid"] for k in session.get(jwks_url).json()["keys"]}  # a resource server's cached JWKS
    fake_sts.use_scenario("key-rotation-mid-run")
    tokens = [client_token(fake_sts)["access_token"] for _ in range(5)]
    kids = [jwt.get_unverified_header(t)["kid"] for t in tokens]
    assert kids[0] == kids[1] != kids[2] == kids[3] == kids[4]
    assert kids[0] in cached and kids[2] not in cached  # the cached JWKS cannot validate the new tokens
    served = {k["kid"] for k in session.get(jwks_url).json()["keys"]}
    assert {kids[0], kids[2]} <= served  # the old key stays published
    for token in tokens:
        assert verify(token, session, fake_sts.authority(), fake_sts.api.client_id)["roles"] == ["Data.Read"]
    assert [(e.status, e.rule) for e in fake_sts.journal.entries("token")] == [
        (200, None), (200, None), (200, "key-rotation-mid-run/rotate-signing-key"), (200, None), (200, None)]


# --- user and app errors ------------------------------------------------------------------------------
@covers("mfa-required")
def test_mfa_required(fake_sts: StsSandbox) -> None:
    rule = "mfa-required/mfa-for-non-interactive-grants"
    fake_sts.configure(access_token_lifetime=300)  # every silent call refreshes (MSAL: <300 s left = expired)
    fake_sts.use_scenario("mfa-required")
    result = ropc(fake_sts, ALICE)
    assert result["error"] == "invalid_grant" and result["error_codes"] == [50076]
    assert result["suberror"] == "basic_action"
    challenge = json.loads(result["claims"])
    assert challenge["access_token"]["capolids"]["essential"] is True

    # The app signs the user in interactively with the claims challenge: that works.
    app = fake_sts.msal_confidential("web")
    flow = app.initiate_auth_code_flow(["User.Read"], redirect_uri=REDIRECT, response_mode="form_post",
                                       claims_challenge=result["claims"])
    token = app.acquire_token_by_auth_code_flow(flow, fake_sts.sign_in(flow["auth_uri"], REDIRECT, ALICE))
    assert token["id_token_claims"]["preferred_username"] == ALICE
    [authorize] = fake_sts.journal.entries("authorize")[:1]
    assert json.loads(authorize.params["claims"]) == challenge
    # A later silent refresh is non-interactive again: 50076.
    [account] = app.get_accounts()
    silent = app.acquire_token_silent_with_error(["User.Read"], account)
    assert silent is not None and silent["error_codes"] == [50076] and silent["claims"] == result["claims"]
    assert silent["classification"] == "basic_action"  # MSAL's silent flow classifies the suberror
    assert app.acquire_token_silent(["User.Read"], account) is None  # (the 400 replayed from MSAL's cache)

    entries = fake_sts.journal.entries("token")
    assert [(e.grant_type, e.status, e.aadsts, e.rule) for e in entries] == [
        ("password", 400, 50076, rule), ("authorization_code", 200, None, None),
        ("refresh_token", 400, 50076, rule)]


@covers("blocked-by-conditional-access")
def test_blocked_by_conditional_access(fake_sts: StsSandbox) -> None:
    fake_sts.use_scenario("blocked-by-conditional-access")
    result = ropc(fake_sts, BOB)
    assert result["error"] == "invalid_grant" and result["error_codes"] == [53003]
    assert result["error_description"].startswith("AADSTS53003: Access has been blocked by Conditional Access")
    assert result["suberror"] == "message_only"
    policies = json.loads(result["claims"])["access_token"]["capolids"]
    assert policies == {"essential": True, "values": ["0d3a7c12-8e4b-4f6d-a1c9-7b2e5f9d3c40"]}
    assert "access_token" in ropc(fake_sts, ALICE)
    assert "access_token" in client_token(fake_sts)
    entries = fake_sts.journal.entries("token")
    assert [(e.params.get("username"), e.status, e.aadsts, e.rule) for e in entries] == [
        (BOB, 400, 53003, "blocked-by-conditional-access/block-bob"), (ALICE, 200, None, None),
        (None, 200, None, None)]


@covers("consent-required")
def test_consent_required(fake_sts: StsSandbox) -> None:
    fake_sts.use_scenario("consent-required")
    user = ropc(fake_sts, ALICE, [f"api://{fake_sts.api.client_id}/access_as_user"])
    middle_tier = fake_sts.msal_confidential("api")
    result = middle_tier.acquire_token_on_behalf_of(user["access_token"], ["https://graph.microsoft.com/User.Read"])
    assert result["error"] == "invalid_grant" and result["error_codes"] == [65001]
    assert result["suberror"] == "consent_required"
    assert f"application with ID '{fake_sts.api.client_id}' named 'fakests api'" in result["error_description"]
    entries = fake_sts.journal.entries("token")
    assert [(e.grant_type, e.status, e.aadsts, e.rule) for e in entries] == [
        ("password", 200, None, None),
        ("urn:ietf:params:oauth:grant-type:jwt-bearer", 400, 65001, "consent-required/obo-consent-missing")]


@covers("expired-client-secret")
def test_expired_client_secret(fake_sts: StsSandbox) -> None:
    fake_sts.use_scenario("expired-client-secret")
    result = client_token(fake_sts)
    assert result["error"] == "invalid_client" and result["error_codes"] == [7000222]
    assert f"client secret keys for app '{fake_sts.daemon.client_id}' are expired" in result["error_description"]
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000222"):
        secret_credential(fake_sts).get_token(API_SCOPE)  # a 401 is not retried
    certificate = CertificateCredential(fake_sts.tenant_id, fake_sts.daemon.client_id, fake_sts.client_cert_path,
                                        **fake_sts.azure_kwargs())
    token = certificate.get_token(API_SCOPE).token
    assert verify(token, fake_sts.http_client(), fake_sts.authority(), fake_sts.api.client_id)["azpacr"] == "2"
    assert "access_token" in client_token(fake_sts, certificate=True)
    entries = fake_sts.journal.entries("token")
    assert outcomes(entries) == [
        (401, 7000222, "expired-client-secret/secret-expired"), (401, 7000222, "expired-client-secret/secret-expired"),
        (200, None, "expired-client-secret/certificates-still-work"),
        (200, None, "expired-client-secret/certificates-still-work")]


@covers("revoked-refresh-token")
def test_revoked_refresh_token(fake_sts: StsSandbox) -> None:
    fake_sts.configure(access_token_lifetime=300)  # every silent call refreshes
    fake_sts.use_scenario("revoked-refresh-token")
    app = fake_sts.msal_public()
    assert "access_token" in ropc(fake_sts, ALICE, app=app)
    [account] = app.get_accounts()
    error = app.acquire_token_silent_with_error(["User.Read"], account)
    assert error is not None and error["error"] == "invalid_grant" and error["error_codes"] == [50173]
    assert error["suberror"] == "bad_token" and error["classification"] == ""  # MSAL blanks bad_token
    # acquire_token_silent says "sign in again" (None); the 400 is replayed from MSAL's cache.
    assert app.acquire_token_silent(["User.Read"], account) is None
    assert "{issued}" not in error["error_description"] and "{valid_from}" not in error["error_description"]
    assert "access_token" in ropc(fake_sts, ALICE, app=app)  # a fresh sign-in works
    entries = fake_sts.journal.entries("token")
    assert [(e.grant_type, e.status, e.aadsts, e.rule) for e in entries] == [
        ("password", 200, None, None), ("refresh_token", 400, 50173, "revoked-refresh-token/refresh-token-revoked"),
        ("password", 200, None, None)]


@covers("password-expired")
def test_password_expired(fake_sts: StsSandbox) -> None:
    fake_sts.use_scenario("password-expired")
    for user in (ALICE, BOB):
        result = ropc(fake_sts, user)
        assert result["error"] == "invalid_grant" and result["error_codes"] == [50055]
        assert result["suberror"] == "user_password_expired"
        assert result["error_description"].startswith("AADSTS50055: The password is expired.")
    assert "access_token" in client_token(fake_sts)  # app-only tokens are unaffected
    assert outcomes(fake_sts.journal.entries("token")) == [
        (400, 50055, "password-expired/ropc-password-expired")] * 2 + [(200, None, None)]


@covers("account-locked")
def test_account_locked(fake_sts: StsSandbox) -> None:
    rule = "account-locked/alice-locked-out"
    fake_sts.use_scenario("account-locked")
    result = ropc(fake_sts, ALICE)
    assert result["error"] == "invalid_grant" and result["error_codes"] == [50053]
    assert "Your account is locked" in result["error_description"]
    assert "access_token" in ropc(fake_sts, BOB)
    fake_sts.advance(61)  # the 60 s lockout is over (a fresh app: MSAL keeps a 400 for 60 s of real time)
    assert "access_token" in ropc(fake_sts, ALICE)
    entries = fake_sts.journal.entries("token")
    assert [(e.params["username"], e.status, e.aadsts, e.rule) for e in entries] == [
        (ALICE, 400, 50053, rule), (BOB, 200, None, None), (ALICE, 200, None, None)]


@covers("loop-detected")
def test_loop_detected(fake_sts: StsSandbox) -> None:
    rule = "loop-detected/token-request-loop"
    fake_sts.use_scenario("loop-detected")
    app = fake_sts.msal_public()  # an app that asks again and again instead of using its cache
    results = [ropc(fake_sts, ALICE, app=app) for _ in range(16)]
    assert all("access_token" in r for r in results[:15])
    assert results[15]["error"] == "invalid_grant" and results[15]["error_codes"] == [50196]
    assert "client request loop" in results[15]["error_description"]
    # MSAL replays the identical request's 400 from its cache: the 17th call never reaches the STS.
    assert ropc(fake_sts, ALICE, app=app)["error_codes"] == [50196]
    assert fake_sts.journal.attempts("token") == 16
    fake_sts.advance(300)  # the 5-minute detection window is over
    assert "access_token" in ropc(fake_sts, ALICE)
    assert outcomes(fake_sts.journal.entries("token")) == (
        [(200, None, None)] * 15 + [(400, 50196, rule), (200, None, None)])


# --- device code ------------------------------------------------------------------------------------------
@covers("device-code-pending")
def test_device_code_pending(fake_sts: StsSandbox, virtual_sleep: list[float]) -> None:
    fake_sts.use_scenario("device-code-pending")
    app, flow = device_flow(fake_sts, approve=True)  # approved at once, but pending for three polls
    result = app.acquire_token_by_device_flow(flow)
    assert result["id_token_claims"]["preferred_username"] == ALICE
    assert virtual_sleep == [1, 1, 1]  # MSAL waited the interval after each pending answer
    polls = fake_sts.journal.entries("token")
    assert outcomes(polls) == [(400, 70016, "device-code-pending/still-pending")] * 3 + [(200, None, None)]
    assert {p.error for p in polls[:3]} == {"authorization_pending"}
    assert fake_sts.journal.intervals("token") == [pytest.approx(1, abs=0.25)] * 3


@covers("device-code-slow-down")
def test_device_code_slow_down(fake_sts: StsSandbox, virtual_sleep: list[float]) -> None:
    fake_sts.use_scenario("device-code-slow-down")
    app, flow = device_flow(fake_sts, approve=True)
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result  # MSAL Python keeps polling after slow_down...
    assert flow["interval"] == 6 and virtual_sleep == [1] * 6  # ...5 s slower (RFC 8628 §3.5)
    polls = fake_sts.journal.entries("token")
    assert outcomes(polls) == [(400, 70020, "device-code-slow-down/slow-down-once"), (200, None, None)]
    assert polls[0].error == "slow_down"
    assert fake_sts.journal.intervals("token") == [pytest.approx(6, abs=0.25)]


@covers("device-code-expired")
def test_device_code_expired(fake_sts: StsSandbox, virtual_sleep: list[float]) -> None:
    fake_sts.use_scenario("device-code-expired")
    app, flow = device_flow(fake_sts, approve=False)  # the user never signs in
    result = app.acquire_token_by_device_flow(flow)
    assert result["error"] == "expired_token" and result["error_codes"] == [70019]
    assert "access_token" not in result and virtual_sleep == [1, 1]  # MSAL stopped polling
    assert outcomes(fake_sts.journal.entries("token")) == [
        (400, 70016, None), (400, 70016, None), (400, 70019, "device-code-expired/code-expired")]


@covers("device-code-declined")
def test_device_code_declined(fake_sts: StsSandbox, virtual_sleep: list[float]) -> None:
    fake_sts.use_scenario("device-code-declined")
    app, flow = device_flow(fake_sts, approve=False)
    result = app.acquire_token_by_device_flow(flow)
    assert result["error"] == "authorization_declined" and result["error_codes"] == [70022]
    assert result["error_description"].startswith("AADSTS70022: The end user denied the authorization request.")
    assert virtual_sleep == [1]
    assert outcomes(fake_sts.journal.entries("token")) == [
        (400, 70016, None), (400, 70022, "device-code-declined/user-declined")]


# --- managed identity (tests/clients/test_managed_identity.py has the rest), in virtual time ---------------
ARM = "https://management.azure.com"


@covers("imds-upgrading")
def test_imds_upgrading_410_azure_identity_retries_for_75_virtual_seconds(fake_sts: StsSandbox) -> None:
    """azure-identity >= 1.24 retries an IMDS 410 for at least 70 s (backoff factor 2.5: 0, 5, 10, 20, 40 s):
    six attempts, 75 virtual seconds, and then it gives up; a real test of it would take 75 s."""
    fake_sts.use_scenario("imds-upgrading")
    started = time.perf_counter()
    with (fake_sts.managed_identity("imds"), fake_sts.virtual_time() as clock,
          pytest.raises(CredentialUnavailableError)):
        ManagedIdentityCredential().get_token(f"{ARM}/.default")
    wall = time.perf_counter() - started
    assert fake_sts.journal.attempts("imds") == 6
    assert fake_sts.journal.intervals("imds") == pytest.approx([0.0, 5.0, 10.0, 20.0, 40.0], abs=1e-3)  # virtual s
    assert clock.slept == [5.0, 10.0, 20.0, 40.0] and clock.elapsed == 75.0
    assert wall < clock.elapsed  # not a speed target: the retries did not wait for real


@covers("managed-identity-not-assigned")
def test_app_service_identity_not_found_with_msal(fake_sts: StsSandbox) -> None:
    """MSAL Python returns App Service's error as a dict; the app shows it."""
    fake_sts.use_scenario("managed-identity-not-assigned")
    with fake_sts.managed_identity("app_service"):
        client = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(), http_client=requests.Session())
        result = client.acquire_token_for_client(resource=ARM)
    assert "access_token" not in result and "Identity not found" in result["error_description"]
    [entry] = fake_sts.journal.entries("app_service")
    assert entry.status == 400 and entry.rule == "managed-identity-not-assigned/not-assigned"


@covers("managed-identity-expired-token")
def test_expired_managed_identity_token_reaches_the_app(fake_sts: StsSandbox) -> None:
    """azure-identity hands the expired token out (``expires_on`` five minutes past); the resource, validating
    it against the JWKS, refuses it."""
    import jwt

    from tests.jwks import verify

    fake_sts.use_scenario("managed-identity-expired-token")
    with fake_sts.managed_identity("service_fabric"):
        token = ManagedIdentityCredential().get_token(f"{ARM}/.default")
    assert token.expires_on < time.time() - 299
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(token.token, fake_sts.http_client(), fake_sts.authority(), ARM)
    [entry] = fake_sts.journal.entries("service_fabric")
    assert entry.status == 200 and entry.rule == "managed-identity-expired-token/expired"


@covers("imds-throttled")
def test_imds_throttled(fake_sts: StsSandbox) -> None:
    """Five tokens, then 429 with Retry-After 5: azure-identity sleeps it (twice, until the 10 s window ends)
    and gets its token, all in virtual time."""
    fake_sts.use_scenario("imds-throttled")
    with fake_sts.managed_identity("imds"), fake_sts.virtual_time() as clock:
        for _ in range(6):  # a new credential each time: each asks IMDS (no token cache shared)
            ManagedIdentityCredential().get_token(f"{ARM}/.default")
    statuses = [e.status for e in fake_sts.journal.entries("imds")]
    assert statuses == [200] * 5 + [429, 429, 200]
    assert clock.slept == [5.0, 5.0]
    throttled = fake_sts.journal.entries("imds", status=429)
    assert {(e.rule, e.retry_after) for e in throttled} == {("imds-throttled/throttled", "5")}
