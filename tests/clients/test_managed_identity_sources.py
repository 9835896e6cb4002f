"""Azure Arc and Service Fabric managed identity, App Service's two ``expires_on`` shapes, and scripted expired /
malformed / missing tokens, with unmodified azure-identity 1.27 and MSAL Python 1.39 configured only by the
environment. Arc's clients run in a mount namespace of their own (``tests/arc.py``) where Arc's key directory
is the test's; every token is verified against the STS's JWKS.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import jwt
import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError, DefaultAzureCredential, ManagedIdentityCredential

from fakests.testing.sandbox import StsSandbox
from tests.arc import ARC_DIR, python_client, run_as_arc_client
from tests.jwks import verify

ARM = "https://management.azure.com"
VAULT = "https://vault.azure.net"


def _verified(fake_sts: StsSandbox, token: str, audience: str) -> dict[str, Any]:
    return verify(token, fake_sts.http_client(), fake_sts.authority(), audience)


@pytest.fixture
def key_dir(fake_sts: StsSandbox, tmp_path: Path) -> Path:
    """The directory this sandbox's Arc agent writes its keys into, seen by the client as Arc's own."""
    directory = tmp_path / "tokens"
    directory.mkdir()
    fake_sts.configure(arc_key_dir=directory)
    return directory


def _clean_env(**extra: str) -> dict[str, str]:
    drop = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_USERNAME")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


# --- Azure Arc ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("library", ["azure-identity", "azure-identity-async", "default", "msal"])
def test_arc_system_assigned(fake_sts: StsSandbox, key_dir: Path, library: str) -> None:
    """The challenge, the key read from /var/opt/azcmagent/tokens, the replay: a token, and the key file gone."""
    with fake_sts.managed_identity("arc") as variables:
        assert set(variables) == {"IDENTITY_ENDPOINT", "IMDS_ENDPOINT"}
        result = run_as_arc_client(python_client(library, ARM), key_dir, _clean_env())
    assert result["ok"], result
    claims = _verified(fake_sts, result["token"], ARM)
    assert claims["appid"] == fake_sts.system_identity.client_id and claims["idtyp"] == "app"
    entries = fake_sts.journal.entries("arc")
    assert [e.status for e in entries] == [401, 200]
    assert [e.params["api-version"] for e in entries] == ["2020-06-01"] * 2
    assert list(key_dir.iterdir()) == []  # the key was used, once


@pytest.mark.parametrize("library", ["azure-identity", "msal"])
def test_arc_user_assigned_is_echoed(fake_sts: StsSandbox, key_dir: Path, library: str) -> None:
    """Current clients forward the selector and accept the token only if the agent echoes it."""
    user = fake_sts.user_identity
    with fake_sts.managed_identity("arc"):
        result = run_as_arc_client(python_client(library, "api://fakests-api", user.client_id), key_dir, _clean_env())
    assert result["ok"], result
    claims = _verified(fake_sts, result["token"], fake_sts.api.client_id)
    assert claims["azp"] == user.client_id and claims["roles"] == ["Data.Read", "Data.Write"]
    assert fake_sts.journal.entries("arc")[-1].params["client_id"] == user.client_id


@pytest.mark.parametrize(("library", "raised"), [("azure-identity", "ClientAuthenticationError"),
                                                 ("msal", "ManagedIdentityError")])
def test_arc_legacy_agent_user_assigned_refused_by_the_client(fake_sts: StsSandbox, key_dir: Path,
                                                               library: str, raised: str) -> None:
    """``arc_user_assigned=False``: a legacy agent answers for the system-assigned identity; the clients fail
    closed rather than hand out a token of the wrong identity."""
    fake_sts.configure(arc_user_assigned=False)
    with fake_sts.managed_identity("arc"):
        result = run_as_arc_client(python_client(library, ARM, fake_sts.user_identity.client_id), key_dir,
                                   _clean_env())
    assert not result["ok"] and "did not confirm the requested user-assigned" in result["message"], result
    assert result["type"] == raised
    assert [e.status for e in fake_sts.journal.entries("arc")] == [401, 200]


@pytest.mark.parametrize(("library", "statuses"), [
    ("azure-identity", [429, 401, 200]),  # azure-core sleeps Retry-After (1 s, real: a child process), then the dance
    ("msal", [429]),  # anything but 401 first is an error to MSAL: {"error": "invalid_request", ...}
])
def test_arc_throttled_first(fake_sts: StsSandbox, key_dir: Path, library: str, statuses: list[int]) -> None:
    fake_sts.fail("arc", status=429, retry_after=1, times=1)
    with fake_sts.managed_identity("arc"):
        result = run_as_arc_client(python_client(library, ARM), key_dir, _clean_env())
    entries = fake_sts.journal.entries("arc")
    assert [e.status for e in entries] == statuses
    if library == "msal":
        assert not result["ok"] and '"invalid_request"' in result["message"], result
    else:
        assert result["ok"], result
        _verified(fake_sts, result["token"], ARM)
        assert fake_sts.journal.intervals("arc")[0] >= 1.0


def test_arc_wire(fake_sts: StsSandbox, key_dir: Path) -> None:
    """The challenge names a .key file under Arc's directory holding the key (at most 4096 bytes); the key
    opens one request; a wrong key gets a new challenge; Metadata and a known api-version are required; an
    unknown user-assigned identity is a 404."""
    url = fake_sts.identity_url("arc")
    params = {"api-version": "2020-06-01", "resource": ARM}
    first = requests.get(url, params=params, headers={"Metadata": "true"}, timeout=5)
    assert first.status_code == 401
    realm = first.headers["WWW-Authenticate"].removeprefix("Basic realm=")
    assert realm.startswith(ARC_DIR + "/") and realm.endswith(".key")
    key_file = key_dir / Path(realm).name
    assert key_file.stat().st_size <= 4096 and oct(key_file.stat().st_mode & 0o777) == "0o600"
    key = key_file.read_text()
    ok = requests.get(url, params=params, headers={"Metadata": "true", "Authorization": f"Basic {key}"}, timeout=5)
    assert ok.status_code == 200 and all(isinstance(v, str) for v in ok.json().values())
    again = requests.get(url, params=params, headers={"Metadata": "true", "Authorization": f"Basic {key}"}, timeout=5)
    assert again.status_code == 401 and again.headers["WWW-Authenticate"] != first.headers["WWW-Authenticate"]
    assert requests.get(url, params=params, timeout=5).json()["error"] == "bad_request_102"
    assert requests.get(url, params={**params, "api-version": "2018-02-01"}, headers={"Metadata": "true"},
                        timeout=5).status_code == 400
    challenge = requests.get(url, params={**params, "client_id": "00000000-0000-0000-0000-00000000dead"},
                             headers={"Metadata": "true"}, timeout=5)
    key = (key_dir / Path(challenge.headers["WWW-Authenticate"]).name).read_text()
    missing = requests.get(url, params={**params, "client_id": "00000000-0000-0000-0000-00000000dead"},
                           headers={"Metadata": "true", "Authorization": f"Basic {key}"}, timeout=5)
    assert (missing.status_code, missing.json()["error_description"]) == (404, "Identity not found")


def test_arc_keys_never_used_are_swept(fake_sts: StsSandbox, key_dir: Path) -> None:
    """A client that got a challenge and never replayed leaves its key file; the next challenge removes such
    files once they are ten minutes old (by the file system's clock), and nothing else in the directory."""
    url, params = fake_sts.identity_url("arc"), {"api-version": "2020-06-01", "resource": ARM}
    requests.get(url, params=params, headers={"Metadata": "true"}, timeout=5)
    [abandoned] = list(key_dir.iterdir())
    os.utime(abandoned, (time.time() - 601, time.time() - 601))
    other = key_dir / "not-fakests.key"
    other.write_text("x")
    os.utime(other, (time.time() - 3600, time.time() - 3600))
    requests.get(url, params=params, headers={"Metadata": "true"}, timeout=5)
    left = sorted(p.name for p in key_dir.iterdir())
    assert abandoned.name not in left and "not-fakests.key" in left and len(left) == 2


def test_arc_key_dir_missing_is_a_500_that_names_it(fake_sts: StsSandbox, tmp_path: Path) -> None:
    fake_sts.configure(arc_key_dir=tmp_path / "absent")
    answer = requests.get(fake_sts.identity_url("arc"), params={"api-version": "2020-06-01", "resource": ARM},
                          headers={"Metadata": "true"}, timeout=5)
    assert answer.status_code == 500 and str(tmp_path / "absent") in answer.json()["error_description"]
    assert not (tmp_path / "absent").exists()


# --- Service Fabric -------------------------------------------------------------------------------------
def test_service_fabric_azure_identity_and_msal(fake_sts: StsSandbox) -> None:
    """Over HTTPS on the STS's own origin, pinned by IDENTITY_SERVER_THUMBPRINT: MSAL Python checks the SHA-1
    of the server's certificate (and nothing else), azure-identity's sync credential goes through it."""
    with fake_sts.managed_identity("service_fabric") as variables:
        assert variables["IDENTITY_ENDPOINT"].startswith(fake_sts.url + "/")
        token = ManagedIdentityCredential().get_token(f"{VAULT}/.default")
        default = DefaultAzureCredential(exclude_cli_credential=True, exclude_developer_cli_credential=True,
                                         exclude_powershell_credential=True).get_token(f"{ARM}/.default")
        result = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(),
                                            http_client=requests.Session()).acquire_token_for_client(resource=VAULT)
    assert _verified(fake_sts, token.token, VAULT)["appid"] == fake_sts.system_identity.client_id
    assert abs(token.expires_on - _verified(fake_sts, token.token, VAULT)["exp"]) <= 1
    _verified(fake_sts, default.token, ARM)
    _verified(fake_sts, result["access_token"], VAULT)
    entries = fake_sts.journal.entries("service_fabric")
    assert [e.status for e in entries] == [200, 200, 200]
    assert {e.params["api-version"] for e in entries} == {"2019-07-01-preview"}


