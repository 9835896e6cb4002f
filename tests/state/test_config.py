"""The YAML config file: strict loading (file, key, reason) and a good file signing users in with MSAL."""

from __future__ import annotations

import dataclasses
import hashlib
import textwrap
from pathlib import Path
from typing import Any

import jwt
import msal
import pytest
import requests

from fakests.admin.api import directory_json
from fakests.server.app import create_app
from fakests.server.runtime import ensure_client_certificate
from fakests.state import defaults
from fakests.state.config import load_config
from fakests.state.directory import ARM_APP_ID, FIRST_PARTY_APP_IDS, GRAPH_APP_ID, MSA_TENANT_ID, Certificate
from fakests.state.errors import ConfigError
from fakests.state.settings import Settings
from fakests.testing.transport import session_for

# ROPC is how these tests sign users in without a browser; MSAL deprecates it for public clients.
pytestmark = pytest.mark.filterwarnings("ignore:This API has been deprecated:DeprecationWarning")

ORIGIN = "https://fakests.test"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.yaml"
T1 = "11111111-0000-4000-8000-000000000001"
T2 = "11111111-0000-4000-8000-000000000002"
A1 = "22222222-0000-4000-8000-000000000001"
A2 = "22222222-0000-4000-8000-000000000002"
TENANTS = f"""\
tenants:
  - {{tenant_id: {T1}, display_name: One, domains: [one.example]}}
"""
APP = f"{{client_id: {A1}, display_name: App, tenant_id: {T1}"
USER = f"{{username: u@one.example, display_name: U, password: pw, tenant_id: {T1}"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config-state")


