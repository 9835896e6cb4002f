"""The token endpoint's grants, one function each, dispatched by ``grant_type`` (``GRANTS``).

Each grant validates its request (raising ``StsError`` with Entra's code) and returns the success
JSON. Wire details per grant: entra-wire.md §2.3-§2.8.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from typing import Any

import jwt

from ..state.directory import MSA_TENANT_ID, App, ManagedIdentity, User
from .clientauth import ClientAuth, authenticate, authenticate_identity, browser_origin
from .context import StsRequest
from .errors import StsError
from .ids import LAST_TIMESTAMP, entra_timestamp
from .tokens import Minter, parse_scopes

Grant = Callable[[StsRequest], dict[str, Any]]
DEVICE_CODE_URN = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER_URN = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def check_user(ctx: StsRequest, app: App, user: User) -> str:
    """Whether ``user`` may get tokens for ``app`` here; returns the token's ``tid``."""
    tenant = ctx.tenant
    seg = ctx.segment.lower()
    if user.disabled:
        raise StsError(50057)
    if user.locked:
        raise StsError(50053)
    if user.is_msa:
        if seg == "organizations" or (tenant is not None and not tenant.is_msa) or app.sign_in_audience not in (
                "AzureADandPersonalMicrosoftAccount", "PersonalMicrosoftAccount"):
            raise StsError(50020, username=user.username, idp="live.com",
                           tenant_name=tenant.display_name if tenant else seg, client_id=app.client_id,
                           app_name=app.display_name)
        return MSA_TENANT_ID
    if tenant is not None and tenant.tenant_id != user.tenant_id:
        raise StsError(50034, username=user.username, tenant=tenant.domains[0] if tenant.domains else seg)
    if seg == "consumers" or app.sign_in_audience == "PersonalMicrosoftAccount" or (
            app.sign_in_audience == "AzureADMyOrg" and user.tenant_id != app.tenant_id):
        raise StsError(50020, username=user.username, idp=f"https://sts.windows.net/{user.tenant_id}/",
                       tenant_name=seg, client_id=app.client_id, app_name=app.display_name)
    return user.tenant_id


def _minter(ctx: StsRequest) -> Minter:
    return Minter(ctx.sandbox, ctx.origin, ctx.now)


def _user_tokens(ctx: StsRequest, client: ClientAuth, user: User, scope: str | None, **kw: Any) -> dict[str, Any]:
    tid = check_user(ctx, client.app, user)
    scopes = parse_scopes(ctx.sandbox.directory, scope)
    return _minter(ctx).user_response(client.app, user, scopes, tid, azpacr=client.azpacr,
                                      want_client_info=ctx.get("client_info") == "1", **kw)


def client_credentials(ctx: StsRequest) -> dict[str, Any]:
    identity = _federated_identity(ctx)
    client = None if identity is not None else authenticate(ctx, confidential_only=True)
    scope = ctx.require("scope")
    # Entra checks the /.default form before it looks at the resource's permissions: an app-role
    # name (https://graph.microsoft.com/User.Read.All) is AADSTS1002012, not 70011.
    if not all(s == ".default" or s.endswith("/.default") for s in scope.split()):
        raise StsError(1002012, scope=scope)
    scopes = parse_scopes(ctx.sandbox.directory, scope)
    if scopes.oidc or not scopes.is_default:
        raise StsError(1002012, scope=scope)
    if identity is not None:
        assert scopes.resource is not None and scopes.resource_uri is not None
        return _minter(ctx).identity_response(identity, scopes.resource, scopes.resource_uri)
    assert client is not None
    tid = ctx.tenant.tenant_id if ctx.tenant is not None and not ctx.tenant.is_msa else client.app.tenant_id
    return _minter(ctx).app_response(client.app, scopes, tid, client.azpacr)


def _federated_identity(ctx: StsRequest) -> ManagedIdentity | None:
    """The user-assigned managed identity a ``client_credentials`` request names, authenticated by its federated
    credentials (workload identity with a user-assigned identity, as AKS's docs set it up); None when the client
    is an app. Its tokens are managed-identity tokens (``Minter.identity_token``)."""
    client_id = ctx.get("client_id")
    directory = ctx.sandbox.directory
    identity = directory.identities.get(client_id.lower()) if client_id else None
    if identity is None or identity.kind != "user" or client_id in directory.apps:
        return None
    tenant = ctx.tenant
    if tenant is not None and tenant.tenant_id != identity.tenant_id:
        raise StsError(700016, client_id=identity.client_id, tenant=tenant.tenant_id)
    authenticate_identity(ctx, identity)
    return identity


