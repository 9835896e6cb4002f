"""A user's own tests, as they would write them: tests/test_user_install.py copies this file into a
scratch project outside the repository (as tests/test_user.py) and runs it against fakests installed
from a built wheel. Its name keeps the repository's own pytest run from collecting it here."""

import jwt
import pytest

import fakests
from fakests import FakeSTS, StsSandbox


def test_public_surface() -> None:
    assert fakests.__version__
    assert FakeSTS.__name__ == "FakeSTS"


def test_retry_through_70012(fake_sts: StsSandbox) -> None:
    fake_sts.fail("token", aadsts=70012, times=1)
    app = fake_sts.msal_confidential()
    with pytest.raises(Exception, match="HTTP Error: 500"):  # MSAL Python raises on a 5xx
        app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
    app = fake_sts.msal_confidential()
    token = app.acquire_token_for_client(["https://graph.microsoft.com/.default"])["access_token"]
    jwks = jwt.PyJWKClient(fake_sts.authority() + "/discovery/v2.0/keys", ssl_context=_context(fake_sts))
    claims = jwt.decode(token, jwks.get_signing_key_from_jwt(token).key, algorithms=["RS256"],
                        audience="https://graph.microsoft.com")
    assert claims["tid"] == fake_sts.tenant_id
    assert [e.status for e in fake_sts.journal.entries("token")] == [500, 200]


def test_bundled_scenario(fake_sts: StsSandbox) -> None:
    (rule,) = fake_sts.use_scenario("service-unavailable-90033")  # the library ships inside the wheel
    with pytest.raises(Exception, match="HTTP Error: 503"):
        fake_sts.msal_confidential().acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert rule.fired == 1
    assert fake_sts.journal.entries("token")[0].status == 503


def test_over_tls(fake_sts: StsSandbox) -> None:
    app = fake_sts.msal_confidential(inprocess=False)
    assert "access_token" in app.acquire_token_for_client(["https://graph.microsoft.com/.default"])


def test_managed_identity_in_virtual_time(fake_sts: StsSandbox) -> None:
    """IMDS upgrading, as a VM app meets it: azure-identity's 410 retries run on the virtual clock
    (time-machine comes with the wheel), and the bundled scenario is there."""
    from azure.identity import CredentialUnavailableError, ManagedIdentityCredential

    fake_sts.use_scenario("imds-upgrading")
    with (fake_sts.managed_identity("imds"), fake_sts.virtual_time() as clock,
          pytest.raises(CredentialUnavailableError)):
        ManagedIdentityCredential().get_token("https://management.azure.com/.default")
    assert clock.slept == [5.0, 10.0, 20.0, 40.0]
    assert [e.status for e in fake_sts.journal.entries("imds")] == [410] * 6


def _context(fake_sts: StsSandbox):  # type: ignore[no-untyped-def]
    import ssl

    return ssl.create_default_context(cafile=fake_sts.ca_path)


@pytest.mark.parametrize("n", [1, 2])
def test_isolated(fake_sts: StsSandbox, n: int) -> None:
    assert fake_sts.journal.entries() == []