def test_service_fabric_wrong_thumbprint_is_refused_before_the_secret_leaves(fake_sts: StsSandbox) -> None:
    with fake_sts.managed_identity("service_fabric"):
        os.environ["IDENTITY_SERVER_THUMBPRINT"] = "00" * 20
        result = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(),
                                            http_client=requests.Session())
        with pytest.raises(requests.exceptions.SSLError, match="thumbprint does not match"):
            result.acquire_token_for_client(resource=VAULT)
    assert fake_sts.journal.entries("service_fabric") == []  # refused at the handshake: nothing reached fakests


def test_service_fabric_async_azure_identity_does_not_pin(fake_sts: StsSandbox) -> None:
    """azure-identity's async Service Fabric credential sends with ``connection_verify=False`` through azure-core
    (``service_fabric.py _get_client_args``): it neither pins the thumbprint nor checks the certificate, so a
    wrong IDENTITY_SERVER_THUMBPRINT still gets a token (and the Secret goes to whoever answers)."""
    import asyncio

    from azure.identity.aio import ManagedIdentityCredential as AsyncCredential

    async def main() -> Any:
        async with AsyncCredential() as credential:
            return await credential.get_token(f"{VAULT}/.default")

    with fake_sts.managed_identity("service_fabric"):
        os.environ["IDENTITY_SERVER_THUMBPRINT"] = "00" * 20
        token = asyncio.run(main())
    _verified(fake_sts, token.token, VAULT)
    assert [e.status for e in fake_sts.journal.entries("service_fabric")] == [200]


