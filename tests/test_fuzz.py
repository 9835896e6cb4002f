"""Fuzzing: nothing a client sends, by mistake or in a load test, breaks fakests or makes it lie.

Two parts, both in-process (no socket), deterministic (``derandomize``) and bounded (``max_examples``):

* **Admin API** (``/_fakests/``): Schemathesis generates requests from the served OpenAPI document
  (``GET /_fakests/openapi.json``), valid and invalid, for every operation. Each response must not be a
  5xx, must have a documented status, content type and body schema, and must not carry a traceback.
* **STS endpoints**: Hypothesis builds raw ASGI requests (any method, tenant segment, parameter,
  encoding, body, header or cookie, including invalid UTF-8, huge and repeated fields, and JWTs signed
  with the real keys but holding junk claims). Every answer must be < 500, carry ``x-ms-request-id``,
  hold no traceback and, when it is a JSON 4xx, have Entra's error shape. Afterwards the server still
  issues a token to a normal client and no sandbox recorded an internal error.

Each test runs its own ``Runtime`` (own state directory), so rotating server keys or filling journals
here never touches the session's fakests.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes, urlencode

import jwt
import pytest
import schemathesis
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette

from fakests.admin import openapi
from fakests.failures.faults import INPROCESS_KEY
from fakests.server.app import create_app
from fakests.server.runtime import Runtime
from fakests.state import defaults as d
from fakests.state.directory import MSA_TENANT_ID, Certificate
from fakests.state.sandbox import Sandbox
from fakests.state.settings import Settings
from fakests.sts.grants import GRANTS
from fakests.testing.transport import session_for

ORIGIN = "https://fakests.test"
FUZZ_SETTINGS: dict[str, Any] = {
    "derandomize": True, "database": None, "deadline": None, "print_blob": False,
    "suppress_health_check": list(HealthCheck), "phases": [Phase.explicit, Phase.generate, Phase.shrink],
}


def _runtime(tmp: Path, **overrides: Any) -> Runtime:
    return Runtime.start(Settings(port=0, state_dir=tmp, log_requests=False, **overrides))


# =====================================================================================================
# Admin API: Schemathesis against the OpenAPI document
# =====================================================================================================

ADMIN_EXAMPLES = 60  # per operation and generation mode; operations without inputs need only one
ADMIN_EXAMPLES_SLOW = 12  # key rotation makes an RSA key per request (~40 ms)
ADMIN_OPERATIONS = [(path, method) for path, item in openapi.document()["paths"].items()
                    for method in item if method != "parameters"]


def _no_traceback(ctx: Any, response: Any, case: Any) -> bool | None:
    """A custom check: no Python traceback in any body."""
    assert "Traceback (most recent call last)" not in response.text, response.text[:2000]
    return None


POSITIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
                   response_headers_conformance, response_schema_conformance, _no_traceback]
# Invalid requests must be refused with a 4xx (negative_data_rejection), documented like any other.
NEGATIVE_CHECKS = [*POSITIVE_CHECKS, negative_data_rejection]


@dataclass
class AdminTarget:
    """The admin API under test, and a sandbox that generated requests address (recreated if deleted)."""

    runtime: Runtime
    app: Starlette
    schema: Any
    live: Sandbox
    counts: Counter[str] = field(default_factory=Counter)

    def live_id(self) -> str:
        if self.runtime.sandboxes.get(self.live.sandbox_id) is None:
            self.live = self.runtime.sandboxes.create()
        return self.live.sandbox_id


def _in_process(app: Any) -> Any:
    async def marked(scope: Any, receive: Any, send: Any) -> None:
        await app({**scope, INPROCESS_KEY: True} if scope["type"] == "http" else scope, receive, send)

    return marked


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminTarget]:
    runtime = _runtime(tmp_path_factory.mktemp("admin-fuzz"), tls=True, max_body=64 * 1024)
    app = create_app(runtime=runtime)
    # Schemathesis calls the app as Starlette's test client, Host 'testserver': mark its calls in-process (as
    # fakests' own transport does), or the admin API's DNS-rebinding guard refuses that unknown host.
    schema = schemathesis.openapi.from_asgi("/_fakests/openapi.json", _in_process(app))
    target = AdminTarget(runtime, app, schema, runtime.sandboxes.create())
    yield target
    print(f"\nadmin API fuzz: {sum(target.counts.values())} requests")


def _has_inputs(operation: Any) -> bool:
    """Whether there is anything to make invalid besides path parameters (any string is a valid one)."""
    definition = operation.definition.raw
    return "requestBody" in definition or any(p.get("in") == "query" for p in definition.get("parameters", []))


def _fuzz_operation(admin: AdminTarget, operation: Any, mode: GenerationMode) -> None:
    checks = POSITIVE_CHECKS if mode is GenerationMode.POSITIVE else NEGATIVE_CHECKS
    label = f"{operation.method.upper()} {operation.path}"

    # Path parameters: mostly a live sandbox and a known user, so requests reach the handlers; sometimes
    # "default" or whatever was generated (then a 404).
    @settings(max_examples=ADMIN_EXAMPLES_SLOW if operation.path.endswith("/keys/rotate") else ADMIN_EXAMPLES,
              **FUZZ_SETTINGS)
    @given(case=operation.as_strategy(generation_mode=mode),
           sandbox=st.sampled_from(["live", "live", "live", "default", "generated"]),
           user=st.sampled_from(["alice@contoso.com", "bob@contoso.com", "generated"]))
    def run(case: Any, sandbox: str, user: str) -> None:
        if "sandbox_id" in (case.path_parameters or {}) and sandbox != "generated":
            case.path_parameters["sandbox_id"] = admin.live_id() if sandbox == "live" else "default"
        if "username" in (case.path_parameters or {}) and user != "generated":
            case.path_parameters["username"] = user
        response = case.call()
        admin.counts[f"{label} {response.status_code}"] += 1
        case.validate_response(response, checks=checks)

    run()


@pytest.mark.parametrize(("path", "method"), ADMIN_OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in ADMIN_OPERATIONS])
def test_admin_api_conforms_to_its_openapi_document(admin: AdminTarget, path: str, method: str) -> None:
    operation = admin.schema[path][method]
    _fuzz_operation(admin, operation, GenerationMode.POSITIVE)
    if _has_inputs(operation):
        _fuzz_operation(admin, operation, GenerationMode.NEGATIVE)


# =====================================================================================================
# STS endpoints: Hypothesis, raw ASGI requests
# =====================================================================================================

TOKEN_EXAMPLES = 2000
AUTHORIZE_EXAMPLES = 800
OTHER_EXAMPLES = 1000
WILD_EXAMPLES = 500
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
USER_SCOPE = "openid profile offline_access User.Read"
WEB_REDIRECT = "http://localhost:5000/getAToken"


@dataclass(frozen=True)
class RawRequest:
    """One request as an ASGI server hands it over: the path decoded, the query and headers raw."""

    method: str
    path: str
    query: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    chunks: int = 1  # the body arrives in this many pieces

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example: short enough to read
        body = self.body if len(self.body) <= 300 else self.body[:300] + b"...(%d bytes)" % len(self.body)
        headers = [(k, v if len(v) <= 200 else v[:200] + b"...") for k, v in self.headers]
        return f"RawRequest({self.method} {self.path!r} query={self.query[:300]!r} headers={headers} body={body!r})"


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v.decode("latin-1") for k, v in self.headers if k.decode("latin-1").lower() == name), None)


async def _asgi(app: Starlette, req: RawRequest) -> Answer:
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": req.method, "scheme": "https",
        "path": req.path, "raw_path": quote(req.path).encode(), "query_string": req.query, "root_path": "",
        "headers": [(b"host", b"fakests.test"), *req.headers] if not any(k == b"host" for k, _ in req.headers)
        else list(req.headers),
        "server": ("fakests.test", 443), "client": ("127.0.0.1", 50000),
    }
    size = max(1, -(-len(req.body) // req.chunks))
    pieces = [req.body[i:i + size] for i in range(0, len(req.body), size)] or [b""]
    started: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if pieces:
            piece = pieces.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(pieces)}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await asyncio.wait_for(app(scope, receive, send), timeout=10)
    except Exception as exc:  # Starlette re-raises after its 500 page: that is a crash all the same
        return Answer(599, [], f"app raised {type(exc).__name__}: {exc}".encode())
    return Answer(started.get("status", 599), list(started.get("headers", [])), b"".join(chunks))


@dataclass
class Known:
    """Values from the sandboxes under test, so generated requests get past the first checks."""

    tenants: list[str]
    clients: list[str]
    secrets: list[str]
    users: list[str]
    redirect_uris: list[str]
    scopes: list[str]
    codes: list[str]
    refresh_tokens: list[str]
    device_codes: list[str]
    user_codes: list[str]
    session_ids: list[str]
    sandbox_ids: list[str]
    token_endpoints: list[str]


@dataclass(eq=False)  # hashable by identity: the strategies built from it are cached per target
class StsTarget:
    runtime: Runtime
    app: Starlette
    loop: asyncio.AbstractEventLoop
    sandbox: Sandbox  # the one the final client-credentials check uses
    known: Known
    client_key: Any
    client_x5t: str
    client_x5t_s256: str
    counts: Counter[str] = field(default_factory=Counter)

    def journaled(self) -> int:
        return sum(len(sb.journal) for sb in self.runtime.sandboxes.all())

    def send(self, req: RawRequest) -> Answer:
        before = self.journaled()
        answer = self.loop.run_until_complete(_asgi(self.app, req))
        self.counts[f"{answer.status // 100}xx"] += 1
        _check_sts_answer(self, req, answer, self.journaled() - before)
        return answer


STS_ROUTES: list[Any] = []  # filled from the app's route table: every STS route but the /devicelogin shortcut


def _route_match(app: Starlette, req: RawRequest) -> str:
    """"full" when an STS route takes the path and method, "method" when it takes only the path, else ""."""
    from starlette.routing import Match, Route

    scope = {"type": "http", "path": req.path, "method": req.method, "root_path": ""}
    best = ""
    for route in app.routes:
        if not isinstance(route, Route) or route.path == "/devicelogin":
            continue
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return "full"
        if match is Match.PARTIAL:
            best = "method"
    return best


def _check_sts_answer(target: StsTarget, req: RawRequest, answer: Answer, journaled: int) -> None:
    text = answer.body.decode("utf-8", "replace")
    if answer.status >= 500:
        errors = [e for sb in target.runtime.sandboxes.all() for e in sb.internal_errors]
        pytest.fail(f"{req!r}\n-> {answer.status}: {text[:1000]}\n{errors[-1] if errors else ''}")
    assert "Traceback" not in text and not any(b"Traceback" in v for _, v in answer.headers), text[:1500]
    trace_id = answer.header("x-ms-request-id")
    matched = _route_match(target.app, req)
    # Starlette's own redirect of "/path/" to "/path" (or back) is the one answer without fakests' ids.
    slash_redirect = answer.status == 307 and not matched and req.path.rstrip("/") != req.path
    assert trace_id or slash_redirect, f"no x-ms-request-id: {answer.headers}"
    assert journaled == (1 if matched == "full" else 0), f"{journaled} journal entries for a {matched!r} match"
    content_type = answer.header("content-type") or ""
    if matched and 400 <= answer.status < 500 and content_type.startswith("application/json"):
        body = json.loads(answer.body)
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
        codes = body.get("error_codes")
        assert isinstance(codes, list) and codes and all(isinstance(c, int) for c in codes), body
        assert str(body.get("error_description", "")).startswith(f"AADSTS{codes[0]}: "), body
        assert body.get("trace_id") == trace_id, body
        uuid.UUID(str(body.get("correlation_id")))
    if matched == "full" and answer.status == 200 and content_type.startswith("application/json"):
        body = json.loads(answer.body)
        if isinstance(body, dict) and "access_token" in body:  # a token: signed with a published key
            kid = jwt.get_unverified_header(body["access_token"])["kid"]
            assert any(sb.keys.find(kid) for sb in target.runtime.sandboxes.all()), kid


@pytest.fixture(scope="module")
def sts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StsTarget]:
    runtime = _runtime(tmp_path_factory.mktemp("sts-fuzz"), tls=False, max_body=64 * 1024, device_code_interval=0)
    app = create_app(runtime=runtime)
    loop = asyncio.new_event_loop()
    first, second = runtime.sandboxes.create(), runtime.sandboxes.create()
    second.auto_sign_in = True
    known = Known([], [], [d.DAEMON_SECRET, d.WEB_SECRET, d.API_SECRET], [], [], [], [], [], [], [], [], [], [])
    http = session_for(app, ORIGIN)
    for sb in (first, second):
        tid, web, public = sb.id_map[d.TENANT_ID], sb.id_map[d.WEB_ID], sb.id_map[d.PUBLIC_ID]
        known.tenants += [tid, sb.id_map[d.OTHER_TENANT_ID], sb.home_tenant.domains[0]]
        known.clients += [sb.id_map[c] for c in (d.DAEMON_ID, d.WEB_ID, d.API_ID, d.PUBLIC_ID)]
        known.redirect_uris += sb.directory.apps[web].redirect_uris + sb.directory.apps[public].redirect_uris
        known.sandbox_ids.append(sb.sandbox_id)
        known.token_endpoints += [f"{ORIGIN}/{tid}/oauth2/v2.0/token", f"{ORIGIN}/{tid}/oauth2/token"]
        token_url = f"{ORIGIN}/{tid}/oauth2/v2.0/token"
        for _ in range(2):
            ropc = http.post(token_url, data={"grant_type": "password", "client_id": public, "scope": USER_SCOPE,
                                              "username": "alice@contoso.com", "password": d.PASSWORD})
            known.refresh_tokens.append(ropc.json()["refresh_token"])
            flow = http.post(f"{ORIGIN}/{tid}/oauth2/v2.0/devicecode", data={"client_id": public, "scope": USER_SCOPE})
            known.device_codes.append(flow.json()["device_code"])
            known.user_codes.append(flow.json()["user_code"])
            auth_uri = f"{ORIGIN}/{tid}/oauth2/v2.0/authorize?" + urlencode(
                {"client_id": web, "response_type": "code", "redirect_uri": WEB_REDIRECT, "scope": USER_SCOPE})
            from fakests.testing.driver import sign_in

            known.codes.append(sign_in(http, auth_uri, WEB_REDIRECT, username="alice@contoso.com",
                                       password=d.PASSWORD)["code"])
        known.session_ids += list(sb.sessions)
    known.tenants += ["common", "organizations", "consumers", MSA_TENANT_ID, "fabrikam.onmicrosoft.com"]
    known.users += [u.username for u in first.directory.users.values()] + [d.PASSWORD]
    known.scopes += [USER_SCOPE, "https://graph.microsoft.com/.default", f"{d.API_URI}/.default",
                     f"{d.API_URI}/access_as_user", "openid", "User.Read", "offline_access openid",
                     f"{first.id_map[d.API_ID]}/.default"]
    pem = runtime.client_cert_path.read_text()
    cert = Certificate(pem[pem.index("-----BEGIN CERTIFICATE-----"):])
    key = load_pem_private_key(pem.encode(), password=None)
    target = StsTarget(runtime, app, loop, first, known, key, cert.x5t, cert.x5t_s256)
    yield target
    loop.close()
    print(f"\nSTS fuzz: {sum(target.counts.values())} requests, {dict(target.counts)}")


# --- strategies -------------------------------------------------------------------------------------

JUNK = st.sampled_from([
    "", " ", "%", "%zz", "%00", "\x00", "\u00b2", "\u0661\u0662", "\u20ac", "\ufeff", "\U0001f600", "\x7f",
    "http://[::1", "https://[", "https://localhost:99999/x", "https://evil.example.test/", "javascript:alert(1)",
    "../../etc/passwd", "null", "[]", "{}", "1e999", "-1", "NaN", "a.b.c", "eyJ.eyJ.sig", "\r\n", "<script>",
    "' OR 1=1 --", "{tenant}", "%(x)s", "{0}", "{}", "0", "1", "true", "none", "S256", "plain",
])
TEXT = st.text(max_size=24)
HUGE = st.integers(min_value=5_000, max_value=120_000).map(lambda n: "A" * n)
JSON_LEAF = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
             | st.floats() | st.text(max_size=12) | st.sampled_from([time.time(), time.time() + 600, -1e300]))
JSON_VALUE = st.recursive(JSON_LEAF, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c,
                                                                                             max_size=3), max_leaves=5)
SEGMENT_JUNK = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"), min_size=1,
                       max_size=20) | st.sampled_from(
    ["..", ".", "%2F", "common ", "COMMON", "Organizations", "9188040d-6c67-4c5b-b112-36a304b66dad", "x" * 300])
METHODS = st.sampled_from(["POST"] * 12 + ["GET"] * 2 + ["PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "FOO"])
PARAM_NAMES = [
    "grant_type", "client_id", "client_secret", "scope", "code", "redirect_uri", "code_verifier", "refresh_token",
    "username", "password", "device_code", "assertion", "requested_token_use", "client_assertion",
    "client_assertion_type", "client_info", "response_type", "response_mode", "state", "nonce", "prompt",
    "login_hint", "code_challenge", "code_challenge_method", "login", "passwd", "pick", "consent", "decision",
    "fakests_sid", "otc", "post_logout_redirect_uri", "authorization_endpoint", "api-version", "resource",
    "client-request-id", "claims", "domain_hint",
]
FORM_TYPE = "application/x-www-form-urlencoded"
ADDED_NAMES = st.lists(st.sampled_from(PARAM_NAMES) | TEXT, max_size=4)
CONTENT_TYPES = st.sampled_from([
    *[FORM_TYPE] * 6, "application/x-www-form-urlencoded; charset=utf-8",
    "APPLICATION/X-WWW-FORM-URLENCODED", "application/x-www-form-urlencoded;charset=latin-1", "application/json",
    "multipart/form-data; boundary=xyz", "text/plain", "", "x" * 5000, "\u00ff/\u00fe",
])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(header: dict[str, Any], claims: dict[str, Any], key: Any, alg: str = "RS256") -> str:
    """A JWT signed with ``key`` whatever its claims hold (PyJWT refuses a non-string ``iss``)."""
    parts = ({"alg": alg, "typ": "JWT", **header}, claims)
    signing_input = ".".join(_b64(json.dumps(part).encode()) for part in parts)
    pad: Any = padding.PKCS1v15() if alg == "RS256" else padding.PSS(padding.MGF1(hashes.SHA256()),
                                                                     padding.PSS.DIGEST_LENGTH)
    return f"{signing_input}.{_b64(key.sign(signing_input.encode(), pad, hashes.SHA256()))}"


@functools.cache
def pool(target: StsTarget, name: str) -> st.SearchStrategy[str]:
    """One of the known values ``name`` (a ``Known`` field)."""
    return st.sampled_from(getattr(target.known, name))


@functools.cache
def jwts(target: StsTarget, kind: str = "any") -> st.SearchStrategy[str]:
    """Client assertions and OBO assertions signed with the real keys but with junk mixed into their
    claims and headers, plus unsigned and malformed ones; mostly of ``kind`` ("client", "obo") if given."""
    k = target.known
    confidential = st.sampled_from(k.clients[:2] + k.clients[4:6])
    audiences = st.sampled_from(k.token_endpoints) | JUNK
    obo_audiences = st.sampled_from([target.sandbox.id_map[d.API_ID], d.API_URI]) | JUNK

    @st.composite
    def client_assertion(draw: st.DrawFn) -> str:
        cid = draw(confidential)
        now = time.time()
        claims: dict[str, Any] = {"aud": draw(audiences), "iss": cid, "sub": cid,
                                  "jti": str(uuid.uuid4()), "iat": now, "nbf": now, "exp": now + 600}
        for name, value in draw(st.dictionaries(st.sampled_from(["aud", "iss", "sub", "exp", "nbf", "iat"]) | TEXT,
                                                JSON_VALUE, max_size=2) | st.just({})).items():
            claims[name] = value
        header = draw(st.sampled_from([{"x5t": target.client_x5t}, {"x5t#S256": target.client_x5t_s256},
                                       {"x5t": target.client_x5t + "="}, {"x5t": "nope"}, {},
                                       {"x5t": target.client_x5t, "alg": "HS256"},
                                       {"x5t": target.client_x5t, "alg": None}, {"x5t": ["list"]}]))
        return _sign(header, claims, target.client_key, draw(st.sampled_from(["RS256", "PS256"])))

    @st.composite
    def obo_assertion(draw: st.DrawFn) -> str:
        sb = target.sandbox
        alice = sb.directory.user("alice@contoso.com")
        assert alice is not None
        now = time.time()
        claims: dict[str, Any] = {"aud": draw(obo_audiences),
                                  "iss": f"{ORIGIN}/{alice.tenant_id}/v2.0", "oid": alice.oid,
                                  "scp": "access_as_user", "iat": now, "nbf": now, "exp": now + 3600}
        for name, value in draw(st.dictionaries(st.sampled_from(["aud", "oid", "scp", "exp", "iat", "nbf"]) | TEXT,
                                                JSON_VALUE, max_size=2) | st.just({})).items():
            claims[name] = value
        return _sign({"kid": sb.keys.active.kid}, claims, sb.keys.active.private_key)

    malformed = st.builds(lambda h, p, s: f"{_b64(h)}.{_b64(p)}.{_b64(s)}",
                          st.sampled_from([b'{"alg":"RS256","kid":"x"}', b"[]", b"null", b'{"alg":"none"}', b"\xff"])
                          | st.binary(max_size=20),
                          st.binary(max_size=40) | st.sampled_from([b"{}", b'{"sub":1}', b"[1]", b'{"exp":"x"}']),
                          st.binary(max_size=10))
    unsigned = st.dictionaries(TEXT, JSON_VALUE, max_size=3).map(lambda c: jwt.encode(c, None, algorithm="none"))
    anything = client_assertion() | obo_assertion() | malformed | unsigned
    if kind == "any":
        return anything
    wanted = client_assertion() if kind == "client" else obo_assertion()
    return st.integers(0, 3).flatmap(lambda n: wanted if n else anything)


@functools.cache
def values(target: StsTarget, name: str) -> st.SearchStrategy[str]:
    """A value for parameter ``name``: usually one that means something to fakests, else junk."""
    k = target.known
    known: dict[str, list[str]] = {
        "grant_type": [*GRANTS, "client_credential", "implicit"], "client_id": k.clients,
        "client_secret": k.secrets, "scope": k.scopes, "code": k.codes, "redirect_uri": k.redirect_uris,
        "refresh_token": k.refresh_tokens, "username": k.users, "password": [d.PASSWORD], "login": k.users,
        "passwd": [d.PASSWORD], "device_code": k.device_codes, "otc": k.user_codes, "fakests_sid": k.session_ids,
        "client_assertion_type": [ASSERTION_TYPE], "requested_token_use": ["on_behalf_of"],
        "response_type": ["code", "token", "id_token", "code id_token"], "response_mode": ["query", "fragment",
                                                                                           "form_post"],
        "prompt": ["none", "login", "consent", "select_account"], "decision": ["approve", "decline"],
        "consent": ["accept", "cancel"], "client_info": ["1", "0"], "code_challenge_method": ["S256", "plain"],
        "post_logout_redirect_uri": k.redirect_uris, "authorization_endpoint": [
            f"{ORIGIN}/common/oauth2/v2.0/authorize", "https://login.microsoftonline.com/common/oauth2/authorize"],
        "login_hint": k.users, "pick": k.users,
    }
    choices = known.get(name, [])
    base = st.sampled_from(choices) if choices else TEXT
    junk = JUNK | TEXT | HUGE
    if name in ("client_assertion", "assertion"):
        return jwts(target) | junk
    return st.one_of(base, base, junk)


@st.composite
def params(draw: st.DrawFn, target: StsTarget, base: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """A parameter list: a plausible ``base`` with some names dropped, changed, repeated or added."""
    pairs = [(n, v) for n, v in (base or {}).items() if draw(st.integers(0, 9)) > 0]
    for name in draw(ADDED_NAMES):
        pairs.append((name, draw(values(target, name))))
    if pairs and draw(st.booleans()):
        pairs = draw(st.permutations(pairs))
    return pairs


def _quote_latin1(text: str) -> str:
    return quote_from_bytes(text.encode("latin-1", "replace"))


@st.composite
def encoded(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> bytes:
    """``pairs`` in one of the encodings clients (and careless tests) use, or raw junk."""
    kind = draw(st.sampled_from(["form"] * 12 + ["latin1", "json", "multipart", "raw", "empty", "percent-junk"]))
    if kind == "form":
        return urlencode(pairs).encode()
    if kind == "latin1":  # percent-escapes of bytes that are not UTF-8
        return "&".join(f"{_quote_latin1(n)}={_quote_latin1(v)}" for n, v in pairs).encode()
    if kind == "json":
        return json.dumps(dict(pairs)).encode()
    if kind == "multipart":
        parts = [f'--xyz\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n' for n, v in pairs]
        return ("".join(parts) + "--xyz--\r\n").encode("utf-8", "surrogatepass")
    if kind == "raw":
        return draw(st.binary(max_size=400))
    if kind == "percent-junk":
        return draw(st.lists(st.sampled_from([b"%", b"%f", b"%ff", b"=", b"&", b"+", b"a", b"\xff", b";", b"%00"]),
                             max_size=40).map(b"".join))
    return b""


LATIN1 = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)


@functools.cache
def extra_headers(target: StsTarget) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Up to four headers: Basic credentials good and bad, cookies huge and malformed, request ids,
    content lengths that lie, huge user agents, odd Host values, anything."""
    k = target.known
    basic = st.one_of(
        st.tuples(pool(target, "clients") | TEXT, pool(target, "secrets") | TEXT).map(
            lambda p: "Basic " + base64.b64encode(f"{p[0]}:{p[1]}".encode()).decode()),
        st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode()),
        st.sampled_from(["Basic", "Basic ", "Basic ====", "Basic not*base64", "basic Og==", "Bearer x", "Basic \u00ff",
                         "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), "Digest a=b"]),
        LATIN1,
    )
    cookie = st.one_of(
        st.tuples(st.sampled_from(k.sandbox_ids) | TEXT, st.sampled_from(k.session_ids) | TEXT).map(
            lambda p: f"fakests-session-{p[0]}={p[1]}"),
        st.integers(1_000, 60_000).map(lambda n: "big=" + "c" * n),
        st.integers(10, 400).map(lambda n: "; ".join(f"fakests-session-x{i}=v{i}" for i in range(n))),
        st.sampled_from(["=", ";;;", "a", "=;=", '"quoted"="x"', "fakests-session-=", "\u00ff=\u00fe"]),
        LATIN1,
    )
    request_id = st.sampled_from([str(uuid.uuid4()), uuid.uuid4().hex, "{" + str(uuid.uuid4()) + "}"]) | LATIN1 | (
        st.integers(100, 20_000).map(lambda n: "9" * n))
    one = st.one_of(
        st.tuples(st.just("authorization"), basic), st.tuples(st.just("cookie"), cookie),
        st.tuples(st.sampled_from(["client-request-id", "x-ms-client-request-id"]), request_id),
        st.tuples(st.just("content-length"), st.sampled_from(["abc", "-1", "\u00b2", "9" * 30, "0", "1", " 5"])),
        st.tuples(st.sampled_from(["user-agent", "x-client-sku", "accept", "origin", "referer"]),
                  LATIN1 | st.integers(1_000, 60_000).map(lambda n: "u" * n)),
        st.tuples(st.just("host"), st.sampled_from(["", "a b", "[::1", "evil.example.test", "x:99999", "\u00ff"])),
        st.tuples(TEXT.filter(lambda s: s.isascii() and s.isprintable()), LATIN1),
    )
    return st.lists(one, max_size=4)


@st.composite
def headers(draw: st.DrawFn, target: StsTarget, *, form: bool) -> tuple[tuple[bytes, bytes], ...]:
    out: list[tuple[str, str]] = []
    if draw(st.integers(0, 5)) > 0 if form else draw(st.booleans()):
        out.append(("content-type", draw(CONTENT_TYPES)))
    out += draw(extra_headers(target))
    return tuple((n.lower().encode("latin-1", "replace"), v.encode("latin-1", "replace")) for n, v in out)


@functools.cache
def tenant_segments(target: StsTarget) -> st.SearchStrategy[str]:
    sandbox_tenant = st.just(target.sandbox.id_map[d.TENANT_ID])
    return st.one_of(sandbox_tenant, sandbox_tenant, st.sampled_from(target.known.tenants), SEGMENT_JUNK)


@st.composite
def token_requests(draw: st.DrawFn, target: StsTarget) -> RawRequest:
    sb = target.sandbox
    daemon, web, api, public = (sb.id_map[c] for c in (d.DAEMON_ID, d.WEB_ID, d.API_ID, d.PUBLIC_ID))
    graph = "https://graph.microsoft.com/.default"
    grant = draw(st.sampled_from(["secret", "certificate", "password", "code", "refresh", "device", "obo"]))
    base: dict[str, str] = {
        "secret": lambda: {"grant_type": "client_credentials", "client_id": daemon, "client_secret": d.DAEMON_SECRET,
                           "scope": graph},
        "certificate": lambda: {"grant_type": "client_credentials", "client_id": daemon, "scope": graph,
                                "client_assertion_type": ASSERTION_TYPE,
                                "client_assertion": draw(jwts(target, "client"))},
        "password": lambda: {"grant_type": "password", "client_id": public, "username": "alice@contoso.com",
                             "password": d.PASSWORD, "scope": USER_SCOPE},
        "code": lambda: {"grant_type": "authorization_code", "client_id": web, "client_secret": d.WEB_SECRET,
                         "code": draw(pool(target, 'codes')), "redirect_uri": WEB_REDIRECT, "scope": USER_SCOPE},
        "refresh": lambda: {"grant_type": "refresh_token", "client_id": public, "scope": USER_SCOPE,
                            "refresh_token": draw(pool(target, 'refresh_tokens'))},
        "device": lambda: {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": public,
                           "device_code": draw(pool(target, 'device_codes'))},
        "obo": lambda: {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "client_id": api,
                        "client_secret": d.API_SECRET, "assertion": draw(jwts(target, "obo")),
                        "requested_token_use": "on_behalf_of", "scope": "User.Read"},
    }[grant]()
    pairs = draw(params(target, base))
    tenant = draw(tenant_segments(target))
    path = draw(st.sampled_from([f"/{tenant}/oauth2/v2.0/token", f"/{tenant}/oauth2/token"]))
    method = draw(METHODS)
    query = urlencode(draw(params(target))).encode() if draw(st.integers(0, 4)) == 0 else b""
    return RawRequest(method, path, query, draw(headers(target, form=True)), draw(encoded(pairs)),
                      draw(st.integers(1, 3)))


@st.composite
def authorize_requests(draw: st.DrawFn, target: StsTarget) -> RawRequest:
    sb = target.sandbox
    base = {"client_id": draw(st.sampled_from([sb.id_map[d.WEB_ID], sb.id_map[d.PUBLIC_ID]])),
            "response_type": "code", "redirect_uri": draw(pool(target, 'redirect_uris')),
            "scope": USER_SCOPE, "state": "s", "nonce": "n", "code_challenge": "x" * 43,
            "code_challenge_method": "S256"}
    tenant = draw(tenant_segments(target))
    path = draw(st.sampled_from([f"/{tenant}/oauth2/v2.0/authorize", f"/{tenant}/oauth2/authorize"]))
    pairs = draw(params(target, base))
    method = draw(st.sampled_from(["GET", "GET", "POST", "POST", "HEAD", "PUT"]))
    if method == "POST" and draw(st.booleans()):  # a sign-in or consent form posted back
        form = draw(params(target, {"login": "alice@contoso.com", "passwd": d.PASSWORD, "consent": "accept"}))
        return RawRequest(method, path, urlencode(pairs).encode(), draw(headers(target, form=True)),
                          draw(encoded(form)))
    query = draw(encoded(pairs)) if draw(st.integers(0, 3)) == 0 else urlencode(pairs).encode()
    return RawRequest(method, path, query, draw(headers(target, form=False)))


@st.composite
def other_requests(draw: st.DrawFn, target: StsTarget) -> RawRequest:
    """Discovery, keys, instance discovery, user realm, device code, device login, logout, error lookup."""
    seg = draw(tenant_segments(target))
    path = draw(st.sampled_from([
        f"/{seg}/v2.0/.well-known/openid-configuration", f"/{seg}/.well-known/openid-configuration",
        f"/{seg}/discovery/v2.0/keys", f"/{seg}/discovery/keys", "/common/discovery/instance",
        f"/common/userrealm/{draw(pool(target, 'users') | TEXT.filter(bool))}",
        f"/{seg}/oauth2/v2.0/devicecode", f"/{seg}/oauth2/devicecode", f"/{seg}/oauth2/v2.0/logout",
        f"/{seg}/oauth2/logout", "/common/oauth2/deviceauth", "/error", "/devicelogin",
    ]))
    base = {"client_id": target.sandbox.id_map[d.PUBLIC_ID], "scope": USER_SCOPE,
            "otc": draw(pool(target, 'user_codes')), "login": "alice@contoso.com",
            "passwd": d.PASSWORD, "decision": "approve", "code": draw(st.sampled_from(["50126", "90002", "x"]) | TEXT),
            "authorization_endpoint": f"{ORIGIN}/common/oauth2/v2.0/authorize"}
    pairs = draw(params(target, base))
    method = draw(st.sampled_from(["GET", "GET", "POST", "POST", "HEAD", "DELETE", "OPTIONS"]))
    query = draw(encoded(draw(params(target)))) if draw(st.booleans()) else b""
    return RawRequest(method, path, query, draw(headers(target, form=method == "POST")), draw(encoded(pairs)),
                      draw(st.integers(1, 3)))


@st.composite
def wild_requests(draw: st.DrawFn, target: StsTarget) -> RawRequest:
    """Any method on any path (STS, unknown or half-known), with any headers and body."""
    seg = draw(tenant_segments(target))
    path = draw(st.sampled_from([f"/{seg}/oauth2/v2.0/token", f"/{seg}/v2.0/.well-known/openid-configuration",
                                 f"/{seg}/oauth2/v2.0/tokens", f"/{seg}", "/", f"/{seg}/oauth2/v2.0/",
                                 f"/{seg}/oauth2/v2.0/token/", "/common/discovery/instance/"]) | TEXT.map(
                                     lambda t: "/" + t))
    method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT",
                                   "PROPFIND", "get", "X" * 50]))
    query = draw(st.binary(max_size=200) | encoded(draw(params(target))))
    return RawRequest(method, path, query, draw(headers(target, form=True)), draw(st.binary(max_size=300)),
                      draw(st.integers(1, 3)))


