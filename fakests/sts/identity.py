"""Managed identity: the token endpoints Azure compute offers its code, each as its source speaks it.

Azure gives code running on its compute a token endpoint of the host's own, plain HTTP, answering for the
resource's managed identity (``../shared/clients-2026.md`` §2; MSAL Python's ``managed_identity.py`` and
azure-identity's ``_credentials/*.py`` are what the wire below was checked against):

- ``imds``: ``GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R`` with ``Metadata: true``;
  ``client_id`` / ``object_id`` / ``msi_res_id`` select; every value of the answer is a string.
- ``app_service``: ``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=R`` with ``X-IDENTITY-HEADER``;
  ``client_id`` / ``principal_id`` / ``object_id`` / ``mi_res_id`` select; ``expires_on`` is epoch seconds
  as a string, and the answer names ``client_id``.
- ``azure_ml``: ``GET {MSI_ENDPOINT}?api-version=2017-09-01&resource=R`` with ``secret``; ``clientid``.
- ``cloud_shell``: ``POST {MSI_ENDPOINT}``, form ``resource=R``, ``Metadata: true``; answers like IMDS.
- ``arc``: Azure Arc's agent (himds), ``GET {IDENTITY_ENDPOINT}?api-version=2020-06-01&resource=R`` with
  ``Metadata: true``. A request without the key gets 401 ``WWW-Authenticate: Basic realm=<path>.key``; the client
  reads the key from that file and asks again with ``Authorization: Basic <key>`` (MSAL Python
  ``_obtain_token_on_arc``, msal-node ``AzureArc.ts``, azure-identity ``azure_arc.py``). Answers like IMDS; a
  user-assigned identity's selector is echoed, as current agents do (the clients refuse a token that does not
  echo it).
- ``service_fabric``: ``GET {IDENTITY_ENDPOINT}?api-version=2019-07-01-preview&resource=R`` with ``Secret``, over
  HTTPS: the only source served by the STS's own TLS server (``TLS_IDENTITY_PATHS``), because clients pin its
  certificate by ``IDENTITY_SERVER_THUMBPRINT``. ``expires_on`` is a number; errors are
  ``{"error": {"correlationId", "code", "message"}}`` (learn.microsoft.com, Service Fabric "how to use managed
  identity in app code", error handling; the codes MSAL Python maps).

Paths are fakests' (``IDENTITY_PATHS``), each also under a tenant segment, ``/{tenant}/msi/token``: the
segment picks the sandbox the way the STS's tenant segment does, so every test's environment variables
point at its own sandbox. Errors are JSON ``{"error", "error_description"}`` (App Service:
``{"statusCode", "message", "correlationId"}``); ``IDENTITY_ERRORS`` is their catalog, and a scripted
``status`` with no body gets the answer that source really gives with that status. A scripted ``token``
(``TOKEN_ANSWERS``) makes a normal answer carry an expired, malformed or no access token.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from starlette.responses import Response

from ..state.directory import App, ManagedIdentity
from .context import ErrorShape, StsRequest
from .errors import NO_STORE, EntraJSON, StsError, error_body
from .tokens import Minter

# Endpoint name -> the path under the managed-identity origin (and under /{tenant}).
IDENTITY_PATHS = {
    "imds": "/metadata/identity/oauth2/token",
    "app_service": "/msi/token",
    "azure_ml": "/azureml/msi/token",
    "cloud_shell": "/cloudshell/oauth2/token",
    "arc": "/arc/metadata/identity/oauth2/token",
}
# Served by the STS's TLS server instead (its origin and certificate), also bare and under /{tenant}.
TLS_IDENTITY_PATHS = {"service_fabric": "/servicefabric/msi/token"}
IDENTITY_ENDPOINTS = (*IDENTITY_PATHS, *TLS_IDENTITY_PATHS)

# What a scripted ``token`` answer puts in an otherwise normal answer (``failures/scenarios.py``).
TOKEN_ANSWERS = {
    "expired": "a signed token that expired 5 minutes ago; expires_on and expires_in say so",
    "malformed": "an access_token that is not a JWT (what some emulators send: 'dummy')",
    "missing": "the answer without access_token",
}
EXPIRED_AGO = 300  # seconds: how long ago a scripted ``expired`` token expired
MALFORMED_TOKEN = "dummy"  # nagyesta/assumed-identity's access_token (clients-2026.md §2)

# Azure Arc: the api-versions its agent takes (MSAL Python, msal-node and azure-identity send 2020-06-01), and the
# directory its clients read the key from on Linux; each of them refuses a realm elsewhere (MSAL Python
# ``_supported_arc_platforms_and_their_prefixes``, msal-node ``SUPPORTED_AZURE_ARC_PLATFORMS``, azure-identity
# ``_get_key_file_path``), and a key file larger than 4096 bytes.
ARC_API_VERSIONS = ("2019-11-01", "2020-06-01")
ARC_CLIENT_KEY_DIR = "/var/opt/azcmagent/tokens"

# name -> (status, error, error_description). IMDS's documented errors (entra-docs how-to-use-vm-token.md,
# "Error handling"); the 403 is Docker Desktop's proxy when 169.254.169.254 is unreachable (azure-identity
# ``imds.py _check_forbidden_response`` looks for "unreachable"). Where Azure's wording is not published
# (404, 410, 503), the description says what the status means and that the text is fakests'.
IDENTITY_ERRORS: dict[str, tuple[int, str, str]] = {
    "identity_not_found": (400, "invalid_request", "Identity not found"),
    "metadata_required": (400, "bad_request_102", "Required metadata header not specified"),
    "api_version_missing": (400, "invalid_request", "Required query variable 'api-version' is missing"),
    "api_version_unsupported": (400, "invalid_request", "Invalid api-version (fakests' wording)"),
    "resource_missing": (400, "invalid_request", "Required query variable 'resource' is missing"),
    "identity_header": (401, "unauthorized", "The X-IDENTITY-HEADER (or secret) header is missing or wrong"),
    "unknown_source": (401, "unknown_source", "Unknown Source"),
    "arc_challenge": (401, "unauthorized", "Send the key from the file the realm names as 'Authorization: Basic "
                                           "<key>' (fakests' wording)"),
    "arc_key": (401, "unauthorized", "The key is wrong or was used already; ask again for a new one (fakests' "
                                     "wording)"),
    "unreachable": (403, "forbidden", "connecting to 169.254.169.254:80: connecting to 169.254.169.254:80: dial tcp "
                                      "169.254.169.254:80: connect: A socket operation was attempted to an "
                                      "unreachable network."),
    "updating": (404, "not_found", "The managed identity endpoint is updating (fakests' wording); retry"),
    "method": (405, "method_not_allowed", "The request method is not supported for this endpoint"),
    "upgrading": (410, "gone", "The managed identity endpoint is being upgraded and will be available within 70 "
                               "seconds (fakests' wording)"),
    "throttled": (429, "too_many_requests", "IMDS Throttle limit reached"),
    "unknown": (500, "unknown", "Failed to retrieve token from the Active directory. For details see logs in "
                                "/var/log/azure/Microsoft.ManagedIdentity.ManagedIdentityExtensionForLinux/"),
    "unavailable": (503, "service_unavailable", "The managed identity endpoint is temporarily unavailable "
                                                "(fakests' wording)"),
    "arc_key_dir": (500, "server_error", "fakests cannot write the Arc key file into arc_key_dir (it must exist "
                                         "and be writable; fakests never creates it)"),
}
# Service Fabric's error codes (its docs' example, and the three MSAL Python maps to OAuth errors); a status
# without one of its own gets the OAuth error as its code.
_SERVICE_FABRIC_CODES = {"identity_header": "SecretHeaderNotFound", "identity_not_found": "ManagedIdentityNotFound",
                         "resource_missing": "ArgumentNullOrEmpty", "api_version_missing": "ArgumentNullOrEmpty"}
_SERVICE_FABRIC_MESSAGES = {"identity_header": "Secret is not found in the request headers.",
                            "identity_not_found": "The application has no managed identity (fakests' wording)",
                            "resource_missing": "The parameter 'resource' cannot be null or empty (fakests' "
                                                "wording)",
                            "throttled": "Throttle limit reached (fakests' wording)"}
# A scripted status's answer: the first entry with that status (400: "Identity not found").
_BY_STATUS = {status: name for name, (status, _, _) in reversed(IDENTITY_ERRORS.items())}


@functools.lru_cache(maxsize=1024)  # checked on every App Service / Azure ML request: hash once per tenant
def identity_header(tenant_id: str) -> str:
    """The ``IDENTITY_HEADER`` / ``MSI_SECRET`` of a sandbox whose home tenant is ``tenant_id``: fixed, so
    the environment a test or ``fakests env --managed-identity`` prints stays valid across restarts."""
    return hashlib.sha256(f"fakests-identity-header:{tenant_id}".encode()).hexdigest()[:32]


def identity_error(ctx: StsRequest, name: str, *, status: int | None = None, error: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    """The error ``name`` (``IDENTITY_ERRORS``) as ``ctx.endpoint``'s source sends it, noted for the journal."""
    default_status, default_error, description = IDENTITY_ERRORS[name]
    status = status or default_status
    error = error or default_error
    ctx.notes.setdefault("error", error)
    if ctx.endpoint == "service_fabric":
        return _service_fabric_error(ctx, status, _SERVICE_FABRIC_CODES.get(name, error),
                                     _SERVICE_FABRIC_MESSAGES.get(name, description), headers)
    return _render(ctx.endpoint, status, error, description, ctx, headers)


