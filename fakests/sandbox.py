"""Sandboxes: the unit of isolation, and the registry that routes requests to them.

A sandbox owns a directory, a journal, a clock offset, the grants it issued (codes, refresh tokens,
device codes, sign-in sessions) and, through ``decide``, the one place where scripted failures
intercept a request. Creating one is a directory copy under fresh ids (microseconds), so every test
gets its own without starting a server (design-notes "Isolation is a sandbox, not a server").

A request finds its sandbox by its tenant path segment (each sandbox has its own tenant GUIDs and
domain) and, for ``common``/``organizations``/``consumers`` and the MSA tenant, by ``client_id``.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .directory import MSA_TENANT_ID, SPECIAL_TENANTS, Directory, Tenant
from .journal import Journal
from .keys import KeySet
from .settings import Settings

if TYPE_CHECKING:
    from .engine import Engine

DEFAULT_SANDBOX = "default"


@dataclass
class IssuedCode:
    """An authorization code: single use, short-lived, bound to client, redirect URI and PKCE."""

    client_id: str
    user_oid: str
    tenant_id: str
    redirect_uri: str
    scopes: list[str]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float
    auth_time: float
    session_id: str | None = None
    redeemed: bool = False


@dataclass
class RefreshGrant:
    """What an opaque refresh token stands for."""

    client_id: str
    user_oid: str
    tenant_id: str
    scopes: list[str]
    issued_at: float
    expires_at: float
    auth_time: float
    revoked: bool = False


@dataclass
class DeviceGrant:
    """A device-code authorization in progress (pending, approved or declined)."""

    client_id: str
    tenant_segment: str
    scopes: list[str]
    user_code: str
    expires_at: float
    interval: int
    user_oid: str | None = None
    declined: bool = False
    redeemed: bool = False
    last_poll: float = 0.0


@dataclass
class Sandbox:
    """One isolated fake Entra: directory, journal, clock, issued grants and scripted failures."""

    sandbox_id: str
    directory: Directory
    keys: KeySet
    settings: Settings
    journal: Journal
    auto_sign_in: bool = False
    clock_offset: float = 0.0
    codes: dict[str, IssuedCode] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshGrant] = field(default_factory=dict)
    device_codes: dict[str, DeviceGrant] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)  # SSO session id -> user oid
    internal_errors: list[str] = field(default_factory=list)
    id_map: dict[str, str] = field(default_factory=dict)  # template id -> this sandbox's id
    # The scenario engine's hook (scripted failures): a callable that may answer instead of fakests.
    interceptor: Callable[[Any], Any] | None = None
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        """This sandbox's scenario engine (made on first use; it installs itself as ``interceptor``)."""
        if self._engine is None:
            from .engine import Engine  # the engine renders responses; sandboxes stay free of HTTP

            self._engine = Engine(self)
        return self._engine

    def now(self) -> float:
        """The sandbox clock: wall time plus an offset tests can advance to expire things."""
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        self.clock_offset += seconds

    @property
    def home_tenant(self) -> Tenant:
        return next(iter(self.directory.tenants.values()))

    def redeem_code(self, code: str) -> tuple[IssuedCode | None, bool]:
        """The code's grant and whether this is its first redemption (atomic under concurrency)."""
        with self.lock:
            grant = self.codes.get(code)
            if grant is None:
                return None, False
            first = not grant.redeemed
            grant.redeemed = True
        return grant, first

    def new_refresh_token(self, grant: RefreshGrant) -> str:
        token = "1.AXoA" + secrets.token_urlsafe(96)
        with self.lock:
            self.refresh_tokens[token] = grant
        return token


class SandboxLimit(Exception):
    """Raised when ``max_sandboxes`` are alive; the admin API turns it into a 429."""


