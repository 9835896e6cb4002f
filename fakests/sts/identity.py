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

Paths are fakests' (``IDENTITY_PATHS``), each also under a tenant segment, ``/{tenant}/msi/token``: the
segment picks the sandbox the way the STS's tenant segment does, so every test's environment variables
point at its own sandbox. Errors are JSON ``{"error", "error_description"}`` (App Service:
``{"statusCode", "message", "correlationId"}``); ``IDENTITY_ERRORS`` is their catalog, and a scripted
``status`` with no body gets the answer that source really gives with that status.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from starlette.responses import Response

from ..state.directory import App, ManagedIdentity
from .context import StsRequest
from .errors import NO_STORE, EntraJSON, StsError, error_body
from .tokens import Minter

# Endpoint name -> the path under the managed-identity origin (and under /{tenant}).
IDENTITY_PATHS = {
    "imds": "/metadata/identity/oauth2/token",
    "app_service": "/msi/token",
    "azure_ml": "/azureml/msi/token",
    "cloud_shell": "/cloudshell/oauth2/token",
}
IDENTITY_ENDPOINTS = tuple(IDENTITY_PATHS)

# name -> (status, error, error_description). IMDS's documented errors (entra-docs how-to-use-vm-token.md,
# "Error handling"); the 403 is Docker Desktop's proxy when 169.254.169.254 is unreachable (azure-identity
# ``imds.py _check_forbidden_response`` looks for "unreachable"). Where Azure's wording is not published
# (404, 410, 503), the description says what the status means and that the text is fakests'.
IDENTITY_ERRORS: dict[str, tuple[int, str, str]] = {
    "identity_not_found": (400, "invalid_request", "Identity not found"),
    "metadata_required": (400, "bad_request_102", "Required metadata header not specified"),
    "api_version_missing": (400, "invalid_request", "Required query variable 'api-version' is missing"),
    "resource_missing": (400, "invalid_request", "Required query variable 'resource' is missing"),
    "identity_header": (401, "unauthorized", "The X-IDENTITY-HEADER (or secret) header is missing or wrong"),
    "unknown_source": (401, "unknown_source", "Unknown Source"),
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
}
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
    return _render(ctx.endpoint, status, error, description, ctx, headers)


def scripted_identity_answer(ctx: StsRequest, status: int, error: str | None, headers: dict[str, str]) -> Response:
    """A scenario's raw ``status`` with no body, on a managed-identity endpoint: the answer with that status
    from ``IDENTITY_ERRORS`` (any other status: ``unknown``'s text under it)."""
    return identity_error(ctx, _BY_STATUS.get(status, "unknown"), status=status, error=error, headers=headers)


def render_identity(ctx: StsRequest, exc: StsError) -> Response:
    """An Entra error met while serving a managed-identity request (an unknown resource, a scripted AADSTS
    code, the store unavailable): its code and message inside the source's own error shape."""
    body = error_body(exc, ctx.ids, ctx.now, ctx.origin)
    return _render(ctx.endpoint, exc.status, exc.error, body["error_description"], ctx, exc.headers)


def _render(endpoint: str, status: int, error: str, description: str, ctx: StsRequest,
            headers: dict[str, str] | None) -> Response:
    if endpoint == "app_service":
        body: dict[str, Any] = {"statusCode": status, "message": description,
                                "correlationId": ctx.ids.correlation_id}
    else:
        body = {"error": error, "error_description": description}
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


def _secret_ok(ctx: StsRequest, value: str | None) -> bool:
    return value is not None and value == identity_header(ctx.sandbox.home_tenant.tenant_id)


def _token(ctx: StsRequest, *, selectors: tuple[str, ...], shape: str, api_version: bool = True) -> Response:
    if api_version and not ctx.get("api-version"):
        return identity_error(ctx, "api_version_missing")
    resource_uri = ctx.get("resource")
    if resource_uri is None:
        return identity_error(ctx, "resource_missing")
    identity = _select(ctx, selectors)
    if identity is None:
        return identity_error(ctx, "identity_not_found")
    ctx.notes["client_id"] = identity.client_id
    try:
        resource = ctx.sandbox.directory.resource(resource_uri)
    except KeyError:
        raise StsError(500011, resource=resource_uri, tenant=identity.tenant_id) from None
    token, lifetime = _mint(ctx, identity, resource, resource_uri)
    now = int(ctx.now)
    if shape == "imds":
        body = {"access_token": token, "client_id": identity.client_id, "expires_in": str(lifetime),
                "expires_on": str(now + lifetime), "ext_expires_in": str(lifetime), "not_before": str(now),
                "resource": resource_uri, "token_type": "Bearer"}
    else:
        body = {"access_token": token, "expires_on": str(now + lifetime), "resource": resource_uri,
                "token_type": "Bearer", "client_id": identity.client_id}
    return EntraJSON(body, headers=NO_STORE)


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


def _mint(ctx: StsRequest, identity: ManagedIdentity, resource: App, resource_uri: str) -> tuple[str, int]:
    lifetime = ctx.sandbox.settings.managed_identity_token_lifetime
    minter = Minter(ctx.sandbox, _issuer_origin(ctx), ctx.now)
    roles = sorted(ctx.sandbox.directory.roles(identity.client_id, resource.client_id))
    return minter.identity_token(identity, resource, resource_uri, roles=roles, lifetime=lifetime), lifetime


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


def identity_environment(source: str, base_url: str, tenant_id: str) -> dict[str, str]:
    """The environment that points clients at ``source`` served under ``base_url`` (the managed-identity
    origin, plus ``/{tenant}`` for a sandbox), for the sandbox whose home tenant is ``tenant_id``.

    IMDS is found through ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` (read by azure-identity, MSAL Python >= 1.32
    and msal-node), which also skips ``DefaultAzureCredential``'s probe; the others through the variables
    their hosts set."""
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
    raise ValueError(f"unknown managed-identity source {source!r}; known: {', '.join(IDENTITY_ENDPOINTS)}")