def test_service_fabric_user_assigned_refused_by_azure_identity(fake_sts: StsSandbox) -> None:
    """The cluster picks the identity: azure-identity refuses a selector before asking."""
    with fake_sts.managed_identity("service_fabric"), pytest.raises(ClientAuthenticationError, match="Service Fabric"):
        ManagedIdentityCredential(client_id=fake_sts.user_identity.client_id).get_token(f"{VAULT}/.default")
    assert fake_sts.journal.entries("service_fabric") == []


def test_service_fabric_wire_and_errors(fake_sts: StsSandbox) -> None:
    """Service Fabric's answer (``expires_on`` a number) and its error shape, which MSAL Python maps."""
    env = fake_sts.identity_environment("service_fabric")
    url, session = env["IDENTITY_ENDPOINT"], fake_sts.http_client(inprocess=False)
    params = {"api-version": "2019-07-01-preview", "resource": VAULT}
    ok = session.get(url, params=params, headers={"Secret": env["IDENTITY_HEADER"]}, timeout=5)
    assert ok.status_code == 200 and isinstance(ok.json()["expires_on"], int)
    assert set(ok.json()) == {"token_type", "access_token", "expires_on", "resource"}
    no_secret = session.get(url, params=params, timeout=5)
    assert no_secret.status_code == 401 and no_secret.json()["error"]["code"] == "SecretHeaderNotFound"
    assert set(no_secret.json()["error"]) == {"correlationId", "code", "message"}
    fake_sts.fail("service_fabric", status=404)
    with fake_sts.managed_identity("service_fabric"):
        result = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(),
                                            http_client=requests.Session()).acquire_token_for_client(resource=VAULT)
    assert result["error"] == "invalid_client" and "ManagedIdentityNotFound" in result["error_description"]


