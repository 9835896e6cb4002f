"""Client authentication at the token endpoint: secrets, certificate assertions, public clients.

Entra's rules (entra-wire.md §2.1, §2.2, §11): a secret in the body or in HTTP Basic; a
``client_assertion`` JWT signed by a registered certificate, found by ``x5t`` (SHA-1) or ``x5t#S256``,
padded or not, RS256 or PS256, float ``exp``/``iat``, ``nbf`` optional, a few seconds of leeway
(msal-node rounds ``iat``); ``aud`` the tenant's token endpoint; ``iss`` == ``sub`` == client_id.

An assertion whose ``iss`` and ``sub`` are both something other than the client is an external token
(workload identity federation: a Kubernetes service-account token, a GitHub Actions token): it is checked
against the app's federated identity credentials (``verify_federated``).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import jwt

from ..state import kubernetes
from ..state.directory import App, Certificate, FederatedCredential, ManagedIdentity
from .context import StsRequest
from .errors import StsError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LEEWAY = 5.0
_TOKEN_PATH = re.compile(r"^/([^/]+)/oauth2/(?:v2\.0/)?token/?$", re.IGNORECASE)


@dataclass(frozen=True)
class ClientAuth:
    """Who the client is and how it proved it (``azpacr``: 0 public, 1 secret, 2 certificate or federated
    assertion: "2: a client certificate (or private key JWT) was used", which a federated assertion is)."""

    app: App
    method: Literal["none", "secret", "certificate", "federated"]

    @property
    def azpacr(self) -> str:
        return {"none": "0", "secret": "1", "certificate": "2", "federated": "2"}[self.method]


def _basic(ctx: StsRequest) -> tuple[str, str] | None:
    header = ctx.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise StsError(9002313, detail="The Authorization header is not valid Basic credentials.") from None
    return unquote(user), unquote(password)


def find_app(ctx: StsRequest, client_id: str) -> App:
    """The app registration, checked against the tenant the request names (AADSTS700016)."""
    app = ctx.sandbox.directory.apps.get(client_id)
    tenant = ctx.tenant
    if app is None or (tenant is not None and app.sign_in_audience == "AzureADMyOrg"
                       and tenant.tenant_id != app.tenant_id):
        raise StsError(700016, client_id=client_id, tenant=tenant.tenant_id if tenant else ctx.segment)
    if not app.enabled:
        raise StsError(7000112, client_id=app.client_id, app_name=app.display_name)
    ctx.notes["client_id"] = app.client_id
    return app


def browser_origin(ctx: StsRequest) -> str | None:
    """The ``Origin`` a browser sent with a cross-origin request (None from a server-side client)."""
    return ctx.headers.get("origin") or None


def authenticate(ctx: StsRequest, *, confidential_only: bool = False, spa: bool = False) -> ClientAuth:
    """Identify and authenticate the client of a token request.

    ``spa``: the grant was issued to a ``spa`` redirect URI, so the client is public for this request,
    whatever else the registration holds (Entra answers a secret there with AADSTS700025). With an
    ``Origin`` header, client credentials are refused in every flow (AADSTS9002326): "the Microsoft
    identity platform ... prevents the use of client credentials in all flows in the presence of an
    Origin header" (entra-docs v2-oauth2-auth-code-flow.md)."""
    basic = _basic(ctx)
    secret = ctx.get("client_secret") or (basic[1] if basic else None)
    assertion = ctx.get("client_assertion")
    client_id = ctx.get("client_id") or (basic[0] if basic else None)
    if client_id is None and assertion:
        try:
            client_id = str(jwt.decode(assertion, options={"verify_signature": False}).get("sub") or "") or None
        except jwt.PyJWTError:
            client_id = None
    if client_id is None:
        raise StsError(900144, parameter="client_id")
    app = find_app(ctx, client_id)
    origin = browser_origin(ctx)
    if origin is not None and (secret or assertion):
        raise StsError(9002326, origin=origin)

    if app.public_client or spa:
        if secret or assertion:
            raise StsError(700025)
        if confidential_only:
            raise StsError(7000218)
        return ClientAuth(app, "none")
    if assertion:
        if ctx.get("client_assertion_type") != ASSERTION_TYPE:
            raise StsError(900144, parameter="client_assertion_type")
        if _federated(assertion, app.client_id):
            verify_federated(ctx, app.federated_credentials, assertion)
            return ClientAuth(app, "federated")
        _verify_assertion(ctx, app, assertion)
        return ClientAuth(app, "certificate")
    if secret:
        matches = [s for s in app.secrets if s.value == secret]
        if not matches:
            raise StsError(7000215, client_id=app.client_id)
        if all(s.expires_at is not None and s.expires_at <= ctx.now for s in matches):
            raise StsError(7000222, client_id=app.client_id)
        return ClientAuth(app, "secret")
    raise StsError(7000218)


def _thumbprint_match(cert: Certificate, header: dict[str, object]) -> bool:
    s256 = str(header.get("x5t#S256") or "").rstrip("=")
    sha1 = str(header.get("x5t") or "").rstrip("=")
    return (bool(s256) and s256 == cert.x5t_s256) or (bool(sha1) and sha1 == cert.x5t)


