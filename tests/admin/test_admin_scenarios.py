"""Admin API: scenarios over HTTP, the scenario library, per-sandbox key rotation, minted tokens and the
OpenAPI document, driven in-process; tokens are checked with PyJWT against the JWKS the sandbox serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from openapi_spec_validator import validate as validate_openapi
from starlette.routing import BaseRoute, Mount, Route

from fakests.admin import mint, openapi
from fakests.admin import routes as admin
from fakests.failures import scenarios
from fakests.server.app import create_app
from fakests.state import defaults
from fakests.state.settings import Settings
from fakests.testing.transport import session_for
from tests.inprocess import ADMIN, ORIGIN
from tests.jwks import verify

LIBRARY_SCENARIO = "msa-transient-70012"  # bundled with fakests
FAIL_DAEMON = {
    "name": "daemon-down",
    "description": "client credentials fail once",
    "rules": [{"id": "cc-503", "match": {"endpoint": "token", "grant_type": "client_credentials"},
               "response": {"aadsts": 90033, "retry_after": 7}, "schedule": {"times": 1}}],
}


def url(sb: dict[str, Any], path: str = "") -> str:
    return f"{ADMIN}/sandboxes/{sb['sandbox_id']}{path}"


def app_id(sb: dict[str, Any], display_name: str) -> str:
    return next(a["client_id"] for a in sb["directory"]["apps"] if a["display_name"] == display_name)


def client_credentials(s: requests.Session, sb: dict[str, Any]) -> requests.Response:
    return s.post(f"{ORIGIN}/{sb['tenant_id']}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": app_id(sb, "fakests daemon"),
        "client_secret": defaults.DAEMON_SECRET, "scope": f"{defaults.API_URI}/.default"})


def loaded(s: requests.Session, sb: dict[str, Any]) -> list[dict[str, Any]]:
    r = s.get(url(sb, "/scenarios"))
    assert r.status_code == 200, r.text
    rules: list[dict[str, Any]] = r.json()["rules"]
    return rules


# --- loading, listing, clearing ----------------------------------------------------------------------
def test_loaded_rule_fails_a_token_request_and_the_journal_names_it(s: requests.Session,
                                                                    sandbox: dict[str, Any]) -> None:
    r = s.post(url(sandbox, "/scenarios"), json=FAIL_DAEMON)
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "daemon-down", "description": "client credentials fail once",
                        "source": "request body",
                        "rules": [{"scenario": "daemon-down", "rule": "cc-503", "matched": 0, "fired": 0,
                                   "description": ""}]}
    failed = client_credentials(s, sandbox)
    assert failed.status_code == 503, failed.text
    assert failed.json()["error"] == "temporarily_unavailable"
    assert failed.json()["error_codes"] == [90033]
    assert failed.headers["retry-after"] == "7"
    assert "access_token" in client_credentials(s, sandbox).json()  # times: 1
    assert loaded(s, sandbox) == [{"scenario": "daemon-down", "rule": "cc-503", "matched": 2, "fired": 1,
                                   "description": ""}]
    entries = s.get(url(sandbox, "/journal"), params={"endpoint": "token"}).json()["entries"]
    assert [(e["status"], e["aadsts"], e["rule"]) for e in entries] == [(503, 90033, "daemon-down/cc-503"),
                                                                         (200, None, None)]


@pytest.mark.parametrize("content_type", ["application/yaml", "text/yaml", "application/x-yaml; charset=utf-8"])
def test_load_yaml(s: requests.Session, sandbox: dict[str, Any], content_type: str) -> None:
    doc = b"name: yaml-one\nrules:\n  - id: only\n    match: {endpoint: token}\n    response: {aadsts: 90033}\n"
    r = s.post(url(sandbox, "/scenarios"), data=doc, headers={"Content-Type": content_type})
    assert r.status_code == 201, r.text
    assert [(x["scenario"], x["rule"]) for x in r.json()["rules"]] == [("yaml-one", "only")]
    assert client_credentials(s, sandbox).json()["error_codes"] == [90033]


def test_load_from_the_library_then_clear_by_name(s: requests.Session, sandbox: dict[str, Any]) -> None:
    assert s.post(url(sandbox, "/scenarios"), json=FAIL_DAEMON).status_code == 201
    r = s.post(url(sandbox, "/scenarios"), json={"name": LIBRARY_SCENARIO})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == LIBRARY_SCENARIO and body["rules"] and body["description"]
    assert Path(body["source"]).name == f"{LIBRARY_SCENARIO}.yaml"
    assert [x["scenario"] for x in loaded(s, sandbox)] == ["daemon-down", *[LIBRARY_SCENARIO] * len(body["rules"])]
    assert s.delete(url(sandbox, "/scenarios"), params={"name": LIBRARY_SCENARIO}).status_code == 204
    assert [x["scenario"] for x in loaded(s, sandbox)] == ["daemon-down"]
    assert s.delete(url(sandbox, "/scenarios"), params={"name": LIBRARY_SCENARIO}).status_code == 204  # idempotent
    assert s.delete(url(sandbox, "/scenarios")).status_code == 204
    assert loaded(s, sandbox) == []
    assert "access_token" in client_credentials(s, sandbox).json()


def test_same_name_replaces_and_other_sandboxes_are_untouched(s: requests.Session, sandbox: dict[str, Any]) -> None:
    first = {"name": "x", "rules": [{"id": "a", "response": {"status": 500}}]}
    second = {"name": "x", "rules": [{"id": "b", "match": {"endpoint": "devicecode"}, "response": {"status": 500}}]}
    assert s.post(url(sandbox, "/scenarios"), json=first).status_code == 201
    assert s.post(url(sandbox, "/scenarios"), json=second).status_code == 201
    assert [x["rule"] for x in loaded(s, sandbox)] == ["b"]
    assert s.get(f"{ADMIN}/sandboxes/default/scenarios").json() == {"rules": []}


def test_library_lists_scenarios_and_reports_broken_files(state_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("description: fine\nrules:\n  - response: {aadsts: 90033}\n")
    (tmp_path / "broken.yaml").write_text("rules:\n  - response: {aadsts: 99999}\n")
    (tmp_path / "mangled.yml").write_text("rules: [\n")
    (tmp_path / "notes.txt").write_text("not a scenario")
    s = session_for(create_app(Settings(state_dir=state_dir, tls=False, scenario_dir=tmp_path)), ORIGIN)
    r = s.get(f"{ADMIN}/scenarios")
    assert r.status_code == 200, r.text
    entries = {e["name"]: e for e in r.json()["scenarios"]}
    assert entries["good"] == {"name": "good", "path": str(tmp_path / "good.yaml"), "origin": "scenario_dir",
                               "description": "fine", "rules": 1}
    broken = entries["broken"]
    assert broken["key"] == "rules[0].response.aadsts" and "AADSTS99999 is not in the catalog" in broken["reason"]
    assert broken["error"].startswith(f"{tmp_path / 'broken.yaml'}: rules[0].response.aadsts: ")
    assert "not valid YAML" in entries["mangled"]["reason"]
    assert "notes" not in entries
    bundled = entries[LIBRARY_SCENARIO]
    assert bundled["origin"] == "bundled" and bundled["description"] and "error" not in bundled
    assert Path(bundled["path"]) == scenarios.bundled_dir() / f"{LIBRARY_SCENARIO}.yaml"
    # A broken library file refuses to load with its own file, key and reason.
    sb = s.post(f"{ADMIN}/sandboxes").json()
    r = s.post(url(sb, "/scenarios"), json={"name": "broken"})
    assert r.status_code == 400
    assert r.json()["key"] == "rules[0].response.aadsts"
    assert r.json()["error_description"].startswith(str(tmp_path / "broken.yaml"))
    assert s.post(url(sb, "/scenarios"), json={"name": "good"}).status_code == 201


# --- bad scenario bodies: 400 invalid_scenario with key and reason, nothing loaded ----------------------
RULE = {"response": {"aadsts": 90033}}
BAD_SCENARIOS: list[tuple[Any, str, str, str]] = [
    ({"rules": [{**RULE, "bogus": 1}]}, "application/json", "rules[0]", "'bogus' was unexpected"),
    ({"rules": [{"response": {"aadsts": 99999}}]}, "application/json", "rules[0].response.aadsts",
     "AADSTS99999 is not in the catalog"),
    ({"rules": []}, "application/json", "rules", "should be non-empty"),
    ({"name": "x", "rules": [{"match": {"endpoint": "nope"}, **RULE}]}, "application/json",
     "rules[0].match.endpoint", "nope"),
    ({"rules": [{**RULE, "throttle": {"limit": 1, "per": 1}}]}, "application/json", "rules[0]",
     "a rule has 'response' or 'throttle', not both"),
    ({"rules": [RULE, RULE | {"id": "rule1"}]}, "application/json", "rules[1].id", "duplicate rule id"),
    ([RULE], "application/json", "(top level)", "is not of type 'object'"),
    (b"{not json", "application/json", "", "not valid JSON"),
    (b"\xff\xfe", "application/json", "", "not valid JSON"),
    (b"[" * 100_000, "application/json", "", "nested too deeply"),
    (b"rules: [\n", "application/yaml", "line 2, column 1", "not valid YAML"),
    (b"rules:\n  - response: {aadsts: 99999}\n", "text/yaml", "rules[0].response.aadsts", "not in the catalog"),
    (b"\xff", "text/yaml", "", "not valid UTF-8"),
    (b"", "application/json", "", "a scenario document or"),
    ({"name": "no-such-scenario"}, "application/json", "name", "no scenario named 'no-such-scenario'; known: "),
    ({"name": "../../etc/passwd"}, "application/json", "name", "must be the name of a library scenario"),
    ({"name": "pyproject.yaml"}, "application/json", "name", "must be the name of a library scenario"),
    ({"name": 5}, "application/json", "name", "must be the name of a library scenario"),
]


@pytest.mark.parametrize(("body", "content_type", "key", "reason"), BAD_SCENARIOS,
                         ids=[f"{i}-{k or 'doc'}" for i, (_, _, k, _) in enumerate(BAD_SCENARIOS)])
def test_bad_scenario_is_400_with_key_and_reason(s: requests.Session, sandbox: dict[str, Any], body: Any,
                                                 content_type: str, key: str, reason: str) -> None:
    assert s.post(url(sandbox, "/scenarios"), json=FAIL_DAEMON).status_code == 201
    before = loaded(s, sandbox)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = s.post(url(sandbox, "/scenarios"), data=data, headers={"Content-Type": content_type})
    assert r.status_code == 400, r.text
    got = r.json()
    assert set(got) == {"error", "error_description", "key", "reason"}
    assert got["error"] == "invalid_scenario"
    assert got["key"] == key
    assert reason in got["reason"], got["reason"]
    where = f"{got['key']}: " if got["key"] else ""
    assert got["error_description"] == f"request body: {where}{got['reason']}"
    assert loaded(s, sandbox) == before


def test_scenario_request_errors(s: requests.Session, sandbox: dict[str, Any]) -> None:
    r = s.post(url(sandbox, "/scenarios"), data=b"rules: []", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"] == "invalid_request"
    assert "text/plain" in r.json()["error_description"]
    r = s.post(f"{ADMIN}/sandboxes/nope/scenarios", json=FAIL_DAEMON)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert s.get(f"{ADMIN}/sandboxes/nope/scenarios").status_code == 404
    r = s.delete(url(sandbox, "/scenarios"), params={"scenario": "x"})
    assert r.status_code == 400 and r.json()["error_description"].startswith("scenario: unknown parameter")
    r = s.post(url(sandbox, "/scenarios"), data=b"x" * (2 << 20), headers={"Content-Type": "application/yaml"})
    assert r.status_code == 413


def test_admin_token_guards_the_new_endpoints(state_dir: Path) -> None:
    s = session_for(create_app(Settings(state_dir=state_dir, tls=False, admin_token="s3cret")), ORIGIN)
    for method, path in (("GET", "/scenarios"), ("GET", "/openapi.json"), ("POST", "/keys/rotate"),
                         ("POST", "/sandboxes/default/scenarios"), ("POST", "/sandboxes/default/tokens")):
        assert s.request(method, ADMIN + path).status_code == 401
    ok = s.post(f"{ADMIN}/sandboxes/default/tokens", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


# --- keys: per sandbox, and server-wide ---------------------------------------------------------------
def kids(s: requests.Session, tenant: str) -> list[str]:
    return [k["kid"] for k in s.get(f"{ORIGIN}/{tenant}/discovery/v2.0/keys").json()["keys"]]


def test_sandbox_key_rotation_leaves_other_sandboxes_alone(s: requests.Session, sandbox: dict[str, Any]) -> None:
    tid = sandbox["tenant_id"]
    default_before = kids(s, defaults.TENANT_ID)
    r = s.post(url(sandbox, "/keys/rotate"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sandbox_id"] == sandbox["sandbox_id"] and body["previous_kid"] == default_before[-1]
    assert kids(s, tid) == body["published"] == [*default_before, body["kid"]]
    assert kids(s, defaults.TENANT_ID) == default_before
    token = client_credentials(s, sandbox).json()["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == body["kid"]
    verify(token, s, f"{ORIGIN}/{tid}", app_id(sandbox, "fakests api"))


def test_server_key_rotation_reaches_sandboxes_sharing_the_keys(s: requests.Session) -> None:
    own = s.post(f"{ADMIN}/sandboxes").json()
    shared = s.post(f"{ADMIN}/sandboxes").json()
    own_kid = s.post(url(own, "/keys/rotate")).json()["kid"]
    r = s.post(f"{ADMIN}/keys/rotate")
    assert r.status_code == 200, r.text
    body = r.json()
    assert "default" in body["sandboxes"] and shared["sandbox_id"] in body["sandboxes"]
    assert own["sandbox_id"] not in body["sandboxes"]
    assert kids(s, defaults.TENANT_ID)[-1] == kids(s, shared["tenant_id"])[-1] == body["kid"]
    assert kids(s, own["tenant_id"])[-1] == own_kid
    assert s.post(f"{ADMIN}/keys/rotate", json={"kid": "x"}).status_code == 400
    for sb in (own, shared):
        s.delete(url(sb))


# --- minted tokens, checked against the JWKS the sandbox serves ----------------------------------------
def mint_via_api(s: requests.Session, sb: dict[str, Any], **body: Any) -> dict[str, Any]:
    r = s.post(url(sb, "/tokens"), json=body)
    assert r.status_code == 200, r.text
    minted: dict[str, Any] = r.json()
    assert set(minted) == {"token", "claims", "header"}
    assert jwt.decode(minted["token"], options={"verify_signature": False}) == minted["claims"]
    assert jwt.get_unverified_header(minted["token"]) == minted["header"]
    return minted


@pytest.mark.parametrize(("flavor", "error"), [
    ("expired", jwt.ExpiredSignatureError), ("not_yet_valid", jwt.ImmatureSignatureError),
    ("wrong_audience", jwt.InvalidAudienceError), ("wrong_issuer", jwt.InvalidIssuerError),
    ("bad_signature", jwt.InvalidSignatureError)])
def test_wrong_flavors_fail_verification(s: requests.Session, sandbox: dict[str, Any], flavor: str,
                                         error: type[Exception]) -> None:
    authority, api = f"{ORIGIN}/{sandbox['tenant_id']}", app_id(sandbox, "fakests api")
    valid = mint_via_api(s, sandbox)
    assert verify(valid["token"], s, authority, api)["aud"] == api
    minted = mint_via_api(s, sandbox, flavor=flavor)
    assert minted["header"]["kid"] in kids(s, sandbox["tenant_id"])
    with pytest.raises(error):
        verify(minted["token"], s, authority, api)


def test_valid_access_token_as_the_token_endpoint_would_issue_it(s: requests.Session,
                                                                 sandbox: dict[str, Any]) -> None:
    api = app_id(sandbox, "fakests api")
    minted = mint_via_api(s, sandbox)
    c = verify(minted["token"], s, f"{ORIGIN}/{sandbox['tenant_id']}", api)
    assert (c["aud"], c["tid"], c["ver"], c["idtyp"]) == (api, sandbox["tenant_id"], "2.0", "app")
    assert c["azp"] == app_id(sandbox, "fakests daemon")
    assert c["iss"] == f"{ORIGIN}/{sandbox['tenant_id']}/v2.0"
    assert c["roles"] == ["Data.Read", "Data.Write"]
    delegated = mint_via_api(s, sandbox, user="alice@contoso.com", claims={"scp": "Data.Read", "extra": [1]})
    d = verify(delegated["token"], s, f"{ORIGIN}/{sandbox['tenant_id']}", api)
    assert (d["preferred_username"], d["scp"], d["extra"], d["azp"]) == (
        "alice@contoso.com", "Data.Read", [1], app_id(sandbox, "fakests desktop"))


def test_v1_graph_token_and_claim_removal(s: requests.Session, sandbox: dict[str, Any]) -> None:
    minted = mint_via_api(s, sandbox, audience="https://graph.microsoft.com", user="bob@contoso.com",
                          client_id=app_id(sandbox, "fakests web app"), claims={"scp": None, "amr": None})
    assert minted["header"]["x5t"] == minted["header"]["kid"]
    c = verify(minted["token"], s, f"{ORIGIN}/{sandbox['tenant_id']}", "https://graph.microsoft.com")
    assert c["ver"] == "1.0" and c["upn"] == "bob@contoso.com" and c["appid"] == app_id(sandbox, "fakests web app")
    assert "scp" not in c and "amr" not in c


def test_id_token(s: requests.Session, sandbox: dict[str, Any]) -> None:
    client = app_id(sandbox, "fakests desktop")
    minted = mint_via_api(s, sandbox, kind="id", user="carol@outlook.com")
    c = verify(minted["token"], s, f"{ORIGIN}/consumers", client)
    assert c["preferred_username"] == "carol@outlook.com" and c["idp"].startswith("https://sts.windows.net/")
    default_user = mint_via_api(s, sandbox, kind="id", tenant_id=f"sb-{sandbox['sandbox_id']}.fakests.test")
    assert default_user["claims"]["tid"] == sandbox["tenant_id"]
    assert default_user["claims"]["preferred_username"] == "alice@contoso.com"


def test_unknown_kid_is_not_in_the_jwks(s: requests.Session, sandbox: dict[str, Any]) -> None:
    minted = mint_via_api(s, sandbox, flavor="unknown_kid")
    published = kids(s, sandbox["tenant_id"])
    assert minted["header"]["kid"] not in published
    again = mint_via_api(s, sandbox, flavor="unknown_kid")
    assert again["header"]["kid"] == minted["header"]["kid"]  # one key per process
    # It is a correct signature by a key nobody publishes.
    key = mint.unpublished_key().private_key.public_key()
    assert jwt.decode(minted["token"], key, algorithms=["RS256"], audience=minted["claims"]["aud"])["tid"]


def test_bad_signature_keeps_the_shape(s: requests.Session, sandbox: dict[str, Any]) -> None:
    valid = mint_via_api(s, sandbox)
    bad = mint.corrupt_signature(valid["token"])
    assert bad.rsplit(".", 1)[0] == valid["token"].rsplit(".", 1)[0]
    assert len(bad) == len(valid["token"]) and bad != valid["token"]


def test_tokens_follow_the_sandbox_clock(s: requests.Session, sandbox: dict[str, Any]) -> None:
    s.post(url(sandbox, "/clock"), json={"advance": 86400})
    c = mint_via_api(s, sandbox)["claims"]
    assert c["iat"] == pytest.approx(sandbox["now"] + 86400, abs=60)


BAD_TOKEN_REQUESTS: list[tuple[Any, str]] = [
    ({"flavor": "stale"}, "flavor: must be one of valid, expired"),
    ({"kind": "refresh"}, "kind: must be one of access, id"),
    ({"claims": ["aud"]}, "claims: must be a JSON object, got"),
    ({"claims": {"iss": 5}}, "claims: Issuer (iss) must be a string"),
    ({"user": 5}, "user: must be a string, got 5"),
    ({"color": "red"}, "color: unknown field; known: kind, claims"),
    ({"user": "nobody@contoso.com"}, "user: no user 'nobody@contoso.com'"),
    ({"audience": "api://nope"}, "audience: no app has the client id or identifier URI 'api://nope'"),
    ({"client_id": "nope"}, "client_id: no app 'nope'"),
    ({"tenant_id": "nope.example"}, "tenant_id: no tenant 'nope.example'"),
    ({"kind": "id", "audience": "api://fakests-api"}, "audience: an id_token's audience is its client"),
    (b'{"claims": {"x": NaN}}', "claims: must be plain JSON values"),
    (b"[]", "The body must be a JSON object"),
]


@pytest.mark.parametrize(("body", "description"), BAD_TOKEN_REQUESTS,
                         ids=[str(i) for i in range(len(BAD_TOKEN_REQUESTS))])
def test_bad_token_requests(s: requests.Session, sandbox: dict[str, Any], body: Any, description: str) -> None:
    # Raw bytes go as JSON (the type a tool sends), so the JSON reader's own checks answer.
    kw: dict[str, Any] = ({"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes)
                          else {"json": body})
    r = s.post(url(sandbox, "/tokens"), **kw)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert description in r.json()["error_description"], r.json()["error_description"]


# --- the OpenAPI document --------------------------------------------------------------------------------
def _walk(routes: list[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            out |= _walk(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            out |= {(prefix + route.path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return out


def test_openapi_describes_every_admin_route_and_nothing_else(s: requests.Session) -> None:
    r = s.get(f"{ADMIN}/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1") and doc["servers"] == [{"url": ADMIN}]
    validate_openapi(doc)
    described = {(path, method) for path, item in doc["paths"].items() for method in item
                 if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace")}
    assert described == _walk(admin.routes())
    # Every path parameter is declared; every operation answers something and has an id.
    for path, item in doc["paths"].items():
        for method in {m for p, m in described if p == path}:
            op = item[method]
            declared = {p["name"] for p in item.get("parameters", []) + op.get("parameters", []) if p["in"] == "path"}
            assert declared == {part[1:-1] for part in path.split("/") if part.startswith("{")}, (path, method)
            assert op["responses"] and op["operationId"]
    ids = [item[m]["operationId"] for p, m in described for item in [doc["paths"][p]]]
    assert len(ids) == len(set(ids))
    body = doc["paths"]["/sandboxes/{sandbox_id}/scenarios"]["post"]["requestBody"]["content"]
    assert body["application/yaml"]["schema"] == {"$ref": "#/components/schemas/Scenario"}
    assert doc["components"]["schemas"]["Scenario"] == scenarios.SCHEMA
    assert openapi.document()["servers"] == [{"url": "/_fakests"}]


def test_openapi_walk_sees_mounted_routes() -> None:
    # The route walk must follow Mounts, or an admin router mounted inside admin.routes() would escape the check.
    nested = [Mount("/x", routes=[Route("/y", lambda r: None, methods=["POST"])])]
    assert _walk(nested) == {("/x/y", "post")}


def test_responses_match_the_openapi_schemas(s: requests.Session, sandbox: dict[str, Any]) -> None:
    """The documented response schemas are the real ones (a contract test against drift)."""
    from jsonschema import Draft202012Validator

    doc = s.get(f"{ADMIN}/openapi.json").json()

    def check(response: requests.Response, status: int, name: str) -> None:
        assert response.status_code == status, response.text
        Draft202012Validator({**doc, "$ref": f"#/components/schemas/{name}"}).validate(response.json())

    sid = sandbox["sandbox_id"]
    check(s.get(url(sandbox)), 200, "SandboxDetail")
    check(s.patch(url(sandbox), json={"auto_sign_in": True}), 200, "SandboxSummary")
    check(s.post(url(sandbox, "/apps"), json={"display_name": "contract", "secrets": ["s3cret"],
                                              "certificates": ["default"]}), 201, "App")
    check(s.post(url(sandbox, "/users"), json={"username": "c@contoso.com", "display_name": "C", "password": "p"}),
          201, "User")
    check(s.patch(url(sandbox, "/users/c@contoso.com"), json={"locked": True}), 200, "User")
    check(s.post(url(sandbox, "/consents"), json={"client_id": app_id(sandbox, "fakests daemon"),
                                                  "resource": defaults.API_URI, "scopes": ["Data.Read"]}),
          201, "Consent")
    check(s.post(url(sandbox, "/role-assignments"), json={"principal": "bob@contoso.com",
                                                          "resource": defaults.API_URI, "roles": ["Data.Read"]}),
          201, "RoleAssignment")
    check(s.post(url(sandbox, "/clock"), json={"advance": 1}), 200, "Clock")
    check(s.post(url(sandbox, "/keys/rotate")), 200, "KeysRotated")
    check(s.post(url(sandbox, "/scenarios"), json=FAIL_DAEMON), 201, "LoadedScenario")
    check(s.post(url(sandbox, "/scenarios"), json={"rules": []}), 400, "ScenarioError")
    check(s.post(url(sandbox, "/tokens"), json={"kind": "id"}), 200, "MintedToken")
    client_credentials(s, sandbox)
    entries = s.get(url(sandbox, "/journal")).json()["entries"]
    assert entries
    for entry in entries:
        Draft202012Validator({**doc, "$ref": "#/components/schemas/JournalEntry"}).validate(entry)
    for item in s.get(f"{ADMIN}/scenarios").json()["scenarios"]:
        Draft202012Validator({**doc, "$ref": "#/components/schemas/LibraryEntry"}).validate(item)
    for item in s.get(f"{ADMIN}/sandboxes").json()["sandboxes"]:
        Draft202012Validator({**doc, "$ref": "#/components/schemas/SandboxSummary"}).validate(item)
    check(s.get(f"{ADMIN}/sandboxes/{sid}x"), 404, "Error")
