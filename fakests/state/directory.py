"""The directory: tenants, app registrations, users, consent and app-role assignments.

Plain objects with lookups, no HTTP. A sandbox owns one ``Directory``; the built-in default
directory (``default_directory``) has fixed ids so the README's examples work verbatim, and
``Directory.clone_fresh`` gives every per-test sandbox the same shape under fresh tenant and client
ids, which is how requests to ``/common`` find their sandbox (by ``client_id``).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from .guids import new_guid

MSA_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"
"""The consumer (MSA) tenant: ``tid`` of personal accounts and what ``/consumers`` means (§1.1)."""
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_URI = "https://graph.microsoft.com"
# Azure's own resources, the ones managed-identity tokens are most often for. Their app ids are Microsoft's
# (the same in every tenant), so a sandbox copy keeps them.
ARM_APP_ID = "797f4846-ba00-4fd7-ba43-dac1f8f63013"
KEY_VAULT_APP_ID = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"
STORAGE_APP_ID = "e406a681-f3d4-42a8-90b6-c2b029497af1"
FIRST_PARTY_APP_IDS = frozenset({GRAPH_APP_ID, ARM_APP_ID, KEY_VAULT_APP_ID, STORAGE_APP_ID})
SPECIAL_TENANTS = frozenset({"common", "organizations", "consumers"})

AccountType = Literal["work", "msa"]
IdentityKind = Literal["system", "user"]
Platform = Literal["web", "spa", "publicClient"]
"""Entra's redirect-URI platforms (Graph's ``application.web``, ``.spa``, ``.publicClient``)."""
Audience = Literal[
    "AzureADMyOrg", "AzureADMultipleOrgs", "AzureADandPersonalMicrosoftAccount", "PersonalMicrosoftAccount"
]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Tenant:
    """A tenant: its GUID, display name and verified domains (the first is the default domain)."""

    tenant_id: str
    display_name: str
    domains: list[str] = field(default_factory=list)
    region_scope: str = "WW"

    @property
    def is_msa(self) -> bool:
        return self.tenant_id == MSA_TENANT_ID


@dataclass
class Secret:
    """A client secret; ``expires_at`` is epoch seconds (None: never)."""

    value: str
    expires_at: float | None = None
    hint: str = ""


@dataclass
class Certificate:
    """A registered client certificate (public part only), matched by ``x5t`` or ``x5t#S256``."""

    pem: str

    def __getstate__(self) -> dict[str, str]:
        """Only the PEM: the cached x509 objects cannot be pickled, and a sandbox's directory is pickled
        into the shared store when several workers serve (``store.SharedStore``)."""
        return {"pem": self.pem}

    @cached_property
    def _cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.pem.encode())

    @cached_property
    def der(self) -> bytes:
        return self._cert.public_bytes(Encoding.DER)

    @cached_property
    def x5t(self) -> str:
        return b64url(hashlib.sha1(self.der).digest())

    @cached_property
    def x5t_s256(self) -> str:
        return b64url(hashlib.sha256(self.der).digest())

    @property
    def public_key(self) -> PublicKeyTypes:
        return self._cert.public_key()

    @property
    def not_after(self) -> float:
        return self._cert.not_valid_after_utc.timestamp()


WORKLOAD_AUDIENCE = "api://AzureADTokenExchange"
"""The audience Entra expects in external tokens it exchanges (Graph ``federatedIdentityCredential.audiences``)."""