def password(ctx: StsRequest) -> dict[str, Any]:
    client = authenticate(ctx)
    username, secret = ctx.require("username"), ctx.require("password")
    scope = ctx.require("scope")
    user = ctx.sandbox.directory.user(username)
    if user is None:
        tenant = ctx.tenant
        raise StsError(50034, username=username, tenant=tenant.domains[0] if tenant and tenant.domains else ctx.segment)
    if user.is_msa:
        raise StsError(70000, parameter="grant_type",
                       detail="The resource owner password credential grant is not supported for Microsoft accounts.")
    if user.password != secret:
        raise StsError(50126)
    if user.password_expired:
        raise StsError(50055)
    return _user_tokens(ctx, client, user, scope, auth_time=ctx.now)


_ISSUED = re.compile(r"1\.AXoA[A-Za-z0-9_-]{80,200}")  # codes and refresh tokens: sandbox.py, signin.py


def issued_here(value: str) -> bool:
    """Whether ``value`` has the form of the codes and refresh tokens fakests issues (a vanished one is
    expired, AADSTS70008; anything else is malformed, AADSTS9002313)."""
    return _ISSUED.fullmatch(value) is not None


def cross_origin_rules(ctx: StsRequest, app_id: str | None, spa: bool) -> None:
    """Entra's browser rules for redeeming a code or refresh token (clients-2026.md §3): one issued to a
    ``spa`` redirect URI only cross-origin (AADSTS9002327 without ``Origin``) and only from the app's
    ``spa`` origins; any other only without ``Origin`` (AADSTS9002326, naming the origin)."""
    origin = browser_origin(ctx)
    if spa and origin is None:
        raise StsError(9002327)
    if origin is None:
        return
    app = ctx.sandbox.directory.apps.get(app_id or "")
    if not spa or app is None or not app.spa_origin_allowed(origin):
        raise StsError(9002326, origin=origin)


def authorization_code(ctx: StsRequest) -> dict[str, Any]:
    code = ctx.require("code")
    # The code's platform decides the rules before the client authenticates: a browser redeeming a web
    # app's code sends no secret, and must hear AADSTS9002326, not "secret missing".
    issued = ctx.sandbox.get_code(code)
    if issued is not None:
        cross_origin_rules(ctx, issued.client_id, issued.spa)
    client = authenticate(ctx, spa=issued is not None and issued.spa)
    grant, first = ctx.sandbox.redeem_code(code)
    if grant is None:
        if issued_here(code):  # one of ours that is gone (pruned once expired, or a store that lost it)
            raise StsError(70008)
        raise StsError(9002313, error="invalid_grant", detail="The authorization code is not valid.")
    if not first:
        raise StsError(54005)
    if grant.client_id != client.app.client_id:
        raise StsError(700005)
    if grant.expires_at <= ctx.now:
        raise StsError(70008)
    if ctx.get("redirect_uri") != grant.redirect_uri:
        raise StsError(500112, redirect_uri=ctx.get("redirect_uri") or "", expected=grant.redirect_uri)
    if grant.spa and grant.code_challenge is None:
        raise StsError(9002325)
    if grant.code_challenge is not None:
        verifier = ctx.get("code_verifier") or ""
        if grant.code_challenge_method == "S256":
            computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        else:
            computed = verifier
        if computed != grant.code_challenge:
            raise StsError(501481)
    user = ctx.sandbox.directory.user_by_oid(grant.user_oid)
    if user is None:
        raise StsError(70000, parameter="code", detail="The user of this code no longer exists.")
    return _user_tokens(ctx, client, user, ctx.get("scope") or " ".join(grant.scopes), nonce=grant.nonce,
                        auth_time=grant.auth_time, session_id=grant.session_id, spa=grant.spa)