def _fuzz(target: StsTarget, strategy: Any, examples: int) -> None:
    @settings(max_examples=examples, **FUZZ_SETTINGS)
    @given(req=strategy)
    def run(req: RawRequest) -> None:
        target.send(req)

    run()
    _assert_healthy(target)


def test_token_endpoint_fuzz(sts: StsTarget) -> None:
    _fuzz(sts, token_requests(sts), TOKEN_EXAMPLES)


def test_authorize_endpoint_fuzz(sts: StsTarget) -> None:
    _fuzz(sts, authorize_requests(sts), AUTHORIZE_EXAMPLES)


def test_other_sts_endpoints_fuzz(sts: StsTarget) -> None:
    _fuzz(sts, other_requests(sts), OTHER_EXAMPLES)


def test_any_method_path_and_headers_fuzz(sts: StsTarget) -> None:
    _fuzz(sts, wild_requests(sts), WILD_EXAMPLES)


def _obo_with(target: StsTarget, scope: str = "User.Read", **claims: Any) -> RawRequest:
    sb = target.sandbox
    alice = sb.directory.user("alice@contoso.com")
    assert alice is not None
    base = {"aud": sb.id_map[d.API_ID], "oid": alice.oid, "scp": "access_as_user", "iat": time.time(),
            "exp": time.time() + 600}
    assertion = _sign({"kid": sb.keys.active.kid}, {k: v for k, v in {**base, **claims}.items() if v is not None},
                      sb.keys.active.private_key)
    body = urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "client_id": sb.id_map[d.API_ID],
                      "client_secret": d.API_SECRET, "assertion": assertion, "requested_token_use": "on_behalf_of",
                      "scope": scope}).encode()
    return RawRequest("POST", f"/{sb.id_map[d.TENANT_ID]}/oauth2/v2.0/token", b"",
                      ((b"content-type", FORM_TYPE.encode()),), body)