@dataclass(frozen=True)
class FederatedCredential:
    """A federated identity credential (Graph's ``federatedIdentityCredential``): Entra accepts, as this app's
    ``client_assertion``, a token whose ``iss`` is ``issuer``, ``sub`` is ``subject`` and ``aud`` is one of
    ``audiences``, matched case-sensitively (learn.microsoft.com/graph/api/resources/federatedidentitycredential;
    entra reference-breaking-changes, "Federated identity credentials now use case-sensitive matching").

    An ``issuer`` that starts with ``/`` is a path on fakests itself (``/kubernetes/{cluster}``: the fake
    Kubernetes issuer, ``state/kubernetes.py``), whatever origin fakests is reached on, so that the default
    directory and config files need not know the port fakests will listen on."""

    name: str
    issuer: str
    subject: str
    audiences: list[str] = field(default_factory=lambda: [WORKLOAD_AUDIENCE])
    description: str = ""

    def issuer_matches(self, iss: str) -> bool:
        """Whether a token's ``iss`` is this credential's issuer (exactly; a ``/path`` issuer on any origin)."""
        if not self.issuer.startswith("/"):
            return iss == self.issuer
        try:
            parts = urlsplit(iss)
        except ValueError:
            return False
        return parts.scheme == "https" and bool(parts.netloc) and parts.path == self.issuer and not parts.query


@dataclass
class App:
    """An app registration together with its service principal in the home tenant."""

    client_id: str
    display_name: str
    tenant_id: str
    secrets: list[Secret] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)
    # Untyped redirect URIs: what fakests had before platforms, and what they still mean (a redirect
    # target; a browser cannot redeem their codes cross-origin, as with a ``web`` URI).
    redirect_uris: list[str] = field(default_factory=list)
    # Redirect URIs by Entra platform. ``spa`` ones allow cross-origin (CORS) code redemption with PKCE
    # and get 24-hour refresh tokens; a code issued to any other URI cannot be redeemed with an Origin
    # header (AADSTS9002326), and a ``spa`` code cannot be redeemed without one (AADSTS9002327).
    web_redirect_uris: list[str] = field(default_factory=list, metadata={
        "help": "Redirect URIs of the 'web' platform (server-side apps)."})
    spa_redirect_uris: list[str] = field(default_factory=list, metadata={
        "help": "Redirect URIs of the 'spa' platform: browser apps redeeming codes cross-origin with PKCE."})
    public_client_redirect_uris: list[str] = field(default_factory=list, metadata={
        "help": "Redirect URIs of the 'publicClient' platform (mobile and desktop apps)."})
    public_client: bool = False
    sign_in_audience: Audience = "AzureADMyOrg"
    identifier_uris: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)  # delegated permissions it exposes
    app_roles: list[str] = field(default_factory=list)  # application permissions it exposes
    access_token_version: int = 2
    enabled: bool = True
    federated_credentials: list[FederatedCredential] = field(default_factory=list, metadata={
        "help": "Federated identity credentials: external tokens (Kubernetes service accounts, GitHub Actions) "
                "this app accepts as its client assertion."})
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))  # the service principal's oid

    @property
    def confidential(self) -> bool:
        return bool(self.secrets or self.certificates) and not self.public_client

    def all_redirect_uris(self) -> list[str]:
        """Every registered redirect URI, untyped first, then web, spa and publicClient."""
        return [*self.redirect_uris, *self.web_redirect_uris, *self.spa_redirect_uris,
                *self.public_client_redirect_uris]

    def is_spa_redirect(self, redirect_uri: str) -> bool:
        """Whether ``redirect_uri`` (as registered: exact) is one of this app's ``spa`` URIs."""
        return redirect_uri in self.spa_redirect_uris

    def spa_origins(self) -> set[str]:
        """The origins (scheme://host[:port]) of the ``spa`` redirect URIs: where a browser app's
        cross-origin token requests come from."""
        return {origin for uri in self.spa_redirect_uris if (origin := uri_origin(uri))}

    def spa_origin_allowed(self, origin: str) -> bool:
        """Whether a browser ``Origin`` is one of ``spa_origins``; loopback http origins match on any
        port, as loopback redirect URIs do (``sts.signin.registered_redirect``)."""
        allowed = self.spa_origins()
        if origin in allowed:
            return True
        for host in ("localhost", "127.0.0.1"):
            prefix = f"http://{host}"
            if (origin == prefix or origin.startswith(prefix + ":")) and any(
                    a == prefix or a.startswith(prefix + ":") for a in allowed):
                return True
        return False

    def resource_uris(self) -> list[str]:
        """Every string that names this app as a resource: its URIs, ``api://{id}`` and its id."""
        return [*self.identifier_uris, f"api://{self.client_id}", self.client_id]