@pytest.fixture(scope="module")
def client_cert(state_dir: Path) -> Certificate:
    """The default client certificate, the same file the runtime of ``state_dir`` uses."""
    return Certificate(ensure_client_certificate(state_dir / "client" / "client-cert.pem").read_text())


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fakests.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# --- strict loading: (file body, key, reason) -----------------------------------------------------------
BAD: list[tuple[str, str, str, str]] = [
    ("bad-yaml", "tenants: [\n", "line 2, column 1",
     "not valid YAML: expected the node content, but found '<stream end>'"),
    ("duplicate-yaml-key", TENANTS + "tenants: []\n", "line 3, column 1", "not valid YAML: duplicate key 'tenants'"),
    ("not-a-mapping", "- tenants\n", "",
     "the file must be a mapping of settings, include_defaults, tenants, apps, users, managed_identities, consents, "
     "role_assignments; got a list"),
    ("unknown-top-key", TENANTS + "tenant: []\n", "tenant",
     "unknown key; known: settings, include_defaults, tenants, apps, users, managed_identities, consents, "
     "role_assignments"),
    ("unknown-setting", "settings: {prot: 1}\n" + TENANTS, "settings.prot",
     "unknown setting; known: " + ", ".join(f.name for f in dataclasses.fields(Settings))),
    ("setting-type", "settings: {tls: maybe}\n" + TENANTS, "settings.tls", "expected true or false, got 'maybe'"),
    ("settings-not-mapping", "settings: [1]\n" + TENANTS, "settings", "must be a mapping, got a list"),
    ("include-defaults-type", "include_defaults: 'yes please'\n", "include_defaults",
     "must be true or false, got a string"),
    ("no-tenant", "include_defaults: false\n", "tenants",
     "at least one tenant is needed unless include_defaults is true"),
    ("tenants-not-list", "tenants: {a: 1}\n", "tenants", "must be a list, got a mapping"),
    ("tenant-not-mapping", "tenants: [one]\n", "tenants[0]", "must be a mapping, got a string"),
    ("tenant-missing-name", f"tenants: [{{tenant_id: {T1}}}]\n", "tenants[0].display_name",
     "required field is missing"),
    ("tenant-unknown-field", f"tenants: [{{tenant_id: {T1}, display_name: One, name: x}}]\n", "tenants[0].name",
     "unknown field; known: tenant_id, display_name, domains, region_scope"),
    ("tenant-id-not-guid", "tenants: [{tenant_id: contoso, display_name: One}]\n", "tenants[0].tenant_id",
     "must be a GUID like 00000000-0000-0000-0000-000000000000, got 'contoso'"),
    ("tenant-duplicate", TENANTS + f"  - {{tenant_id: {T1.upper()}, display_name: Two}}\n", "tenants[1].tenant_id",
     f"duplicate tenant_id '{T1}'"),
    ("tenant-is-msa", TENANTS + f"  - {{tenant_id: {MSA_TENANT_ID}, display_name: MSA}}\n", "tenants[1].tenant_id",
     f"duplicate tenant_id '{MSA_TENANT_ID}'"),
    ("domain-reused", TENANTS + f"  - {{tenant_id: {T2}, display_name: Two, domains: [ONE.example]}}\n",
     "tenants[1].domains[0]", f"domain 'ONE.example' is already used by tenant {T1}"),
    ("domains-type", f"tenants: [{{tenant_id: {T1}, display_name: One, domains: one.example}}]\n",
     "tenants[0].domains", "must be a list, got a string"),
    ("app-missing-client-id", TENANTS + f"apps: [{{display_name: App, tenant_id: {T1}}}]\n", "apps[0].client_id",
     "required field is missing"),
    ("app-duplicate", TENANTS + f"apps:\n  - {APP}}}\n  - {APP}}}\n", "apps[1].client_id",
     f"duplicate client_id '{A1}'"),
    ("app-is-graph", TENANTS + f"apps: [{{client_id: {GRAPH_APP_ID}, display_name: G, tenant_id: {T1}}}]\n",
     "apps[0].client_id", f"duplicate client_id '{GRAPH_APP_ID}'"),
    ("app-unknown-tenant", TENANTS + f"apps: [{{client_id: {A1}, display_name: App, tenant_id: {T2}}}]\n",
     "apps[0].tenant_id", f"unknown tenant '{T2}'; tenants: {T1}, {MSA_TENANT_ID}"),
    ("app-bool-as-string", TENANTS + f"apps: [{APP}, public_client: 'true'}}]\n", "apps[0].public_client",
     "must be true or false, got a string"),
    ("app-audience", TENANTS + f"apps: [{APP}, sign_in_audience: Everyone}}]\n", "apps[0].sign_in_audience",
     "must be one of AzureADMyOrg, AzureADMultipleOrgs, AzureADandPersonalMicrosoftAccount, "
     "PersonalMicrosoftAccount; got 'Everyone'"),
    ("app-redirect-type", TENANTS + f"apps: [{APP}, redirect_uris: [1]}}]\n", "apps[0].redirect_uris[0]",
     "must be a string, got a number"),
    ("app-token-version", TENANTS + f"apps: [{APP}, access_token_version: 3}}]\n", "apps[0].access_token_version",
     "must be 1 or 2"),
    ("app-unknown-field", TENANTS + f"apps: [{APP}, secret: x}}]\n", "apps[0].secret",
     "unknown field; known: client_id, display_name, tenant_id, secrets, certificates, redirect_uris, "
     "web_redirect_uris, spa_redirect_uris, public_client_redirect_uris, "
     "public_client, sign_in_audience, identifier_uris, scopes, app_roles, access_token_version, enabled, "
     "federated_credentials, object_id"),
    ("fic-missing-subject", TENANTS + f"apps: [{APP}, federated_credentials: [{{name: k, issuer: /kubernetes/a}}]}}]\n",
     "apps[0].federated_credentials[0].subject", "required field is missing"),
    ("fic-http-issuer", TENANTS + f"apps: [{APP}, federated_credentials: [{{name: k, issuer: 'http://oidc.example', "
     "subject: s}]}]\n", "apps[0].federated_credentials[0].issuer",
     "must be an https URL, or a path on fakests such as /kubernetes/fakests; got 'http://oidc.example'"),
    ("fic-two-audiences", TENANTS + f"apps: [{APP}, federated_credentials: [{{name: k, issuer: /kubernetes/a, "
     "subject: s, audiences: [a, b]}]}]\n", "apps[0].federated_credentials[0].audiences",
     "must hold exactly one audience (usually api://AzureADTokenExchange)"),
    ("fic-duplicate-name", TENANTS + f"apps: [{APP}, federated_credentials: [{{name: k, issuer: /kubernetes/a, "
     "subject: s}, {name: k, issuer: /kubernetes/a, subject: t}]}]\n", "apps[0].federated_credentials[1].name",
     "duplicate name 'k'"),
    ("fic-unknown-field", TENANTS + f"apps: [{APP}, federated_credentials: [{{name: k, issuer: /kubernetes/a, "
     "subject: s, audience: x}]}]\n", "apps[0].federated_credentials[0].audience",
     "unknown field; known: name, issuer, subject, audiences, description"),
    ("fic-on-system-identity", TENANTS + f"managed_identities: [{{client_id: {A1}, object_id: {T2}, tenant_id: {T1}, "
     "resource_id: /subscriptions/x/providers/y, federated_credentials: [{name: k, issuer: /kubernetes/a, "
     "subject: s}]}]\n", "managed_identities[0].federated_credentials",
     "only user-assigned identities (kind: user) have federated identity credentials, as in Azure"),
    ("fic-not-list", TENANTS + f"apps: [{APP}, federated_credentials: {{name: k}}}}]\n",
     "apps[0].federated_credentials", "must be a list, got a mapping"),
    ("app-spa-not-url", TENANTS + f"apps: [{APP}, spa_redirect_uris: [myapp://auth]}}]\n",
     "apps[0].spa_redirect_uris[0]", "a spa redirect URI must be an http or https URL, got 'myapp://auth'"),
    ("app-two-platforms", TENANTS + f"apps: [{APP}, web_redirect_uris: ['http://localhost:3000'], "
     "spa_redirect_uris: ['http://localhost:3000']}]\n", "apps[0].spa_redirect_uris[0]",
     "'http://localhost:3000' is also in web_redirect_uris: a redirect URI belongs to one platform"),
    ("app-empty-redirect", TENANTS + f"apps: [{APP}, public_client_redirect_uris: ['']}}]\n",
     "apps[0].public_client_redirect_uris[0]", "must not be empty"),
    ("secret-expiry", TENANTS + f"apps: [{APP}, secrets: [{{value: s, expires_at: soon}}]}}]\n",
     "apps[0].secrets[0].expires_at", "must be epoch seconds or an ISO 8601 time, got 'soon'"),
    ("secret-unknown-field", TENANTS + f"apps: [{APP}, secrets: [{{value: s, expiry: 1}}]}}]\n",
     "apps[0].secrets[0].expiry", "unknown field; known: value, expires_at, hint"),
    ("secret-empty", TENANTS + f"apps: [{APP}, secrets: ['']}}]\n", "apps[0].secrets[0].value", "must not be empty"),
    ("certificate-missing", TENANTS + f"apps: [{APP}, certificates: [nope.pem]}}]\n", "apps[0].certificates[0]",
     "certificate file not found: {dir}/nope.pem"),
    ("certificate-not-pem", TENANTS + f"apps: [{APP}, certificates: [fakests.yaml]}}]\n", "apps[0].certificates[0]",
     "{dir}/fakests.yaml is not a PEM certificate (ValueError)"),
    ("user-missing-password", TENANTS + f"users: [{{username: u@one.example, display_name: U, tenant_id: {T1}}}]\n",
     "users[0].password", "required field is missing"),
    ("user-password-number", TENANTS + f"users: [{{username: u@one.example, display_name: U, password: 1234, "
     f"tenant_id: {T1}}}]\n", "users[0].password", "must be a string, got a number"),
    ("user-duplicate", TENANTS + f"users:\n  - {USER}}}\n  - {USER.replace('u@', 'U@')}}}\n", "users[1].username",
     "duplicate username 'U@one.example'"),
    ("user-unknown-tenant", TENANTS + f"users: [{USER.replace(T1, T2)}}}]\n", "users[0].tenant_id",
     f"unknown tenant '{T2}'; tenants: {T1}, {MSA_TENANT_ID}"),
    ("user-msa-in-work-tenant", TENANTS + f"users: [{USER}, account_type: msa}}]\n", "users[0].tenant_id",
     f"account_type 'msa' users, and only they, belong to {MSA_TENANT_ID}"),
    ("user-not-finite", TENANTS + f"users: [{USER}, tokens_valid_from: .nan}}]\n", "users[0].tokens_valid_from",
     "must be a number, got nan (not a finite number)"),
    ("user-oid-duplicate", TENANTS + f"users:\n  - {USER}, oid: {A1}}}\n  - {{username: v@one.example, "
     f"display_name: V, password: pw, tenant_id: {T1}, oid: {A1}}}\n", "users[1].oid", f"duplicate oid '{A1}'"),
    ("consent-unknown-client", TENANTS + f"consents: [{{client_id: {A1}, resource: {GRAPH_APP_ID}, scopes: []}}]\n",
     "consents[0].client_id", f"unknown client_id '{A1}'"),
    ("consent-unknown-resource", TENANTS + f"apps: [{APP}}}]\n"
     f"consents: [{{client_id: {A1}, resource: 'api://nope', scopes: []}}]\n", "consents[0].resource",
     "no app has the client id or identifier URI 'api://nope'"),
    ("consent-unknown-scope", TENANTS + f"apps: [{APP}}}]\n"
     f"consents: [{{client_id: {A1}, resource: {GRAPH_APP_ID}, scopes: [User.Read, Sites.Manage]}}]\n",
     "consents[0].scopes[1]", "'Sites.Manage' is not a delegated permission of 'Microsoft Graph'; it has: "
     "User.Read, User.ReadBasic.All, Mail.Read, Mail.Send, Files.Read, email, openid, profile, offline_access"),
    ("consent-missing-scopes", TENANTS + f"apps: [{APP}}}]\nconsents: [{{client_id: {A1}, resource: x}}]\n",
     "consents[0].scopes", "required field is missing"),
    ("role-unknown-principal", TENANTS + "role_assignments: [{principal: nobody, resource: "
     "https://graph.microsoft.com, roles: []}]\n", "role_assignments[0].principal",
     "no app or managed identity client_id, user oid or username 'nobody'"),
    ("role-not-offered", TENANTS + f"apps: [{APP}}}]\nrole_assignments: [{{principal: {A1}, resource: "
     "https://graph.microsoft.com, roles: [Everything]}]\n", "role_assignments[0].roles[0]",
     "'Everything' is not an app role of 'Microsoft Graph'; it has: User.Read.All, Mail.Read, Files.Read.All"),
    ("role-unknown-field", TENANTS + "role_assignments: [{principal: x, resource: y, roles: [], scope: z}]\n",
     "role_assignments[0].scope", "unknown field; known: principal, resource, roles"),
    ("defaults-duplicate-user", "include_defaults: true\nusers: [{username: Alice@contoso.com, display_name: A, "
     f"password: pw, tenant_id: {defaults.TENANT_ID}}}]\n", "users[0].username",
     "duplicate username 'Alice@contoso.com'"),
    ("defaults-duplicate-tenant", f"include_defaults: true\ntenants: [{{tenant_id: {defaults.OTHER_TENANT_ID}, "
     "display_name: F}]\n", "tenants[0].tenant_id", f"duplicate tenant_id '{defaults.OTHER_TENANT_ID}'"),
]


