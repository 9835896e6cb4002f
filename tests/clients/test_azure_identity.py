"""Unmodified azure-identity 1.27 credentials get tokens from fakests (in-process and over TLS)."""

from __future__ import annotations

import pytest
from azure.identity import CertificateCredential, ClientSecretCredential, OnBehalfOfCredential

from fakests.testing.sandbox import StsSandbox
from tests.jwks import verify

TRANSPORTS = [pytest.param(True, id="inprocess"), pytest.param(False, id="tls")]


@pytest.mark.parametrize("inprocess", TRANSPORTS)
def test_client_secret_credential(fake_sts: StsSandbox, inprocess: bool) -> None:
    credential = ClientSecretCredential(fake_sts.tenant_id, fake_sts.daemon.client_id, fake_sts.daemon.secret or "",
                                        **fake_sts.azure_kwargs(inprocess=inprocess))
    token = credential.get_token(f"api://{fake_sts.api.client_id}/.default")
    claims = verify(token.token, fake_sts.http_client(inprocess=inprocess), fake_sts.authority(),
                    fake_sts.api.client_id)
    assert claims["roles"] == ["Data.Read"] and token.expires_on == claims["exp"]
    [entry] = fake_sts.journal.entries("token")
    assert entry.user_agent is not None and "azsdk-python-identity" in entry.user_agent


@pytest.mark.parametrize("inprocess", TRANSPORTS)
def test_certificate_credential(fake_sts: StsSandbox, inprocess: bool) -> None:
    credential = CertificateCredential(fake_sts.tenant_id, fake_sts.daemon.client_id, fake_sts.client_cert_path,
                                       **fake_sts.azure_kwargs(inprocess=inprocess))
    token = credential.get_token("api://fakests-api/.default")
    claims = verify(token.token, fake_sts.http_client(inprocess=inprocess), fake_sts.authority(),
                    fake_sts.api.client_id)
    assert claims["azpacr"] == "2"


@pytest.mark.parametrize("inprocess", TRANSPORTS)
def test_on_behalf_of_credential(fake_sts: StsSandbox, inprocess: bool) -> None:
    incoming = fake_sts.msal_public(inprocess=inprocess).acquire_token_by_username_password(
        "alice@contoso.com", fake_sts.password, [f"api://{fake_sts.api.client_id}/access_as_user"])["access_token"]
    credential = OnBehalfOfCredential(fake_sts.tenant_id, fake_sts.api.client_id, client_secret=fake_sts.api.secret,
                                      user_assertion=incoming, **fake_sts.azure_kwargs(inprocess=inprocess))
    token = credential.get_token("https://graph.microsoft.com/User.Read")
    claims = verify(token.token, fake_sts.http_client(inprocess=inprocess), fake_sts.authority(),
                    "https://graph.microsoft.com")
    assert claims["upn"] == "alice@contoso.com" and claims["scp"] == "User.Read"


def test_wrong_secret_reaches_the_user_with_the_correlation_id(fake_sts: StsSandbox) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    credential = ClientSecretCredential(fake_sts.tenant_id, fake_sts.daemon.client_id, "not-the-secret",
                                        **fake_sts.azure_kwargs())
    with pytest.raises(ClientAuthenticationError) as caught:
        credential.get_token("api://fakests-api/.default")
    [entry] = fake_sts.journal.entries("token")
    assert entry.aadsts == 7000215 and entry.status == 401
    assert "AADSTS7000215" in str(caught.value) and entry.correlation_id in str(caught.value)