@dataclass
class User:
    """A work account (member of a tenant) or a personal Microsoft account (``account_type='msa'``)."""

    username: str
    display_name: str
    password: str
    tenant_id: str
    oid: str = field(default_factory=lambda: str(uuid.uuid4()))
    account_type: AccountType = "work"
    disabled: bool = False
    locked: bool = False
    password_expired: bool = False
    given_name: str = ""
    family_name: str = ""
    tokens_valid_from: float = 0.0  # refresh tokens issued before this are revoked (AADSTS50173)

    @property
    def is_msa(self) -> bool:
        return self.account_type == "msa"


@dataclass
class ManagedIdentity:
    """A managed identity's service principal: ``system``-assigned (one per Azure resource, named by the
    resource's ARM id) or ``user``-assigned (its own ARM resource, ``.../userAssignedIdentities/NAME``).

    ``client_id`` is the ``appid``/``azp`` of its tokens, ``object_id`` (the principal id) their ``oid`` and
    ``sub``, ``resource_id`` their ``xms_mirid``: what Entra puts in managed-identity tokens. A user-assigned
    identity may also trust external tokens (``federated_credentials``: workload identity on AKS, whose docs
    federate a user-assigned identity), exchanged at ``/token`` with the identity's client id.
    """

    client_id: str
    object_id: str
    resource_id: str
    tenant_id: str
    kind: IdentityKind = "system"
    display_name: str = ""
    federated_credentials: list[FederatedCredential] = field(default_factory=list, metadata={
        "help": "Federated identity credentials (user-assigned identities only, as in Azure): external tokens, "
                "such as a Kubernetes service account's, this identity accepts as its client assertion."})


