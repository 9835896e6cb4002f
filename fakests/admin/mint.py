"""Tokens on demand, for testing resource servers (APIs that validate Entra tokens).

``mint_token(sandbox, origin, ...)`` signs an access token or id_token exactly as the token endpoint
would issue it (``tokens.Minter`` builds the claims), without any client flow, then applies
``claims`` overrides and a *flavor*: one of the ways a token can be wrong that a resource server
must refuse. The admin API (``POST /_fakests/sandboxes/{id}/tokens``) and ``fakests token`` both
call it. It has no side effects on the sandbox: no grant, no journal entry.

Flavors: ``valid``; ``expired`` (``exp`` an hour ago); ``not_yet_valid`` (``nbf`` and ``iat`` an hour
ahead); ``wrong_audience`` (``aud`` is ``WRONG_AUDIENCE``); ``wrong_issuer`` (``iss`` names
``WRONG_TENANT`` instead of the token's tenant); ``unknown_kid`` (signed by a key the JWKS does not
publish); ``bad_signature`` (a published ``kid``, but the signature bytes are corrupted).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping
from typing import Any

import jwt

from ..state import defaults
from ..state.directory import FIRST_PARTY_APP_IDS, App, Tenant, User
from ..state.errors import ConfigError
from ..state.keys import SigningKey, new_key_and_cert
from ..state.sandbox import Sandbox
from ..sts.tokens import Minter, Scopes

KINDS = ("access", "id")
FLAVORS = ("valid", "expired", "not_yet_valid", "wrong_audience", "wrong_issuer", "unknown_kid", "bad_signature")
WRONG_AUDIENCE = "api://fakests-wrong-audience"
WRONG_TENANT = "bad00000-0000-4000-8000-000000000bad"
SKEW = 3600  # how far in the past (expired) or future (not_yet_valid): beyond any validator's leeway

_unpublished: SigningKey | None = None
_unpublished_lock = threading.Lock()


def unpublished_key() -> SigningKey:
    """A signing key no JWKS publishes: made once per process (RSA key generation takes ~50 ms)."""
    global _unpublished
    with _unpublished_lock:
        if _unpublished is None:
            _unpublished = SigningKey(*new_key_and_cert("fakests unpublished key"))
        return _unpublished


def mint_token(sandbox: Sandbox, origin: str, *, kind: str = "access", claims: Mapping[str, Any] | None = None,
               audience: str | None = None, tenant_id: str | None = None, user: str | None = None,
               client_id: str | None = None, flavor: str = "valid", source: str = "token") -> dict[str, Any]:
    """A signed token and its parts: ``{"token", "claims", "header"}``.

    ``kind``: ``access`` (default) or ``id``. ``audience``: the resource of an access token (a client
    id or identifier URI of an app in the sandbox; default: the default directory's API, else the
    first app exposing an identifier URI, else Microsoft Graph); the token takes the resource's
    version (v1 or v2). An id_token's audience is its client. ``user``: a username; an access token
    with a user is delegated (``scp`` = every permission the resource exposes), without one it is an
    app-only token (``roles`` = every app role the resource exposes). An id_token always has a user
    (default: the tenant's first enabled user). ``client_id``: the app the token was issued to
    (default: the default directory's public client for user tokens or daemon for app tokens, else
    the first other app). ``tenant_id``: a GUID or domain of the sandbox (default: the user's tenant,
    else the home tenant). ``claims`` override the result; a ``None`` value removes that claim.
    ``flavor``: one of ``FLAVORS``, applied last. Bad options raise ``ConfigError(source, key, reason)``.
    """
    if kind not in KINDS:
        raise ConfigError(source, "kind", f"must be one of {', '.join(KINDS)}; got {kind!r}")
    if flavor not in FLAVORS:
        raise ConfigError(source, "flavor", f"must be one of {', '.join(FLAVORS)}; got {flavor!r}")
    overrides = dict(claims or {})
    try:
        json.dumps(overrides, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, "claims", f"must be plain JSON values: {exc}") from None
    directory = sandbox.directory
    now = sandbox.now()
    minter = Minter(sandbox, origin, now)
    with sandbox.lock:
        person = _user(sandbox, user, source)
        tenant = _tenant(sandbox, tenant_id, person, source)
        if kind == "id":
            if audience is not None:
                raise ConfigError(source, "audience", "an id_token's audience is its client: use client_id")
            person = person or _first_user(sandbox, tenant, source)
            app = _client(sandbox, client_id, public=True, source=source)
            body = minter.id_token_claims(person, app, tenant.tenant_id)
        else:
            resource, named = _resource(sandbox, audience, source)
            app = _client(sandbox, client_id, public=person is not None, source=source)
            scopes = Scopes((), resource, named, (), frozenset())
            if person is not None:
                roles = sorted(directory.roles(person.oid, resource.client_id))
                body = minter.access_token_claims(app, scopes, tenant.tenant_id, user=person,
                                                  granted=list(resource.scopes), roles=roles)
            else:
                body = minter.access_token_claims(app, scopes, tenant.tenant_id, roles=list(resource.app_roles))
    v1 = body.get("ver") == "1.0"
    for name, value in overrides.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    _apply_flavor(body, flavor, int(now), tenant.tenant_id)
    key = unpublished_key() if flavor == "unknown_kid" else sandbox.keys.active
    try:
        token = sandbox.keys.sign(body, v1=v1, key=key, check=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, "claims", str(exc)) from None
    if flavor == "bad_signature":
        token = corrupt_signature(token)
    return {"token": token, "claims": body, "header": jwt.get_unverified_header(token)}


def corrupt_signature(token: str) -> str:
    """``token`` with every bit of its signature flipped: same length, still base64url, never valid."""
    head, payload, signature = token.split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    flipped = base64.urlsafe_b64encode(bytes(b ^ 0xFF for b in raw)).rstrip(b"=").decode()
    return f"{head}.{payload}.{flipped}"


def _apply_flavor(claims: dict[str, Any], flavor: str, now: int, tenant_id: str) -> None:
    iat, exp = claims.get("iat"), claims.get("exp")
    lifetime = exp - iat if isinstance(iat, int) and isinstance(exp, int) else 3600
    if flavor == "expired":
        claims.update(exp=now - SKEW, iat=now - SKEW - lifetime, nbf=now - SKEW - lifetime)
    elif flavor == "not_yet_valid":
        claims.update(iat=now + SKEW, nbf=now + SKEW, exp=now + SKEW + lifetime)
    elif flavor == "wrong_audience":
        claims["aud"] = WRONG_AUDIENCE
    elif flavor == "wrong_issuer":
        issuer = str(claims.get("iss", ""))
        claims["iss"] = issuer.replace(tenant_id, WRONG_TENANT) if tenant_id in issuer else \
            f"https://sts.windows.net/{WRONG_TENANT}/"


def _user(sandbox: Sandbox, username: str | None, source: str) -> User | None:
    if username is None:
        return None
    found = sandbox.directory.user(username)
    if found is None:
        raise ConfigError(source, "user", f"no user {username!r} in sandbox {sandbox.sandbox_id!r}")
    return found


def _tenant(sandbox: Sandbox, tenant_id: str | None, user: User | None, source: str) -> Tenant:
    if tenant_id is None:
        return sandbox.directory.tenants.get(user.tenant_id, sandbox.home_tenant) if user else sandbox.home_tenant
    found = sandbox.directory.tenant_by_segment(tenant_id)
    if found is None:
        known = ", ".join(sandbox.directory.tenants)
        raise ConfigError(source, "tenant_id", f"no tenant {tenant_id!r} in sandbox {sandbox.sandbox_id!r}; "
                                               f"known: {known}")
    return found


def _first_user(sandbox: Sandbox, tenant: Tenant, source: str) -> User:
    users = [u for u in sandbox.directory.users.values() if u.tenant_id == tenant.tenant_id and not u.disabled]
    if not users:
        raise ConfigError(source, "user", f"an id_token needs a user, and tenant {tenant.tenant_id} has none")
    return users[0]


def _resource(sandbox: Sandbox, audience: str | None, source: str) -> tuple[App, str]:
    """The resource app and the name it goes by (a v1 token's ``aud`` is the name as given)."""
    directory = sandbox.directory
    if audience is not None:
        try:
            app = directory.resource(audience)
        except KeyError:
            raise ConfigError(source, "audience", f"no app has the client id or identifier URI {audience!r} "
                                                  "(register it, or override the aud claim)") from None
        return app, audience.rstrip("/")
    default = directory.apps.get(sandbox.id_map.get(defaults.API_ID, defaults.API_ID))
    app = default or next((a for a in directory.apps.values()
                           if a.identifier_uris and a.client_id not in FIRST_PARTY_APP_IDS),
                          None) or directory.resource("https://graph.microsoft.com")
    return app, (app.identifier_uris or [app.client_id])[0]


def _client(sandbox: Sandbox, client_id: str | None, *, public: bool, source: str) -> App:
    directory = sandbox.directory
    if client_id is not None:
        app = directory.apps.get(client_id)
        if app is None:
            raise ConfigError(source, "client_id", f"no app {client_id!r} in sandbox {sandbox.sandbox_id!r}")
        return app
    template = defaults.PUBLIC_ID if public else defaults.DAEMON_ID
    app = directory.apps.get(sandbox.id_map.get(template, template))
    if app is None:
        app = next((a for a in directory.apps.values()
                    if a.client_id not in FIRST_PARTY_APP_IDS and a.public_client == public),
                   None) or next(iter(directory.apps.values()))
    return app