def _client_assertion_with(target: StsTarget, **claims: Any) -> RawRequest:
    sb = target.sandbox
    cid = sb.id_map[d.DAEMON_ID]
    now = time.time()
    assertion = _sign({"x5t": target.client_x5t}, {"iss": cid, "sub": cid, "iat": now, "exp": now + 600, **claims},
                      target.client_key)
    body = urlencode({"grant_type": "client_credentials", "client_id": cid, "scope": "https://graph.microsoft.com/.default",
                      "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}).encode()
    return RawRequest("POST", f"/{sb.id_map[d.TENANT_ID]}/oauth2/v2.0/token", b"",
                      ((b"content-type", FORM_TYPE.encode()),), body)


FINDINGS: list[tuple[str, Any, int, int | None]] = [
    # (what the fuzz found, request builder, status, AADSTS code); each was a 500 or a crash before.
    ("superscript digit in /error?code", lambda t: RawRequest("GET", "/error", b"code=%C2%B2"), 404, None),
    ("redirect_uri not a URL", lambda t: RawRequest("GET", f"/{t.sandbox.id_map[d.TENANT_ID]}/oauth2/v2.0/authorize",
                                                    urlencode({"client_id": t.sandbox.id_map[d.WEB_ID],
                                                               "redirect_uri": "http://[::1", "response_type": "code",
                                                               "scope": "openid"}).encode()), 400, None),
    ("authorization_endpoint not a URL", lambda t: RawRequest(
        "GET", "/common/discovery/instance", b"authorization_endpoint=https%3A%2F%2F%5Bx%2Fy"), 400, 50049),
    ("Host not an authority", lambda t: RawRequest("GET", "/common/discovery/instance", b"",
                                                   ((b"host", b"[::1"),)), 200, None),
    ("query not UTF-8", lambda t: RawRequest("GET", "/common/v2.0/.well-known/openid-configuration", b"x=\xff\xfe"),
     200, None),
    ("query not UTF-8, trailing slash redirect", lambda t: RawRequest("GET", "/common/discovery/instance/", b"\xff"),
     307, None),
    ("client-request-id not latin-1", lambda t: RawRequest(
        "GET", "/common/discovery/instance", b"client-request-id=%C4%80"), 200, None),
    ("client-request-id with a control character", lambda t: RawRequest(
        "GET", "/common/discovery/instance", b"", ((b"client-request-id", b"a\x7fb"),)), 200, None),
    ("superscript digit in Content-Length", lambda t: RawRequest(
        "POST", f"/{t.sandbox.id_map[d.TENANT_ID]}/oauth2/v2.0/token", b"",
        ((b"content-type", FORM_TYPE.encode()), (b"content-length", b"\xb2")), b"grant_type=x"), 400, 70003),
    ("OBO exp a string", lambda t: _obo_with(t, exp="abc"), 400, 50013),
    ("OBO exp a list", lambda t: _obo_with(t, exp=[1]), 400, 50013),
    ("OBO exp far in the past", lambda t: _obo_with(t, exp=-1e300), 400, 50013),
    ("OBO without exp", lambda t: _obo_with(t, exp=None), 400, 500133),
    ("OBO iat a string, id_token asked", lambda t: _obo_with(t, scope="openid User.Read", iat="x"), 400, 50013),
    ("client assertion aud not a URL", lambda t: _client_assertion_with(t, aud="https://[x/oauth2/v2.0/token"),
     401, 700023),
    ("logout with a cookie name that cannot be set back", lambda t: RawRequest(
        "GET", "/common/oauth2/v2.0/logout", b"", ((b"cookie", b"fakests-session-\x1b=x; fakests-session-a b=y"),)),
     200, None),
    ("wrong method on a GET endpoint", lambda t: RawRequest("PUT", "/common/discovery/v2.0/keys"), 405, 900561),
    ("device login shortcut", lambda t: RawRequest("GET", "/devicelogin"), 302, None),
]


@pytest.mark.parametrize(("name", "build", "status", "code"), FINDINGS, ids=[f[0] for f in FINDINGS])
def test_fuzz_findings_stay_fixed(sts: StsTarget, name: str, build: Any, status: int, code: int | None) -> None:
    answer = sts.send(build(sts))  # the fuzz's checks, then what this answer must be
    assert answer.status == status, answer.body[:500]
    if code is not None:
        assert json.loads(answer.body)["error_codes"] == [code]
    echoed = answer.header("client-request-id") or ""
    assert echoed.isascii() and echoed.isprintable()


def test_admin_fuzz_findings_stay_fixed(sts: StsTarget) -> None:
    """Admin API inputs that were a 500: a non-ASCII digit as a journal filter, a clock moved past year 9999."""
    http = session_for(sts.app, ORIGIN)
    sandbox = f"{ORIGIN}/_fakests/sandboxes/{sts.sandbox.sandbox_id}"
    assert http.get(f"{sandbox}/journal?since=%C2%B2").status_code == 400
    for _ in range(3):  # each within range, but they add up
        moved = http.post(f"{sandbox}/clock", json={"advance": 1.7e308})
        assert moved.status_code == 400 and "9999" in moved.json()["error_description"]
    assert http.post(f"{sandbox}/clock", json={"advance": -1e12}).status_code == 400
    assert http.post(f"{sandbox}/clock", json={"advance": 3600}).json()["clock_offset"] == 3600
    assert http.post(f"{sandbox}/clock", json={"advance": -3600}).json()["clock_offset"] == 0
    tokens = http.post(f"{sandbox}/tokens", json={})
    assert tokens.status_code == 200 and tokens.json()["token"]


def _assert_healthy(sts: StsTarget) -> None:
    """A normal client-credentials request gets a valid token, and no sandbox of this server recorded
    an internal error (the pytest fixture's check, for every sandbox)."""
    sb = sts.sandbox
    tid, daemon = sb.id_map[d.TENANT_ID], sb.id_map[d.DAEMON_ID]
    http = session_for(sts.app, ORIGIN)
    response = http.post(f"{ORIGIN}/{tid}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": daemon, "client_secret": d.DAEMON_SECRET,
        "scope": "https://graph.microsoft.com/.default"})
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    jwks = http.get(f"{ORIGIN}/{tid}/discovery/v2.0/keys").json()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="https://graph.microsoft.com")
    assert (claims["tid"], claims["appid"], claims["idtyp"]) == (tid, daemon, "app")
    assert {sb.sandbox_id: sb.internal_errors for sb in sts.runtime.sandboxes.all() if sb.internal_errors} == {}