def test_not_assigned_scenario_on_arc_and_service_fabric(fake_sts: StsSandbox, key_dir: Path) -> None:
    """``managed-identity-not-assigned`` answers Arc and Service Fabric with their 404: the clients stop."""
    fake_sts.use_scenario("managed-identity-not-assigned")
    with fake_sts.managed_identity("service_fabric"), pytest.raises(CredentialUnavailableError,
                                                                   match="ManagedIdentityNotFound"):
        ManagedIdentityCredential().get_token(f"{VAULT}/.default")
    with fake_sts.managed_identity("arc"):
        result = run_as_arc_client(python_client("azure-identity", ARM), key_dir, _clean_env())
    assert not result["ok"] and "Identity not found" in result["message"], result
    assert [e.status for e in fake_sts.journal.entries("service_fabric")] == [404]
    assert [e.status for e in fake_sts.journal.entries("arc")] == [404]  # before any challenge: no key written
    assert list(key_dir.iterdir()) == []


def test_service_fabric_429_is_not_retried_by_azure_identity(fake_sts: StsSandbox) -> None:
    """azure-identity's sync Service Fabric credential sends through MSAL's pinned session, not the azure-core
    pipeline: a 429 is not retried, whatever its Retry-After (unlike IMDS); the app sees "unavailable"."""
    fake_sts.fail("service_fabric", status=429, retry_after=9, times=2)
    with (fake_sts.managed_identity("service_fabric"), fake_sts.virtual_time() as clock,
          pytest.raises(CredentialUnavailableError, match="Throttle limit reached")):
        ManagedIdentityCredential().get_token(f"{VAULT}/.default")
    assert [e.status for e in fake_sts.journal.entries("service_fabric")] == [429] and clock.slept == []


# --- App Service expires_on: epoch seconds or a date string ----------------------------------------------
def test_app_service_expires_on_epoch_and_date(fake_sts: StsSandbox) -> None:
    """What each client makes of the date string (``identity_expires_on="date"``), measured: none of the
    sync clients parses it (``int("12/07/2026 ...")`` raises ValueError); azure-identity's async Azure ML
    credential is the only one with a date parser."""
    env = fake_sts.identity_environment("app_service")
    params = {"api-version": "2019-08-01", "resource": VAULT}
    epoch = requests.get(env["IDENTITY_ENDPOINT"], params=params, headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
                         timeout=5).json()["expires_on"]
    assert epoch.isdigit()
    fake_sts.configure(identity_expires_on="date")
    date = requests.get(env["IDENTITY_ENDPOINT"], params=params, headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
                        timeout=5).json()["expires_on"]
    assert date.endswith(" +00:00") and time.strftime("%m/%d/%Y %H:%M:%S +00:00", time.gmtime(int(epoch))) == date
    with fake_sts.managed_identity("app_service"):
        with pytest.raises(ValueError, match="invalid literal for int"):
            ManagedIdentityCredential().get_token(f"{VAULT}/.default")
        with pytest.raises(ValueError, match="invalid literal for int"):
            msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(),
                                       http_client=requests.Session()).acquire_token_for_client(resource=VAULT)