class Sandboxes:
    """All sandboxes of one server, the default one first, and the routing indexes."""

    def __init__(self, settings: Settings, keys: KeySet, template: Directory) -> None:
        self.settings = settings
        self.keys = keys
        self.template = template
        self._by_id: dict[str, Sandbox] = {}
        self._by_tenant: dict[str, Sandbox] = {}
        self._by_client: dict[str, Sandbox] = {}
        self._lock = threading.Lock()
        self._next_expiry = 0.0  # monotonic time of the next idle check (expire_soon)
        self.default = self._add(DEFAULT_SANDBOX, template)

    def _add(self, sandbox_id: str, directory: Directory, id_map: dict[str, str] | None = None) -> Sandbox:
        sb = Sandbox(sandbox_id, directory, self.keys, self.settings, Journal(self.settings.journal_size),
                     auto_sign_in=self.settings.auto_sign_in, id_map=id_map or {})
        with self._lock:
            self._by_id[sandbox_id] = sb
            self._index(sb)
        return sb

    def _index(self, sb: Sandbox) -> None:
        for tid, tenant in sb.directory.tenants.items():
            if tid != MSA_TENANT_ID:
                self._by_tenant[tid] = sb
                for d in tenant.domains:
                    self._by_tenant.setdefault(d.lower(), sb)
        for cid in sb.directory.apps:
            self._by_client.setdefault(cid, sb)

    def reindex(self, sb: Sandbox) -> None:
        """Call after adding tenants or apps to a live sandbox's directory."""
        with self._lock:
            self._index(sb)

    def create(self, directory: Directory | None = None) -> Sandbox:
        """A new sandbox: a fresh-id copy of the template directory unless one is given."""
        self.expire_idle()
        if len(self._by_id) >= self.settings.max_sandboxes:
            raise SandboxLimit(f"{len(self._by_id)} sandboxes are alive, the max_sandboxes limit: drop sandboxes "
                               "when done (StsSandbox.drop(), DELETE /_fakests/sandboxes/{id}), or raise max_sandboxes "
                               "(FAKESTS_MAX_SANDBOXES)")
        sandbox_id = uuid.uuid4().hex[:12]
        if directory is not None:
            return self._add(sandbox_id, directory)
        return self._add(sandbox_id, *self.template.clone_fresh(f"sb-{sandbox_id}.fakests.test"))

    def drop(self, sandbox_id: str) -> bool:
        if sandbox_id == DEFAULT_SANDBOX:
            return False
        with self._lock:
            sb = self._by_id.pop(sandbox_id, None)
            if sb is None:
                return False
            for index in (self._by_tenant, self._by_client):
                for key in [k for k, v in index.items() if v is sb]:
                    del index[key]
        return True

    def get(self, sandbox_id: str) -> Sandbox | None:
        self.expire_soon()
        return self._by_id.get(sandbox_id)

    def all(self) -> list[Sandbox]:
        self.expire_soon()
        return list(self._by_id.values())

    def expire_idle(self) -> None:
        """Drop every sandbox (but the default) unused for ``sandbox_idle_ttl`` seconds."""
        limit = time.monotonic() - self.settings.sandbox_idle_ttl
        with self._lock:
            idle = [s for s in self._by_id.values() if s.last_used < limit and s.sandbox_id != DEFAULT_SANDBOX]
        for sb in idle:
            self.drop(sb.sandbox_id)

    def expire_soon(self) -> None:
        """``expire_idle``, at most once a second (or once per ttl, if shorter): requests and admin
        calls go through here, so an idle sandbox's tenant stops answering once its ttl is over."""
        now = time.monotonic()
        if now >= self._next_expiry:
            self._next_expiry = now + min(1.0, self.settings.sandbox_idle_ttl)
            self.expire_idle()

    def resolve(self, segment: str, client_id: str | None) -> tuple[Sandbox, Tenant | None]:
        """The sandbox and tenant a request is for. Tenant is None for the multi-tenant segments
        (``common``, ``organizations``, ``consumers``); an unknown tenant resolves to the client's
        (or the default) sandbox with tenant None and ``segment`` not special, which callers turn
        into AADSTS90002."""
        self.expire_soon()
        seg = segment.lower()
        by_client = self._by_client.get(client_id or "") or self.default
        if seg in SPECIAL_TENANTS:
            return by_client, None
        if seg == MSA_TENANT_ID:
            return by_client, by_client.directory.tenants.get(MSA_TENANT_ID)
        sb = self._by_tenant.get(seg)
        if sb is None:
            return by_client, by_client.directory.tenant_by_segment(seg)
        return sb, sb.directory.tenant_by_segment(seg)