def test_server_still_works_after_the_fuzz(sts: StsTarget) -> None:
    """After everything above (each fuzz test also checks this when it ends, for pytest-xdist)."""
    _assert_healthy(sts)


# --- the form parser is parse_qsl's twin --------------------------------------------------------------------
_FORM_PIECES = ["a", "b", "=", "&", "+", "%", "%20", "%2", "%zz", "%C3%A9", "%C3", "%ff", "%F0%9F%98%80", "\u00e9", " "]
_FORM_TEXT = st.lists(st.sampled_from(_FORM_PIECES), max_size=30).map("".join) | st.text(max_size=40)


@settings(max_examples=3000, deadline=None)
@given(text=_FORM_TEXT | st.just("&" * 999) | st.just("a=1&" * 1000))
def test_parse_form_answers_as_parse_qsl_does(text: str) -> None:
    """``context.parse_form`` replaces ``urllib.parse.parse_qsl`` on every token request for speed; it
    must give the same pairs and fail on the same inputs (too many fields, bad percent-encoded UTF-8)."""
    from urllib.parse import parse_qsl

    from fakests.sts.context import MAX_FORM_FIELDS, parse_form

    def outcome(parse: Any) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            return type(exc)

    expected = outcome(lambda t: parse_qsl(t, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"))
    assert outcome(parse_form) == expected
