"""The admin REST API under ``/_fakests/``: health, CA, sandboxes, directory, managed identity, journal, clock,
keys.

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
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..state import kubernetes
from ..state.config import DirectoryReader
from ..state.directory import (
    MSA_TENANT_ID,
    SPECIAL_TENANTS,
    WORKLOAD_AUDIENCE,
    App,
    Certificate,
    Directory,
    ManagedIdentity,
    User,
)
from ..state.errors import ConfigError
from ..state.sandbox import DEFAULT_SANDBOX, Sandbox, SandboxLimit
from ..sts.context import origin_of
from ..sts.identity import IDENTITY_ENDPOINTS, IDENTITY_PATHS, identity_environment
from ..sts.ids import LAST_TIMESTAMP
from ._http import (
    BODY,
    AdminError,
    checked_fields,
    host_of,
    read_body,
    sandbox_of,
    sandboxes_of,
)

# What PATCH /sandboxes/{id}/users/{username} may change (tokens_valid_from revokes refresh tokens).
USER_PATCH = {"disabled": bool, "locked": bool, "password_expired": bool, "password": str, "tokens_valid_from": float}
JOURNAL_FILTERS = ("endpoint", "client_id", "grant_type", "status", "correlation_id", "since")
SERVER_KEYS_NOTE = ("Rotated the server's signing keys: every sandbox that has not rotated its own keys "
                    "(POST /sandboxes/{id}/keys/rotate) publishes and signs with the new key.")


# --- serialization ------------------------------------------------------------------------------------
def app_json(app: App) -> dict[str, Any]:
    """An app registration as JSON; certificates by thumbprint (the PEM may hold a private key)."""
    return {
        "client_id": app.client_id, "display_name": app.display_name, "tenant_id": app.tenant_id,
        "object_id": app.object_id,
        "secrets": [{"value": s.value, "expires_at": s.expires_at, "hint": s.hint} for s in app.secrets],
        "certificates": [{"x5t": c.x5t, "x5t#S256": c.x5t_s256, "not_after": c.not_after} for c in app.certificates],
        "redirect_uris": app.redirect_uris, "web_redirect_uris": app.web_redirect_uris,
        "spa_redirect_uris": app.spa_redirect_uris, "public_client_redirect_uris": app.public_client_redirect_uris,
        "public_client": app.public_client,
        "sign_in_audience": app.sign_in_audience, "identifier_uris": app.identifier_uris, "scopes": app.scopes,
        "app_roles": app.app_roles, "access_token_version": app.access_token_version, "enabled": app.enabled,
        "federated_credentials": [dataclasses.asdict(c) for c in app.federated_credentials],
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
    """The whole directory as JSON, with the field names of the config file (``fakests.state.config``)."""
    return {
        "tenants": [{"tenant_id": t.tenant_id, "display_name": t.display_name, "domains": t.domains,
                     "region_scope": t.region_scope} for t in d.tenants.values()],
        "apps": [app_json(a) for a in d.apps.values()],
        "users": [user_json(u) for u in d.users.values()],
        "managed_identities": [dataclasses.asdict(i) for i in d.identities.values()],
        "hosted_on": d.hosted_on,
        "consents": [{"client_id": c, "resource": r, "scopes": sorted(s)} for (c, r), s in d.consents.items()],
        "user_consents": [{"oid": o, "client_id": c, "resource": r, "scopes": sorted(s)}
                          for (o, c, r), s in d.user_consents.items()],
        "role_assignments": [{"principal": p, "resource": r, "roles": sorted(s)}
                             for (p, r), s in d.role_assignments.items()],
    }


def _summary(request: Request, sb: Sandbox) -> dict[str, Any]:
    origin = origin_of(request, host_of(request).settings.public_url)
    return {
        "sandbox_id": sb.sandbox_id, "tenant_id": sb.home_tenant.tenant_id,
        "authority": f"{origin}/{sb.home_tenant.tenant_id}", "auto_sign_in": sb.auto_sign_in,
        "clock_offset": sb.clock_offset, "now": sb.now(), "journal_entries": len(sb.journal),
        "internal_errors": len(sb.internal_errors), "journal_lost": sb.journal_lost,
    }


def _detail(request: Request, sb: Sandbox) -> dict[str, Any]:
    origin = origin_of(request, host_of(request).settings.public_url)
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
    tls = host_of(request).tls
    if tls is None:
        raise AdminError(404, "not_found", "TLS is off (tls: false), so there is no CA certificate.")
    return PlainTextResponse(tls.ca.read_text())


async def client_cert_pem(request: Request) -> Response:
    """``GET /client-cert.pem``: the default client certificate WITH its private key (PEM), so a test
    in another process or language can authenticate as the default confidential apps. It is a test
    credential, registered only in fakests."""
    return PlainTextResponse(host_of(request).client_cert_path.read_text())


async def sandbox_create(request: Request) -> Response:
    """``POST /sandboxes`` ``{"auto_sign_in"?}``: a fresh-id copy of the default directory (429 at
    ``max_sandboxes``). Answers like ``GET /sandboxes/{id}``, since the new ids are what callers need."""
    body = checked_fields(await read_body(request, optional=True), {"auto_sign_in": bool})
    try:
        sb = sandboxes_of(request).create()
    except SandboxLimit as exc:
        raise AdminError(429, "too_many_sandboxes", str(exc)) from None
    if body.get("auto_sign_in", sb.auto_sign_in) != sb.auto_sign_in:
        sb.auto_sign_in = body["auto_sign_in"]
        sb.persist()
    return JSONResponse(_detail(request, sb), status_code=201)


async def sandbox_list(request: Request) -> Response:
    """``GET /sandboxes``: a summary of each live sandbox, ``default`` first."""
    return JSONResponse({"sandboxes": [_summary(request, sb) for sb in sandboxes_of(request).all()]})


async def sandbox_get(request: Request) -> Response:
    """``GET /sandboxes/{id}``: summary, authority URLs and the full directory with its credentials."""
    return JSONResponse(_detail(request, sandbox_of(request)))


async def sandbox_delete(request: Request) -> Response:
    """``DELETE /sandboxes/{id}``: drop a sandbox (the built-in ``default`` cannot be dropped)."""
    sb = sandbox_of(request)
    if sb.sandbox_id == DEFAULT_SANDBOX:
        raise AdminError(400, "invalid_request", "The default sandbox cannot be deleted.")
    sandboxes_of(request).drop(sb.sandbox_id)
    return Response(status_code=204)


# Settings a single sandbox may change (the same names as ``Settings`` fields and ``StsSandbox.configure``).
SANDBOX_SETTINGS = ("access_token_lifetime", "id_token_lifetime", "refresh_token_lifetime", "code_lifetime",
                    "device_code_lifetime", "device_code_interval")


async def sandbox_update(request: Request) -> Response:
    """``PATCH /sandboxes/{id}`` ``{"auto_sign_in", "access_token_lifetime", ...}``: this sandbox only."""
    sb = sandbox_of(request)
    body = checked_fields(await read_body(request), {"auto_sign_in": bool, **dict.fromkeys(SANDBOX_SETTINGS, float)},
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
    runtime = host_of(request)

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
    sb = sandbox_of(request)
    body = {"client_id": str(uuid.uuid4()), "tenant_id": sb.home_tenant.tenant_id, **await read_body(request)}
    with sb.lock:
        app = _reader(request, sb).app(body, "")
        # /common requests find their sandbox by client_id, so a client_id must be unique server-wide.
        other = next((o for o in sandboxes_of(request).all() if app.client_id in o.directory.apps), None)
        if other is not None:
            raise AdminError(400, "invalid_request", f"client_id: {app.client_id} is already registered in "
                                                     f"sandbox {other.sandbox_id!r}")
        sb.directory.add_app(app)
    sandboxes_of(request).reindex(sb)
    return JSONResponse(app_json(app), status_code=201)


async def user_create(request: Request) -> Response:
    """``POST /sandboxes/{id}/users``: add a user (fields of ``directory.User``). ``oid`` defaults to
    a new GUID and ``tenant_id`` to the sandbox's home tenant (the MSA tenant for ``account_type: msa``)."""
    sb = sandbox_of(request)
    body = await read_body(request)
    body = {"tenant_id": MSA_TENANT_ID if body.get("account_type") == "msa" else sb.home_tenant.tenant_id, **body}
    with sb.lock:
        user = sb.directory.add_user(_reader(request, sb).user(body, ""))
    sandboxes_of(request).reindex(sb)
    return JSONResponse(user_json(user), status_code=201)


