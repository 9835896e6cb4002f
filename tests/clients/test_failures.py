"""What real clients do when fakests fails the way Entra fails, proved from the journal."""

from __future__ import annotations

import json
import time

import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential

from fakests.testing.sandbox import StsSandbox

REDIRECT = "http://localhost:5000/getAToken"
TRANSPORTS = [pytest.param(True, id="inprocess"), pytest.param(False, id="tls")]


def sign_in_with_retries(fake_sts: StsSandbox, username: str, attempts: int = 5) -> tuple[dict[str, object], list[str]]:
    """What a careful web app does: redeem the sign-in's code, and on a server error try again
    with a fresh MSAL app (MSAL caches 5xx answers per app object), telling the user each time."""
    first = fake_sts.msal_confidential("web", authority=fake_sts.authority("consumers"))
    flow = first.initiate_auth_code_flow(["User.Read"], redirect_uri=REDIRECT, response_mode="form_post")
    auth_response = fake_sts.sign_in(flow["auth_uri"], REDIRECT, username)
    messages = []
    for _ in range(attempts):
        app = fake_sts.msal_confidential("web", authority=fake_sts.authority("consumers"))
        try:
            return app.acquire_token_by_auth_code_flow(dict(flow), auth_response), messages
        except msal.exceptions.MsalServiceError as exc:
            messages.append(f"Sign-in failed ({exc}); retrying")
    raise AssertionError(messages)


def test_app_retry_loop_survives_transient_70012(fake_sts: StsSandbox) -> None:
    fake_sts.use_scenario("msa-transient-70012")
    result, messages = sign_in_with_retries(fake_sts, "carol@outlook.com")
    assert result["id_token_claims"]["preferred_username"] == "carol@outlook.com"
    assert messages == ["Sign-in failed (HTTP Error: 500); retrying"] * 2
    attempts = fake_sts.journal.entries("token")
    assert [(e.status, e.aadsts, e.rule) for e in attempts] == [
        (500, 70012, "msa-transient-70012/msa-server-error"),
        (500, 70012, "msa-transient-70012/msa-server-error"),
        (200, None, None)]
    # Each attempt is its own MSAL call: its own client-request-id, echoed as the correlation id.
    assert all(e.client_request_id == e.correlation_id for e in attempts)
    assert len({e.correlation_id for e in attempts}) == 3


def test_azure_identity_retries_503_and_honours_retry_after(fake_sts: StsSandbox) -> None:
    fake_sts.fail("token", aadsts=90033, shape="temporarily_unavailable", retry_after=1, times=2)
    credential = ClientSecretCredential(fake_sts.tenant_id, fake_sts.daemon.client_id, fake_sts.daemon.secret or "",
                                        **fake_sts.azure_kwargs())
    assert credential.get_token("api://fakests-api/.default").token
    journal = fake_sts.journal
    assert [e.status for e in journal.entries("token")] == [503, 503, 200]
    waits = journal.waited("token")
    assert [asked for asked, _ in waits] == [1.0, 1.0]
    assert all(waited >= asked for asked, waited in waits), waits
    assert journal.early_retries() == []


def test_azure_identity_gives_up_after_its_retries(fake_sts: StsSandbox) -> None:
    fake_sts.fail("token", aadsts=90033, shape="temporarily_unavailable", retry_after=0)
    # A small backoff factor keeps the test fast; the number of attempts is what is proved.
    credential = ClientSecretCredential(fake_sts.tenant_id, fake_sts.daemon.client_id, fake_sts.daemon.secret or "",
                                        retry_backoff_factor=0.01, **fake_sts.azure_kwargs())
    with pytest.raises(ClientAuthenticationError, match="HTTP Error: 503"):
        credential.get_token("api://fakests-api/.default")
    assert fake_sts.journal.attempts("token") == 4  # azure-core: 1 try + 3 status retries (entra-wire.md §8.2)


def test_msal_answers_repeats_from_its_own_cache(fake_sts: StsSandbox) -> None:
    """MSAL Python keeps a 5xx answer for its Retry-After (entra-wire.md §7.7): a second call on the
    same app never reaches the STS; a new app does."""
    fake_sts.fail("token", aadsts=90033, shape="temporarily_unavailable", retry_after=30, times=1)
    app = fake_sts.msal_confidential()
    for _ in range(2):
        with pytest.raises(msal.exceptions.MsalServiceError, match="503"):
            app.acquire_token_for_client(["api://fakests-api/.default"])
    assert fake_sts.journal.attempts("token") == 1
    assert "access_token" in fake_sts.msal_confidential().acquire_token_for_client(["api://fakests-api/.default"])
    assert fake_sts.journal.attempts("token") == 2


def test_authorize_error_reaches_msal_with_the_correlation_id(fake_sts: StsSandbox) -> None:
    fake_sts.fail("authorize", aadsts=53003, claims='{"access_token":{"capolids":{"essential":true}}}')
    app = fake_sts.msal_confidential("web")
    flow = app.initiate_auth_code_flow(["User.Read"], redirect_uri=REDIRECT, response_mode="form_post")
    response = fake_sts.sign_in(flow["auth_uri"], REDIRECT)
    assert response["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, response)
    [entry] = fake_sts.journal.entries("authorize")
    assert result["error"] == "invalid_grant" and result["error_description"].startswith("AADSTS53003:")
    assert f"Correlation ID: {entry.correlation_id}" in result["error_description"]
    assert fake_sts.journal.attempts("token") == 0


@pytest.mark.parametrize("inprocess", TRANSPORTS)
@pytest.mark.parametrize(("fault", "raised"), [
    ("reset", requests.exceptions.ConnectionError),
    ("close_mid_body", requests.exceptions.ChunkedEncodingError),
    ("truncated_json", json.JSONDecodeError),
    ("hang", requests.exceptions.ConnectionError),
])
def test_transport_faults_reach_msal_as_network_failures(fake_sts: StsSandbox, inprocess: bool, fault: str,
                                                         raised: type[Exception]) -> None:
    fake_sts.fail("token", fault=fault, hang_seconds=0.3, times=1)
    app = fake_sts.msal_confidential(inprocess=inprocess)
    started = time.monotonic()
    with pytest.raises(raised):
        app.acquire_token_for_client(["api://fakests-api/.default"])
    assert time.monotonic() - started < 5
    [entry] = fake_sts.journal.entries("token")
    assert entry.fault == fault and entry.status == (0 if fault in ("reset", "hang") else 200)
    # The fault was one-off: a new app gets its token.
    assert "access_token" in fake_sts.msal_confidential(inprocess=inprocess).acquire_token_for_client(
        ["api://fakests-api/.default"])


def test_a_client_timeout_ends_a_hang(fake_sts: StsSandbox) -> None:
    fake_sts.fail("token", fault="hang", hang_seconds=30, times=1)
    credential = ClientSecretCredential(fake_sts.tenant_id, fake_sts.daemon.client_id, fake_sts.daemon.secret or "",
                                        retry_total=0, **fake_sts.azure_kwargs(inprocess=False, read_timeout=0.5))
    started = time.monotonic()
    with pytest.raises(ClientAuthenticationError):
        credential.get_token("api://fakests-api/.default")
    assert time.monotonic() - started < 5