def test_azure_ml_date_expires_on_parsed_by_async_azure_identity_only(fake_sts: StsSandbox) -> None:
    import asyncio

    from azure.identity.aio import ManagedIdentityCredential as AsyncCredential

    async def main() -> Any:
        async with AsyncCredential() as credential:
            return await credential.get_token(f"{VAULT}/.default")

    fake_sts.configure(identity_expires_on="date")
    with fake_sts.managed_identity("azure_ml"):
        token = asyncio.run(main())
        with pytest.raises(ValueError, match="invalid literal for int"):
            ManagedIdentityCredential().get_token(f"{VAULT}/.default")
        with pytest.raises(ValueError, match="invalid literal for int"):
            msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(),
                                       http_client=requests.Session()).acquire_token_for_client(resource=VAULT)
    claims = _verified(fake_sts, token.token, VAULT)
    assert token.expires_on == claims["exp"]


# --- scripted expired / malformed / missing tokens --------------------------------------------------------
@pytest.mark.parametrize("source", ["imds", "app_service", "azure_ml", "cloud_shell", "service_fabric"])
def test_expired_token_is_handed_out(fake_sts: StsSandbox, source: str) -> None:
    """``token: expired``: neither azure-identity nor MSAL Python checks; the app gets a token whose
    ``expires_on`` is already past (MSAL Python's cache then serves nothing: the next call asks again)."""
    fake_sts.fail(source, token="expired")
    with fake_sts.managed_identity(source):
        token = ManagedIdentityCredential().get_token(f"{VAULT}/.default")
    assert token.expires_on <= time.time() - 299
    with pytest.raises(jwt.ExpiredSignatureError):
        _verified(fake_sts, token.token, VAULT)
    _verified_expired = verify(token.token, fake_sts.http_client(), fake_sts.authority(), VAULT, leeway=330)
    assert _verified_expired["exp"] == token.expires_on  # signed by the STS all the same
    entry = fake_sts.journal.entries(source)[0]
    assert entry.status == 200 and entry.rule is not None


def test_expired_token_with_msal_python(fake_sts: StsSandbox) -> None:
    """MSAL Python hands the expired token out too (a negative ``expires_in``), and does not cache it: the
    next call asks again and gets a good one."""
    fake_sts.fail("imds", token="expired", times=1)
    with fake_sts.managed_identity("imds"):
        client = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(), http_client=requests.Session())
        first = client.acquire_token_for_client(resource=VAULT)
        second = client.acquire_token_for_client(resource=VAULT)
    assert first["expires_in"] <= -299 and second["expires_in"] > 80_000, (first, second)
    assert first["access_token"] != second["access_token"]
    _verified(fake_sts, second["access_token"], VAULT)
    assert [e.status for e in fake_sts.journal.entries("imds")] == [200, 200]


@pytest.mark.parametrize(("answer", "outcome"), [
    ("malformed", "token"),  # a 200 with access_token "dummy": handed out as is, no client looks inside
    ("missing", CredentialUnavailableError),  # no access_token: "unavailable", DefaultAzureCredential moves on
])
@pytest.mark.parametrize("source", ["imds", "app_service"])
def test_malformed_and_missing_tokens(fake_sts: StsSandbox, source: str, answer: str, outcome: Any) -> None:
    fake_sts.fail(source, token=answer)
    with fake_sts.managed_identity(source):
        if outcome == "token":
            assert ManagedIdentityCredential().get_token(f"{VAULT}/.default").token == "dummy"
        else:
            with pytest.raises(outcome):
                ManagedIdentityCredential().get_token(f"{VAULT}/.default")
    assert [e.status for e in fake_sts.journal.entries(source)] == [200]


def test_token_answers_are_checked_when_armed(fake_sts: StsSandbox) -> None:
    from fakests.state.errors import ConfigError

    with pytest.raises(ConfigError, match="managed-identity endpoints only"):
        fake_sts.fail("token", token="expired")
    with pytest.raises(ConfigError, match="normal answer"):
        fake_sts.fail("imds", token="expired", status=500)
