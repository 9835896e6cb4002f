"""The admin REST API (``/_fakests/``), driven in-process, with real MSAL clients proving the effects."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import msal
import pytest
import requests

from fakests.server.app import create_app, create_identity_app
from fakests.state import defaults
from fakests.state.directory import FIRST_PARTY_APP_IDS, GRAPH_APP_ID, MSA_TENANT_ID, Certificate
from fakests.state.settings import Settings
from fakests.testing.transport import session_for
from tests.inprocess import ADMIN, ORIGIN

# ROPC is how these tests sign users in without a browser; MSAL deprecates it for public clients.
pytestmark = pytest.mark.filterwarnings("ignore:This API has been deprecated:DeprecationWarning")



def app_id(sb: dict[str, Any], display_name: str) -> str:
    return next(a["client_id"] for a in sb["directory"]["apps"] if a["display_name"] == display_name)


def public_app(s: requests.Session, client_id: str, tenant: str) -> msal.PublicClientApplication:
    # A fresh MSAL app per attempt: MSAL caches error answers per app object (design-notes, traps).
    return msal.PublicClientApplication(client_id, authority=f"{ORIGIN}/{tenant}", http_client=s,
                                        instance_discovery=False)


def ropc(s: requests.Session, sb: dict[str, Any], username: str, password: str,
         client_id: str | None = None, scopes: tuple[str, ...] = ("User.Read",)) -> dict[str, Any]:
    pca = public_app(s, client_id or app_id(sb, "fakests desktop"), sb["tenant_id"])
    result: dict[str, Any] = pca.acquire_token_by_username_password(username, password, scopes=list(scopes))
    return result


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def assert_error(r: requests.Response, status: int, error: str, description: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert description in body["error_description"], body["error_description"]


# --- health, CA, access control -----------------------------------------------------------------------
def test_health(s: requests.Session) -> None:
    r = s.get(f"{ADMIN}/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_ca_pem_is_404_when_tls_is_off(s: requests.Session) -> None:
    assert_error(s.get(f"{ADMIN}/ca.pem"), 404, "not_found", "TLS is off")


def test_ca_pem_serves_the_ca_certificate(tmp_path: Path) -> None:
    app = create_app(Settings(state_dir=tmp_path, tls=True))
    r = session_for(app, ORIGIN).get(f"{ADMIN}/ca.pem")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == (tmp_path / "tls" / "ca.pem").read_text()
    assert r.text.startswith("-----BEGIN CERTIFICATE-----")


def test_admin_token_guards_everything_but_health(state_dir: Path) -> None:
    s = session_for(create_app(Settings(state_dir=state_dir, tls=False, admin_token="s3cret")), ORIGIN)
    assert s.get(f"{ADMIN}/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        r = s.get(f"{ADMIN}/sandboxes", headers=headers)
        assert_error(r, 401, "unauthorized", "Authorization: Bearer")
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert s.post(f"{ADMIN}/sandboxes").status_code == 401
    assert s.get(f"{ADMIN}/ca.pem").status_code == 401
    ok = s.get(f"{ADMIN}/sandboxes", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert [sb["sandbox_id"] for sb in ok.json()["sandboxes"]] == ["default"]


# --- sandboxes ----------------------------------------------------------------------------------------
def test_default_sandbox_shows_the_builtin_directory(s: requests.Session, state_dir: Path) -> None:
    r = s.get(f"{ADMIN}/sandboxes/default")
    assert r.status_code == 200
    body = r.json()
    assert body["sandbox_id"] == "default"
    assert body["tenant_id"] == defaults.TENANT_ID
    assert body["authority"] == f"{ORIGIN}/{defaults.TENANT_ID}"
    assert body["authorities"]["common"] == f"{ORIGIN}/common"
    assert body["authorities"][MSA_TENANT_ID] == f"{ORIGIN}/{MSA_TENANT_ID}"
    d = body["directory"]
    contoso = next(t for t in d["tenants"] if t["tenant_id"] == defaults.TENANT_ID)
    assert contoso["display_name"] == "Contoso"
    assert defaults.TENANT_DOMAIN in contoso["domains"]
    apps = {a["client_id"]: a for a in d["apps"]}
    assert set(apps) == {*FIRST_PARTY_APP_IDS, defaults.DAEMON_ID, defaults.WEB_ID, defaults.API_ID,
                         defaults.PUBLIC_ID, defaults.SPA_ID}
    daemon = apps[defaults.DAEMON_ID]
    assert daemon["secrets"] == [{"value": defaults.DAEMON_SECRET, "expires_at": None, "hint": "dae"}]
    cert = Certificate((state_dir / "client" / "client-cert.pem").read_text())
    assert daemon["certificates"][0]["x5t"] == cert.x5t
    assert daemon["certificates"][0]["x5t#S256"] == cert.x5t_s256
    assert apps[defaults.PUBLIC_ID]["public_client"] is True
    spa = apps[defaults.SPA_ID]
    assert spa["spa_redirect_uris"] == defaults.SPA_REDIRECT_URIS
    assert (spa["secrets"], spa["redirect_uris"], spa["web_redirect_uris"], spa["public_client_redirect_uris"]) == (
        [], [], [], [])
    assert apps[defaults.API_ID]["identifier_uris"] == [defaults.API_URI]
    assert apps[GRAPH_APP_ID]["access_token_version"] == 1
    alice = next(u for u in d["users"] if u["username"] == "alice@contoso.com")
    assert alice | {"oid": None} == {
        "username": "alice@contoso.com", "display_name": "Alice Smith", "password": defaults.PASSWORD,
        "oid": None, "tenant_id": defaults.TENANT_ID, "account_type": "work", "disabled": False, "locked": False,
        "password_expired": False, "given_name": "Alice", "family_name": "Smith", "tokens_valid_from": 0.0}
    assert {"principal": defaults.DAEMON_ID, "resource": defaults.API_ID, "roles": ["Data.Read"]} in d[
        "role_assignments"]
    assert {"client_id": defaults.PUBLIC_ID, "resource": defaults.API_ID,
            "scopes": ["Data.Read", "access_as_user"]} in d["consents"]


def test_create_list_get_delete(s: requests.Session) -> None:
    r = s.post(f"{ADMIN}/sandboxes")
    assert r.status_code == 201
    created = r.json()
    sid, tid = created["sandbox_id"], created["tenant_id"]
    assert tid != defaults.TENANT_ID
    assert created["authority"] == f"{ORIGIN}/{tid}"
    assert created["auto_sign_in"] is False
    assert {u["username"] for u in created["directory"]["users"]} >= {"alice@contoso.com", "carol@outlook.com"}
    assert sid in [sb["sandbox_id"] for sb in s.get(f"{ADMIN}/sandboxes").json()["sandboxes"]]
    got = s.get(f"{ADMIN}/sandboxes/{sid}").json()
    assert got["directory"] == created["directory"]
    # The new tenant is routable: its discovery document answers with its own GUID.
    disco = s.get(f"{ORIGIN}/{tid}/v2.0/.well-known/openid-configuration")
    assert disco.json()["issuer"] == f"{ORIGIN}/{tid}/v2.0"
    assert s.delete(f"{ADMIN}/sandboxes/{sid}").status_code == 204
    assert_error(s.get(f"{ADMIN}/sandboxes/{sid}"), 404, "not_found", sid)
    assert_error(s.delete(f"{ADMIN}/sandboxes/{sid}"), 404, "not_found", sid)
    assert sid not in [sb["sandbox_id"] for sb in s.get(f"{ADMIN}/sandboxes").json()["sandboxes"]]


def test_default_sandbox_cannot_be_deleted(s: requests.Session) -> None:
    assert_error(s.delete(f"{ADMIN}/sandboxes/default"), 400, "invalid_request", "default sandbox")
    assert s.get(f"{ADMIN}/sandboxes/default").status_code == 200


def test_create_with_auto_sign_in_and_patch(s: requests.Session) -> None:
    r = s.post(f"{ADMIN}/sandboxes", json={"auto_sign_in": True})
    assert r.status_code == 201
    sid = r.json()["sandbox_id"]
    assert r.json()["auto_sign_in"] is True
    patched = s.patch(f"{ADMIN}/sandboxes/{sid}", json={"auto_sign_in": False})
    assert patched.status_code == 200
    assert patched.json()["auto_sign_in"] is False
    assert s.get(f"{ADMIN}/sandboxes/{sid}").json()["auto_sign_in"] is False
    s.delete(f"{ADMIN}/sandboxes/{sid}")


def test_sandbox_limit_is_429(state_dir: Path) -> None:
    s = session_for(create_app(Settings(state_dir=state_dir, tls=False, max_sandboxes=2)), ORIGIN)
    assert s.post(f"{ADMIN}/sandboxes").status_code == 201
    assert_error(s.post(f"{ADMIN}/sandboxes"), 429, "too_many_sandboxes", "max_sandboxes")


# --- directory: users, apps, consents, role assignments -------------------------------------------------
def test_added_user_signs_in_with_msal(s: requests.Session, sandbox: dict[str, Any]) -> None:
    sid = sandbox["sandbox_id"]
    r = s.post(f"{ADMIN}/sandboxes/{sid}/users",
               json={"username": "zoe@contoso.com", "display_name": "Zoe New", "password": "Zoe-pw-1"})
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["tenant_id"] == sandbox["tenant_id"]  # the home tenant when none is given
    assert len(user["oid"]) == 36
    result = ropc(s, sandbox, "zoe@contoso.com", "Zoe-pw-1")
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == "zoe@contoso.com"
    assert result["id_token_claims"]["oid"] == user["oid"]
    assert result["id_token_claims"]["tid"] == sandbox["tenant_id"]
    listed = s.get(f"{ADMIN}/sandboxes/{sid}").json()["directory"]["users"]
    assert user in listed
    # The same username again is refused; the directory is unchanged.
    again = s.post(f"{ADMIN}/sandboxes/{sid}/users",
                   json={"username": "ZOE@contoso.com", "display_name": "Zoe Two", "password": "x"})
    assert_error(again, 400, "invalid_request", "username: duplicate username 'ZOE@contoso.com'")
    assert len(s.get(f"{ADMIN}/sandboxes/{sid}").json()["directory"]["users"]) == len(listed)


def test_added_personal_account_defaults_to_the_msa_tenant(s: requests.Session, sandbox: dict[str, Any]) -> None:
    r = s.post(f"{ADMIN}/sandboxes/{sandbox['sandbox_id']}/users",
               json={"username": "pat@outlook.com", "display_name": "Pat", "password": "pw", "account_type": "msa"})
    assert r.status_code == 201, r.text
    assert (r.json()["tenant_id"], r.json()["account_type"]) == (MSA_TENANT_ID, "msa")


def test_added_public_app_needs_consent_then_works(s: requests.Session, sandbox: dict[str, Any]) -> None:
    sid = sandbox["sandbox_id"]
    r = s.post(f"{ADMIN}/sandboxes/{sid}/apps",
               json={"display_name": "new desktop", "public_client": True, "redirect_uris": ["http://localhost"]})
    assert r.status_code == 201, r.text
    app = r.json()
    assert app["tenant_id"] == sandbox["tenant_id"]
    assert len(app["client_id"]) == 36 and app["public_client"] is True and app["secrets"] == []
    denied = ropc(s, sandbox, "alice@contoso.com", defaults.PASSWORD, client_id=app["client_id"])
    assert denied["error_codes"] == [65001], denied
    consent = s.post(f"{ADMIN}/sandboxes/{sid}/consents",
                     json={"client_id": app["client_id"], "resource": "https://graph.microsoft.com",
                           "scopes": ["User.Read", "openid", "profile", "offline_access"]})
    assert consent.status_code == 201, consent.text
    assert consent.json() == {"client_id": app["client_id"], "resource": GRAPH_APP_ID,
                              "scopes": ["User.Read", "offline_access", "openid", "profile"]}
    result = ropc(s, sandbox, "alice@contoso.com", defaults.PASSWORD, client_id=app["client_id"])
    assert "access_token" in result, result
    assert claims(result["access_token"])["scp"] == "User.Read"
    assert claims(result["access_token"])["appid"] == app["client_id"]


def test_added_app_with_redirect_uris_by_platform(s: requests.Session, sandbox: dict[str, Any]) -> None:
    sid = sandbox["sandbox_id"]
    r = s.post(f"{ADMIN}/sandboxes/{sid}/apps", json={
        "display_name": "new spa", "spa_redirect_uris": ["https://spa.example.test/"],
        "web_redirect_uris": ["https://web.example.test/cb"], "public_client_redirect_uris": ["myapp://auth"]})
    assert r.status_code == 201, r.text
    app = r.json()
    assert (app["spa_redirect_uris"], app["web_redirect_uris"], app["public_client_redirect_uris"],
            app["redirect_uris"]) == (["https://spa.example.test/"], ["https://web.example.test/cb"],
                                      ["myapp://auth"], [])
    listed = s.get(f"{ADMIN}/sandboxes/{sid}").json()["directory"]["apps"]
    assert next(a for a in listed if a["client_id"] == app["client_id"])["spa_redirect_uris"] == [
        "https://spa.example.test/"]
    clash = s.post(f"{ADMIN}/sandboxes/{sid}/apps", json={
        "display_name": "two platforms", "web_redirect_uris": ["https://x.example.test/"],
        "spa_redirect_uris": ["https://x.example.test/"]})
    assert clash.status_code == 400, clash.text
    assert "spa_redirect_uris[0]" in clash.json()["error_description"]
    assert "belongs to one platform" in clash.json()["error_description"]


def test_added_app_with_a_federated_credential(s: requests.Session, sandbox: dict[str, Any]) -> None:
    """An app trusting the fake cluster's ``ci/runner``, registered over the admin API, then used: the token from
    ``POST .../kubernetes/token`` is its client assertion."""
    sid = sandbox["sandbox_id"]
    r = s.post(f"{ADMIN}/sandboxes/{sid}/apps", json={"display_name": "runner", "federated_credentials": [
        {"name": "ci", "issuer": "/kubernetes/ci", "subject": "system:serviceaccount:ci:runner"}]})
    assert r.status_code == 201, r.text
    app = r.json()
    assert app["federated_credentials"] == [{"name": "ci", "issuer": "/kubernetes/ci", "description": "",
                                             "subject": "system:serviceaccount:ci:runner",
                                             "audiences": ["api://AzureADTokenExchange"]}]
    minted = s.post(f"{ADMIN}/sandboxes/{sid}/kubernetes/token",
                    json={"namespace": "ci", "service_account": "runner", "cluster": "ci"}).json()
    exchanged = s.post(f"{ORIGIN}/{sandbox['tenant_id']}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": app["client_id"], "client_assertion": minted["token"],
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "scope": "https://graph.microsoft.com/.default"})
    assert exchanged.status_code == 200, exchanged.text
    assert claims(exchanged.json()["access_token"])["appid"] == app["client_id"]
    bad = s.post(f"{ADMIN}/sandboxes/{sid}/apps", json={"display_name": "bad", "federated_credentials": [
        {"name": "x", "issuer": "http://insecure.example", "subject": "s"}]})
    assert bad.status_code == 400 and "federated_credentials[0].issuer" in bad.json()["error_description"]


def test_added_confidential_app_with_role_assignment(s: requests.Session, sandbox: dict[str, Any]) -> None:
    sid = sandbox["sandbox_id"]
    r = s.post(f"{ADMIN}/sandboxes/{sid}/apps",
               json={"display_name": "worker", "secrets": [{"value": "worker-secret", "expires_at": None}],
                     "certificates": ["default"]})
    assert r.status_code == 201, r.text
    app = r.json()
    assert app["secrets"] == [{"value": "worker-secret", "expires_at": None, "hint": "wor"}]
    assert len(app["certificates"]) == 1 and set(app["certificates"][0]) == {"x5t", "x5t#S256", "not_after"}
    assigned = s.post(f"{ADMIN}/sandboxes/{sid}/role-assignments",
                      json={"principal": app["client_id"], "resource": defaults.API_URI, "roles": ["Data.Write"]})
    assert assigned.status_code == 201, assigned.text
    api_id = app_id(sandbox, "fakests api")
    assert assigned.json() == {"principal": app["client_id"], "resource": api_id, "roles": ["Data.Write"]}
    cca = msal.ConfidentialClientApplication(app["client_id"], client_credential="worker-secret",
                                             authority=f"{ORIGIN}/{sandbox['tenant_id']}", http_client=s,
                                             instance_discovery=False)
    result = cca.acquire_token_for_client([f"{defaults.API_URI}/.default"])
    assert "access_token" in result, result
    assert claims(result["access_token"])["roles"] == ["Data.Write"]
    assert claims(result["access_token"])["aud"] == api_id


def test_role_assignment_to_a_user_by_username(s: requests.Session, sandbox: dict[str, Any]) -> None:
    sid = sandbox["sandbox_id"]
    r = s.post(f"{ADMIN}/sandboxes/{sid}/role-assignments",
               json={"principal": "bob@contoso.com", "resource": defaults.API_URI, "roles": ["Data.Read"]})
    assert r.status_code == 201, r.text
    bob = next(u for u in sandbox["directory"]["users"] if u["username"] == "bob@contoso.com")
    assert r.json()["principal"] == bob["oid"]
    roles = s.get(f"{ADMIN}/sandboxes/{sid}").json()["directory"]["role_assignments"]
    assert {"principal": bob["oid"], "resource": app_id(sandbox, "fakests api"), "roles": ["Data.Read"]} in roles


def test_client_id_must_be_unique_across_sandboxes(s: requests.Session, sandbox: dict[str, Any]) -> None:
    r = s.post(f"{ADMIN}/sandboxes/{sandbox['sandbox_id']}/apps",
               json={"client_id": defaults.DAEMON_ID, "display_name": "copy"})
    assert_error(r, 400, "invalid_request", f"client_id: {defaults.DAEMON_ID} is already registered in sandbox "
                                            "'default'")


# --- managed identities ----------------------------------------------------------------------------------
def test_added_identities_get_tokens_and_one_becomes_the_vm(state_dir: Path) -> None:
    """POST managed-identities, then the sandbox's IMDS endpoint (its own app, in-process) answers for them: the
    system-assigned one with no selector once it is ``hosted_on``, the user-assigned one by its client id."""
    app = create_app(Settings(state_dir=state_dir, tls=False))
    s = session_for(app, ORIGIN)
    imds = session_for(create_identity_app(app.state.runtime, ORIGIN), "http://imds.test")
    sandbox = s.post(f"{ADMIN}/sandboxes").json()
    sid, tenant = sandbox["sandbox_id"], sandbox["tenant_id"]
    r = s.post(f"{ADMIN}/sandboxes/{sid}/managed-identities",
               json={"resource_id": VM2, "display_name": "vm2", "hosted_on": True})
    assert r.status_code == 201, r.text
    vm = r.json()
    assert (vm["kind"], vm["tenant_id"], vm["resource_id"], vm["hosted_on"]) == ("system", tenant, VM2, True)
    r = s.post(f"{ADMIN}/sandboxes/{sid}/managed-identities",
               json={"resource_id": UAMI2, "kind": "user", "client_id": "6e0e0e0e-0000-4000-8000-0000000000aa"})
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["client_id"] == "6e0e0e0e-0000-4000-8000-0000000000aa" and user["hosted_on"] is False
    directory = s.get(f"{ADMIN}/sandboxes/{sid}").json()["directory"]
    assert directory["hosted_on"] == VM2
    listed = {i["client_id"]: i for i in directory["managed_identities"]}
    assert listed[vm["client_id"]] | {"hosted_on": True} == vm
    assert listed[user["client_id"]] | {"hosted_on": False} == user

    def token(**selector: str) -> dict[str, Any]:
        r = imds.get(f"http://imds.test/{tenant}/metadata/identity/oauth2/token", headers={"Metadata": "true"},
                     params={"api-version": "2018-02-01", "resource": "https://management.azure.com", **selector})
        assert r.status_code == 200, r.text
        return claims(r.json()["access_token"])

    assert (token()["oid"], token()["xms_mirid"]) == (vm["object_id"], VM2)
    by_client_id = token(client_id=user["client_id"])
    assert (by_client_id["appid"], by_client_id["xms_mirid"], by_client_id["xms_az_rid"]) == (
        user["client_id"], UAMI2, VM2)


def test_identity_endpoint_names_the_host_the_caller_reached(state_dir: Path) -> None:
    """Where a remote sandbox's code reaches the managed-identity endpoints: the public URL's host, else the
    host of the admin request; the port is the one they listen on."""
    from fakests.sts.identity import identity_header

    for public_url, host in ((None, "fakests.test"), ("https://fakests:8443", "fakests")):
        app = create_app(Settings(state_dir=state_dir, tls=False, public_url=public_url))
        app.state.runtime.identity_listener = lambda: 8480
        s = session_for(app, ORIGIN)
        sandbox = s.post(f"{ADMIN}/sandboxes").json()
        sid, tenant = sandbox["sandbox_id"], sandbox["tenant_id"]
        imds = s.get(f"{ADMIN}/sandboxes/{sid}/identity-endpoint").json()
        base = f"http://{host}:8480/{tenant}"
        assert imds == {"sandbox_id": sid, "source": "imds", "identity_url": base,
                        "endpoint": f"{base}/metadata/identity/oauth2/token",
                        "environment": {"AZURE_POD_IDENTITY_AUTHORITY_HOST": base}}
        app_service = s.get(f"{ADMIN}/sandboxes/{sid}/identity-endpoint", params={"source": "app_service"}).json()
        assert app_service["environment"] == {"IDENTITY_ENDPOINT": f"{base}/msi/token",
                                              "IDENTITY_HEADER": identity_header(tenant)}


# --- users: state changes and revocation ---------------------------------------------------------------
@pytest.mark.parametrize(("change", "code"), [({"disabled": True}, 50057), ({"locked": True}, 50053),
                                              ({"password_expired": True}, 50055)])
def test_patch_user_state_is_enforced(s: requests.Session, sandbox: dict[str, Any], change: dict[str, bool],
                                      code: int) -> None:
    url = f"{ADMIN}/sandboxes/{sandbox['sandbox_id']}/users/bob@contoso.com"
    assert "access_token" in ropc(s, sandbox, "bob@contoso.com", defaults.PASSWORD)
    r = s.patch(url, json=change)
    assert r.status_code == 200, r.text
    assert r.json() | change == r.json()
    assert ropc(s, sandbox, "bob@contoso.com", defaults.PASSWORD)["error_codes"] == [code]
    assert s.patch(url, json={k: False for k in change}).status_code == 200
    assert "access_token" in ropc(s, sandbox, "bob@contoso.com", defaults.PASSWORD)


def test_patch_password(s: requests.Session, sandbox: dict[str, Any]) -> None:
    r = s.patch(f"{ADMIN}/sandboxes/{sandbox['sandbox_id']}/users/bob@contoso.com", json={"password": "N3w-pw"})
    assert r.status_code == 200 and r.json()["password"] == "N3w-pw"
    assert ropc(s, sandbox, "bob@contoso.com", defaults.PASSWORD)["error_codes"] == [50126]
    assert "access_token" in ropc(s, sandbox, "bob@contoso.com", "N3w-pw")


def test_tokens_valid_from_revokes_refresh_tokens(s: requests.Session, sandbox: dict[str, Any]) -> None:
    pca = public_app(s, app_id(sandbox, "fakests desktop"), sandbox["tenant_id"])
    first = pca.acquire_token_by_username_password("alice@contoso.com", defaults.PASSWORD, scopes=["User.Read"])
    assert "refresh_token" in first, first
    account = pca.get_accounts()[0]
    refreshed = pca.acquire_token_silent_with_error(["User.Read"], account, force_refresh=True)
    assert refreshed is not None and "access_token" in refreshed, refreshed
    r = s.patch(f"{ADMIN}/sandboxes/{sandbox['sandbox_id']}/users/alice@contoso.com",
                json={"tokens_valid_from": "now"})
    assert r.status_code == 200
    assert r.json()["tokens_valid_from"] == pytest.approx(time.time(), abs=5)
    revoked = pca.acquire_token_silent_with_error(["User.Read"], account, force_refresh=True)
    assert revoked is not None and revoked["error"] == "invalid_grant", revoked
    assert revoked["error_codes"] == [50173]
    # A fresh sign-in after the revocation works again.
    assert "access_token" in ropc(s, sandbox, "alice@contoso.com", defaults.PASSWORD)


def test_patch_unknown_user_is_404(s: requests.Session, sandbox: dict[str, Any]) -> None:
    r = s.patch(f"{ADMIN}/sandboxes/{sandbox['sandbox_id']}/users/nobody@contoso.com", json={"locked": True})
    assert_error(r, 404, "not_found", "nobody@contoso.com")


# --- journal, clock, keys ------------------------------------------------------------------------------
def test_journal_list_filter_and_clear(s: requests.Session, sandbox: dict[str, Any]) -> None:
    url = f"{ADMIN}/sandboxes/{sandbox['sandbox_id']}/journal"
    assert s.get(url).json() == {"entries": []}
    assert "access_token" in ropc(s, sandbox, "alice@contoso.com", defaults.PASSWORD)
    assert ropc(s, sandbox, "alice@contoso.com", "wrong")["error_codes"] == [50126]
    entries = s.get(url, params={"endpoint": "token"}).json()["entries"]
    assert [e["status"] for e in entries] == [200, 400]
    assert all(e["grant_type"] == "password" and e["sandbox"] == sandbox["sandbox_id"] for e in entries)
    assert entries[0]["params"]["password"] == "***"  # secrets are redacted
    assert entries[1]["aadsts"] == 50126
    failed = s.get(url, params={"status": "400"}).json()["entries"]
    assert [e["seq"] for e in failed] == [entries[1]["seq"]]
    assert s.get(url, params={"since": str(entries[0]["seq"]), "endpoint": "token"}).json()["entries"] == [entries[1]]
    by_corr = s.get(url, params={"correlation_id": entries[0]["correlation_id"]}).json()["entries"]
    assert by_corr == [entries[0]]
    assert s.get(url, params={"client_id": "nope", "grant_type": "password"}).json()["entries"] == []
    assert len(s.get(url, params={"client_id": app_id(sandbox, "fakests desktop")}).json()["entries"]) >= 2
    assert_error(s.get(url, params={"status": "bad"}), 400, "invalid_request", "status: must be a whole number")
    assert_error(s.get(url, params={"user": "x"}), 400, "invalid_request", "user: unknown filter")
    assert s.delete(url).status_code == 204
    assert s.get(url).json() == {"entries": []}


def test_clock_advance_expires_refresh_tokens(s: requests.Session, sandbox: dict[str, Any]) -> None:
    pca = public_app(s, app_id(sandbox, "fakests desktop"), sandbox["tenant_id"])
    assert "refresh_token" in pca.acquire_token_by_username_password("alice@contoso.com", defaults.PASSWORD,
                                                                     scopes=["User.Read"])
    r = s.post(f"{ADMIN}/sandboxes/{sandbox['sandbox_id']}/clock", json={"advance": 91 * 86400})
    assert r.status_code == 200
    assert r.json()["clock_offset"] == 91 * 86400
    assert r.json()["now"] == pytest.approx(time.time() + 91 * 86400, abs=5)
    expired = pca.acquire_token_silent_with_error(["User.Read"], pca.get_accounts()[0], force_refresh=True)
    assert expired is not None and expired["error_codes"] == [700082], expired
    back = s.post(f"{ADMIN}/sandboxes/{sandbox['sandbox_id']}/clock", json={"advance": -86400.5})
    assert back.json()["clock_offset"] == 90 * 86400 - 0.5


def test_service_account_token(s: requests.Session, sandbox: dict[str, Any]) -> None:
    """A fake-cluster token on the sandbox clock, verifiable with the issuer's published JWKS."""
    s.post(f"{ADMIN}/sandboxes/{sandbox['sandbox_id']}/clock", json={"advance": 3600})
    r = s.post(f"{ADMIN}/sandboxes/{sandbox['sandbox_id']}/kubernetes/token",
               json={"namespace": "apps", "service_account": "api", "lifetime": 120, "cluster": "dev"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["issuer"] == f"{ORIGIN}/kubernetes/dev" and body["subject"] == "system:serviceaccount:apps:api"
    keys = jwt.PyJWKSet.from_dict(s.get(f"{body['issuer']}/openid/v1/jwks").json())
    claims = jwt.decode(body["token"], keys.keys[0].key, algorithms=["RS256"], audience="api://AzureADTokenExchange",
                        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
    assert claims["exp"] - claims["iat"] == 120 and claims["iat"] == pytest.approx(time.time() + 3600, abs=5)


def test_keys_rotate(s: requests.Session, sandbox: dict[str, Any]) -> None:
    tid = sandbox["tenant_id"]
    before = [k["kid"] for k in s.get(f"{ORIGIN}/{tid}/discovery/v2.0/keys").json()["keys"]]
    r = s.post(f"{ADMIN}/sandboxes/{sandbox['sandbox_id']}/keys/rotate")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["previous_kid"] == before[-1] and body["kid"] not in before
    assert body["sandbox_id"] == sandbox["sandbox_id"]
    after = [k["kid"] for k in s.get(f"{ORIGIN}/{tid}/discovery/v2.0/keys").json()["keys"]]
    assert after == body["published"] and body["kid"] in after and body["previous_kid"] in after
    token = ropc(s, sandbox, "alice@contoso.com", defaults.PASSWORD)["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == body["kid"]
    # Only this sandbox: the default sandbox neither publishes nor signs with the new key.
    default_kids = [k["kid"] for k in s.get(f"{ORIGIN}/{defaults.TENANT_ID}/discovery/v2.0/keys").json()["keys"]]
    assert body["kid"] not in default_kids and default_kids[-1] == body["previous_kid"]


# --- bad input: always a JSON 4xx naming the problem, and nothing changed ------------------------------
USER = {"username": "new@contoso.com", "display_name": "New", "password": "pw"}
APP = {"display_name": "new app"}
UNKNOWN_TENANT = "0e0e0e0e-0000-4000-8000-000000000000"
VM2 = f"{defaults.RESOURCE_GROUP_ID}/providers/Microsoft.Compute/virtualMachines/fakests-vm2"
UAMI2 = f"{defaults.RESOURCE_GROUP_ID}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/second"
BAD: list[tuple[str, str, Any, int, str]] = [
    ("POST", "/sandboxes", b"not json", 400, "The body is not valid JSON"),
    ("POST", "/sandboxes", [], 400, "The body must be a JSON object, got list"),
    ("POST", "/sandboxes", {"auto_sign_in": "yes"}, 400, 'auto_sign_in: must be true or false, got "yes"'),
    ("POST", "/sandboxes", {"x": 1}, 400, "x: unknown field; known: auto_sign_in"),
    ("GET", "/sandboxes/nope", None, 404, "No sandbox 'nope'"),
    ("DELETE", "/sandboxes/nope", None, 404, "No sandbox 'nope'"),
    ("PATCH", "/sandboxes/{sid}", b"", 400, "A JSON object body is required"),
    ("PATCH", "/sandboxes/{sid}", {}, 400, "Give at least one of: auto_sign_in"),
    ("PATCH", "/sandboxes/{sid}", {"clock_offset": 5}, 400, "clock_offset: unknown field"),
    ("PATCH", "/sandboxes/{sid}", {"auto_sign_in": 1}, 400, "auto_sign_in: must be true or false, got 1"),
    ("POST", "/sandboxes/nope/users", USER, 404, "No sandbox 'nope'"),
    ("POST", "/sandboxes/{sid}/users", b"\xff\xfe", 400, "The body is not valid JSON"),
    ("POST", "/sandboxes/{sid}/users", {"username": "a@contoso.com", "display_name": "A"}, 400,
     "password: required field is missing"),
    ("POST", "/sandboxes/{sid}/users", {**USER, "disabled": "yes"}, 400,
     "disabled: must be true or false, got a string"),
    ("POST", "/sandboxes/{sid}/users", {**USER, "shoe_size": 9}, 400, "shoe_size: unknown field; known: username"),
    ("POST", "/sandboxes/{sid}/users", {**USER, "tenant_id": "contoso"}, 400, "tenant_id: must be a GUID"),
    ("POST", "/sandboxes/{sid}/users", {**USER, "tenant_id": UNKNOWN_TENANT}, 400,
     f"tenant_id: unknown tenant '{UNKNOWN_TENANT}'"),
    ("POST", "/sandboxes/{sid}/users", {**USER, "tenant_id": MSA_TENANT_ID}, 400,
     f"tenant_id: account_type 'msa' users, and only they, belong to {MSA_TENANT_ID}"),
    ("POST", "/sandboxes/{sid}/users", {**USER, "account_type": "guest"}, 400,
     "account_type: must be one of work, msa; got 'guest'"),
    ("POST", "/sandboxes/{sid}/users", {**USER, "password": " "}, 400, "password: must not be empty"),
    ("POST", "/sandboxes/{sid}/apps", {**APP, "sign_in_audience": "Everyone"}, 400,
     "sign_in_audience: must be one of AzureADMyOrg"),
    ("POST", "/sandboxes/{sid}/apps", {**APP, "secrets": [{"value": "v", "expires_at": "soon"}]}, 400,
     "secrets[0].expires_at: must be epoch seconds or an ISO 8601 time, got 'soon'"),
    ("POST", "/sandboxes/{sid}/apps", {**APP, "secrets": [7]}, 400, "secrets[0]: must be a mapping, got a number"),
    ("POST", "/sandboxes/{sid}/apps", {**APP, "certificates": ["not a pem"]}, 400,
     "certificates[0]: must be a PEM certificate or 'default'"),
    ("POST", "/sandboxes/{sid}/apps", {**APP, "redirect_uris": "http://x"}, 400,
     "redirect_uris: must be a list, got a string"),
    ("POST", "/sandboxes/{sid}/apps", {**APP, "access_token_version": 3}, 400, "access_token_version: must be 1 or 2"),
    ("POST", "/sandboxes/{sid}/apps", {"display_name": 5}, 400, "display_name: must be a string, got a number"),
    ("POST", "/sandboxes/{sid}/apps", {"client_id": "abc", **APP}, 400, "client_id: must be a GUID"),
    ("POST", "/sandboxes/{sid}/apps", {"client_id": GRAPH_APP_ID, **APP}, 400,
     f"client_id: duplicate client_id '{GRAPH_APP_ID}'"),
    ("POST", "/sandboxes/{sid}/consents", {"client_id": GRAPH_APP_ID, "resource": "api://nope", "scopes": []}, 400,
     "resource: no app has the client id or identifier URI 'api://nope'"),
    ("POST", "/sandboxes/{sid}/consents", {"client_id": UNKNOWN_TENANT, "resource": defaults.API_URI,
                                           "scopes": []}, 400, f"client_id: unknown client_id '{UNKNOWN_TENANT}'"),
    ("POST", "/sandboxes/{sid}/consents", {"client_id": GRAPH_APP_ID, "resource": defaults.API_URI,
                                           "scopes": ["Data.Read", "Nope"]}, 400,
     "scopes[1]: 'Nope' is not a delegated permission of 'fakests api'; it has: access_as_user, Data.Read"),
    ("POST", "/sandboxes/{sid}/consents", {"client_id": GRAPH_APP_ID, "resource": defaults.API_URI}, 400,
     "scopes: required field is missing"),
    ("POST", "/sandboxes/{sid}/role-assignments", {"principal": "ghost", "resource": defaults.API_URI,
                                                   "roles": []}, 400,
     "principal: no app or managed identity client_id, user oid or username 'ghost'"),
    ("POST", "/sandboxes/{sid}/role-assignments", {"principal": "bob@contoso.com", "resource": defaults.API_URI,
                                                   "roles": ["Data.Delete"]}, 400,
     "roles[0]: 'Data.Delete' is not an app role of 'fakests api'; it has: Data.Read, Data.Write"),
    ("PATCH", "/sandboxes/{sid}/users/alice@contoso.com", {"password": ""}, 400, "password: must not be empty"),
    ("PATCH", "/sandboxes/{sid}/users/alice@contoso.com", {"tokens_valid_from": "yesterday"}, 400,
     'tokens_valid_from: must be a number, got "yesterday"'),
    ("PATCH", "/sandboxes/{sid}/users/alice@contoso.com", {"display_name": "x"}, 400, "display_name: unknown field"),
    ("PATCH", "/sandboxes/{sid}/users/alice@contoso.com", {}, 400, "Give at least one of: disabled"),
    ("POST", "/sandboxes/{sid}/clock", {"advance": "1h"}, 400, 'advance: must be a number, got "1h"'),
    ("POST", "/sandboxes/{sid}/clock", {"advance": True}, 400, "advance: must be a number, got true"),
    ("POST", "/sandboxes/{sid}/clock", b'{"advance": Infinity}', 400, "advance: must be a number"),
    ("POST", "/sandboxes/{sid}/clock", {}, 400, "Give at least one of: advance"),
    ("POST", "/sandboxes/{sid}/keys/rotate", {"kid": "x"}, 400, "kid: unknown field"),
    ("POST", "/sandboxes/{sid}/kubernetes/token", {"lifetime": 0}, 400, "lifetime: must be 1 second to a year"),
    ("POST", "/sandboxes/{sid}/kubernetes/token", {"cluster": "Not A Label"}, 400,
     "cluster: a cluster name is a DNS label"),
    ("POST", "/sandboxes/{sid}/kubernetes/token", {"namespace": ""}, 400, "must not be empty"),
    ("POST", "/sandboxes/{sid}/kubernetes/token", {"pod": "x"}, 400, "pod: unknown field"),
    ("GET", "/sandboxes/{sid}/journal?since=-1", None, 400, "since: must be a whole number, got '-1'"),
    ("POST", "/sandboxes/{sid}/managed-identities", {}, 400, "resource_id: required field is missing"),
    ("POST", "/sandboxes/{sid}/managed-identities", {"resource_id": "fakests-vm2"}, 400,
     "resource_id: must be an Azure resource id (/subscriptions/.../providers/...), got 'fakests-vm2'"),
    ("POST", "/sandboxes/{sid}/managed-identities", {"resource_id": VM2, "kind": "both"}, 400,
     "kind: must be one of system, user; got 'both'"),
    ("POST", "/sandboxes/{sid}/managed-identities", {"resource_id": VM2, "hosted_on": "yes"}, 400,
     "hosted_on: must be true or false, got 'yes'"),
    ("POST", "/sandboxes/{sid}/managed-identities", {"resource_id": UAMI2, "kind": "user", "hosted_on": True}, 400,
     "hosted_on: only a system-assigned identity (kind: system)"),
    ("POST", "/sandboxes/{sid}/managed-identities", {"resource_id": VM2, "tenant_id": UNKNOWN_TENANT}, 400,
     f"tenant_id: unknown tenant '{UNKNOWN_TENANT}'"),
    ("POST", "/sandboxes/{sid}/managed-identities", {"resource_id": VM2, "client_id": GRAPH_APP_ID}, 400,
     f"client_id: duplicate client_id '{GRAPH_APP_ID}'"),
    ("POST", "/sandboxes/{sid}/managed-identities", {"resource_id": VM2, "object_id": "vm"}, 400,
     "object_id: must be a GUID"),
    ("POST", "/sandboxes/{sid}/managed-identities", {"resource_id": VM2, "colour": "blue"}, 400,
     "colour: unknown field"),
    ("POST", "/sandboxes/{sid}/managed-identities", {"resource_id": defaults.USER_IDENTITY_RESOURCE_ID,
                                                     "kind": "user"}, 400, "already has an identity"),
    ("GET", "/sandboxes/{sid}/identity-endpoint?source=vm", None, 400, "source: unknown managed-identity source 'vm'"),
    ("GET", "/sandboxes/{sid}/identity-endpoint?client_id=x", None, 400, "client_id: unknown parameter"),
    ("GET", "/sandboxes/{sid}/identity-endpoint", None, 404, "serves no managed-identity endpoints"),
    ("GET", "/sandboxes/nope/identity-endpoint", None, 404, "No sandbox 'nope'"),
    ("DELETE", "/sandboxes/nope/journal", None, 404, "No sandbox 'nope'"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "description"), BAD,
                         ids=[f"{m} {p} {i}" for i, (m, p, *_) in enumerate(BAD)])
def test_bad_input(s: requests.Session, sandbox: dict[str, Any], method: str, path: str, body: Any,
                   status: int, description: str) -> None:
    sid = sandbox["sandbox_id"]
    before = s.get(f"{ADMIN}/sandboxes/{sid}").json()
    # Raw bytes go as JSON (the type a tool sends), so the JSON reader's own checks answer.
    kw: dict[str, Any] = ({"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes)
                          else {} if body is None else {"json": body})
    r = s.request(method, ADMIN + path.format(sid=sid), **kw)
    assert_error(r, status, "not_found" if status == 404 else "invalid_request", description)
    after = s.get(f"{ADMIN}/sandboxes/{sid}").json()
    assert after["directory"] == before["directory"]
    assert (after["auto_sign_in"], after["clock_offset"]) == (before["auto_sign_in"], before["clock_offset"])


def test_unknown_path_and_method_are_json(s: requests.Session) -> None:
    r = s.get(f"{ADMIN}/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = s.put(f"{ADMIN}/sandboxes")
    assert r.status_code == 405 and r.json()["error"] == "invalid_request"
