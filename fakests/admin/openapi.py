"""The OpenAPI 3.1 document of the admin API (``GET /_fakests/openapi.json``), built as data.

Every route of ``admin.routes()`` has an operation here and nothing else does (a test walks both).
Scenario bodies reference ``scenarios.SCHEMA`` itself, and the directory entries' request schemas are
derived from ``fakests.state.directory``'s dataclasses, the same fields ``config.DirectoryReader`` accepts.
"""

from __future__ import annotations

import copy
import dataclasses
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from ..failures import scenarios
from ..state.directory import App, FederatedCredential, ManagedIdentity, Tenant, User
from ..state.journal import JournalEntry
from ..sts.identity import IDENTITY_ENDPOINTS
from . import mint
from .api import JOURNAL_FILTERS
from .dashboard import DEFAULT_LIMIT, JOURNAL_QUERY, MAX_LIMIT

VERSION = "3.1.0"
_JSON = "application/json"
_PRIMITIVES: dict[Any, str] = {str: "string", bool: "boolean", int: "integer", float: "number"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _schema_of(kind: Any) -> dict[str, Any]:
    """A JSON Schema for a dataclass field's type annotation."""
    origin = get_origin(kind)
    if origin is Literal:
        return {"enum": list(get_args(kind))}
    if origin in (Union, types.UnionType):
        args = get_args(kind)
        inner = _schema_of(next(a for a in args if a is not type(None)))
        return {"oneOf": [inner, {"type": "null"}]} if type(None) in args else inner
    if origin is list:
        return {"type": "array", "items": _schema_of(get_args(kind)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_of(get_args(kind)[1])}
    return {"type": _PRIMITIVES.get(kind, "string")}


def _dataclass_schema(cls: type, *, optional: tuple[str, ...] = (), overrides: dict[str, Any] | None = None,
                      description: str = "") -> dict[str, Any]:
    """An object schema with ``cls``'s fields; required are those without defaults, less ``optional``."""
    hints = get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        props[f.name] = (overrides or {}).get(f.name) or _schema_of(hints[f.name])
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in optional:
            required.append(f.name)
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        schema["required"] = required
    if description:
        schema["description"] = description
    return schema


def _object(properties: dict[str, Any], required: tuple[str, ...] = (), description: str = "",
            *, closed: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


_STR, _NUM, _INT, _BOOL = {"type": "string"}, {"type": "number"}, {"type": "integer"}, {"type": "boolean"}
_STRS = {"type": "array", "items": _STR}


def _federated() -> dict[str, Any]:
    return {"type": "array", "items": _dataclass_schema(
        FederatedCredential, description="A federated identity credential: issuer (an https URL, or "
                                         "/kubernetes/{cluster} on fakests), subject, audiences (one)."),
            "description": "External tokens accepted as the client assertion (workload identity federation)."}


def _schemas() -> dict[str, Any]:
    federated = _federated()
    scenario = copy.deepcopy(scenarios.SCHEMA)
    secret = {"oneOf": [_STR, _object({"value": _STR, "expires_at": {"oneOf": [_NUM, _STR, {"type": "null"}]},
                                       "hint": _STR}, ("value",))],
              "description": "A secret value, or {value, expires_at (epoch seconds or ISO 8601), hint}."}
    app_request = _dataclass_schema(App, optional=("client_id", "tenant_id"), overrides={
        "secrets": {"type": "array", "items": secret},
        "certificates": {"type": "array", "items": _STR,
                         "description": "PEM certificates, or 'default' for the default client certificate."},
        "federated_credentials": federated,
    }, description="An app registration; client_id defaults to a new GUID, tenant_id to the home tenant.")
    app = _object({**{k: v for k, v in app_request["properties"].items() if k not in ("secrets", "certificates")},
                   "secrets": {"type": "array", "items": _object(
                       {"value": _STR, "expires_at": {"oneOf": [_NUM, {"type": "null"}]}, "hint": _STR})},
                   "certificates": {"type": "array", "items": _object(
                       {"x5t": _STR, "x5t#S256": _STR, "not_after": _NUM})}},
                  description="An app registration; certificates by thumbprint.")
    user = _dataclass_schema(User, description="A user, password included (fakests' credentials are test data).")
    user_request = _dataclass_schema(User, optional=("tenant_id",), description=(
        "A user; oid defaults to a new GUID, tenant_id to the home tenant (the MSA tenant for account_type msa)."))
    identity_request = _dataclass_schema(
        ManagedIdentity, optional=("client_id", "object_id", "tenant_id"), description=(
            "A managed identity, as under managed_identities: in a config file; client_id and object_id default to "
            "new GUIDs, tenant_id to the home tenant."))
    identity_request["properties"]["hosted_on"] = {**_BOOL, "default": False, "description": (
        "System-assigned only: the managed-identity endpoints now run on its resource (requests that select no "
        "identity get its tokens).")}
    journal = _dataclass_schema(JournalEntry, description="One request as the sandbox saw it (secrets redacted).")
    journal["additionalProperties"] = True  # new diagnostic fields may join
    summary = _object({"sandbox_id": _STR, "tenant_id": _STR, "authority": _STR, "auto_sign_in": _BOOL,
                       "clock_offset": _NUM, "now": _NUM, "journal_entries": _INT, "internal_errors": _INT,
                       "journal_lost": _INT})
    grant = _object({"client_id": _STR, "resource": _STR, "scopes": _STRS})
    assignment = _object({"principal": _STR, "resource": _STR, "roles": _STRS})
    rule = _object({"scenario": _STR, "rule": _STR, "matched": _INT, "fired": _INT, "description": _STR},
                   description="A loaded rule: matched counts requests it selected, fired those it answered.")
    return {
        "Error": _object({"error": _STR, "error_description": _STR}, ("error", "error_description"), closed=False),
        "ScenarioError": _object({"error": {"const": "invalid_scenario"}, "error_description": _STR, "key": _STR,
                                  "reason": _STR}, ("error", "error_description", "key", "reason"),
                                 "A scenario mistake: error_description is 'source: key: reason'."),
        "Scenario": scenario,
        "LibraryScenarioRef": _object({"name": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"}},
                                      ("name",), "Load a scenario of the library (GET /scenarios) by name."),
        "LoadedRule": rule,
        "LoadedScenario": _object({"name": _STR, "description": _STR, "source": _STR,
                                   "rules": {"type": "array", "items": _ref("LoadedRule")}}),
        "LibraryEntry": _object({"name": _STR, "path": _STR, "origin": {"enum": ["scenario_dir", "bundled"]},
                                 "description": _STR, "rules": _INT, "error": _STR, "key": _STR, "reason": _STR},
                                ("name", "path", "origin"),
                                "A library scenario: description and rules, or error/key/reason if it is broken."),
        "SandboxSummary": summary,
        "SandboxDetail": _object({
            **summary["properties"], "authorities": {"type": "object", "additionalProperties": _STR},
            "id_map": {"type": "object", "additionalProperties": _STR,
                       "description": "Default-directory ids (tenants, apps) -> this sandbox's fresh ids."},
            "directory": _ref("Directory")}),
        "Directory": _object({
            "tenants": {"type": "array", "items": _dataclass_schema(Tenant)},
            "apps": {"type": "array", "items": _ref("App")}, "users": {"type": "array", "items": _ref("User")},
            "managed_identities": {"type": "array", "items": _dataclass_schema(
                ManagedIdentity, overrides={"federated_credentials": federated})},
            "hosted_on": {**_STR, "description": "ARM id of the resource the managed-identity endpoints run on."},
            "consents": {"type": "array", "items": grant},
            "user_consents": {"type": "array", "items": _object({"oid": _STR, **grant["properties"]})},
            "role_assignments": {"type": "array", "items": assignment}}),
        "App": app, "AppCreate": app_request, "User": user, "UserCreate": user_request,
        "UserPatch": _object({"disabled": _BOOL, "locked": _BOOL, "password_expired": _BOOL,
                              "password": {"type": "string", "minLength": 1},
                              "tokens_valid_from": {"oneOf": [_NUM, {"const": "now"}],
                                                    "description": "Refresh tokens issued before it are revoked."}},
                             description="At least one field."),
        "ConsentCreate": _object({"client_id": _STR, "resource": _STR, "scopes": _STRS},
                                 ("client_id", "resource", "scopes")),
        "Consent": grant,
        "RoleAssignmentCreate": _object({"principal": {**_STR, "description": "client_id, user oid or username"},
                                         "resource": _STR, "roles": _STRS}, ("principal", "resource", "roles")),
        "RoleAssignment": assignment,
        "ManagedIdentityCreate": identity_request,
        "ManagedIdentity": _object({**_dataclass_schema(ManagedIdentity)["properties"], "hosted_on": _BOOL},
                                   description="A managed identity; hosted_on: the endpoints run on its resource."),
        "IdentityEndpoint": _object({
            "sandbox_id": _STR, "source": {"enum": list(IDENTITY_ENDPOINTS)},
            "identity_url": {**_STR, "description": "The sandbox's managed-identity base URL (plain HTTP)."},
            "endpoint": {**_STR, "description": "The source's token endpoint under it."},
            "environment": {"type": "object", "additionalProperties": _STR,
                            "description": "The variables that point clients at it (AZURE_POD_IDENTITY_AUTHORITY_HOST"
                                           ", IDENTITY_ENDPOINT + IDENTITY_HEADER, MSI_ENDPOINT...)."}},
            ("sandbox_id", "source", "identity_url", "endpoint", "environment")),
        "JournalEntry": journal,
        "JournalPage": _object({"entries": {"type": "array", "items": _ref("JournalEntry")},
                                "matching": {**_INT, "description": "Entries matching the filters in all."},
                                "limit": _INT}, ("entries", "matching", "limit"),
                               "The newest matching entries of every sandbox, newest first."),
        "SandboxRules": _object({"sandbox_id": _STR, "rules": {"type": "array", "items": _ref("LoadedRule")}},
                                ("sandbox_id", "rules")),
        "Clock": _object({"clock_offset": _NUM, "now": _NUM}),
        "KeysRotated": _object({"kid": _STR, "previous_kid": _STR, "published": _STRS, "sandbox_id": _STR,
                                "sandboxes": _STRS, "note": _STR}, ("kid", "previous_kid", "published")),
        "TokenRequest": _object({
            "kind": {"enum": list(mint.KINDS), "default": "access"},
            "claims": {"type": "object", "description": "Claim overrides; null removes a claim."},
            "audience": {**_STR, "description": "Access tokens: client id or identifier URI of the resource."},
            "tenant_id": {**_STR, "description": "A tenant GUID or domain of the sandbox."},
            "user": {**_STR, "description": "A username: a delegated token (id tokens always have a user)."},
            "client_id": {**_STR, "description": "The app the token was issued to."},
            "flavor": {"enum": list(mint.FLAVORS), "default": "valid"}}),
        "MintedToken": _object({"token": _STR, "claims": {"type": "object"}, "header": {"type": "object"}},
                               ("token", "claims", "header")),
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _body(name: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {_JSON: {"schema": _ref(name)}}}


_ERROR = _ref("Error")
_NO_SANDBOX = _json(_ERROR, "No such sandbox (it may have expired or been deleted).")
_BAD = _json(_ERROR, "A bad request: invalid JSON, an unknown field, a wrong type or value.")
_FORBIDDEN = _json(_ERROR, "Refused: a cross-origin request (Origin, Sec-Fetch-Site), or, with no admin token set, "
                           "a Host that is not a name of this fakests (DNS rebinding).")
_SANDBOX_PARAM = {"name": "sandbox_id", "in": "path", "required": True, "schema": _STR,
                  "description": "A sandbox id; 'default' is the built-in one."}


def _op(op_id: str, summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, public: bool = False, tag: str = "sandboxes") -> dict[str, Any]:
    # Every operation refuses what a web page from another origin may have sent (``_http.browser_guard``).
    responses = {**responses, "403": _FORBIDDEN, "503": _json(_ERROR, "The shared store (replicas: Redis) did "
                                                                     "not answer; Retry-After says when to retry.")}
    if body is not None:
        responses.setdefault("415", _json(_ERROR, "A body of a type a page can send cross-origin (none, text/plain, "
                                                  "a form)."))
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": [tag], "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    if public:
        op["security"] = []
    return op


def _paths() -> dict[str, Any]:
    sb = "/sandboxes/{sandbox_id}"
    ok_sb = {"200": _json(_ref("SandboxSummary"), "The sandbox."), "400": _BAD, "404": _NO_SANDBOX}
    created = "201"
    journal_params = [{"name": n, "in": "query", "required": False,
                       "schema": _INT if n in ("status", "since") else _STR,
                       "description": "Entries after this seq." if n == "since" else f"Only entries with this {n}."}
                      for n in JOURNAL_FILTERS]
    username = {"name": "username", "in": "path", "required": True, "schema": _STR}
    all_journal_params = [
        {"name": "sandbox", "in": "query", "required": False, "schema": _STR, "description": "Only this sandbox's."},
        *[{**p, "description": f"Only entries whose {p['name']} contains this (case-insensitive)."}
          if p["name"] in ("client_id", "correlation_id") else p
          for p in journal_params if p["name"] != "status"],
        {"name": "status", "in": "query", "required": False,
         "schema": {**_STR, "pattern": "^([0-9]{1,3}|[1-5]xx|failed)$"},
         "description": "A status code (400), a class (4xx) or 'failed' (400 and up)."},
        {"name": "limit", "in": "query", "required": False,
         "schema": {**_INT, "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
         "description": "At most this many entries (the newest)."}]
    assert {p["name"] for p in all_journal_params} == set(JOURNAL_QUERY)
    library_or_doc = {"required": True, "description": "A scenario document, or {\"name\": ...} for a library "
                      "scenario. YAML with Content-Type application/yaml or text/yaml.", "content": {
                          _JSON: {"schema": {"oneOf": [_ref("Scenario"), _ref("LibraryScenarioRef")]}},
                          "application/yaml": {"schema": _ref("Scenario")},
                          "text/yaml": {"schema": _ref("Scenario")}}}
    return {
        "/health": {"get": _op("health", "Liveness probe (never needs the admin token).",
                               {"200": _json(_object({"status": {"const": "ok"}}), "Alive.")}, public=True,
                               tag="server")},
        "/ca.pem": {"get": _op("getCa", "The CA certificate clients must trust.", {
            "200": {"description": "PEM certificate.", "content": {"text/plain": {"schema": _STR}}},
            "404": _json(_ERROR, "TLS is off.")}, tag="server")},
        "/client-cert.pem": {"get": _op("getClientCertificate", "The default client certificate with its "
                                        "private key (PEM): a test credential of the default confidential apps.", {
                                            "200": {"description": "PEM key and certificate.",
                                                    "content": {"text/plain": {"schema": _STR}}}}, tag="server")},
        "/openapi.json": {"get": _op("getOpenApi", "This document.", {
            "200": _json({"type": "object"}, "The OpenAPI 3.1 document.")}, tag="server")},
        "/keys/rotate": {"post": _op("rotateServerKeys", "Rotate the server-wide signing keys (saved to the state "
                                     "directory); sandboxes that rotated their own keys keep them.", {
                                         "200": _json(_ref("KeysRotated"), "The new key."), "400": _BAD},
                                     body={"required": False, "content": {_JSON: {"schema": _object({})}}},
                                     tag="server")},
        "/scenarios": {"get": _op("listLibrary", "The scenario library: scenario_dir and bundled scenarios.", {
            "200": _json(_object({"scenarios": {"type": "array", "items": _ref("LibraryEntry")}}), "The library.")},
            tag="scenarios")},
        "/dashboard": {"get": _op("dashboard", "The dashboard page: journal, scenarios and directory, live. Public; "
                                  "open it with ?token=<admin_token> and its data calls send the token.", {
                                      "200": {"description": "A self-contained HTML page.",
                                              "content": {"text/html": {"schema": _STR}}}},
                                  public=True, tag="dashboard")},
        "/journal": {"get": _op("listAllJournals", "The journal of every sandbox, newest first (for the dashboard).", {
            "200": _json(_ref("JournalPage"), "The newest matching entries."), "400": _BAD},
            params=all_journal_params, tag="journal")},
        "/rules": {"get": _op("listAllRules", "The loaded scenario rules of every sandbox that has some.", {
            "200": _json(_object({"sandboxes": {"type": "array", "items": _ref("SandboxRules")}}), "Rules.")},
            tag="scenarios")},
        "/sandboxes": {
            "get": _op("listSandboxes", "Every live sandbox, default first.", {"200": _json(
                _object({"sandboxes": {"type": "array", "items": _ref("SandboxSummary")}}), "Sandboxes.")}),
            "post": _op("createSandbox", "A fresh-id copy of the default directory.", {
                created: _json(_ref("SandboxDetail"), "The new sandbox."), "400": _BAD,
                "429": _json(_ERROR, "max_sandboxes are alive.")},
                body={"required": False, "content": {_JSON: {"schema": _object({"auto_sign_in": _BOOL})}}})},
        sb: {
            "parameters": [_SANDBOX_PARAM],
            "get": _op("getSandbox", "Summary, authority URLs and the directory with credentials.", {
                "200": _json(_ref("SandboxDetail"), "The sandbox."), "404": _NO_SANDBOX}),
            "patch": _op("updateSandbox", "Change auto_sign_in and this sandbox's token and code lifetimes.", ok_sb,
                         body={"required": True, "content": {_JSON: {"schema": _object(
                             {"auto_sign_in": _BOOL, **{name: {"type": "integer", "minimum": 0} for name in (
                                 "access_token_lifetime", "id_token_lifetime", "refresh_token_lifetime",
                                 "code_lifetime", "device_code_lifetime", "device_code_interval")}})}}}),
            "delete": _op("deleteSandbox", "Drop a sandbox (not 'default').", {
                "204": {"description": "Dropped."}, "400": _BAD, "404": _NO_SANDBOX})},
        f"{sb}/apps": {"parameters": [_SANDBOX_PARAM], "post": _op("createApp", "Register an app.", {
            created: _json(_ref("App"), "The app."), "400": _BAD, "404": _NO_SANDBOX}, body=_body("AppCreate"),
            tag="directory")},
        f"{sb}/users": {"parameters": [_SANDBOX_PARAM], "post": _op("createUser", "Add a user.", {
            created: _json(_ref("User"), "The user."), "400": _BAD, "404": _NO_SANDBOX}, body=_body("UserCreate"),
            tag="directory")},
        f"{sb}/users/{{username}}": {"parameters": [_SANDBOX_PARAM, username], "patch": _op(
            "updateUser", "Disable, lock, expire the password, set it, or revoke refresh tokens.", {
                "200": _json(_ref("User"), "The user."), "400": _BAD,
                "404": _json(_ERROR, "No such sandbox or user.")}, body=_body("UserPatch"), tag="directory")},
        f"{sb}/consents": {"parameters": [_SANDBOX_PARAM], "post": _op("grantConsent", "Admin consent.", {
            created: _json(_ref("Consent"), "Every scope now granted."), "400": _BAD, "404": _NO_SANDBOX},
            body=_body("ConsentCreate"), tag="directory")},
        f"{sb}/role-assignments": {"parameters": [_SANDBOX_PARAM], "post": _op("assignRoles", "Assign app roles.", {
            created: _json(_ref("RoleAssignment"), "Every role now assigned."), "400": _BAD, "404": _NO_SANDBOX},
            body=_body("RoleAssignmentCreate"), tag="directory")},
        f"{sb}/managed-identities": {"parameters": [_SANDBOX_PARAM], "post": _op(
            "createManagedIdentity", "Register a managed identity; hosted_on: true (system-assigned) makes the "
            "managed-identity endpoints run on its resource.", {
                created: _json(_ref("ManagedIdentity"), "The identity."), "400": _BAD, "404": _NO_SANDBOX},
            body=_body("ManagedIdentityCreate"), tag="directory")},
        f"{sb}/identity-endpoint": {"parameters": [_SANDBOX_PARAM], "get": _op(
            "getIdentityEndpoint", "Where code on Azure compute reaches this sandbox's managed-identity endpoint of "
            "a source, and the variables that point clients at it.", {
                "200": _json(_ref("IdentityEndpoint"), "The endpoint and its variables."), "400": _BAD,
                "404": _json(_ERROR, "No such sandbox, or this fakests serves no managed-identity endpoints.")},
            params=[{"name": "source", "in": "query", "required": False,
                     "schema": {"enum": list(IDENTITY_ENDPOINTS), "default": "imds"}}], tag="directory")},
        f"{sb}/journal": {
            "parameters": [_SANDBOX_PARAM],
            "get": _op("listJournal", "Journal entries matching every filter, oldest first.", {
                "200": _json(_object({"entries": {"type": "array", "items": _ref("JournalEntry")}}), "Entries."),
                "400": _BAD, "404": _NO_SANDBOX}, params=journal_params, tag="journal"),
            "delete": _op("clearJournal", "Empty the journal.", {"204": {"description": "Cleared."},
                                                                 "404": _NO_SANDBOX}, tag="journal")},
        f"{sb}/clock": {"parameters": [_SANDBOX_PARAM], "post": _op("advanceClock", "Move the sandbox clock.", {
            "200": _json(_ref("Clock"), "The clock."), "400": _BAD, "404": _NO_SANDBOX},
            body={"required": True, "content": {_JSON: {"schema": _object(
                {"advance": {**_NUM, "description": "Seconds; negative goes back."}}, ("advance",))}}})},
        f"{sb}/kubernetes/token": {"parameters": [_SANDBOX_PARAM], "post": _op(
            "mintServiceAccountToken", "A service-account token of fakests' fake Kubernetes cluster (workload "
            "identity), issued now on the sandbox clock.", {
                "200": _json(_object({"token": _STR, "issuer": _STR, "subject": _STR}), "The token."),
                "400": _BAD, "404": _NO_SANDBOX},
            body={"required": False, "content": {_JSON: {"schema": _object({
                "namespace": {**_STR, "description": "Default: default."},
                "service_account": {**_STR, "description": "Default: workload."},
                "audience": {**_STR, "description": "Default: api://AzureADTokenExchange."},
                "lifetime": {**_NUM, "description": "Seconds; default 3600."},
                "cluster": {**_STR, "description": "The issuer is {origin}/kubernetes/{cluster}; default fakests."},
            })}}}, tag="keys")},
        f"{sb}/keys/rotate": {"parameters": [_SANDBOX_PARAM], "post": _op(
            "rotateSandboxKeys", "Rotate this sandbox's signing keys only (the old key stays published for the "
            "grace period).", {"200": _json(_ref("KeysRotated"), "The new key."), "400": _BAD, "404": _NO_SANDBOX},
            body={"required": False, "content": {_JSON: {"schema": _object({})}}}, tag="keys")},
        f"{sb}/scenarios": {
            "parameters": [_SANDBOX_PARAM],
            "post": _op("loadScenario", "Load a scenario; a loaded one of the same name is replaced.", {
                created: _json(_ref("LoadedScenario"), "The loaded rules."),
                "400": {"description": "An invalid scenario or bad request.", "content": {_JSON: {"schema": {
                    "anyOf": [_ref("ScenarioError"), _ERROR]}}}},
                "404": _NO_SANDBOX, "413": _json(_ERROR, "The body is too large."),
                "415": _json(_ERROR, "Neither JSON nor YAML.")}, body=library_or_doc, tag="scenarios"),
            "get": _op("listScenarioRules", "Loaded rules in the order they are tried, with counters.", {
                "200": _json(_object({"rules": {"type": "array", "items": _ref("LoadedRule")}}), "Rules."),
                "404": _NO_SANDBOX}, tag="scenarios"),
            "delete": _op("clearScenarios", "Unload every rule, or one scenario's.", {
                "204": {"description": "Cleared."}, "400": _BAD,
                "404": _NO_SANDBOX},
                params=[{"name": "name", "in": "query", "required": False, "schema": _STR,
                         "description": "Only this scenario's rules."}], tag="scenarios")},
        f"{sb}/tokens": {"parameters": [_SANDBOX_PARAM], "post": _op(
            "mintToken", "Sign a token for testing resource servers: valid, or wrong in one way (flavor).", {
                "200": _json(_ref("MintedToken"), "The token, its claims and header."), "400": _BAD,
                "404": _NO_SANDBOX}, body=_body("TokenRequest", required=False), tag="tokens")},
    }


def document(server_url: str = "/_fakests") -> dict[str, Any]:
    """The OpenAPI 3.1 document; ``server_url`` is where the admin API is mounted."""
    return {
        "openapi": VERSION,
        "info": {"title": "fakests admin API", "version": "1",
                 "description": "Sandboxes, directory, journal, clock, keys, scenarios and minted tokens of a "
                                "fakests server. JSON in, JSON out; errors are {error, error_description}."},
        "servers": [{"url": server_url}],
        "security": [{}, {"adminToken": []}],
        "tags": [{"name": n} for n in ("server", "sandboxes", "directory", "journal", "keys", "scenarios",
                                       "tokens", "dashboard")],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer",
                                               "description": "The admin_token setting, when it is set."}},
        },
    }