async def user_update(request: Request) -> Response:
    """``PATCH /sandboxes/{id}/users/{username}``: disabled, locked, password_expired, password, and
    ``tokens_valid_from`` (epoch seconds, or ``"now"`` on the sandbox clock): refresh tokens issued
    before it are revoked (AADSTS50173)."""
    sb = sandbox_of(request)
    user = sb.directory.user(request.path_params["username"])
    if user is None:
        raise AdminError(404, "not_found", f"No user {request.path_params['username']!r} in sandbox {sb.sandbox_id!r}.")
    body = await read_body(request)
    if body.get("tokens_valid_from") == "now":
        body["tokens_valid_from"] = sb.now()
    changes = checked_fields(body, USER_PATCH, required=True)
    if changes.get("password") == "":
        raise AdminError(400, "invalid_request", "password: must not be empty")
    with sb.lock:
        for name, value in changes.items():
            setattr(user, name, float(value) if name == "tokens_valid_from" else value)
    return JSONResponse(user_json(user))


def identity_json(identity: ManagedIdentity, hosted_on: str) -> dict[str, Any]:
    """A managed identity as JSON (the config file's fields), and whether the endpoints run on its resource."""
    return {**dataclasses.asdict(identity),
            "hosted_on": identity.kind == "system" and identity.resource_id.lower() == hosted_on.lower()}


