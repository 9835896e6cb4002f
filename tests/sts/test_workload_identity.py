"""Workload identity federation at /token, on the wire: which AADSTS code each bad external assertion gets, and
the fake Kubernetes issuer's discovery document and JWKS (``sts/cluster.py``, ``state/kubernetes.py``)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import requests

from fakests.state.directory import App, FederatedCredential
from fakests.state.keys import SigningKey, new_key_and_cert
from fakests.testing.sandbox import StsSandbox

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def exchange(fake_sts: StsSandbox, assertion: str, client_id: str | None = None) -> requests.Response:
    return fake_sts.http_client().post(f"{fake_sts.authority()}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": client_id or fake_sts.daemon.client_id,
        "client_assertion_type": JWT_BEARER, "client_assertion": assertion,
        "scope": "https://graph.microsoft.com/.default"})


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def test_the_issuer_publishes_discovery_and_keys_that_verify_its_tokens(fake_sts: StsSandbox) -> None:
    session = fake_sts.http_client(inprocess=False)
    issuer = fake_sts.kubernetes_issuer()
    doc = session.get(f"{issuer}/.well-known/openid-configuration").json()
    assert doc == {"issuer": issuer, "jwks_uri": f"{issuer}/openid/v1/jwks", "response_types_supported": ["id_token"],
                   "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"]}
    keys = jwt.PyJWKSet.from_dict(session.get(doc["jwks_uri"]).json())
    token = fake_sts.service_account_token("apps", "billing", lifetime=600)
    key = next(k for k in keys.keys if k.key_id == jwt.get_unverified_header(token)["kid"])
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="api://AzureADTokenExchange", issuer=issuer)
    assert claims["sub"] == "system:serviceaccount:apps:billing" and claims["exp"] - claims["iat"] == 600
    assert claims["kubernetes.io"]["namespace"] == "apps"
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == "billing"
    assert session.get(f"{fake_sts.url}/kubernetes/Not_A_Label/openid/v1/jwks").status_code == 404


def test_a_service_account_token_gets_an_app_token(fake_sts: StsSandbox) -> None:
    response = exchange(fake_sts, fake_sts.service_account_token())
    assert response.status_code == 200, response.text
    token = claims_of(response.json()["access_token"])
    assert token["appid"] == fake_sts.daemon.client_id and token["appidacr"] == "2"
    [entry] = fake_sts.journal.entries("token")
    assert entry.params["client_assertion"] == "***"  # the assertion is a credential: redacted


def rejected(response: requests.Response, code: int) -> str:
    body = response.json()
    assert (response.status_code, body["error"], body["error_codes"]) == (401, "invalid_client", [code]), body
    description: str = body["error_description"]
    return description


def test_issuer_subject_and_audience_are_matched_in_that_order(fake_sts: StsSandbox) -> None:
    other = fake_sts.service_account_token(cluster="other")
    assert rejected(exchange(fake_sts, other), 700211).startswith(
        f"AADSTS700211: No matching federated identity record found for presented assertion issuer "
        f"'{fake_sts.kubernetes_issuer('other')}'. Please check your federated identity credential Subject, "
        "Audience and Issuer against the presented assertion.")
    # Case-sensitive, as Entra's matching has been since 2025.
    upper = fake_sts.service_account_token("Default")
    assert "presented assertion subject 'system:serviceaccount:Default:workload'" in rejected(
        exchange(fake_sts, upper), 700213)
    both_wrong = fake_sts.service_account_token("x", audience="api://x")
    rejected(exchange(fake_sts, both_wrong), 700213)
    audience = fake_sts.service_account_token(audience="api://AzureADTokenExchangeChina")
    assert "presented assertion audience 'api://AzureADTokenExchangeChina'" in rejected(
        exchange(fake_sts, audience), 700212)


def test_an_app_without_federated_credentials(fake_sts: StsSandbox) -> None:
    rejected(exchange(fake_sts, fake_sts.service_account_token(), fake_sts.web.client_id), 700211)


def forged(fake_sts: StsSandbox, key: SigningKey, kid: str) -> str:
    """The claims of a genuine service-account token, signed by ``key`` under the key id ``kid``."""
    claims = claims_of(fake_sts.service_account_token())
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": kid})


def test_signatures_are_checked_against_the_issuers_keys(fake_sts: StsSandbox) -> None:
    rogue = SigningKey(*new_key_and_cert("rogue"))
    description = rejected(exchange(fake_sts, forged(fake_sts, rogue, rogue.kid)), 7000272)
    assert description.startswith(
        f"AADSTS7000272: The certificate with identifier {rogue.kid} used to sign the federated credential could "
        f"not be found in the metadata of identity provider {fake_sts.kubernetes_issuer()}.")
    real_kid = jwt.get_unverified_header(fake_sts.service_account_token())["kid"]
    assert "did not match the expected signature value" in rejected(
        exchange(fake_sts, forged(fake_sts, rogue, real_kid)), 700027)
    token = fake_sts.service_account_token()
    head, body, signature = token.split(".")
    rejected(exchange(fake_sts, f"{head}.{body}.{signature[:-4]}AAAA"), 700027)


def test_time_range(fake_sts: StsSandbox) -> None:
    token = fake_sts.service_account_token(lifetime=60)
    fake_sts.advance(120)
    assert "Client assertion is not within its valid time range" in rejected(exchange(fake_sts, token), 700024)


def test_an_external_issuer_is_not_fetched(fake_sts: StsSandbox) -> None:
    """A credential trusting an issuer fakests does not publish (GitHub Actions here): fakests would have to fetch
    its keys from the internet, which it never does; Entra answers an unreachable issuer AADSTS501661."""
    github = "https://token.actions.githubusercontent.com"
    credential = FederatedCredential("gh", github, "repo:o/r:ref:refs/heads/main")
    app = fake_sts.add_app(App("33333333-0000-4000-8000-000000000001", "ci", fake_sts.tenant_id,
                               federated_credentials=[credential]))
    token = jwt.encode({"iss": github, "sub": "repo:o/r:ref:refs/heads/main", "aud": "api://AzureADTokenExchange",
                        "exp": time.time() + 300}, SigningKey(*new_key_and_cert("gh")).private_key, algorithm="RS256")
    assert rejected(exchange(fake_sts, token, app.client_id), 501661).startswith(
        "AADSTS501661: Request to External OIDC endpoint failed.")


@pytest.mark.parametrize("origin", ["https://login.microsoftonline.com", "https://sts.example.test:9443"])
def test_a_relative_issuer_matches_fakests_on_any_origin(fake_sts: StsSandbox, origin: str) -> None:
    """The default credential's issuer is ``/kubernetes/fakests``: tokens minted for any origin fakests is reached
    on (its TLS port, a public_url, Entra's host under intercept) are accepted."""
    token = fake_sts.service_account_token(issuer=f"{origin}/kubernetes/fakests")
    assert exchange(fake_sts, token).status_code == 200


def test_a_user_assigned_identity_takes_only_a_federated_assertion(fake_sts: StsSandbox) -> None:
    identity = fake_sts.user_identity
    response = exchange(fake_sts, fake_sts.service_account_token(), identity.client_id)
    assert response.status_code == 200, response.text
    assert claims_of(response.json()["access_token"])["oid"] == identity.object_id
    rejected(exchange(fake_sts, fake_sts.service_account_token("other"), identity.client_id), 700213)
    secret = fake_sts.http_client().post(f"{fake_sts.authority()}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": identity.client_id, "client_secret": "x",
        "scope": "https://graph.microsoft.com/.default"})
    rejected(secret, 7000215)
    # A system-assigned identity is no client of /token (Azure gives it no federated credentials).
    system = exchange(fake_sts, fake_sts.service_account_token(), fake_sts.system_identity.client_id)
    assert system.status_code == 400 and system.json()["error_codes"] == [700016]
    other_tenant = fake_sts.http_client().post(f"{fake_sts.authority(fake_sts.other_tenant_id)}/oauth2/v2.0/token",
                                               data={"grant_type": "client_credentials",
                                                     "client_id": identity.client_id,
                                                     "client_assertion_type": JWT_BEARER,
                                                     "client_assertion": fake_sts.service_account_token(),
                                                     "scope": "https://graph.microsoft.com/.default"})
    assert other_tenant.json()["error_codes"] == [700016]