def _verify_assertion(ctx: StsRequest, app: App, assertion: str) -> None:
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise StsError(700027, reason=f"The assertion is not a JWT: {exc}", thumbprint="") from None
    thumb = str(header.get("x5t#S256") or header.get("x5t") or "")
    cert = next((c for c in app.certificates if _thumbprint_match(c, header)), None)
    if cert is None:
        raise StsError(700027, reason="The key was not found.", thumbprint=thumb)
    if header.get("alg") not in ("RS256", "PS256"):
        raise StsError(700027, reason=f"Algorithm '{header.get('alg')}' is not supported.", thumbprint=thumb)
    claims = _signed_and_current(ctx, assertion, cert.public_key, ["RS256", "PS256"], thumb)
    if claims.get("iss") != claims.get("sub"):
        raise StsError(50048)
    if claims.get("iss") != app.client_id:
        raise StsError(700021)
    if not _audience_ok(ctx, str(claims.get("aud") or "")):
        raise StsError(700023, aud=claims.get("aud"))


def _federated(assertion: str, client_id: str) -> bool:
    """Whether an assertion is an external token rather than the app's own: neither its issuer nor its subject
    is the client (a certificate assertion has ``sub`` == client_id even when its ``iss`` is wrong: AADSTS50048)."""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return client_id not in (claims.get("iss"), claims.get("sub"))


def authenticate_identity(ctx: StsRequest, identity: ManagedIdentity) -> None:
    """A user-assigned managed identity as the client of ``client_credentials``: it has no secret or
    certificate, only federated identity credentials, so a federated assertion is the one way in."""
    if browser_origin(ctx) is not None:
        raise StsError(9002326, origin=browser_origin(ctx))
    assertion = ctx.get("client_assertion")
    if ctx.get("client_secret") or _basic(ctx):
        raise StsError(7000215, client_id=identity.client_id)
    if not assertion:
        raise StsError(7000218)
    if ctx.get("client_assertion_type") != ASSERTION_TYPE:
        raise StsError(900144, parameter="client_assertion_type")
    ctx.notes["client_id"] = identity.client_id
    verify_federated(ctx, identity.federated_credentials, assertion)


def verify_federated(ctx: StsRequest, credentials: list[FederatedCredential], assertion: str) -> None:
    """Workload identity federation: the assertion must match one of the client's federated identity credentials
    (issuer AADSTS700211, then subject AADSTS700213, then audience AADSTS700212: exact, case-sensitive), be
    signed by a key its issuer publishes (AADSTS7000272 unknown key, AADSTS700027 bad signature) and be within
    its time range (AADSTS700024). Entra fetches the issuer's OIDC discovery document and JWKS; fakests knows
    the keys of the issuers it publishes itself (``state/kubernetes.py``) and fetches no other: a credential
    trusting an external issuer is answered AADSTS501661, as Entra answers an issuer it cannot reach."""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise StsError(700027, reason=f"The assertion is not a JWT: {exc}", thumbprint="") from None
    iss, sub, aud = claims.get("iss"), claims.get("sub"), claims.get("aud")
    audiences = [a for a in (aud if isinstance(aud, list) else [aud]) if isinstance(a, str)]
    creds = [c for c in credentials if isinstance(iss, str) and c.issuer_matches(iss)]
    if not creds:
        raise StsError(700211, issuer=iss)
    creds = [c for c in creds if c.subject == sub]
    if not creds:
        raise StsError(700213, subject=sub)
    if not any(a in c.audiences for c in creds for a in audiences):
        raise StsError(700212, audience=", ".join(audiences))
    if kubernetes.cluster_of(str(iss)) is None:
        raise StsError(501661)
    clusters: kubernetes.ClusterIssuer = ctx.request.app.state.sandboxes.clusters
    kid = str(jwt.get_unverified_header(assertion).get("kid") or "")
    key = clusters.find(kid)
    if key is None:
        raise StsError(7000272, kid=kid, issuer=iss)
    _signed_and_current(ctx, assertion, key.public_key, ["RS256"], kid)


# The claims a client assertion's checks read themselves (Entra's codes, with LEEWAY), not PyJWT.
_SIGNATURE_ONLY = {"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False}


def _signed_and_current(ctx: StsRequest, assertion: str, key: Any, algorithms: list[str],
                        thumbprint: str) -> dict[str, Any]:
    """The claims of an assertion whose signature ``key`` verifies (else AADSTS700027) and whose ``exp``
    (required) and ``nbf`` hold now, within ``LEEWAY`` (else AADSTS700024): a certificate's assertion and
    an external (federated) one alike."""
    try:
        claims: dict[str, Any] = jwt.decode(assertion, key, algorithms=algorithms, options=_SIGNATURE_ONLY)
    except jwt.PyJWTError:
        raise StsError(700027, reason="The provided signature value did not match the expected signature value.",
                       thumbprint=thumbprint) from None
    now = ctx.now
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float) or exp + LEEWAY < now or (
            isinstance(nbf, int | float) and nbf - LEEWAY > now):
        raise StsError(700024, now=int(now), nbf=nbf, exp=exp)
    return claims


def _audience_ok(ctx: StsRequest, aud: str) -> bool:
    """``aud`` is this tenant's token endpoint, in any of its spellings (GUID or domain, v1 or v2)."""
    try:
        m = _TOKEN_PATH.match(urlparse(aud).path)
    except ValueError:  # not a URL (e.g. "https://[x")
        return False
    if not m:
        return False
    seg = m.group(1).lower()
    names = {ctx.segment.lower()}
    if ctx.tenant is not None:
        names |= {ctx.tenant.tenant_id, *(d.lower() for d in ctx.tenant.domains)}
    return seg in names