async def identity_create(request: Request) -> Response:
    """``POST /sandboxes/{id}/managed-identities``: register a managed identity (the fields of
    ``directory.ManagedIdentity``, as under ``managed_identities:`` in a config file). ``client_id`` and
    ``object_id`` default to new GUIDs, ``tenant_id`` to the home tenant; ``"hosted_on": true`` (system-assigned
    only) makes the endpoints run on its resource, so a request that selects no identity gets its tokens."""
    sb = sandbox_of(request)
    body = await read_body(request)
    hosted = body.pop("hosted_on", False)
    if not isinstance(hosted, bool):
        raise AdminError(400, "invalid_request", f"hosted_on: must be true or false, got {hosted!r}")
    body = {"client_id": str(uuid.uuid4()), "object_id": str(uuid.uuid4()), "tenant_id": sb.home_tenant.tenant_id,
            **body}
    with sb.lock:
        identity = _reader(request, sb).identity(body, "")
        if hosted and identity.kind != "system":
            raise AdminError(400, "invalid_request", "hosted_on: only a system-assigned identity (kind: system) is "
                                                     "the identity of the resource the endpoints run on")
        sb.directory.add_identity(identity)
        if hosted:
            sb.directory.hosted_on = identity.resource_id
        answer = identity_json(identity, sb.directory.hosted_on)
    return JSONResponse(answer, status_code=201)


async def identity_endpoint(request: Request) -> Response:
    """``GET /sandboxes/{id}/identity-endpoint?source=imds``: where code on Azure compute of kind ``source``
    reaches this sandbox's managed-identity endpoint, and the variables that say so to its clients (what
    ``StsSandbox.managed_identity`` sets). The host is the public URL's, else the one this request named; 404
    when this fakests serves no managed-identity endpoints."""
    sb = sandbox_of(request)
    query = dict(request.query_params)
    for name in query:
        if name != "source":
            raise AdminError(400, "invalid_request", f"{name}: unknown parameter; known: source")
    source = query.get("source", "imds")
    if source not in IDENTITY_ENDPOINTS:
        raise AdminError(400, "invalid_request", f"source: unknown managed-identity source {source!r}; known: "
                                                 f"{', '.join(IDENTITY_ENDPOINTS)}")
    port = await run_in_threadpool(host_of(request).identity_port)  # FakeSTS starts them now: not on the loop
    if port is None:
        raise AdminError(404, "not_found", "This fakests serves no managed-identity endpoints (identity_port is -1, "
                                           "or it runs several workers).")
    tenant = sb.home_tenant.tenant_id
    base = f"{_identity_origin(request, port)}/{tenant}"
    try:
        environment = identity_environment(source, base, tenant)
    except ValueError as exc:  # an endpoint no variable points at
        raise AdminError(400, "invalid_request", f"source: {exc}") from None
    return JSONResponse({"sandbox_id": sb.sandbox_id, "source": source, "identity_url": base,
                         "endpoint": base + IDENTITY_PATHS[source], "environment": environment})


def _identity_origin(request: Request, port: int) -> str:
    """``http://host:port`` of the managed-identity endpoints as the caller reaches fakests: the public URL's
    host, else the host this request named (a container that reached the STS as ``fakests`` reaches them so)."""
    public = host_of(request).settings.public_url
    host = urlsplit(public).hostname if public else None
    if host is None:
        try:
            host = urlsplit(f"//{request.headers.get('host', '')}").hostname
        except ValueError:  # a Host that is no host name: the address the request came in on
            host = None
        host = host or (request.scope.get("server") or ("localhost", 0))[0]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


async def consent_create(request: Request) -> Response:
    """``POST /sandboxes/{id}/consents`` ``{client_id, resource, scopes}``: admin consent."""
    sb = sandbox_of(request)
    body = await read_body(request)
    with sb.lock:
        client_id, resource, scopes = _reader(request, sb).consent(body, "")
        sb.directory.grant(client_id, resource.client_id, scopes)
        granted = sorted(sb.directory.consents[(client_id, resource.client_id)])
    return JSONResponse({"client_id": client_id, "resource": resource.client_id, "scopes": granted}, status_code=201)