def scripted_identity_answer(ctx: StsRequest, status: int, error: str | None, headers: dict[str, str]) -> Response:
    """A scenario's raw ``status`` with no body, on a managed-identity endpoint: the answer with that status
    from ``IDENTITY_ERRORS`` (any other status: ``unknown``'s text under it)."""
    name = _BY_STATUS.get(status, "unknown")
    if ctx.endpoint in ("service_fabric", "arc") and status == 404:  # "no such identity" there (Service Fabric's
        name = "identity_not_found"  # docs; msal-node AzureArc.ts: "a 404 for a non-existent identity")
    return identity_error(ctx, name, status=status, error=error, headers=headers)


def render_identity(ctx: StsRequest, exc: StsError) -> Response:
    """An Entra error met while serving a managed-identity request (an unknown resource, a scripted AADSTS
    code, the store unavailable): its code and message inside the source's own error shape."""
    body = error_body(exc, ctx.ids, ctx.now, ctx.origin)
    return _render(ctx.endpoint, exc.status, exc.error, body["error_description"], ctx, exc.headers)


# Every managed-identity endpoint's refusals, its own and a scenario's (``sts_endpoint``, the engine).
ERROR_SHAPE = ErrorShape(error=render_identity, status=scripted_identity_answer)


def _render(endpoint: str, status: int, error: str, description: str, ctx: StsRequest,
            headers: dict[str, str] | None) -> Response:
    if endpoint == "service_fabric":
        return _service_fabric_error(ctx, status, error, description, headers)
    if endpoint == "app_service":
        body: dict[str, Any] = {"statusCode": status, "message": description,
                                "correlationId": ctx.ids.correlation_id}
    else:
        body = {"error": error, "error_description": description}
    return EntraJSON(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def _service_fabric_error(ctx: StsRequest, status: int, code: str, message: str,
                          headers: dict[str, str] | None) -> Response:
    body = {"error": {"correlationId": ctx.ids.correlation_id, "code": code, "message": message}}
    return EntraJSON(body, status_code=status, headers={**NO_STORE, **(headers or {})})


# --- the endpoints ----------------------------------------------------------------------------------------
async def imds(ctx: StsRequest) -> Response:
    """IMDS: ``GET`` only, ``Metadata: true`` required (a probe without it gets the 400 that tells
    ``DefaultAzureCredential`` IMDS is there), string-typed JSON."""
    if ctx.request.method != "GET":
        return identity_error(ctx, "method")
    if ctx.headers.get("metadata", "").lower() != "true":
        return identity_error(ctx, "metadata_required")
    return _token(ctx, selectors=("client_id", "object_id", "msi_res_id"), shape="imds")


async def app_service(ctx: StsRequest) -> Response:
    """App Service, Functions, Container Apps (api-version 2019-08-01): ``X-IDENTITY-HEADER`` required."""
    if ctx.request.method != "GET":
        return identity_error(ctx, "method")
    if not _secret_ok(ctx, ctx.headers.get("x-identity-header")):
        return identity_error(ctx, "identity_header")
    return _token(ctx, selectors=("client_id", "principal_id", "object_id", "mi_res_id"), shape="app_service")


async def azure_ml(ctx: StsRequest) -> Response:
    """Azure Machine Learning (api-version 2017-09-01): the ``secret`` header; ``clientid`` selects."""
    if ctx.request.method != "GET":
        return identity_error(ctx, "method")
    if not _secret_ok(ctx, ctx.headers.get("secret")):
        return identity_error(ctx, "identity_header")
    return _token(ctx, selectors=("clientid", "client_id"), shape="app_service", api_version=False)


async def cloud_shell(ctx: StsRequest) -> Response:
    """Cloud Shell: ``POST`` with the form ``resource=R`` and ``Metadata: true``; no user-assigned identities."""
    if ctx.request.method != "POST":
        return identity_error(ctx, "method")
    if ctx.headers.get("metadata", "").lower() != "true":
        return identity_error(ctx, "metadata_required")
    return _token(ctx, selectors=(), shape="imds", api_version=False)


async def arc(ctx: StsRequest) -> Response:
    """Azure Arc's agent: ``GET``, ``Metadata: true``, api-version 2019-11-01 or 2020-06-01; without a valid
    key, 401 with a fresh key file named in ``WWW-Authenticate: Basic realm=``. A key is good for one request
    (the file is removed when it is used): himds' own key lifetime is not published, and every client reads a
    new one per token request, so once is the strictest choice that no client notices."""
    if ctx.request.method != "GET":
        return identity_error(ctx, "method")
    if ctx.headers.get("metadata", "").lower() != "true":
        return identity_error(ctx, "metadata_required")
    api_version = ctx.get("api-version")
    if not api_version:
        return identity_error(ctx, "api_version_missing")
    if api_version not in ARC_API_VERSIONS:
        return identity_error(ctx, "api_version_unsupported")
    authorization = ctx.headers.get("authorization", "")
    if not authorization:
        return _arc_challenge(ctx, "arc_challenge")
    if not _arc_key_ok(ctx, authorization):
        return _arc_challenge(ctx, "arc_key")
    user_assigned = ctx.sandbox.settings.arc_user_assigned
    return _token(ctx, selectors=("client_id", "object_id", "msi_res_id") if user_assigned else (), shape="arc",
                  not_found_status=404)


def _arc_file(ctx: StsRequest, key: str) -> str:
    """The key file's name: a MAC of the key under the sandbox's id, so a key opens only its own sandbox and
    no store is needed across workers (the file is the record)."""
    mac = hmac.new(ctx.sandbox.sandbox_id.encode(), key.encode(), hashlib.sha256).hexdigest()
    return f"{mac[:32]}.key"


def _arc_challenge(ctx: StsRequest, name: str) -> Response:
    key = secrets.token_hex(32)
    filename = _arc_file(ctx, key)
    directory = Path(ctx.sandbox.settings.arc_key_dir)
    try:
        # O_EXCL: never through a file or link someone else put there; 0600 as himds' are (root / himds group).
        fd = os.open(directory / filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(key)
    except OSError as exc:
        _, error, description = IDENTITY_ERRORS["arc_key_dir"]
        ctx.notes.setdefault("error", error)
        return _render(ctx.endpoint, 500, error, f"{description}: {directory}: {exc.strerror}", ctx, None)
    _sweep_arc_keys(directory, directory / filename)
    realm = f"{ARC_CLIENT_KEY_DIR}/{filename}"
    return identity_error(ctx, name, headers={"WWW-Authenticate": f"Basic realm={realm}"})


ARC_KEY_STALE = 600  # seconds: a key file nobody used for this long is removed (clients use theirs at once)
_ARC_KEY_NAME = re.compile(r"^[0-9a-f]{32}\.key$")


def _sweep_arc_keys(directory: Path, fresh: Path) -> None:
    """Remove fakests' own key files left by clients that never replayed. Ages are measured against the file
    just written (both the file system's clock), not ``time.time()``, which virtual time moves."""
    try:
        now = fresh.stat().st_mtime
        for entry in os.scandir(directory):
            if _ARC_KEY_NAME.match(entry.name) and entry.stat().st_mtime < now - ARC_KEY_STALE:
                os.unlink(entry.path)
    except OSError:  # another worker removed it first, or the directory is unreadable: keys still work
        pass


def _arc_key_ok(ctx: StsRequest, authorization: str) -> bool:
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "basic" or not key.strip():
        return False
    key = key.strip()
    path = Path(ctx.sandbox.settings.arc_key_dir) / _arc_file(ctx, key)
    try:
        stored = path.read_text(encoding="ascii")
        path.unlink()  # once
    except (OSError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(stored, key)


async def service_fabric(ctx: StsRequest) -> Response:
    """Service Fabric (api-version 2019-07-01-preview) over HTTPS: the ``Secret`` header. The cluster decides the
    identity: selectors are ignored, as MSAL Python ignores them and azure-identity refuses them."""
    if ctx.request.method != "GET":
        return identity_error(ctx, "method")
    if not _secret_ok(ctx, ctx.headers.get("secret")):
        return identity_error(ctx, "identity_header")
    return _token(ctx, selectors=(), shape="service_fabric")


def _secret_ok(ctx: StsRequest, value: str | None) -> bool:
    return value is not None and value == identity_header(ctx.sandbox.home_tenant.tenant_id)


def _token(ctx: StsRequest, *, selectors: tuple[str, ...], shape: str, api_version: bool = True,
           not_found_status: int | None = None) -> Response:
    if api_version and not ctx.get("api-version"):
        return identity_error(ctx, "api_version_missing")
    resource_uri = ctx.get("resource")
    if not resource_uri and (resource_uri is None or shape == "service_fabric"):
        return identity_error(ctx, "resource_missing")
    identity = _select(ctx, selectors)
    if identity is None:
        return identity_error(ctx, "identity_not_found", status=not_found_status)
    ctx.notes["client_id"] = identity.client_id
    try:
        resource = ctx.sandbox.directory.resource(resource_uri)
    except KeyError:
        raise StsError(500011, resource=resource_uri, tenant=identity.tenant_id) from None
    scripted = ctx.notes.get("token")  # a scripted ``token`` answer (TOKEN_ANSWERS)
    issued_at = ctx.now
    lifetime = ctx.sandbox.settings.managed_identity_token_lifetime
    if scripted == "expired":  # issued a lifetime and EXPIRED_AGO in the past
        issued_at -= lifetime + EXPIRED_AGO
    token = _mint(ctx, identity, resource, resource_uri, issued_at, lifetime)
    now, issued = int(ctx.now), int(issued_at)
    expires_on, expires_in = issued + lifetime, issued + lifetime - now
    if shape in ("imds", "arc"):
        body: dict[str, Any] = {
            "access_token": token, "client_id": identity.client_id, "expires_in": str(expires_in),
            "expires_on": str(expires_on), "ext_expires_in": str(expires_in), "not_before": str(issued),
            "resource": resource_uri, "token_type": "Bearer"}
        if shape == "arc" and ctx.get("object_id"):  # echo the selector used, as current agents do
            body["object_id"] = identity.object_id
        if shape == "arc" and ctx.get("msi_res_id"):
            body["msi_res_id"] = identity.resource_id
    elif shape == "service_fabric":  # a number (Service Fabric's docs)
        body = {"token_type": "Bearer", "access_token": token, "expires_on": expires_on, "resource": resource_uri}
    else:
        body = {"access_token": token, "expires_on": _expires_on(ctx, expires_on), "resource": resource_uri,
                "token_type": "Bearer", "client_id": identity.client_id}
    if scripted == "malformed":
        body["access_token"] = MALFORMED_TOKEN
    elif scripted == "missing":
        del body["access_token"]
    return EntraJSON(body, headers=NO_STORE)


def _expires_on(ctx: StsRequest, epoch: int) -> str:
    """App Service / Azure ML ``expires_on``: epoch seconds, or the date string Azure ML's 2017-09-01 and older
    App Service hosts send (``identity_expires_on``; the Linux form azure-identity's ``azure_ml.py`` parses)."""
    if ctx.sandbox.settings.identity_expires_on == "date":
        return time.strftime("%m/%d/%Y %H:%M:%S +00:00", time.gmtime(epoch))
    return str(epoch)


def _select(ctx: StsRequest, selectors: tuple[str, ...]) -> ManagedIdentity | None:
    directory = ctx.sandbox.directory
    for name in selectors:
        value = ctx.get(name)
        if value is None:
            continue
        if name in ("client_id", "clientid"):
            return directory.identity(client_id=value)
        if name in ("object_id", "principal_id"):
            return directory.identity(object_id=value)
        return directory.identity(resource_id=value)
    return directory.identity()


def _mint(ctx: StsRequest, identity: ManagedIdentity, resource: App, resource_uri: str, issued_at: float,
          lifetime: int) -> str:
    minter = Minter(ctx.sandbox, _issuer_origin(ctx), issued_at)
    roles = sorted(ctx.sandbox.directory.roles(identity.client_id, resource.client_id))
    return minter.identity_token(identity, resource, resource_uri, roles=roles, lifetime=lifetime)


STS_ORIGIN = "sts_origin"  # the app.state attribute naming the STS origin of a managed-identity app


def _issuer_origin(ctx: StsRequest) -> str:
    """The STS origin that issues these tokens: managed-identity endpoints have an origin of their own (plain
    HTTP), but a v2 token's ``iss`` names the STS, as Azure's name login.microsoftonline.com, so that the
    resource validates it against the STS's discovery document. ``ctx.origin`` is ``public_url`` when set."""
    if ctx.sandbox.settings.public_url:
        return ctx.origin
    return getattr(ctx.request.app.state, STS_ORIGIN, None) or ctx.origin


# --- how clients find them --------------------------------------------------------------------------------
# Every variable a client reads to pick a managed-identity source (MSAL Python ``get_managed_identity_source``,
# azure-identity ``ManagedIdentityCredential``, msal-node ``ManagedIdentityApplication``): setting one source's
# clears the others', or a client would pick a source by a variable left over from elsewhere.
SOURCE_VARIABLES = ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER",
                    "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET")


def identity_environment(source: str, base_url: str, tenant_id: str, *, tls_base_url: str | None = None,
                         server_thumbprint: str | None = None) -> dict[str, str]:
    """The environment that points clients at ``source`` served under ``base_url`` (the managed-identity
    origin, plus ``/{tenant}`` for a sandbox), for the sandbox whose home tenant is ``tenant_id``.
    ``service_fabric`` is served under ``tls_base_url`` (the STS's origin, plus ``/{tenant}``) and pinned by
    ``server_thumbprint``, the SHA-1 thumbprint of the STS's TLS certificate.

    IMDS is found through ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` (read by azure-identity, MSAL Python >= 1.32
    and msal-node), which also skips ``DefaultAzureCredential``'s probe; the others through the variables
    their hosts set (Arc: ``IDENTITY_ENDPOINT`` + ``IMDS_ENDPOINT``, which only has to be there)."""
    base = base_url.rstrip("/")
    secret = identity_header(tenant_id)
    if source == "imds":
        return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": base}
    if source == "app_service":
        return {"IDENTITY_ENDPOINT": base + IDENTITY_PATHS[source], "IDENTITY_HEADER": secret}
    if source == "azure_ml":
        return {"MSI_ENDPOINT": base + IDENTITY_PATHS[source], "MSI_SECRET": secret}
    if source == "cloud_shell":
        return {"MSI_ENDPOINT": base + IDENTITY_PATHS[source]}
    if source == "arc":
        return {"IDENTITY_ENDPOINT": base + IDENTITY_PATHS[source], "IMDS_ENDPOINT": base}
    if source == "service_fabric":
        if tls_base_url is None or server_thumbprint is None:
            raise ValueError("service_fabric is served over TLS: give tls_base_url and server_thumbprint")
        return {"IDENTITY_ENDPOINT": tls_base_url.rstrip("/") + TLS_IDENTITY_PATHS[source], "IDENTITY_HEADER": secret,
                "IDENTITY_SERVER_THUMBPRINT": server_thumbprint}
    raise ValueError(f"unknown managed-identity source {source!r}; known: {', '.join(IDENTITY_ENDPOINTS)}")
