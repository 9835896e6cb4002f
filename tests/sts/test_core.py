"""Discovery documents, keys, TLS material and the ids on every response."""

from __future__ import annotations

import base64
import hashlib
import ssl
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography import x509

from fakests import FakeSTS
from fakests.server.runtime import Runtime
from fakests.state import defaults
from fakests.state.directory import MSA_TENANT_ID
from fakests.state.settings import Settings
from fakests.sts.catalog import CATALOG
from fakests.testing.sandbox import StsSandbox


# It asks the default sandbox's Contoso by domain on purpose (every sandbox's first tenant shares it).
@pytest.mark.filterwarnings("ignore::fakests.FakeStsWarning")
def test_discovery_document_for_a_tenant_guid_and_its_domain(fake_sts: StsSandbox) -> None:
    session = fake_sts.http_client()
    by_guid = session.get(f"{fake_sts.authority()}/v2.0/.well-known/openid-configuration")
    assert by_guid.status_code == 200 and by_guid.headers["cache-control"] == "max-age=86400, private"
    doc = by_guid.json()
    base = f"{fake_sts.url}/{fake_sts.tenant_id}"
    assert doc["issuer"] == f"{base}/v2.0"
    assert doc["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert doc["device_authorization_endpoint"] == f"{base}/oauth2/v2.0/devicecode"
    assert doc["end_session_endpoint"] == f"{base}/oauth2/v2.0/logout"
    assert doc["jwks_uri"] == f"{base}/discovery/v2.0/keys"
    assert doc["tenant_region_scope"] == "WW" and doc["subject_types_supported"] == ["pairwise"]
    # A verified domain answers with the GUID in every URL (entra-wire.md §1.3).
    by_domain = session.get(f"{fake_sts.url}/contoso.com/v2.0/.well-known/openid-configuration")
    assert by_domain.status_code == 200  # the default sandbox's Contoso
    domain = fake_sts.sandbox.home_tenant.domains[-1]
    assert session.get(f"{fake_sts.url}/{domain}/v2.0/.well-known/openid-configuration").json() == doc


@pytest.mark.parametrize(("segment", "issuer"), [("common", "{tenantid}"), ("organizations", "{tenantid}"),
                                                 ("consumers", MSA_TENANT_ID)])
def test_discovery_document_for_multi_tenant_segments(fake_sts: StsSandbox, segment: str, issuer: str) -> None:
    doc = fake_sts.http_client().get(f"{fake_sts.url}/{segment}/v2.0/.well-known/openid-configuration").json()
    assert doc["issuer"] == f"{fake_sts.url}/{issuer}/v2.0"
    assert doc["token_endpoint"] == f"{fake_sts.url}/{segment}/oauth2/v2.0/token"
    assert doc["tenant_region_scope"] is None


def test_v1_discovery_and_keys(fake_sts: StsSandbox) -> None:
    session = fake_sts.http_client()
    doc = session.get(f"{fake_sts.authority()}/.well-known/openid-configuration").json()
    assert doc["issuer"] == f"https://sts.windows.net/{fake_sts.tenant_id}/"
    assert doc["token_endpoint"].endswith("/oauth2/token")
    keys = session.get(doc["jwks_uri"]).json()["keys"]
    assert keys and "issuer" not in keys[0]


def test_jwks_kid_is_the_certificate_thumbprint(fake_sts: StsSandbox) -> None:
    [key] = fake_sts.http_client().get(f"{fake_sts.authority()}/discovery/v2.0/keys").json()["keys"]
    der = base64.b64decode(key["x5c"][0])
    thumb = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()
    assert key["kid"] == key["x5t"] == thumb and key["kty"] == "RSA" and key["use"] == "sig" and key["e"] == "AQAB"
    cert_key = x509.load_der_x509_certificate(der).public_key().public_numbers()  # type: ignore[union-attr]
    n = int.from_bytes(base64.urlsafe_b64decode(key["n"] + "=="), "big")
    assert n == cert_key.n
    assert key["issuer"] == f"{fake_sts.url}/{fake_sts.tenant_id}/v2.0"


def test_unknown_tenant_on_discovery_is_invalid_tenant(fake_sts: StsSandbox) -> None:
    tenant = str(uuid.uuid4())
    response = fake_sts.http_client().get(f"{fake_sts.url}/{tenant}/v2.0/.well-known/openid-configuration")
    body = response.json()
    assert response.status_code == 400 and body["error"] == "invalid_tenant" and body["error_codes"] == [90002]
    assert f"Tenant '{tenant}' not found" in body["error_description"]


def test_every_response_carries_the_ids(fake_sts: StsSandbox) -> None:
    session = fake_sts.http_client()
    sent = str(uuid.uuid4())
    echoed = session.get(f"{fake_sts.authority()}/v2.0/.well-known/openid-configuration",
                         headers={"client-request-id": sent})
    assert echoed.headers["client-request-id"] == sent
    assert uuid.UUID(echoed.headers["x-ms-request-id"])
    made_up = session.get(f"{fake_sts.authority()}/v2.0/.well-known/openid-configuration")
    assert uuid.UUID(made_up.headers["client-request-id"]) and made_up.headers["client-request-id"] != sent
    [first, second] = fake_sts.journal.entries("discovery")
    assert first.client_request_id == first.correlation_id == sent and second.client_request_id is None


def test_instance_discovery_and_user_realm(fake_sts: StsSandbox) -> None:
    session = fake_sts.http_client()
    ok = session.get(f"{fake_sts.url}/common/discovery/instance", params={
        "api-version": "1.1", "authorization_endpoint": f"{fake_sts.authority()}/oauth2/v2.0/authorize"}).json()
    assert ok["tenant_discovery_endpoint"] == f"{fake_sts.authority()}/v2.0/.well-known/openid-configuration"
    bad = session.get(f"{fake_sts.url}/common/discovery/instance", params={
        "authorization_endpoint": "https://evil.example/common/oauth2/v2.0/authorize"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_instance" and bad.json()["error_codes"] == [50049]
    realm = session.get(f"{fake_sts.url}/common/userrealm/alice@contoso.com?api-version=1.0").json()
    assert realm["account_type"] == "Managed" and realm["domain_name"] == "contoso.com"
    msa = session.get(f"{fake_sts.url}/common/userrealm/carol@outlook.com?api-version=1.0").json()
    assert msa["account_type"] == "Unknown"


def test_keys_survive_a_restart_and_rotation_keeps_the_old_key(tmp_path: Path) -> None:
    settings = Settings(port=0, state_dir=tmp_path)
    first = Runtime.start(settings)
    token = first.keys.sign({"sub": "x"})
    again = Runtime.start(settings)
    assert again.keys.active.kid == first.keys.active.kid  # cached tokens stay valid after a restart
    jwt.decode(token, again.keys.active.private_key.public_key(), algorithms=["RS256"])
    old = again.keys.active.kid
    new = again.keys.rotate(now=1000.0)
    published = [k["kid"] for k in again.keys.jwks(now=1000.0 + 60)["keys"]]
    assert published == [old, new.kid]
    assert [k["kid"] for k in again.keys.jwks(now=1000.0 + again.keys.grace + 1)["keys"]] == [new.kid]
    assert Runtime.start(settings).keys.active.kid == new.kid  # rotation is saved too


def test_tls_material_is_reused_and_names_are_configurable(tmp_path: Path) -> None:
    first = Runtime.start(Settings(state_dir=tmp_path, tls_names=("fakests",)))
    assert first.tls is not None
    cert = x509.load_pem_x509_certificate(first.tls.cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "fakests"} <= set(names.get_values_for_type(x509.DNSName))
    ca = first.tls.ca.read_bytes()
    again = Runtime.start(Settings(state_dir=tmp_path, tls_names=("fakests",)))
    assert again.tls is not None and again.tls.ca.read_bytes() == ca
    assert again.tls.cert.read_bytes() == first.tls.cert.read_bytes()


def test_the_server_certificate_verifies_against_the_ca(tmp_path: Path) -> None:
    with FakeSTS(Settings(port=0, state_dir=tmp_path)) as sts:
        context = ssl.create_default_context(cafile=sts.ca_path)
        import socket

        with socket.create_connection(("127.0.0.1", sts.port)) as raw, context.wrap_socket(
                raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_catalog_is_complete_and_renders() -> None:
    assert len(CATALOG) >= 60
    entry = CATALOG[70012]
    assert entry.message.startswith("A server error occurred while authenticating an MSA (consumer) user. Try again.")
    assert entry.transient
    for code in (900144, 700016, 7000215, 7000222, 700027, 700025, 50011, 54005, 70008, 501481, 50126, 50034,
                 70011, 9002313, 50058, 90002, 50173, 50055, 50053, 53003, 65001, 50076, 50196):
        assert code in CATALOG, code


def test_default_directory_matches_the_documented_ids() -> None:
    d = defaults.default_directory()
    assert set(d.apps) >= {defaults.DAEMON_ID, defaults.WEB_ID, defaults.API_ID, defaults.PUBLIC_ID}
    assert d.tenants[defaults.TENANT_ID].domains[0] == defaults.TENANT_DOMAIN
    assert d.user("alice@contoso.com") is not None and d.user("carol@outlook.com").is_msa  # type: ignore[union-attr]


def test_a_non_guid_client_request_id_is_echoed_but_not_the_correlation_id(fake_sts: StsSandbox) -> None:
    response = fake_sts.http_client().post(f"{fake_sts.authority()}/oauth2/v2.0/token", data={"grant_type": "x"},
                                           headers={"client-request-id": "my-test-42"})
    body = response.json()
    assert response.headers["client-request-id"] == "my-test-42"
    assert uuid.UUID(body["correlation_id"]) and body["correlation_id"] != "my-test-42"
    [entry] = fake_sts.journal.entries("token")
    assert entry.client_request_id == "my-test-42" and entry.correlation_id == body["correlation_id"]


def test_the_ca_is_exported_for_clients(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    runtime = Runtime.start(Settings(state_dir=tmp_path / "state", export_ca=shared))
    assert runtime.tls is not None and (shared / "ca.pem").read_bytes() == runtime.tls.ca.read_bytes()


def test_ids_are_version_4_guids_and_a_forked_worker_does_not_repeat_them() -> None:
    """Trace and correlation ids come from a fast per-process generator (``state.guids._Ids``); they must still
    be GUIDs as Entra's are, and a worker forked from a parent must not hand out the parent's next ids."""
    import os
    import uuid

    from fakests.sts.ids import new_guid

    made = [new_guid() for _ in range(5000)]
    assert len(set(made)) == len(made)
    assert all(uuid.UUID(g).version == 4 and uuid.UUID(g).variant == uuid.RFC_4122 and str(uuid.UUID(g)) == g
               for g in made)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(write, ",".join(new_guid() for _ in range(20)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 1 << 16).decode().split(",")
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 20 and not set(child) & {new_guid() for _ in range(20)}


def test_tokens_are_signed_byte_for_byte_as_pyjwt_signs_them(fake_sts: StsSandbox) -> None:
    """``KeySet.sign`` writes the compact JWS itself (the header segment cached per key); the tokens must
    be exactly PyJWT's (RS256 signatures are deterministic), v1 headers with ``x5t`` included."""
    import jwt

    keys = fake_sts.sandbox.keys
    key = keys.active
    claims = {"aud": "api://x", "iss": "https://fakests.test/t/v2.0", "iat": 1, "nbf": 1, "exp": 2,
              "name": "Zoë Ünïcode ☃", "roles": ["A", "B"], "nested": {"k": [1, 2.5, None, True]}, "ver": "2.0"}
    for v1 in (False, True):
        headers = {"typ": "JWT", "kid": key.kid, **({"x5t": key.kid} if v1 else {})}
        assert keys.sign(claims, v1=v1) == jwt.encode(claims, key.private_key, algorithm="RS256", headers=headers)
    token = keys.sign(claims, v1=True)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": key.kid, "typ": "JWT", "x5t": key.kid}
    decoded = jwt.decode(token, key.private_key.public_key(), algorithms=["RS256"], audience="api://x",
                         options={"verify_exp": False})
    assert decoded == claims


def test_sts_json_is_utf8_as_entra_labels_it(fake_sts: StsSandbox) -> None:
    """Entra labels its JSON ``application/json; charset=utf-8`` (entra-wire.md §1, §5.3): discovery,
    keys, tokens and errors alike."""
    http = fake_sts.http_client()
    base = fake_sts.authority()
    token = f"{base}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": fake_sts.daemon.client_id,
            "client_secret": fake_sts.daemon.secret or "", "scope": "api://fakests-api/.default"}
    answers = [http.get(f"{base}/v2.0/.well-known/openid-configuration"), http.get(f"{base}/discovery/v2.0/keys"),
               http.post(token, data=form), http.post(token, data={**form, "client_secret": "wrong"})]
    assert [a.status_code for a in answers] == [200, 200, 200, 401]
    assert {a.headers["content-type"] for a in answers} == {"application/json; charset=utf-8"}