def refresh_token(ctx: StsRequest) -> dict[str, Any]:
    token = ctx.require("refresh_token")
    grant = ctx.sandbox.get_refresh(token)
    if grant is not None:
        cross_origin_rules(ctx, grant.client_id, grant.spa)
    client = authenticate(ctx, spa=grant is not None and grant.spa)
    if grant is None:
        if issued_here(token):  # one of ours that is gone: expired, as Entra says of tokens it no longer has
            raise StsError(70008)
        raise StsError(9002313, error="invalid_grant", suberror="bad_token",
                       detail="The refresh token is malformed or not valid.")
    if grant.client_id != client.app.client_id:
        raise StsError(70000, parameter="refresh_token", detail="It was issued to a different client.")
    user = ctx.sandbox.directory.user_by_oid(grant.user_oid)
    if user is None or grant.revoked or user.tokens_valid_from > grant.issued_at:
        raise StsError(50173, issued=entra_timestamp(grant.issued_at),
                       valid_from=entra_timestamp(user.tokens_valid_from if user else ctx.now))
    if grant.expires_at <= ctx.now:
        if grant.spa:  # fixed lifetime, whatever the activity (msal-js#6765)
            raise StsError(700084, issued=entra_timestamp(grant.issued_at))
        raise StsError(700082, issued=entra_timestamp(grant.issued_at),
                       inactive=f"{int(ctx.now - grant.issued_at)} seconds")
    return _user_tokens(ctx, client, user, ctx.get("scope") or " ".join(grant.scopes), auth_time=grant.auth_time,
                        spa=grant.spa, refresh_expires_at=grant.expires_at if grant.spa else None)


def device_code(ctx: StsRequest) -> dict[str, Any]:
    code = ctx.get("device_code") or ctx.get("code")  # MSAL Python also sends ``code`` (§2.7)
    if code is None:
        raise StsError(900144, parameter="device_code")
    client = authenticate(ctx)
    sb = ctx.sandbox
    with sb.lock:  # one process; across workers the approval only moves forward and the claim is atomic
        grant = sb.get_device(code)
        if grant is None or grant.client_id != client.app.client_id:
            raise StsError(70018)
        if grant.expires_at <= ctx.now:
            raise StsError(70019)
        if grant.declined:
            raise StsError(70022)
        if grant.user_oid is None:
            sb.update_device(code, lambda g: setattr(g, "last_poll", ctx.now))
            raise StsError(70016)
        if not sb.claim_device(code):
            raise StsError(54005)
    user = sb.directory.user_by_oid(grant.user_oid)
    assert user is not None
    return _user_tokens(ctx, client, user, " ".join(grant.scopes), auth_time=ctx.now)


def on_behalf_of(ctx: StsRequest) -> dict[str, Any]:
    if ctx.get("requested_token_use") != "on_behalf_of":
        raise StsError(900144, parameter="requested_token_use")
    assertion = ctx.require("assertion")
    client = authenticate(ctx, confidential_only=True)
    try:
        kid = str(jwt.get_unverified_header(assertion).get("kid") or "")
    except jwt.PyJWTError:  # malformed: AADSTS50013 (entra-wire.md §2.8, §6)
        raise StsError(50013, reason="The assertion is not a well-formed JWT.") from None
    key = ctx.sandbox.keys.find(kid)
    if key is None:
        raise StsError(50013, reason="The key was not found.")
    try:
        claims = jwt.decode(assertion, key.public_key, algorithms=["RS256"],
                            options={"verify_exp": False, "verify_aud": False, "verify_iat": False,
                                     "verify_nbf": False})
    except jwt.PyJWTError:
        raise StsError(50013, reason="The signature did not match.") from None
    exp = _time_claim(claims, "exp") or 0.0
    if exp <= ctx.now:
        raise StsError(500133, now=entra_timestamp(ctx.now), exp=entra_timestamp(exp))
    if str(claims.get("aud")) not in client.app.resource_uris():
        raise StsError(50013, reason=f"The audience '{claims.get('aud')}' is not this application.")
    user = ctx.sandbox.directory.user_by_oid(str(claims.get("oid", "")))
    if user is None or "scp" not in claims:
        raise StsError(50013, reason="The assertion is not a user's delegated token.")
    return _user_tokens(ctx, client, user, ctx.require("scope"), auth_time=_time_claim(claims, "iat"))


def _time_claim(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim of an assertion (None when absent); AADSTS50013 when it is not a date."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= LAST_TIMESTAMP:
        raise StsError(50013, reason=f"The '{name}' claim is not a valid time.")
    return float(value)


GRANTS: dict[str, Grant] = {
    "client_credentials": client_credentials,
    "password": password,
    "authorization_code": authorization_code,
    "refresh_token": refresh_token,
    DEVICE_CODE_URN: device_code,
    "device_code": device_code,  # msal-node's short form (§11)
    JWT_BEARER_URN: on_behalf_of,
}
