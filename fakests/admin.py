"""The admin REST API under ``/_fakests/``: health, CA, sandboxes, directory, journal, clock, keys.

Scenarios, minted tokens and the OpenAPI document are in ``admin_scenarios`` (mounted by ``routes``);
``openapi`` describes every endpoint.

JSON in, JSON out. Every mistake in a request (unknown sandbox, bad JSON, a wrong type, an unknown
field) answers ``{"error": ..., "error_description": ...}`` with a 4xx, never a 500. Directory entries
are validated by ``config.DirectoryReader``, so a request body takes the same fields as the YAML
config file. When ``admin_token`` is set, every endpoint but ``/health`` and the ``/dashboard`` page
(``dashboard``; its data calls send the token) wants ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from .config import DirectoryReader
from .context import origin_of
from .directory import MSA_TENANT_ID, SPECIAL_TENANTS, App, Certificate, Directory, User
from .errors import ConfigError
from .ids import LAST_TIMESTAMP
from .runtime import Runtime
from .sandbox import DEFAULT_SANDBOX, Sandbox, Sandboxes, SandboxLimit

Endpoint = Callable[[Request], Awaitable[Response]]
BODY = "body"  # the ConfigError source of request bodies: keys then read like "secrets[0].value"
# What PATCH /sandboxes/{id}/users/{username} may change (tokens_valid_from revokes refresh tokens).
USER_PATCH = {"disabled": bool, "locked": bool, "password_expired": bool, "password": str, "tokens_valid_from": float}
JOURNAL_FILTERS = ("endpoint", "client_id", "grant_type", "status", "correlation_id", "since")
SERVER_KEYS_NOTE = ("Rotated the server's signing keys: every sandbox that has not rotated its own keys "
                    "(POST /sandboxes/{id}/keys/rotate) publishes and signs with the new key.")


class AdminError(Exception):
    """A request the admin API refuses: rendered as ``{"error", "error_description"}``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def _error(status: int, error: str, description: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


def _admin(handler: Endpoint, *, public: bool = False) -> Endpoint:
    """Wrap a handler: the bearer-token check, then ``AdminError``/``ConfigError`` as JSON errors."""

    async def endpoint(request: Request) -> Response:
        token = _runtime(request).settings.admin_token
        if token and not public:
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
                return _error(401, "unauthorized", "This endpoint needs 'Authorization: Bearer <admin_token>'.",
                              {"WWW-Authenticate": 'Bearer realm="fakests-admin"'})
        try:
            response = await handler(request)
        except AdminError as exc:
            return _error(exc.status, exc.error, exc.description)
        except ConfigError as exc:
            return _error(400, "invalid_request", f"{exc.key}: {exc.reason}" if exc.key else exc.reason)
        if request.method != "GET" and response.status_code < 400 and "sandbox_id" in request.path_params:
            # Every change to a sandbox comes through here: with several workers, the others must see it.
            _sandboxes(request).persist(request.path_params["sandbox_id"])
        return response

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _sandboxes(request: Request) -> Sandboxes:
    sandboxes: Sandboxes = request.app.state.sandboxes
    return sandboxes


def _sandbox(request: Request) -> Sandbox:
    sandbox_id = request.path_params["sandbox_id"]
    sb = _sandboxes(request).get(sandbox_id)
    if sb is None:
        raise AdminError(404, "not_found", f"No sandbox {sandbox_id!r} (it may have expired or been deleted).")
    sb.touch()  # admin use keeps a sandbox alive too (Sandboxes.expire_idle)
    return sb


async def _raw_body(request: Request) -> bytes:
    """The request body, refused with a 413 past ``max_body``."""
    raw = await request.body()
    if len(raw) > _runtime(request).settings.max_body:
        raise AdminError(413, "invalid_request", "The request body is too large.")
    return raw


async def _body(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The JSON object in the request body; ``{}`` for an empty body when ``optional``."""
    raw = await _raw_body(request)
    if not raw:  # absent; whitespace alone is not JSON, and is rejected below
        if optional:
            return {}
        raise AdminError(400, "invalid_request", "A JSON object body is required.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdminError(400, "invalid_request", f"The body is not valid JSON: {exc}") from None
    except RecursionError:
        raise AdminError(400, "invalid_request", "The body is not valid JSON: nested too deeply.") from None
    if not isinstance(body, dict):
        raise AdminError(400, "invalid_request", f"The body must be a JSON object, got {type(body).__name__}.")
    return body


def _fields(body: Mapping[str, Any], spec: Mapping[str, type], *, required: bool = False) -> dict[str, Any]:
    """``body`` checked against ``spec`` (name -> bool, str, float or dict): unknown fields and wrong types fail."""
    for name in body:
        if name not in spec:
            raise AdminError(400, "invalid_request", f"{name}: unknown field; known: {', '.join(spec) or 'none'}")
    if required and not body:
        raise AdminError(400, "invalid_request", f"Give at least one of: {', '.join(spec)}.")
    for name, value in body.items():
        kind = spec[name]
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not (isinstance(value, bool) if kind is bool else number if kind is float else isinstance(value, kind)):
            wanted = {bool: "true or false", float: "a number", str: "a string", dict: "a JSON object"}[kind]
            raise AdminError(400, "invalid_request", f"{name}: must be {wanted}, got {json.dumps(value)}")
    return dict(body)


# --- serialization ------------------------------------------------------------------------------------
def app_json(app: App) -> dict[str, Any]:
    """An app registration as JSON; certificates by thumbprint (the PEM may hold a private key)."""
    return {
        "client_id": app.client_id, "display_name": app.display_name, "tenant_id": app.tenant_id,
        "object_id": app.object_id,
        "secrets": [{"value": s.value, "expires_at": s.expires_at, "hint": s.hint} for s in app.secrets],
        "certificates": [{"x5t": c.x5t, "x5t#S256": c.x5t_s256, "not_after": c.not_after} for c in app.certificates],
        "redirect_uris": app.redirect_uris, "public_client": app.public_client,
        "sign_in_audience": app.sign_in_audience, "identifier_uris": app.identifier_uris, "scopes": app.scopes,
        "app_roles": app.app_roles, "access_token_version": app.access_token_version, "enabled": app.enabled,
    }


def user_json(user: User) -> dict[str, Any]:
    """A user as JSON, password included: fakests' credentials are test data, not secrets."""
    return {
        "username": user.username, "display_name": user.display_name, "password": user.password,
        "oid": user.oid, "tenant_id": user.tenant_id, "account_type": user.account_type,
        "disabled": user.disabled, "locked": user.locked, "password_expired": user.password_expired,
        "given_name": user.given_name, "family_name": user.family_name,
        "tokens_valid_from": user.tokens_valid_from,
    }


def directory_json(d: Directory) -> dict[str, Any]:
    """The whole directory as JSON, with the field names of the config file (``fakests.config``)."""
    return {
        "tenants": [{"tenant_id": t.tenant_id, "display_name": t.display_name, "domains": t.domains,
                     "region_scope": t.region_scope} for t in d.tenants.values()],
        "apps": [app_json(a) for a in d.apps.values()],
        "users": [user_json(u) for u in d.users.values()],
        "consents": [{"client_id": c, "resource": r, "scopes": sorted(s)} for (c, r), s in d.consents.items()],
        "user_consents": [{"oid": o, "client_id": c, "resource": r, "scopes": sorted(s)}
                          for (o, c, r), s in d.user_consents.items()],
        "role_assignments": [{"principal": p, "resource": r, "roles": sorted(s)}
                             for (p, r), s in d.role_assignments.items()],
    }


def _summary(request: Request, sb: Sandbox) -> dict[str, Any]:
    origin = origin_of(request, _runtime(request).settings.public_url)
    return {
        "sandbox_id": sb.sandbox_id, "tenant_id": sb.home_tenant.tenant_id,
        "authority": f"{origin}/{sb.home_tenant.tenant_id}", "auto_sign_in": sb.auto_sign_in,
        "clock_offset": sb.clock_offset, "now": sb.now(), "journal_entries": len(sb.journal),
        "internal_errors": len(sb.internal_errors),
    }


def _detail(request: Request, sb: Sandbox) -> dict[str, Any]:
    origin = origin_of(request, _runtime(request).settings.public_url)
    segments = [*sb.directory.tenants, *sorted(SPECIAL_TENANTS)]
    with sb.lock:
        directory = directory_json(sb.directory)
    return {**_summary(request, sb), "authorities": {s: f"{origin}/{s}" for s in segments},
            "id_map": dict(sb.id_map), "directory": directory}


# --- endpoints ----------------------------------------------------------------------------------------
async def health(request: Request) -> Response:
    """Cheap liveness probe for healthchecks (no sandbox, no crypto)."""
    return JSONResponse({"status": "ok"})


async def ca_pem(request: Request) -> Response:
    """``GET /ca.pem``: the CA certificate clients must trust (404 when TLS is off)."""
    tls = _runtime(request).tls
    if tls is None:
        raise AdminError(404, "not_found", "TLS is off (tls: false), so there is no CA certificate.")
    return PlainTextResponse(tls.ca.read_text())


async def client_cert_pem(request: Request) -> Response:
    """``GET /client-cert.pem``: the default client certificate WITH its private key (PEM), so a test
    in another process or language can authenticate as the default confidential apps. It is a test
    credential, registered only in fakests."""
    return PlainTextResponse(_runtime(request).client_cert_path.read_text())


async def sandbox_create(request: Request) -> Response:
    """``POST /sandboxes`` ``{"auto_sign_in"?}``: a fresh-id copy of the default directory (429 at
    ``max_sandboxes``). Answers like ``GET /sandboxes/{id}``, since the new ids are what callers need."""
    body = _fields(await _body(request, optional=True), {"auto_sign_in": bool})
    try:
        sb = _sandboxes(request).create()
    except SandboxLimit as exc:
        raise AdminError(429, "too_many_sandboxes", str(exc)) from None
    if body.get("auto_sign_in", sb.auto_sign_in) != sb.auto_sign_in:
        sb.auto_sign_in = body["auto_sign_in"]
        sb.persist()
    return JSONResponse(_detail(request, sb), status_code=201)


async def sandbox_list(request: Request) -> Response:
    """``GET /sandboxes``: a summary of each live sandbox, ``default`` first."""
    return JSONResponse({"sandboxes": [_summary(request, sb) for sb in _sandboxes(request).all()]})


async def sandbox_get(request: Request) -> Response:
    """``GET /sandboxes/{id}``: summary, authority URLs and the full directory with its credentials."""
    return JSONResponse(_detail(request, _sandbox(request)))


async def sandbox_delete(request: Request) -> Response:
    """``DELETE /sandboxes/{id}``: drop a sandbox (the built-in ``default`` cannot be dropped)."""
    sb = _sandbox(request)
    if sb.sandbox_id == DEFAULT_SANDBOX:
        raise AdminError(400, "invalid_request", "The default sandbox cannot be deleted.")
    _sandboxes(request).drop(sb.sandbox_id)
    return Response(status_code=204)


# Settings a single sandbox may change (the same names as ``Settings`` fields and ``StsSandbox.configure``).
SANDBOX_SETTINGS = ("access_token_lifetime", "id_token_lifetime", "refresh_token_lifetime", "code_lifetime",
                    "device_code_lifetime", "device_code_interval")


async def sandbox_update(request: Request) -> Response:
    """``PATCH /sandboxes/{id}`` ``{"auto_sign_in", "access_token_lifetime", ...}``: this sandbox only."""
    sb = _sandbox(request)
    body = _fields(await _body(request), {"auto_sign_in": bool, **dict.fromkeys(SANDBOX_SETTINGS, float)},
                   required=True)
    if "auto_sign_in" in body:
        sb.auto_sign_in = body.pop("auto_sign_in")
    for name, value in body.items():
        if value < 0 or value != int(value):
            raise AdminError(400, "invalid_request", f"{name}: must be a whole number of seconds, got {value}")
    if body:
        sb.settings = dataclasses.replace(sb.settings, **{k: int(v) for k, v in body.items()})
    return JSONResponse(_summary(request, sb))


def _reader(request: Request, sb: Sandbox) -> DirectoryReader:
    runtime = _runtime(request)

    def certificate(item: str, key: str) -> Certificate:
        # Over HTTP a certificate is its PEM text, or "default" for the default client certificate.
        cert = Certificate(runtime.client_cert_path.read_text() if item == "default" else item)
        try:
            cert.x5t  # noqa: B018 - parse now, so a bad PEM fails this request and not a later one
        except ValueError:
            raise ConfigError(BODY, key, "must be a PEM certificate or 'default'") from None
        return cert

    return DirectoryReader(sb.directory, BODY, certificate)


async def app_create(request: Request) -> Response:
    """``POST /sandboxes/{id}/apps``: register an app (fields of ``directory.App``). ``client_id``
    defaults to a new GUID and ``tenant_id`` to the sandbox's home tenant."""
    sb = _sandbox(request)
    body = {"client_id": str(uuid.uuid4()), "tenant_id": sb.home_tenant.tenant_id, **await _body(request)}
    with sb.lock:
        app = _reader(request, sb).app(body, "")
        # /common requests find their sandbox by client_id, so a client_id must be unique server-wide.
        other = next((o for o in _sandboxes(request).all() if app.client_id in o.directory.apps), None)
        if other is not None:
            raise AdminError(400, "invalid_request", f"client_id: {app.client_id} is already registered in "
                                                     f"sandbox {other.sandbox_id!r}")
        sb.directory.add_app(app)
    _sandboxes(request).reindex(sb)
    return JSONResponse(app_json(app), status_code=201)


async def user_create(request: Request) -> Response:
    """``POST /sandboxes/{id}/users``: add a user (fields of ``directory.User``). ``oid`` defaults to
    a new GUID and ``tenant_id`` to the sandbox's home tenant (the MSA tenant for ``account_type: msa``)."""
    sb = _sandbox(request)
    body = await _body(request)
    body = {"tenant_id": MSA_TENANT_ID if body.get("account_type") == "msa" else sb.home_tenant.tenant_id, **body}
    with sb.lock:
        user = sb.directory.add_user(_reader(request, sb).user(body, ""))
    _sandboxes(request).reindex(sb)
    return JSONResponse(user_json(user), status_code=201)


async def user_update(request: Request) -> Response:
    """``PATCH /sandboxes/{id}/users/{username}``: disabled, locked, password_expired, password, and
    ``tokens_valid_from`` (epoch seconds, or ``"now"`` on the sandbox clock): refresh tokens issued
    before it are revoked (AADSTS50173)."""
    sb = _sandbox(request)
    user = sb.directory.user(request.path_params["username"])
    if user is None:
        raise AdminError(404, "not_found", f"No user {request.path_params['username']!r} in sandbox {sb.sandbox_id!r}.")
    body = await _body(request)
    if body.get("tokens_valid_from") == "now":
        body["tokens_valid_from"] = sb.now()
    changes = _fields(body, USER_PATCH, required=True)
    if changes.get("password") == "":
        raise AdminError(400, "invalid_request", "password: must not be empty")
    with sb.lock:
        for name, value in changes.items():
            setattr(user, name, float(value) if name == "tokens_valid_from" else value)
    return JSONResponse(user_json(user))


async def consent_create(request: Request) -> Response:
    """``POST /sandboxes/{id}/consents`` ``{client_id, resource, scopes}``: admin consent."""
    sb = _sandbox(request)
    body = await _body(request)
    with sb.lock:
        client_id, resource, scopes = _reader(request, sb).consent(body, "")
        sb.directory.grant(client_id, resource.client_id, scopes)
        granted = sorted(sb.directory.consents[(client_id, resource.client_id)])
    return JSONResponse({"client_id": client_id, "resource": resource.client_id, "scopes": granted}, status_code=201)


async def role_assignment_create(request: Request) -> Response:
    """``POST /sandboxes/{id}/role-assignments`` ``{principal, resource, roles}``; principal is a
    client_id, a user oid or a username."""
    sb = _sandbox(request)
    body = await _body(request)
    with sb.lock:
        principal, resource, roles = _reader(request, sb).role_assignment(body, "")
        sb.directory.assign_roles(principal, resource.client_id, roles)
        assigned = sorted(sb.directory.roles(principal, resource.client_id))
    return JSONResponse({"principal": principal, "resource": resource.client_id, "roles": assigned}, status_code=201)


async def journal_list(request: Request) -> Response:
    """``GET /sandboxes/{id}/journal?endpoint=&client_id=&grant_type=&status=&correlation_id=&since=``:
    matching entries, oldest first; ``since`` is a ``seq`` (entries after it)."""
    sb = _sandbox(request)
    query = dict(request.query_params)
    for name in query:
        if name not in JOURNAL_FILTERS:
            raise AdminError(400, "invalid_request", f"{name}: unknown filter; known: {', '.join(JOURNAL_FILTERS)}")
    filters: dict[str, Any] = dict(query)
    for name in ("status", "since"):
        if name in query:
            if not (query[name].isascii() and query[name].isdigit()):
                raise AdminError(400, "invalid_request", f"{name}: must be a whole number, got {query[name]!r}")
            filters[name] = int(query[name])
    entries = sb.journal.entries(filters.pop("endpoint", None), **filters)
    return JSONResponse({"entries": [e.to_json() for e in entries]})


async def journal_clear(request: Request) -> Response:
    """``DELETE /sandboxes/{id}/journal``."""
    _sandbox(request).journal.clear()
    return Response(status_code=204)


async def clock_advance(request: Request) -> Response:
    """``POST /sandboxes/{id}/clock`` ``{"advance": seconds}``: move the sandbox clock (negative goes back)."""
    sb = _sandbox(request)
    body = _fields(await _body(request), {"advance": float}, required=True)
    with sb.lock:
        target = sb.now() + float(body["advance"])
        if not 0 <= target <= LAST_TIMESTAMP:  # tokens and error timestamps need a real date
            raise AdminError(400, "invalid_request", f"advance: {body['advance']} would move the sandbox clock "
                                                     "outside 1970-01-01..9999-12-31")
        sb.advance(float(body["advance"]))
    return JSONResponse({"clock_offset": sb.clock_offset, "now": sb.now()})


async def keys_rotate(request: Request) -> Response:
    """``POST /sandboxes/{id}/keys/rotate``: a new active signing key for this sandbox only, now (on
    its clock); the old one stays in its JWKS for the grace period. The new key is not saved to the
    state directory, and other sandboxes keep theirs. ``POST /keys/rotate`` rotates the server's keys."""
    sb = _sandbox(request)
    _fields(await _body(request, optional=True), {})
    with sb.lock:
        previous = sb.keys.active.kid
        sb.keys = sb.keys.rotated_copy(sb.now())
        keys = sb.keys
    return JSONResponse({"kid": keys.active.kid, "previous_kid": previous,
                         "published": [k.kid for k in keys.published(sb.now())], "sandbox_id": sb.sandbox_id})


async def server_keys_rotate(request: Request) -> Response:
    """``POST /keys/rotate``: rotate the server-wide signing keys, in place and saved to the state
    directory (the old key stays published for the grace period). Every sandbox still sharing them
    (listed in ``sandboxes``: all but those rotated with ``/sandboxes/{id}/keys/rotate``) and every
    sandbox created later uses the new key."""
    _fields(await _body(request, optional=True), {})
    runtime = _runtime(request)
    keys = runtime.keys
    previous = keys.active.kid
    new = keys.rotate()
    sharing = [sb.sandbox_id for sb in _sandboxes(request).all() if sb.keys is keys]
    for sandbox_id in sharing:  # with several workers, they learn of the new key from these
        _sandboxes(request).persist(sandbox_id)
    return JSONResponse({"kid": new.kid, "previous_kid": previous,
                         "published": [k.kid for k in keys.published(time.time())], "sandboxes": sharing,
                         "note": SERVER_KEYS_NOTE})


def routes() -> list[BaseRoute]:
    """The admin route table, mounted at ``/_fakests`` (``openapi.document`` describes each route)."""
    from . import admin_scenarios, dashboard  # they build on this module's helpers

    sb = "/sandboxes/{sandbox_id}"
    return [
        Route("/health", _admin(health, public=True), methods=["GET"]),
        Route("/ca.pem", _admin(ca_pem), methods=["GET"]),
        Route("/client-cert.pem", _admin(client_cert_pem), methods=["GET"]),
        Route("/sandboxes", _admin(sandbox_list), methods=["GET"]),
        Route("/sandboxes", _admin(sandbox_create), methods=["POST"]),
        Route(sb, _admin(sandbox_get), methods=["GET"]),
        Route(sb, _admin(sandbox_update), methods=["PATCH"]),
        Route(sb, _admin(sandbox_delete), methods=["DELETE"]),
        Route(f"{sb}/apps", _admin(app_create), methods=["POST"]),
        Route(f"{sb}/users", _admin(user_create), methods=["POST"]),
        Route(f"{sb}/users/{{username}}", _admin(user_update), methods=["PATCH"]),
        Route(f"{sb}/consents", _admin(consent_create), methods=["POST"]),
        Route(f"{sb}/role-assignments", _admin(role_assignment_create), methods=["POST"]),
        Route(f"{sb}/journal", _admin(journal_list), methods=["GET"]),
        Route(f"{sb}/journal", _admin(journal_clear), methods=["DELETE"]),
        Route(f"{sb}/clock", _admin(clock_advance), methods=["POST"]),
        Route(f"{sb}/keys/rotate", _admin(keys_rotate), methods=["POST"]),
        Route("/keys/rotate", _admin(server_keys_rotate), methods=["POST"]),
        *admin_scenarios.routes(),
        Route("/dashboard", _admin(dashboard.page, public=True), methods=["GET"]),
        *dashboard.routes(),
    ]
