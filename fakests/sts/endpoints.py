"""STS wire handlers (discovery, keys, instance discovery, user realm, token, device code).

Thin: each reads its parameters from ``StsRequest`` and calls the directory, grants or minter.
The browser endpoints (authorize, device login, logout) are in ``signin.py``.
"""

from __future__ import annotations

import secrets
import string
from typing import Any
from urllib.parse import urlparse

from starlette.responses import HTMLResponse, Response

from ..state.directory import MSA_TENANT_ID, SPECIAL_TENANTS
from ..state.sandbox import DeviceGrant
from ..state.settings import PUBLIC_CLOUD_HOSTS
from . import pages
from .clientauth import find_app
from .context import StsRequest
from .errors import NO_FRAMING, NO_STORE, EntraJSON, StsError
from .grants import GRANTS
from .tokens import parse_scopes

# Discovery documents are cacheable for a day (entra-wire.md §1.3).
DISCOVERY_HEADERS = {"Cache-Control": "max-age=86400, private", "Access-Control-Allow-Origin": "*",
                     "Access-Control-Allow-Methods": "GET, OPTIONS"}


def _tenant_path(ctx: StsRequest) -> tuple[str, str]:
    """(path segment for endpoint URLs, issuer tenant) per entra-wire.md §1.3: a domain becomes the
    GUID; ``common``/``organizations`` keep their segment and use the ``{tenantid}`` template;
    ``consumers`` keeps its segment with the concrete MSA issuer. Unknown tenants: AADSTS90002."""
    seg = ctx.segment.lower()
    if seg in ("common", "organizations"):
        return seg, "{tenantid}"
    if seg == "consumers":
        return seg, MSA_TENANT_ID
    if ctx.tenant is None:
        raise StsError(90002, error="invalid_tenant", tenant=ctx.segment)
    return ctx.tenant.tenant_id, ctx.tenant.tenant_id


async def openid_configuration(ctx: StsRequest) -> Response:
    """``/{tenant}/v2.0/.well-known/openid-configuration``, fields in Entra's order (§1.3)."""
    path, issuer_tid = _tenant_path(ctx)
    base = f"{ctx.origin}/{path}"
    region = None if ctx.segment.lower() in SPECIAL_TENANTS or ctx.tenant is None else ctx.tenant.region_scope
    doc: dict[str, Any] = {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{ctx.origin}/{issuer_tid}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                             "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
                             "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": f"{base}/kerberos",
        "tenant_region_scope": region,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }
    return EntraJSON(doc, headers=DISCOVERY_HEADERS)


async def openid_configuration_v1(ctx: StsRequest) -> Response:
    """``/{tenant}/.well-known/openid-configuration``: v1 endpoints, ``sts.windows.net`` issuer."""
    path, issuer_tid = _tenant_path(ctx)
    base = f"{ctx.origin}/{path}"
    doc = {
        "token_endpoint": f"{base}/oauth2/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{ctx.origin}/{path}/discovery/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "scopes_supported": ["openid"],
        "issuer": f"https://sts.windows.net/{issuer_tid}/",
        "microsoft_multi_refresh_token": True,
        "authorization_endpoint": f"{base}/oauth2/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/oauth2/logout",
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                             "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
                             "amr", "nonce", "email", "given_name", "family_name", "nickname"],
        "check_session_iframe": f"{base}/oauth2/checksession",
        "userinfo_endpoint": f"{base}/openid/userinfo",
        "kerberos_endpoint": f"{base}/kerberos",
        "tenant_region_scope": None if ctx.tenant is None else ctx.tenant.region_scope,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }
    return EntraJSON(doc, headers=DISCOVERY_HEADERS)


async def jwks(ctx: StsRequest) -> Response:
    """``/{tenant}/discovery/v2.0/keys``: every published key, with Entra's per-key ``issuer``."""
    _, issuer_tid = _tenant_path(ctx)
    return EntraJSON(ctx.sandbox.keys.jwks(ctx.now, f"{ctx.origin}/{issuer_tid}/v2.0"), headers=DISCOVERY_HEADERS)


async def jwks_v1(ctx: StsRequest) -> Response:
    _tenant_path(ctx)
    return EntraJSON(ctx.sandbox.keys.jwks(ctx.now), headers=DISCOVERY_HEADERS)