async def role_assignment_create(request: Request) -> Response:
    """``POST /sandboxes/{id}/role-assignments`` ``{principal, resource, roles}``; principal is a
    client_id, a user oid or a username."""
    sb = sandbox_of(request)
    body = await read_body(request)
    with sb.lock:
        principal, resource, roles = _reader(request, sb).role_assignment(body, "")
        sb.directory.assign_roles(principal, resource.client_id, roles)
        assigned = sorted(sb.directory.roles(principal, resource.client_id))
    return JSONResponse({"principal": principal, "resource": resource.client_id, "roles": assigned}, status_code=201)


async def journal_list(request: Request) -> Response:
    """``GET /sandboxes/{id}/journal?endpoint=&client_id=&grant_type=&status=&correlation_id=&since=``:
    matching entries, oldest first; ``since`` is a ``seq`` (entries after it)."""
    sb = sandbox_of(request)
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
    sandbox_of(request).journal.clear()
    return Response(status_code=204)


async def clock_advance(request: Request) -> Response:
    """``POST /sandboxes/{id}/clock`` ``{"advance": seconds}``: move the sandbox clock (negative goes back)."""
    sb = sandbox_of(request)
    body = checked_fields(await read_body(request), {"advance": float}, required=True)
    with sb.lock:
        target = sb.now() + float(body["advance"])
        if not 0 <= target <= LAST_TIMESTAMP:  # tokens and error timestamps need a real date
            raise AdminError(400, "invalid_request", f"advance: {body['advance']} would move the sandbox clock "
                                                     "outside 1970-01-01..9999-12-31")
        sb.advance(float(body["advance"]))
    return JSONResponse({"clock_offset": sb.clock_offset, "now": sb.now()})


async def service_account_token(request: Request) -> Response:
    """``POST /sandboxes/{id}/kubernetes/token`` ``{namespace, service_account, audience, lifetime, cluster}``
    (all optional): a service-account token of fakests' fake Kubernetes cluster, issued now on the sandbox clock,
    for a pod's ``AZURE_FEDERATED_TOKEN_FILE`` (``RemoteSandbox.workload_identity``)."""
    sb = sandbox_of(request)
    body = checked_fields(await read_body(request), {"namespace": str, "service_account": str, "audience": str,
                                                     "lifetime": float, "cluster": str})
    lifetime = float(body.get("lifetime", kubernetes.TOKEN_LIFETIME))
    if not 0 < lifetime <= 365 * 86400:
        raise AdminError(400, "invalid_request", f"lifetime: must be 1 second to a year, got {lifetime}")
    try:
        issuer = kubernetes.issuer_url(origin_of(request, host_of(request).settings.public_url),
                                       body.get("cluster", kubernetes.DEFAULT_CLUSTER))
    except ValueError as exc:
        raise AdminError(400, "invalid_request", f"cluster: {exc}") from None
    names = {k: body.get(k, default) for k, default in (("namespace", kubernetes.DEFAULT_NAMESPACE),
                                                        ("service_account", kubernetes.DEFAULT_SERVICE_ACCOUNT))}
    if not all(names.values()):
        raise AdminError(400, "invalid_request", "namespace and service_account must not be empty")
    token = sandboxes_of(request).clusters.token(issuer, **names, audiences=[body.get("audience", WORKLOAD_AUDIENCE)],
                                            now=sb.now(), lifetime=lifetime)
    return JSONResponse({"token": token, "issuer": issuer,
                         "subject": kubernetes.subject(names["namespace"], names["service_account"])})


async def keys_rotate(request: Request) -> Response:
    """``POST /sandboxes/{id}/keys/rotate``: a new active signing key for this sandbox only, now (on
    its clock); the old one stays in its JWKS for the grace period. The new key is not saved to the
    state directory, and other sandboxes keep theirs. ``POST /keys/rotate`` rotates the server's keys."""
    sb = sandbox_of(request)
    checked_fields(await read_body(request, optional=True), {})
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
    checked_fields(await read_body(request, optional=True), {})
    runtime = host_of(request)
    keys = runtime.keys
    previous = keys.active.kid
    new = keys.rotate()
    sharing = [sb.sandbox_id for sb in sandboxes_of(request).all() if sb.keys is keys]
    for sandbox_id in sharing:  # with several workers, they learn of the new key from these
        sandboxes_of(request).persist(sandbox_id)
    return JSONResponse({"kid": new.kid, "previous_kid": previous,
                         "published": [k.kid for k in keys.published(time.time())], "sandboxes": sharing,
                         "note": SERVER_KEYS_NOTE})