@pytest.mark.parametrize(("body", "key", "reason"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_file(tmp_path: Path, client_cert: Certificate, body: str, key: str, reason: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path, client_cert)
    assert (info.value.source, info.value.key, info.value.reason) == (str(path), key, reason.format(dir=tmp_path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml", None)
    assert (info.value.source, info.value.key, info.value.reason) == (str(tmp_path / "absent.yaml"), "",
                                                                      "file not found")
    assert str(info.value) == f"{tmp_path / 'absent.yaml'}: file not found"


def test_default_certificate_needs_one(tmp_path: Path) -> None:
    path = write(tmp_path, TENANTS + f"apps: [{APP}, certificates: [default]}}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, None)
    assert (info.value.key, info.value.reason) == (
        "apps[0].certificates[0]", "'default' names the default client certificate, which is not available")


def test_runtime_start_fails_on_a_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, TENANTS + "apps: [{display_name: x}]\n")
    with pytest.raises(ConfigError, match=r"apps\[0\]\.client_id: required field is missing"):
        create_app(Settings(state_dir=tmp_path / "state", tls=False, config=path))


# --- good files -----------------------------------------------------------------------------------------
def test_minimal_file_has_graph_azure_resources_and_msa(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, TENANTS), None)
    assert loaded.settings_values == {}
    assert list(loaded.directory.tenants) == [T1, MSA_TENANT_ID]  # the first tenant is the home tenant
    # Graph, and Resource Manager, Key Vault and Storage: what managed-identity tokens are for
    assert sorted(loaded.directory.apps) == sorted(FIRST_PARTY_APP_IDS)
    assert loaded.directory.resource("https://management.azure.com/").client_id == ARM_APP_ID
    assert loaded.directory.users == {}


def test_include_defaults_adds_to_the_default_directory(tmp_path: Path, client_cert: Certificate) -> None:
    path = write(tmp_path, f"""\
        include_defaults: true
        tenants: [{{tenant_id: {T1}, display_name: One}}]
        users: [{{username: zed@contoso.com, display_name: Zed, password: pw, tenant_id: {defaults.TENANT_ID}}}]
        consents: [{{client_id: {defaults.PUBLIC_ID}, resource: {defaults.API_URI}, scopes: [access_as_user]}}]
        """)
    d = load_config(path, client_cert).directory
    assert next(iter(d.tenants)) == defaults.TENANT_ID
    assert {defaults.TENANT_ID, defaults.OTHER_TENANT_ID, MSA_TENANT_ID, T1} == set(d.tenants)
    assert d.user("alice@contoso.com") is not None and d.user("zed@contoso.com") is not None
    assert d.apps[defaults.DAEMON_ID].certificates[0].x5t == client_cert.x5t


def test_example_config_loads(state_dir: Path, client_cert: Certificate) -> None:
    loaded = load_config(EXAMPLE, client_cert)
    assert Settings.from_mapping(loaded.settings_values, str(EXAMPLE)).journal_size == 5000
    d = directory_json(loaded.directory)
    daemon = next(a for a in d["apps"] if a["display_name"] == "Northwind daemon")
    assert [s["hint"] for s in daemon["secrets"]] == ["dae", "dae", "nxt"]
    assert daemon["secrets"][1]["expires_at"] == 1577836800.0  # 2020-01-01T00:00:00Z
    assert daemon["certificates"][0]["x5t"] == client_cert.x5t
    assert len({c["x5t"] for c in daemon["certificates"]}) == 2
    nina = next(u for u in d["users"] if u["username"] == "nina@northwind.example")
    assert {"principal": nina["oid"], "resource": "5e1f0000-0000-4000-8000-00000000a002",
            "roles": ["Orders.Admin"]} in d["role_assignments"]
    assert next(u for u in d["users"] if u["username"] == "max@outlook.com")["account_type"] == "msa"


@pytest.fixture(scope="module")
def example(state_dir: Path) -> requests.Session:
    """The example config served in-process."""
    return session_for(create_app(Settings(state_dir=state_dir, tls=False, config=EXAMPLE)), ORIGIN)


NORTHWIND = "5e1f0000-0000-4000-8000-000000000001"
DAEMON, API, DESKTOP, RETIRED = (f"5e1f0000-0000-4000-8000-00000000a00{i}" for i in range(1, 5))


def cca(s: requests.Session, client_id: str, credential: Any, tenant: str = NORTHWIND) -> dict[str, Any]:
    app = msal.ConfidentialClientApplication(client_id, client_credential=credential, authority=f"{ORIGIN}/{tenant}",
                                             http_client=s, instance_discovery=False)
    result: dict[str, Any] = app.acquire_token_for_client(["api://northwind-orders/.default"])
    return result


def test_example_user_signs_in_with_msal(example: requests.Session) -> None:
    pca = msal.PublicClientApplication(DESKTOP, authority=f"{ORIGIN}/{NORTHWIND}", http_client=example,
                                       instance_discovery=False)
    result = pca.acquire_token_by_username_password("nina@northwind.example", "Nina-P@ssw0rd",
                                                    scopes=["api://northwind-orders/Orders.Read"])
    assert "access_token" in result, result
    assert result["id_token_claims"]["oid"] == "5e1f0000-0000-4000-8000-00000000b001"
    assert result["id_token_claims"]["tid"] == NORTHWIND
    at = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert (at["aud"], at["scp"], at["roles"]) == (API, "Orders.Read", ["Orders.Admin"])
    locked = msal.PublicClientApplication(DESKTOP, authority=f"{ORIGIN}/{NORTHWIND}", http_client=example,
                                          instance_discovery=False)
    assert locked.acquire_token_by_username_password("ollie@northwind.example", "Ollie-P@ssw0rd",
                                                     scopes=["User.Read"])["error_codes"] == [50053]


def test_example_app_credentials(example: requests.Session, state_dir: Path) -> None:
    ok = cca(example, DAEMON, "daemon-secret")
    assert "access_token" in ok, ok
    assert jwt.decode(ok["access_token"], options={"verify_signature": False})["roles"] == ["Orders.Read.All"]
    assert cca(example, DAEMON, "daemon-old-secret")["error_codes"] == [7000222]  # expired in 2020
    assert "access_token" in cca(example, DAEMON, "daemon-next-secret")
    assert cca(example, RETIRED, "retired-secret", "5e1f0000-0000-4000-8000-000000000002")["error_codes"] == [7000112]
    # certificates: [default] registered the default client certificate.
    pem = (state_dir / "client" / "client-cert.pem").read_text()
    thumbprint = hashlib.sha1(Certificate(pem).der).hexdigest()
    by_cert = cca(example, DAEMON, {"private_key": pem, "thumbprint": thumbprint})
    assert "access_token" in by_cert, by_cert


def test_round_trip_user_from_yaml_signs_in(tmp_path: Path, state_dir: Path) -> None:
    path = write(tmp_path, f"""\
        tenants: [{{tenant_id: {T1}, display_name: One, domains: [one.example]}}]
        apps:
          - {{client_id: {A1}, display_name: Desk, tenant_id: {T1}, public_client: true}}
          - {{client_id: {A2}, display_name: Api, tenant_id: {T1}, identifier_uris: ['api://two'], scopes: [Go]}}
        users:
          - {{username: yaml@one.example, display_name: From Yaml, password: Yaml-pw1, tenant_id: {T1}}}
        consents:
          - {{client_id: {A1}, resource: 'api://two', scopes: [Go]}}
        """)
    s = session_for(create_app(Settings(state_dir=state_dir, tls=False, config=path)), ORIGIN)
    pca = msal.PublicClientApplication(A1, authority=f"{ORIGIN}/one.example", http_client=s, instance_discovery=False)
    result = pca.acquire_token_by_username_password("yaml@one.example", "Yaml-pw1", scopes=["api://two/Go"])
    assert "access_token" in result, result
    assert result["id_token_claims"]["name"] == "From Yaml"
    assert result["id_token_claims"]["tid"] == T1
    assert jwt.decode(result["access_token"], options={"verify_signature": False})["scp"] == "Go"


def test_federated_credentials_load_with_the_default_audience(tmp_path: Path, client_cert: Certificate) -> None:
    path = write(tmp_path, TENANTS + f"""apps:
  - {APP}, federated_credentials: [
      {{name: aks, issuer: 'https://eastus.oic.prod-aks.azure.com/{T1}/{A1}/', subject: 'system:serviceaccount:a:b'}},
      {{name: local, issuer: /kubernetes/dev, subject: 'system:serviceaccount:c:d', audiences: [api://custom]}}]}}
""")
    app = load_config(path, client_cert).directory.apps[A1]
    aks, local = app.federated_credentials
    assert aks.audiences == ["api://AzureADTokenExchange"] and local.audiences == ["api://custom"]
    assert aks.issuer_matches(f"https://eastus.oic.prod-aks.azure.com/{T1}/{A1}/")
    assert not aks.issuer_matches(f"https://eastus.oic.prod-aks.azure.com/{T1}/{A1}")  # trailing slash: exact
    assert local.issuer_matches("https://localhost:8443/kubernetes/dev")
    assert local.issuer_matches("https://sts.example.test/kubernetes/dev")
    assert not local.issuer_matches("http://localhost:8443/kubernetes/dev")
    assert not local.issuer_matches("https://localhost:8443/kubernetes/dev/")
    assert directory_json(load_config(path, client_cert).directory)["apps"][-1]["federated_credentials"][1] == {
        "name": "local", "issuer": "/kubernetes/dev", "subject": "system:serviceaccount:c:d",
        "audiences": ["api://custom"], "description": ""}


def test_a_user_assigned_identity_with_a_federated_credential(tmp_path: Path, client_cert: Certificate) -> None:
    path = write(tmp_path, TENANTS + f"""managed_identities:
  - {{client_id: {A1}, object_id: {T2}, tenant_id: {T1}, kind: user,
     resource_id: /subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aks,
     federated_credentials: [{{name: aks, issuer: /kubernetes/dev, subject: 'system:serviceaccount:a:b'}}]}}
""")
    directory = load_config(path, client_cert).directory
    [credential] = directory.identities[A1].federated_credentials
    assert credential.subject == "system:serviceaccount:a:b" and credential.audiences == ["api://AzureADTokenExchange"]
    assert directory_json(directory)["managed_identities"][0]["federated_credentials"][0]["name"] == "aks"


def test_a_setting_with_choices_names_file_key_and_choices() -> None:
    """``identity_expires_on`` takes ``epoch`` or ``date``: anything else stops start-up naming the file and key
    (and the same check holds for flags, the environment and ``fake_sts.configure``)."""
    with pytest.raises(ConfigError, match=r"^c\.yaml: settings\.identity_expires_on: 'iso' is not one of epoch, date"):
        Settings.from_mapping({"identity_expires_on": "iso"}, "c.yaml")
    with pytest.raises(ConfigError, match="is not one of epoch, date"):
        Settings(identity_expires_on="iso")
    assert Settings.from_mapping({"identity_expires_on": "date"}, "c.yaml").identity_expires_on == "date"