async def instance_discovery(ctx: StsRequest) -> Response:
    """``/common/discovery/instance``: metadata for fakests' own host (§1.5). MSAL and msal-node
    call it for hosts they do not know unless told not to; an unknown host gets AADSTS50049."""
    endpoint = ctx.get("authorization_endpoint")
    own = urlparse(ctx.origin)
    aliases = sorted({own.netloc, own.hostname or own.netloc})
    preferred_cache = own.netloc
    impersonated = ctx.sandbox.settings.impersonate
    if impersonated:  # Entra's own alias group for the hosts fakests answers as (entra-wire.md §1.5)
        public = own.hostname in PUBLIC_CLOUD_HOSTS
        aliases = [*impersonated, *(["sts.windows.net"] if public else [])]
        preferred_cache = "login.windows.net" if public else own.netloc
    if endpoint:
        try:
            target = urlparse(endpoint)
        except ValueError:  # not a URL (e.g. "https://[x"): not an instance we know
            raise StsError(50049, error="invalid_instance") from None
        if target.scheme != "https" or (target.netloc not in aliases and target.hostname not in aliases):
            raise StsError(50049, error="invalid_instance")
        tenant = target.path.strip("/").split("/")[0] or "common"
        v1 = "/oauth2/v2.0/" not in target.path
        suffix = ".well-known/openid-configuration" if v1 else "v2.0/.well-known/openid-configuration"
        discovery = f"{ctx.origin}/{tenant}/{suffix}"
    else:
        discovery = f"{ctx.origin}/common/v2.0/.well-known/openid-configuration"
    body = {
        "tenant_discovery_endpoint": discovery,
        "api-version": ctx.get("api-version") or "1.1",
        "metadata": [{"preferred_network": own.netloc, "preferred_cache": preferred_cache, "aliases": aliases}],
    }
    return EntraJSON(body, headers=DISCOVERY_HEADERS)


async def user_realm(ctx: StsRequest) -> Response:
    """``/common/userrealm/{username}``: Managed for known domains, Unknown otherwise (§1.6)."""
    username = ctx.request.path_params.get("username", "")
    domain = username.rpartition("@")[2]
    sb = ctx.sandbox
    known = sb.directory.tenant_by_segment(domain) if domain else None
    if known is not None and not known.is_msa:
        body: dict[str, Any] = {"ver": "1.0", "account_type": "Managed", "domain_name": domain,
                                "cloud_instance_name": "microsoftonline.com",
                                "cloud_audience_urn": "urn:federation:MicrosoftOnline"}
    else:
        body = {"ver": "1.0", "account_type": "Unknown", "cloud_instance_name": "microsoftonline.com"}
    return EntraJSON(body, headers=NO_STORE)


async def token(ctx: StsRequest) -> Response:
    """``POST /{tenant}/oauth2/v2.0/token``: all grants (``grants.GRANTS``)."""
    if ctx.request.method != "POST":
        raise StsError(900561, methods="POST", method=ctx.request.method)
    if ctx.tenant is None and ctx.segment.lower() not in SPECIAL_TENANTS:
        raise StsError(90002, tenant=ctx.segment)
    grant_type = ctx.require("grant_type")
    grant = GRANTS.get(grant_type)
    if grant is None:
        raise StsError(70003, grant_type=grant_type)
    return EntraJSON(grant(ctx), headers=NO_STORE)


_USER_CODE_ALPHABET = string.ascii_uppercase + string.digits


async def devicecode(ctx: StsRequest) -> Response:
    """``POST /{tenant}/oauth2/v2.0/devicecode`` (§1.8). ``verification_uri`` is on fakests' own
    origin so a test (or person) can approve the code; Entra's microsoft.com/devicelogin cannot."""
    if ctx.request.method != "POST":
        raise StsError(900561, methods="POST", method=ctx.request.method)
    if ctx.tenant is None and ctx.segment.lower() not in SPECIAL_TENANTS:
        raise StsError(90002, tenant=ctx.segment)
    app = find_app(ctx, ctx.require("client_id"))
    if not app.public_client:
        raise StsError(7000218)
    scope = ctx.require("scope")
    parse_scopes(ctx.sandbox.directory, scope)
    settings = ctx.sandbox.settings
    user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(9))
    device_code = "DAQABIQEAAAB" + secrets.token_urlsafe(96)
    grant = DeviceGrant(app.client_id, ctx.segment, scope.split(), user_code,
                        ctx.now + settings.device_code_lifetime, settings.device_code_interval)
    ctx.sandbox.put_device(device_code, grant)
    uri = f"{ctx.origin}/common/oauth2/deviceauth"
    return EntraJSON({
        "user_code": user_code, "device_code": device_code, "verification_uri": uri,
        "expires_in": settings.device_code_lifetime, "interval": settings.device_code_interval,
        "message": f"To sign in, use a web browser to open the page {uri} and enter the code {user_code} "
                   "to authenticate.",
    }, headers=NO_STORE)


async def error_lookup(ctx: StsRequest) -> Response:
    """``/error?code=N``: the target of every ``error_uri``, the catalog's text for that code."""
    from .catalog import CATALOG

    raw = ctx.get("code") or ""
    entry = CATALOG.get(int(raw)) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None
    if entry is None:
        return HTMLResponse(pages.message("Error code lookup", f"No information for code '{raw}'."), status_code=404,
                            headers=NO_FRAMING)
    return HTMLResponse(pages.message(f"AADSTS{entry.code}: {entry.name}", entry.message), headers=NO_FRAMING)