def uri_origin(uri: str) -> str | None:
    """The origin of a URL as a browser sends it in ``Origin`` (lower-case scheme and host, the port
    only when it is not the scheme's default); None when ``uri`` is not an http(s) URL."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname.lower()
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def _names(app: App, name: str) -> bool:
    """Whether ``name`` (no trailing slash) names ``app`` as a resource."""
    return name in app.resource_uris() or name.lower() in (u.lower() for u in app.identifier_uris)


@dataclass
class Directory:
    """Everything one sandbox knows. Lookups are by id, domain, username and resource URI."""

    tenants: dict[str, Tenant] = field(default_factory=dict)
    apps: dict[str, App] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)  # by lower-case username
    # (client_id, resource client_id) -> delegated scopes granted tenant-wide (admin consent)
    consents: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # (user oid, client_id, resource client_id) -> delegated scopes the user consented to
    user_consents: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    # (principal client_id or user oid, resource client_id) -> app roles assigned
    role_assignments: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # managed identities by client_id; role assignments name them by client_id too
    identities: dict[str, ManagedIdentity] = field(default_factory=dict)
    # The ARM id of the Azure resource the managed-identity endpoints run on: its system-assigned identity
    # answers a request that names none (IMDS on that VM, App Service for that site).
    hosted_on: str = ""
    # resource name -> the app ``resource`` found for it; checked on every hit, so edits to ``apps`` need no hook
    _resources: dict[str, App] = field(default_factory=dict, init=False, repr=False, compare=False)

    # --- building ---------------------------------------------------------------------------------
    def add_tenant(self, tenant: Tenant) -> Tenant:
        self.tenants[tenant.tenant_id] = tenant
        return tenant

    def add_app(self, app: App) -> App:
        self.apps[app.client_id] = app
        return app

    def add_user(self, user: User) -> User:
        self.users[user.username.lower()] = user
        return user

    def add_identity(self, identity: ManagedIdentity) -> ManagedIdentity:
        self.identities[identity.client_id] = identity
        return identity

    def grant(self, client_id: str, resource: str, scopes: Iterable[str]) -> None:
        """Admin consent: ``client_id`` may ask for these delegated ``scopes`` of ``resource``."""
        self.consents.setdefault((client_id, self.resource(resource).client_id), set()).update(scopes)

    def assign_roles(self, principal: str, resource: str, roles: Iterable[str]) -> None:
        """App-role assignment to a client (by client_id) or a user (by oid)."""
        key = (principal, self.resource(resource).client_id)
        self.role_assignments.setdefault(key, set()).update(roles)

    # --- lookups ----------------------------------------------------------------------------------
    def tenant_by_segment(self, segment: str) -> Tenant | None:
        """The tenant a path segment names: its GUID or one of its verified domains."""
        seg = segment.lower()
        if seg in self.tenants:
            return self.tenants[seg]
        return next((t for t in self.tenants.values() if seg in (d.lower() for d in t.domains)), None)

    def user(self, username: str) -> User | None:
        return self.users.get(username.lower())

    def user_by_oid(self, oid: str) -> User | None:
        return next((u for u in self.users.values() if u.oid == oid), None)

    def resource(self, name: str) -> App:
        """The app a resource URI (or client id) names; ``KeyError`` when there is none."""
        name = name.rstrip("/")
        app = self._resources.get(name)
        # Every token request names a resource: a hit costs two checks, not a scan of every app. A hit
        # still registered under its id that still answers to the name is what the scan would find too
        # (identifier URIs are unique in a directory).
        if app is not None and self.apps.get(app.client_id) is app and _names(app, name):
            return app
        for app in self.apps.values():
            if _names(app, name):
                if len(self._resources) >= 1024:  # bounded: names come from requests
                    self._resources.clear()
                self._resources[name] = app
                return app
        raise KeyError(name)

    def identity(self, *, client_id: str | None = None, object_id: str | None = None,
                 resource_id: str | None = None) -> ManagedIdentity | None:
        """The managed identity a request selects: by client id, object (principal) id or ARM id; with no
        selector, the system-assigned identity of ``hosted_on``. None: no such identity here."""
        if client_id:
            return self.identities.get(client_id.lower())
        if object_id:
            return next((i for i in self.identities.values() if i.object_id == object_id.lower()), None)
        wanted = (resource_id or self.hosted_on).lower()
        system = resource_id is None
        return next((i for i in self.identities.values()
                     if i.resource_id.lower() == wanted and (i.kind == "system" or not system)), None)

    def consented(self, user: User | None, client_id: str, resource_id: str) -> set[str]:
        scopes = set(self.consents.get((client_id, resource_id), set()))
        if user is not None:
            scopes |= self.user_consents.get((user.oid, client_id, resource_id), set())
        return scopes

    def roles(self, principal: str, resource_id: str) -> set[str]:
        return self.role_assignments.get((principal, resource_id), set())

    # --- per-test copies --------------------------------------------------------------------------
    def clone_fresh(self, domain: str) -> tuple[Directory, dict[str, str]]:
        """The same directory under fresh tenant GUIDs and client ids, plus ``domain`` on the first
        tenant, and the map from old ids to new. Users, secrets and certificates keep their values,
        so tests read like the README."""
        ids = {t: new_guid() for t in self.tenants if t != MSA_TENANT_ID}
        ids |= {a: new_guid() for a in self.apps if a not in FIRST_PARTY_APP_IDS}
        ids |= {i: new_guid() for i in self.identities}

        def m(value: str) -> str:
            return ids.get(value, value)

        out = Directory()
        for i, t in enumerate(self.tenants.values()):
            doms = [*t.domains, domain] if i == 0 else [f"{m(t.tenant_id)[:8]}.{d}" for d in t.domains]
            out.add_tenant(_copy(t, tenant_id=m(t.tenant_id), domains=doms))
        for a in self.apps.values():
            uris = [u.replace(a.client_id, m(a.client_id)) for u in a.identifier_uris]
            out.add_app(_copy(a, client_id=m(a.client_id), tenant_id=m(a.tenant_id), identifier_uris=uris,
                              secrets=list(a.secrets), certificates=list(a.certificates),
                              redirect_uris=list(a.redirect_uris), web_redirect_uris=list(a.web_redirect_uris),
                              spa_redirect_uris=list(a.spa_redirect_uris),
                              public_client_redirect_uris=list(a.public_client_redirect_uris),
                              federated_credentials=list(a.federated_credentials), object_id=new_guid()))
        for u in self.users.values():
            out.add_user(_copy(u, tenant_id=m(u.tenant_id)))
        out.consents = {(m(c), m(r)): set(s) for (c, r), s in self.consents.items()}
        out.user_consents = {(o, m(c), m(r)): set(s) for (o, c, r), s in self.user_consents.items()}
        out.role_assignments = {(m(p), m(r)): set(s) for (p, r), s in self.role_assignments.items()}
        for i in self.identities.values():  # same ARM ids (a sandbox's own Azure), fresh principal
            out.add_identity(_copy(i, client_id=m(i.client_id), tenant_id=m(i.tenant_id), object_id=new_guid(),
                                   federated_credentials=list(i.federated_credentials)))
        out.hosted_on = self.hosted_on
        return out, ids


_Record = TypeVar("_Record", Tenant, App, User, ManagedIdentity)


def _copy(record: _Record, **changes: Any) -> _Record:
    """``dataclasses.replace`` without running ``__init__`` again (a fifth of its time, and a sandbox copies
    some twenty records): these dataclasses have no ``__post_init__`` and no cached properties (only
    ``Certificate`` has, and certificates are shared, not copied), their values were checked when the
    directory was loaded, and ``clone_fresh`` changes only ids and copies lists."""
    new = object.__new__(type(record))
    new.__dict__.update(record.__dict__, **changes)
    return new


def graph_app() -> App:
    """Microsoft Graph as a resource: v1 access tokens, the common delegated and app permissions."""
    return App(
        client_id=GRAPH_APP_ID,
        display_name="Microsoft Graph",
        tenant_id=MSA_TENANT_ID,
        identifier_uris=[GRAPH_URI, "https://graph.microsoft.com/"],
        scopes=["User.Read", "User.ReadBasic.All", "Mail.Read", "Mail.Send", "Files.Read", "email",
                "openid", "profile", "offline_access"],
        app_roles=["User.Read.All", "Mail.Read", "Files.Read.All"],
        access_token_version=1,
        object_id="00000003-0000-0000-c000-0000000000ff",
    )


def azure_resource_apps() -> list[App]:
    """Azure Resource Manager, Key Vault and Storage as resources (v1 tokens, ``aud`` as the client named
    the resource), with their Microsoft app ids: what ``DefaultAzureCredential`` asks tokens for."""
    return [
        App(ARM_APP_ID, "Windows Azure Service Management API", MSA_TENANT_ID, access_token_version=1,
            identifier_uris=["https://management.azure.com", "https://management.core.windows.net"],
            scopes=["user_impersonation"], object_id="797f4846-ba00-4fd7-ba43-dac1f8f630ff"),
        App(KEY_VAULT_APP_ID, "Azure Key Vault", MSA_TENANT_ID, access_token_version=1,
            identifier_uris=["https://vault.azure.net"], scopes=["user_impersonation"],
            object_id="cfa8b339-82a2-471a-a3c9-0fc0be7a40ff"),
        App(STORAGE_APP_ID, "Azure Storage", MSA_TENANT_ID, access_token_version=1,
            identifier_uris=["https://storage.azure.com"], scopes=["user_impersonation"],
            object_id="e406a681-f3d4-42a8-90b6-c2b029497aff"),
    ]
