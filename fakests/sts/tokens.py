"""What goes into tokens, and the success response of the token endpoint.

Claims follow entra-wire.md §4: v2 id_tokens (``iss`` on fakests' own origin, pairwise ``sub``,
``nonce`` echoed, ``idp`` for MSA users); access tokens in the resource's version (v1: ``iss``
``https://sts.windows.net/{tid}/``, ``appid``, ``upn``; v2: ``azp``, ``azpacr``) with ``scp`` for users
or ``roles`` for apps; ``client_info`` = base64url ``{"uid","utid"}``; response fields per §3.1.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import jwt

from ..state.directory import GRAPH_APP_ID, MSA_TENANT_ID, App, Directory, ManagedIdentity, User, b64url
from ..state.guids import random_bytes
from ..state.sandbox import RefreshGrant, Sandbox
from .errors import StsError

OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
# A single-page app's refresh tokens live 24 hours from sign-in, not sliding: a rotated token keeps
# the first one's expiry (entra-docs refresh-tokens.md; AADSTS700084 says "1.00:00:00").
SPA_REFRESH_LIFETIME = 24 * 3600


@dataclass(frozen=True)
class Scopes:
    """A parsed ``scope`` parameter: one resource (or none), its permissions and the OIDC scopes."""

    raw: tuple[str, ...]
    resource: App | None
    resource_uri: str | None  # as the client named it (v1 ``aud`` uses this)
    permissions: tuple[str, ...]
    oidc: frozenset[str]

    @property
    def is_default(self) -> bool:
        return self.permissions == (".default",)


def own_claims(sandbox: Sandbox, token: str) -> dict[str, Any] | None:
    """The claims of a token this sandbox signed (signature checked against its keys; expiry and audience
    not: a logout hint may be an old id_token), or None for anything else."""
    try:
        key = sandbox.keys.find(str(jwt.get_unverified_header(token).get("kid") or ""))
        if key is None:
            return None
        claims: dict[str, Any] = jwt.decode(token, key.public_key, algorithms=["RS256"],
                                            options={"verify_exp": False, "verify_aud": False, "verify_iat": False,
                                                     "verify_nbf": False})
    except jwt.PyJWTError:
        return None
    return claims


def parse_scopes(directory: Directory, scope: str | None, *, default_graph: bool = True) -> Scopes:
    """Split ``scope`` into OIDC scopes and one resource's permissions (entra-wire.md §2.9).

    Bare names (``User.Read``) mean Microsoft Graph. Two resources -> AADSTS700022; an unknown
    resource -> AADSTS500011; a permission the resource does not expose -> AADSTS70011.
    """
    raw = tuple(scope.split()) if scope else ()
    oidc = frozenset(s for s in raw if s in OIDC_SCOPES)
    uri: str | None = None
    perms: list[str] = []
    for s in raw:
        if s in OIDC_SCOPES:
            continue
        if "/" in s.replace("://", ""):
            res, _, perm = s.rpartition("/")
        else:
            res, perm = "https://graph.microsoft.com", s
        if uri is not None and res.lower() != uri.lower():
            raise StsError(700022, scope=scope)
        uri = res
        perms.append(perm)
    if uri is None:
        if not default_graph:
            return Scopes(raw, None, None, (), oidc)
        uri = "https://graph.microsoft.com"
    try:
        resource = directory.resource(uri)
    except KeyError:
        raise StsError(500011, resource=uri, tenant=next(iter(directory.tenants))) from None
    for p in perms:
        if p != ".default" and p not in resource.scopes:
            raise StsError(70011, scope=f"{uri}/{p}")
    return Scopes(raw, resource, uri, tuple(perms), oidc)


def _pairwise(oid: str, client_id: str) -> str:
    return b64url(hashlib.sha256(f"{oid}|{client_id}".encode()).digest())[:43]


def _opaque(n: int = 24) -> str:
    return b64url(random_bytes(n))  # claim values (aio, rh, uti), not secrets: no system call per claim


def client_info(user: User) -> str:
    """base64url ``{"uid": oid, "utid": home tenant}``, padding stripped (entra-wire.md §3.2)."""
    data = json.dumps({"uid": user.oid, "utid": user.tenant_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Minter:
    """Signs the tokens of one response with the sandbox's active key, on the sandbox clock."""

    def __init__(self, sandbox: Sandbox, origin: str, now: float) -> None:
        self.sandbox = sandbox
        self.origin = origin
        self.now = int(now)
        self.settings = sandbox.settings

    def issuer(self, tenant_id: str) -> str:
        return f"{self.origin}/{tenant_id}/v2.0"

    def _times(self, lifetime: int) -> dict[str, int]:
        return {"iat": self.now, "nbf": self.now, "exp": self.now + lifetime}

    def id_token(self, user: User, app: App, tenant_id: str, *, nonce: str | None = None,
                 auth_time: float | None = None, session_id: str | None = None) -> str:
        return self.sandbox.keys.sign(self.id_token_claims(user, app, tenant_id, nonce=nonce, auth_time=auth_time,
                                                           session_id=session_id))

    def id_token_claims(self, user: User, app: App, tenant_id: str, *, nonce: str | None = None,
                        auth_time: float | None = None, session_id: str | None = None) -> dict[str, Any]:
        """The claims of a v2 id_token for ``user`` signing in to ``app`` (``id_token`` signs them)."""
        claims: dict[str, Any] = {
            "aud": app.client_id, "iss": self.issuer(tenant_id), **self._times(self.settings.id_token_lifetime),
            "aio": _opaque(), "name": user.display_name, "oid": user.oid,
            "preferred_username": user.username, "rh": f"0.A{_opaque(18)}.", "sub": _pairwise(user.oid, app.client_id),
            "tid": tenant_id, "uti": _opaque(16), "ver": "2.0",
        }
        if user.is_msa:
            claims["idp"] = f"https://sts.windows.net/{MSA_TENANT_ID}/"
        if nonce is not None:
            claims["nonce"] = nonce
        if auth_time is not None:
            claims["auth_time"] = int(auth_time)
        if session_id:
            claims["sid"] = session_id
        return claims

    def access_token(self, app: App, scopes: Scopes, tenant_id: str, *, user: User | None = None,
                     granted: list[str] | None = None, roles: list[str] | None = None,
                     azpacr: str = "1", amr: list[str] | None = None) -> str:
        claims = self.access_token_claims(app, scopes, tenant_id, user=user, granted=granted, roles=roles,
                                          azpacr=azpacr, amr=amr)
        return self.sandbox.keys.sign(claims, v1=claims["ver"] == "1.0")

    def access_token_claims(self, app: App, scopes: Scopes, tenant_id: str, *, user: User | None = None,
                            granted: list[str] | None = None, roles: list[str] | None = None,
                            azpacr: str = "1", amr: list[str] | None = None) -> dict[str, Any]:
        """The claims of an access token for ``scopes.resource`` in the resource's token version: for
        ``user`` (delegated, ``scp``) or for ``app`` itself (``roles``, ``idtyp: app``)."""
        resource = scopes.resource
        assert resource is not None
        v1 = resource.access_token_version == 1
        subject_oid = user.oid if user else app.object_id
        claims: dict[str, Any] = {
            "aud": (scopes.resource_uri or resource.client_id) if v1 else resource.client_id,
            "iss": f"https://sts.windows.net/{tenant_id}/" if v1 else self.issuer(tenant_id),
            **self._times(self.settings.access_token_lifetime), "aio": _opaque(),
        }
        if v1:
            claims |= {"appid": app.client_id, "appidacr": azpacr}
        else:
            claims |= {"azp": app.client_id, "azpacr": azpacr}
        if user is not None:
            claims |= {"name": user.display_name, "oid": user.oid, "preferred_username": user.username}
            if v1:
                claims |= {"acr": "1", "amr": amr or ["pwd"], "unique_name": user.username, "upn": user.username,
                           "given_name": user.given_name, "family_name": user.family_name}
            if granted:
                claims["scp"] = " ".join(granted)
        else:
            claims |= {"oid": subject_oid, "idtyp": "app"}
        if roles:
            claims["roles"] = sorted(roles)
        claims |= {"rh": f"0.A{_opaque(18)}.",
                   "sub": _pairwise(subject_oid, resource.client_id) if user else subject_oid,
                   "tid": tenant_id, "uti": _opaque(16), "ver": "1.0" if v1 else "2.0"}
        return claims

    def identity_token(self, identity: ManagedIdentity, resource: App, resource_uri: str, *, roles: list[str],
                       lifetime: int, on_azure: bool = True) -> str:
        """An access token for a managed identity, with the claims Entra puts in them: ``idtyp`` app,
        ``appid``/``azp`` the identity's client id, ``appidacr``/``azpacr`` 2 (a credential Azure holds),
        ``oid`` and ``sub`` the principal id, ``xms_mirid`` the identity's ARM id (the resource's, when
        system-assigned), ``xms_az_rid`` the resource it ran on for a user-assigned one, ``idp`` the tenant
        issuer (v1). ``aud`` as for app tokens: v1 the resource as the client named it, v2 its client id."""
        tenant_id = identity.tenant_id
        v1 = resource.access_token_version == 1
        v1_issuer = f"https://sts.windows.net/{tenant_id}/"
        claims: dict[str, Any] = {
            "aud": resource_uri if v1 else resource.client_id,
            "iss": v1_issuer if v1 else self.issuer(tenant_id),
            "iat": self.now, "nbf": self.now, "exp": self.now + lifetime, "aio": _opaque(),
        }
        if v1:
            claims |= {"appid": identity.client_id, "appidacr": "2", "idp": v1_issuer}
        else:
            claims |= {"azp": identity.client_id, "azpacr": "2"}
        claims |= {"idtyp": "app", "oid": identity.object_id, "rh": f"0.A{_opaque(18)}."}
        if roles:
            claims["roles"] = roles
        claims |= {"sub": identity.object_id, "tid": tenant_id, "uti": _opaque(16), "ver": "1.0" if v1 else "2.0",
                   "xms_mirid": identity.resource_id}
        hosted_on = self.sandbox.directory.hosted_on
        if identity.kind == "user" and hosted_on and on_azure:
            claims["xms_az_rid"] = hosted_on
        return self.sandbox.keys.sign(claims, v1=v1)

    def identity_response(self, identity: ManagedIdentity, resource: App, resource_uri: str) -> dict[str, Any]:
        """client_credentials for a user-assigned identity that exchanged a federated assertion: the shape of
        ``app_response``, a managed-identity token (not run on an Azure resource: no ``xms_az_rid``)."""
        roles = sorted(self.sandbox.directory.roles(identity.client_id, resource.client_id))
        life = self.settings.access_token_lifetime
        token = self.identity_token(identity, resource, resource_uri, roles=roles, lifetime=life, on_azure=False)
        return {"token_type": "Bearer", "expires_in": life, "ext_expires_in": life, "access_token": token}

    def app_response(self, app: App, scopes: Scopes, tenant_id: str, azpacr: str) -> dict[str, Any]:
        """client_credentials: no scope, no refresh token, no id_token (entra-wire.md §2.5, §3.1)."""
        assert scopes.resource is not None
        roles = sorted(self.sandbox.directory.roles(app.client_id, scopes.resource.client_id))
        life = self.settings.access_token_lifetime
        return {"token_type": "Bearer", "expires_in": life, "ext_expires_in": life,
                "access_token": self.access_token(app, scopes, tenant_id, roles=roles, azpacr=azpacr)}

    def user_response(self, app: App, user: User, scopes: Scopes, tenant_id: str, *, azpacr: str,
                      want_client_info: bool, nonce: str | None = None, auth_time: float | None = None,
                      session_id: str | None = None, amr: list[str] | None = None, spa: bool = False,
                      refresh_expires_at: float | None = None) -> dict[str, Any]:
        """Tokens for a user: access token, id_token if ``openid``, refresh token if
        ``offline_access``, ``client_info`` if asked; ``scope`` echoes what was asked (less
        ``offline_access``) plus the granted permissions, so MSAL's cache finds the token again.

        ``spa``: the refresh token is a single-page app's, with Entra's fixed lifetime
        (``SPA_REFRESH_LIFETIME`` from first issue; ``refresh_expires_at`` carries it over a rotation)
        and ``refresh_token_expires_in``, which msal-common stores as the token's expiry."""
        granted = granted_scopes(self.sandbox.directory, app, user, scopes)
        assert scopes.resource is not None
        life = self.settings.access_token_lifetime
        echoed = [s for s in scopes.raw if s != "offline_access"]
        qualified = [p if scopes.resource.client_id == GRAPH_APP_ID and "/" not in p else f"{scopes.resource_uri}/{p}"
                     for p in granted if p not in OIDC_SCOPES]
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(dict.fromkeys([*echoed, *qualified])),
            "expires_in": life, "ext_expires_in": life,
            "access_token": self.access_token(app, scopes, tenant_id, user=user, granted=granted,
                                              roles=sorted(self.sandbox.directory.roles(user.oid,
                                                                                        scopes.resource.client_id)),
                                              azpacr=azpacr, amr=amr),
        }
        if "offline_access" in scopes.oidc:
            if spa:
                expires_at = refresh_expires_at if refresh_expires_at is not None else self.now + SPA_REFRESH_LIFETIME
            else:
                expires_at = self.now + self.settings.refresh_token_lifetime
            body["refresh_token"] = self.sandbox.new_refresh_token(RefreshGrant(
                app.client_id, user.oid, tenant_id, list(scopes.raw), self.now, expires_at, auth_time or self.now,
                spa=spa))
            if spa:
                body["refresh_token_expires_in"] = max(0, int(expires_at - self.now))
        if "openid" in scopes.oidc:
            body["id_token"] = self.id_token(user, app, tenant_id, nonce=nonce, auth_time=auth_time,
                                             session_id=session_id)
        if want_client_info:
            body["client_info"] = client_info(user)
        return body


def granted_scopes(directory: Directory, app: App, user: User, scopes: Scopes) -> list[str]:
    """The delegated permissions the token carries; AADSTS65001 if any asked for is not consented."""
    assert scopes.resource is not None
    consented = directory.consented(user, app.client_id, scopes.resource.client_id)
    if scopes.is_default:
        return sorted(consented - OIDC_SCOPES) or sorted(consented)
    wanted = list(scopes.permissions)
    if not wanted:  # only OIDC scopes: Entra issues a Graph token for the profile
        return [s for s in ("User.Read",) if s in consented] + sorted(scopes.oidc - {"offline_access"})
    missing = [p for p in wanted if p not in consented]
    if missing:
        raise StsError(65001, client_id=app.client_id, app_name=app.display_name)
    return wanted
