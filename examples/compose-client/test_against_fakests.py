"""Tests in their own container against the fakests service (service app-tests in docker-compose.yml).

``FAKESTS_URL`` (https://fakests:8443) makes the ``fake_sts`` fixture create a fresh sandbox on that
server through its admin API (``FAKESTS_ADMIN_TOKEN``; ``FAKESTS_CA`` is the CA the server exported to
the shared volume), so the tests are the same as with an in-process fakests. The app-style client below
has no fakests-specific TLS code: ``REQUESTS_CA_BUNDLE`` makes requests (so MSAL) trust the CA and
``SSL_CERT_FILE`` does the same for the standard library (urllib, used by PyJWT's JWKS client).

Run it yourself: docker compose run --rm app-tests
"""

from __future__ import annotations

import os

import jwt
import msal
import pytest
import requests

from fakests.testing.sandbox import StsSandbox

SCOPE = "api://fakests-api/.default"


def app_under_test(fake_sts: StsSandbox) -> msal.ConfidentialClientApplication:
    """How application code builds MSAL: ids, secret and authority from its configuration and MSAL's own
    HTTP session (which trusts REQUESTS_CA_BUNDLE). Fresh each call: MSAL caches 5xx answers per app."""
    return msal.ConfidentialClientApplication(fake_sts.daemon.client_id, client_credential=fake_sts.daemon.secret,
                                              authority=fake_sts.authority(), instance_discovery=False)


def test_client_credentials_token_verifies_against_the_published_keys(fake_sts: StsSandbox) -> None:
    result = app_under_test(fake_sts).acquire_token_for_client([SCOPE])
    assert "access_token" in result, result

    # What a resource server in this network does with the token: discovery, JWKS, signature, issuer.
    meta = requests.get(f"{fake_sts.authority()}/v2.0/.well-known/openid-configuration", timeout=10).json()
    assert meta["issuer"].startswith(os.environ.get("FAKESTS_URL", fake_sts.url))  # FAKESTS_PUBLIC_URL at work
    key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(result["access_token"])
    claims = jwt.decode(result["access_token"], key.key, algorithms=["RS256"], audience=fake_sts.api.client_id,
                        issuer=meta["issuer"])
    assert claims["azp"] == fake_sts.daemon.client_id and claims["roles"] == ["Data.Read"]


def test_one_transient_server_error_then_a_token(fake_sts: StsSandbox) -> None:
    rule = fake_sts.fail("token", aadsts=70012, times=1)  # AADSTS70012, HTTP 500, once

    with pytest.raises(msal.exceptions.MsalServiceError, match="500"):
        app_under_test(fake_sts).acquire_token_for_client([SCOPE])
    assert "access_token" in app_under_test(fake_sts).acquire_token_for_client([SCOPE])

    attempts = fake_sts.journal.entries("token")
    assert [(e.status, e.aadsts) for e in attempts] == [(500, 70012), (200, None)]
    assert all(e.client_id == fake_sts.daemon.client_id for e in attempts)
    assert (rule.matched, rule.fired) == (2, 1)
