"""Sandboxes: the unit of isolation, and the registry that routes requests to them.

A sandbox owns a directory, a journal, a clock offset, the grants it issued (codes, refresh tokens,
device codes, sign-in sessions) and, through ``decide``, the one place where scripted failures
intercept a request. Creating one is a directory copy under fresh ids (microseconds), so every test
gets its own without starting a server (design-notes "Isolation is a sandbox, not a server").

A request finds its sandbox by its tenant path segment (each sandbox has its own tenant GUIDs and
domain) and, for ``common``/``organizations``/``consumers`` and the MSA tenant, by ``client_id``.

With ``serve --workers N`` (or ``--store redis://``) each process holds copies of the sandboxes kept
in a shared store (``store.Store``: SQLite on one machine, Redis for replicas): grants are read and
written there through the small ``put_*``/``get_*`` methods below, and every change to a sandbox's
definition is written back (``Sandbox.persist``). In one process (the default, and every test
fixture) those methods use plain dicts, as before.
"""

from __future__ import annotations

import contextlib
import heapq
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .directory import MSA_TENANT_ID, SPECIAL_TENANTS, Directory, Tenant
from .errors import StoreUnavailable
from .journal import Journal
from .keys import KeySet, SigningKey, load_pem
from .kubernetes import ClusterIssuer
from .settings import Settings

if TYPE_CHECKING:
    from .store import Store

# The clock of idle expiry, a module attribute so that a test can move it for this module alone
# (time-machine leaves monotonic time alone, and the event loop must keep the real one).
monotonic = time.monotonic

class RuleEngine(Protocol):
    """What a sandbox needs of its scripted-failure engine (``failures.engine.Engine`` is the one).

    The engine is handed in (``Sandboxes(engine_factory=...)``), so that state never imports the wings
    above it: a sandbox keeps rules, the engine decides what they do to a request."""

    states: Any  # the armed rules, each with ``scenario``, ``rule``, ``loaded_at`` and ``key``

    def restore(self, rules: list[tuple[str, Any, float, str]]) -> None: ...


DEFAULT_SANDBOX = "default"
SESSION_TTL = 365 * 86400  # SSO sessions do not expire; the store still wants a time


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
    spa: bool = False  # issued to a ``spa`` redirect URI: redeemable only cross-origin, with PKCE


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
    spa: bool = False  # issued to a single-page app: a fixed lifetime, redeemable only cross-origin


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
    # Requests this process served but could not journal (a full disk, an unreachable store): the answer
    # went out all the same; the fixture fails the test, since its journal is incomplete.
    journal_lost: int = 0
    id_map: dict[str, str] = field(default_factory=dict)  # template id -> this sandbox's id
    # The scenario engine's hook (scripted failures): a callable that may answer instead of fakests.
    interceptor: Callable[[Any], Any] | None = None
    last_used: float = field(default_factory=lambda: monotonic())
    _use_published: float = field(default=float("-inf"), repr=False)  # with a store: last ``touch`` written there
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _engine: RuleEngine | None = field(default=None, repr=False)
    engine_factory: Callable[[Sandbox], RuleEngine] | None = field(default=None, repr=False)
    # With ``serve --workers N``: grants live in this store, and ``persist`` hands the changed definition
    # to the registry, which writes it for the other workers. Both None in one process (the default).
    store: Store | None = field(default=None, repr=False)
    on_change: Callable[[Sandbox], None] | None = field(default=None, repr=False)

    @property
    def engine(self) -> Any:
        """This sandbox's scenario engine (made on first use; it installs itself as ``interceptor``).
        Typed ``Any`` here: its full interface belongs to the failures wing, above this one."""
        if self._engine is None:
            if self.engine_factory is None:
                raise RuntimeError("this sandbox was made without an engine_factory: it cannot arm rules")
            self._engine = self.engine_factory(self)
        return self._engine

    def touch(self) -> None:
        """Mark the sandbox used now (requests and admin calls keep it alive: ``Sandboxes.expire_idle``).
        With a store, other processes must see the use too: it is written there at most once a second."""
        self.last_used = now = monotonic()
        if self.store is not None and now - self._use_published >= USE_PUBLISH_EVERY:
            self._use_published = now
            with contextlib.suppress(StoreUnavailable):  # a use not published delays an expiry, no more
                self.store.touch_sandboxes({self.sandbox_id: time.time()})

    def now(self) -> float:
        """The sandbox clock: wall time plus an offset tests can advance to expire things."""
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        self.clock_offset += seconds
        self.persist()

    @property
    def home_tenant(self) -> Tenant:
        return next(iter(self.directory.tenants.values()))

    # --- sharing with other workers -------------------------------------------------------------------
    def persist(self) -> None:
        """Publish a change to the definition (directory, settings, clock, keys, rules) to the other
        worker processes. A no-op in one process, where there is no one to tell."""
        if self.on_change is not None:
            self.on_change(self)

    def definition(self, *, server_keys: bool) -> SandboxDefinition:
        """What another process needs to rebuild this sandbox (grants, counters and journal are
        shared separately, row by row). ``server_keys``: it signs with the server's key set."""
        with self.lock:
            rules = [] if self._engine is None else [(st.scenario, st.rule, st.loaded_at, st.key)
                                                     for st in self._engine.states]
            return SandboxDefinition(self.sandbox_id, self.directory, self.settings, self.auto_sign_in,
                                     self.clock_offset, dict(self.id_map),
                                     [(k.pem, k.retired_at) for k in self.keys.keys], server_keys, rules)

    # --- issued grants: dicts in one process, the shared store across workers --------------------------
    def _wall(self, at: float) -> float:
        """A sandbox-clock time on the wall clock, which the store's clean-up of old grants goes by."""
        return at - self.clock_offset

    def put_code(self, code: str, grant: IssuedCode) -> None:
        if self.store is not None:
            self.store.put_grant(self.sandbox_id, "code", code, grant, self._wall(grant.expires_at))
            return
        with self.lock:
            self.codes[code] = grant
            _trim(self.codes, self.now())

    def get_code(self, code: str) -> IssuedCode | None:
        if self.store is not None:
            found: IssuedCode | None = self.store.get_grant(self.sandbox_id, "code", code)
            return found
        return self.codes.get(code)

    def redeem_code(self, code: str) -> tuple[IssuedCode | None, bool]:
        """The code's grant and whether this is its first redemption (atomic under concurrency, and
        across worker processes)."""
        if self.store is not None:
            claimed: tuple[IssuedCode | None, bool] = self.store.claim_grant(self.sandbox_id, "code", code)
            return claimed
        with self.lock:
            grant = self.codes.get(code)
            if grant is None:
                return None, False
            first = not grant.redeemed
            grant.redeemed = True
        return grant, first

    def new_refresh_token(self, grant: RefreshGrant) -> str:
        token = "1.AXoA" + secrets.token_urlsafe(96)
        self.put_refresh(token, grant)
        return token

    def put_refresh(self, token: str, grant: RefreshGrant) -> None:
        if self.store is not None:
            self.store.put_grant(self.sandbox_id, "refresh", token, grant, self._wall(grant.expires_at))
            return
        with self.lock:
            self.refresh_tokens[token] = grant
            _trim(self.refresh_tokens, self.now())

    def get_refresh(self, token: str) -> RefreshGrant | None:
        if self.store is not None:
            found: RefreshGrant | None = self.store.get_grant(self.sandbox_id, "refresh", token)
            return found
        return self.refresh_tokens.get(token)

    def put_device(self, device_code: str, grant: DeviceGrant) -> None:
        if self.store is not None:
            self.store.put_grant(self.sandbox_id, "device", device_code, grant, self._wall(grant.expires_at),
                                 lookup=grant.user_code)
            return
        with self.lock:
            self.device_codes[device_code] = grant
            _trim(self.device_codes, self.now())

    def get_device(self, device_code: str) -> DeviceGrant | None:
        if self.store is not None:
            found: DeviceGrant | None = self.store.get_grant(self.sandbox_id, "device", device_code)
            return found
        return self.device_codes.get(device_code)

    def update_device(self, device_code: str, change: Callable[[DeviceGrant], None]) -> DeviceGrant | None:
        """Apply ``change`` to the device grant atomically (approval on one worker, polling on another:
        neither may overwrite what the other wrote). Returns the grant as changed."""
        store = self.store
        if store is None:
            with self.lock:
                grant = self.device_codes.get(device_code)
                if grant is not None:
                    change(grant)
                return grant
        with store.exclusive():
            grant = store.get_grant(self.sandbox_id, "device", device_code)
            if grant is not None:
                change(grant)
                store.update_grant(self.sandbox_id, "device", device_code, grant)
        return grant

    def claim_device(self, device_code: str) -> bool:
        """True for the one poll that redeems an approved device code (single use across workers)."""
        if self.store is not None:
            return self.store.claim_grant(self.sandbox_id, "device", device_code)[1]
        with self.lock:
            grant = self.device_codes.get(device_code)
            if grant is None or grant.redeemed:
                return False
            grant.redeemed = True
            return True

    def start_session(self, user_oid: str) -> str:
        """A new SSO session for ``user_oid``; returns its id (the session cookie's value)."""
        sid = secrets.token_urlsafe(24)
        if self.store is not None:
            self.store.put_grant(self.sandbox_id, "session", sid, user_oid, time.time() + SESSION_TTL)
            return sid
        with self.lock:
            self.sessions[sid] = user_oid
            _trim(self.sessions, self.now())
        return sid

    def session_user(self, sid: str | None) -> str | None:
        """The oid of the user signed in with session ``sid``, if it is one of ours."""
        if self.store is not None:
            found: str | None = self.store.get_grant(self.sandbox_id, "session", sid) if sid else None
            return found
        return self.sessions.get(sid or "")

    def end_session(self, sid: str) -> None:
        if self.store is not None:
            self.store.delete_grant(self.sandbox_id, "session", sid)
            return
        with self.lock:
            self.sessions.pop(sid, None)


@dataclass
class SandboxDefinition:
    """A sandbox as the shared store keeps it (pickled): everything but the issued grants, the rule
    counters and the journal, which are rows of their own. Keys travel as PEM (key objects do not
    pickle); rules as (scenario, rule, loaded_at, key), ``key`` naming their counters' row."""

    sandbox_id: str
    directory: Directory
    settings: Settings
    auto_sign_in: bool
    clock_offset: float
    id_map: dict[str, str]
    keys: list[tuple[bytes, float | None]]
    server_keys: bool  # signs with the server's key set (so POST /keys/rotate reaches it)
    rules: list[tuple[str, Any, float, str]]  # (scenario, failures.scenarios.Rule, loaded_at, key)


USE_PUBLISH_EVERY = 1.0  # seconds: how often a sandbox's use is written to the store, at most
GRANT_CAP = 100_000  # per kind and sandbox, in one process; the shared store prunes by expiry


def _trim(table: dict[str, Any], now: float) -> None:
    """Keep an in-memory grant table bounded (call with the lock held, after an insert). Every 1024
    inserts, drop grants expired over an hour ago (the hour keeps AADSTS70008 "expired" answers for
    late redemptions); past ``GRANT_CAP``, drop the oldest (dicts keep insertion order)."""
    if len(table) % 1024:
        return
    for key in [k for k, g in table.items() if getattr(g, "expires_at", now) < now - 3600]:
        del table[key]
    while len(table) > GRANT_CAP:
        del table[next(iter(table))]


class SandboxLimit(Exception):
    """Raised when ``max_sandboxes`` are alive; the admin API turns it into a 429."""


class Sandboxes:
    """All sandboxes of one server, the default one first, and the routing indexes.

    With a ``store`` (``serve --workers N``) the registry is one process's view of sandboxes that live
    in the store: ``sync`` (one query per request when nothing changed) loads the ones other workers
    created or changed, in place, and forgets the ones they dropped; every change made here is written
    back (``Sandbox.persist``)."""

    def __init__(self, settings: Settings, keys: KeySet, template: Directory, store: Store | None = None, *,
                 engine_factory: Callable[[Sandbox], RuleEngine] | None = None,
                 cluster_keys: KeySet | None = None) -> None:
        self.settings = settings
        # The fake Kubernetes clusters' issuer (workload identity): one key for the server, like ``keys``.
        self.clusters = ClusterIssuer(cluster_keys)
        self.engine_factory = engine_factory  # every sandbox's engine (failures.engine.Engine in a server)
        self.keys = keys
        self.template = template
        self.store = store
        self._by_id: dict[str, Sandbox] = {}
        self._by_tenant: dict[str, Sandbox] = {}
        self._by_client: dict[str, Sandbox] = {}
        # (last use as last seen, id), the least recent on top: expiry looks only at what may be due.
        # Uses since an entry was pushed are found when it surfaces, and it is pushed again then.
        self._idle: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._next_expiry = 0.0  # monotonic time of the next idle check (expire_soon)
        self._next_cleanup = 0.0  # with a store: monotonic time of the next clean-up of expired grants
        self._version = -1  # the store's version last synced
        self._signal: int | None = None  # the store's change signal when it was read (``Store.signal``)
        self._versions: dict[str, int] = {}  # sandbox id -> version of its definition held here
        self._pem_cache: dict[tuple[bytes, float | None], SigningKey] = {}  # a PEM loads in ~1 ms: once
        self.default = self._add(DEFAULT_SANDBOX, template)
        if store is not None:
            self.sync()

    def _add(self, sandbox_id: str, directory: Directory, id_map: dict[str, str] | None = None) -> Sandbox:
        store = self.store
        if store is None:
            sb = Sandbox(sandbox_id, directory, self.keys, self.settings, Journal(self.settings.journal_size),
                         auto_sign_in=self.settings.auto_sign_in, id_map=id_map or {},
                         engine_factory=self.engine_factory)
        else:
            from .store import SharedErrors, SharedJournal

            sb = Sandbox(sandbox_id, directory, self.keys, self.settings,
                         SharedJournal(store, sandbox_id, self.settings.journal_size),
                         auto_sign_in=self.settings.auto_sign_in, id_map=id_map or {},
                         internal_errors=SharedErrors(store, sandbox_id), store=store, on_change=self.save,
                         engine_factory=self.engine_factory)
        with self._lock:
            self._by_id[sandbox_id] = sb
            self._index(sb)
            if sandbox_id != DEFAULT_SANDBOX:
                heapq.heappush(self._idle, (sb.last_used, sandbox_id))
        return sb

    @staticmethod
    def _routing_keys(directory: Directory) -> tuple[list[str], list[str]]:
        """The tenant-index keys (GUIDs, lower-case domains) and client-index keys a directory routes."""
        tenants = []
        for tid, tenant in directory.tenants.items():
            if tid != MSA_TENANT_ID:
                tenants.append(tid)
                tenants.extend(d.lower() for d in tenant.domains)
        return tenants, list(directory.apps)

    def _index(self, sb: Sandbox) -> None:
        tenants, clients = self._routing_keys(sb.directory)
        for key in tenants:  # a GUID is the sandbox's own; a domain goes to the first that claims it
            if key in sb.directory.tenants:
                self._by_tenant[key] = sb
            else:
                self._by_tenant.setdefault(key, sb)
        for cid in clients:
            self._by_client.setdefault(cid, sb)

    def _unindex(self, sb: Sandbox) -> None:
        """Remove what ``sb`` holds in the indexes, found from its own directory (O(its size), not a scan of
        every sandbox's keys). Sound because a live directory only grows, and ``_load`` unindexes a sandbox
        before it replaces its directory."""
        tenants, clients = self._routing_keys(sb.directory)
        for index, keys in ((self._by_tenant, tenants), (self._by_client, clients)):
            for key in keys:
                if index.get(key) is sb:
                    del index[key]

    def reindex(self, sb: Sandbox) -> None:
        """Call after adding tenants or apps to a live sandbox's directory."""
        with self._lock:
            self._index(sb)

    def create(self, directory: Directory | None = None) -> Sandbox:
        """A new sandbox: a fresh-id copy of the template directory unless one is given."""
        self.sync()
        self.expire_idle()
        if len(self._by_id) >= self.settings.max_sandboxes:
            raise SandboxLimit(f"{len(self._by_id)} sandboxes are alive, the max_sandboxes limit: drop sandboxes "
                               "when done (StsSandbox.drop(), DELETE /_fakests/sandboxes/{id}), or raise max_sandboxes "
                               "(FAKESTS_MAX_SANDBOXES)")
        sandbox_id = uuid.uuid4().hex[:12]
        if directory is not None:
            sb = self._add(sandbox_id, directory)
        else:
            sb = self._add(sandbox_id, *self.template.clone_fresh(f"sb-{sandbox_id}.fakests.test"))
        sb.persist()
        sb.touch()  # with a store: its first use, so a sandbox nobody ever calls expires too
        return sb

    def drop(self, sandbox_id: str) -> bool:
        if sandbox_id == DEFAULT_SANDBOX:
            return False
        if not self._forget(sandbox_id):
            return False
        if self.store is not None:
            self.store.drop_sandbox(sandbox_id)
            self._versions.pop(sandbox_id, None)
        return True

    def _forget(self, sandbox_id: str) -> bool:
        with self._lock:
            sb = self._by_id.pop(sandbox_id, None)
            if sb is None:
                return False
            self._unindex(sb)
        return True

    def get(self, sandbox_id: str) -> Sandbox | None:
        self.sync()
        self.expire_soon()
        return self._by_id.get(sandbox_id)

    def all(self) -> list[Sandbox]:
        self.sync()
        self.expire_soon()
        return list(self._by_id.values())

    def expire_idle(self) -> None:
        """Drop every sandbox (but the default) unused for ``sandbox_idle_ttl`` seconds.

        With a store each process sees only its share of a sandbox's use: ``Sandbox.touch`` writes uses
        there, and what no process has used for the ttl (plus the second a use may lag) is dropped."""
        if self.store is not None:
            self._expire_shared()
            return
        limit = monotonic() - self.settings.sandbox_idle_ttl
        idle = []
        with self._lock:
            heap = self._idle
            while heap and heap[0][0] < limit:
                _, sandbox_id = heapq.heappop(heap)
                sb = self._by_id.get(sandbox_id)
                if sb is None:
                    continue  # dropped already
                if sb.last_used < limit:
                    idle.append(sandbox_id)
                else:  # used since it was pushed: due again one ttl after that use
                    heapq.heappush(heap, (sb.last_used, sandbox_id))
            if len(heap) > 2 * len(self._by_id) + 64:
                # Dropped sandboxes leave entries behind; past twice the live ones, rebuild (amortised O(1)).
                heap[:] = [(sb.last_used, i) for i, sb in self._by_id.items() if i != DEFAULT_SANDBOX]
                heapq.heapify(heap)
        for sandbox_id in idle:
            self.drop(sandbox_id)

    def _expire_shared(self) -> None:
        store = self.store
        assert store is not None
        lag = USE_PUBLISH_EVERY  # a use may reach the store this much later than it happened
        idle = [sid for sid in store.idle_sandboxes(time.time() - self.settings.sandbox_idle_ttl - lag)
                if sid != DEFAULT_SANDBOX]
        if idle:
            self.sync()
            for sid in idle:
                if not self.drop(sid):  # held by no process here: drop it from the store alone
                    store.drop_sandbox(sid)

    def expire_soon(self) -> None:
        """``expire_idle``, at most once a second (or once per ttl, if shorter): requests and admin
        calls go through here, so an idle sandbox's tenant stops answering once its ttl is over."""
        now = monotonic()
        if now >= self._next_expiry:
            self._next_expiry = now + min(1.0, self.settings.sandbox_idle_ttl)
            with contextlib.suppress(StoreUnavailable):  # the store will still be there to clean up later
                if self.store is not None and now >= self._next_cleanup:
                    self._next_cleanup = now + 60.0
                    self.store.expire_grants(time.time())
                self.expire_idle()

    def resolve(self, segment: str, client_id: str | None, *, pinned: str | None = None,
                ) -> tuple[Sandbox, Tenant | None]:
        """The sandbox and tenant a request is for. Tenant is None for the multi-tenant segments
        (``common``, ``organizations``, ``consumers``); an unknown tenant resolves to the client's
        (or the default) sandbox with tenant None and ``segment`` not special, which callers turn
        into AADSTS90002. ``pinned``: the sandbox that answers whatever the request names (in-process
        interception), if it is alive."""
        self.sync()
        self.expire_soon()
        seg = segment.lower()
        held = self._by_id.get(pinned) if pinned is not None else None
        if held is not None:
            if seg in SPECIAL_TENANTS:
                return held, None
            return held, held.directory.tenant_by_segment(seg)
        by_client = self._by_client.get(client_id or "") or self.default
        if seg in SPECIAL_TENANTS:
            return by_client, None
        if seg == MSA_TENANT_ID:
            return by_client, by_client.directory.tenants.get(MSA_TENANT_ID)
        sb = self._by_tenant.get(seg)
        if sb is None:
            return by_client, by_client.directory.tenant_by_segment(seg)
        return sb, sb.directory.tenant_by_segment(seg)

    def find_device(self, user_code: str) -> tuple[Sandbox, str] | None:
        """The sandbox and device code a user code (typed on the device login page) belongs to."""
        code = user_code.strip().upper()
        if self.store is not None:
            found = self.store.find_grant("device", code)
            sb = self.get(found[0]) if found is not None else None
            return (sb, found[1]) if sb is not None and found is not None else None
        for sb in self.all():
            for device_code, grant in list(sb.device_codes.items()):
                if grant.user_code == code:
                    return sb, device_code
        return None

    # --- several workers: the store -------------------------------------------------------------------
    def save(self, sb: Sandbox) -> None:
        """Write ``sb``'s definition to the store (``Sandbox.persist`` calls this with workers)."""
        if self.store is None or self._by_id.get(sb.sandbox_id) is not sb:
            return
        version = self.store.save_sandbox(sb.sandbox_id, sb.definition(server_keys=sb.keys is self.keys))
        self._versions[sb.sandbox_id] = version  # ours: no need to load it back

    def persist(self, sandbox_id: str) -> None:
        """Write a sandbox changed here (by id) to the store; nothing without one. No sync first: that
        could replace the change with another worker's older copy before it is written."""
        sb = self._by_id.get(sandbox_id) if self.store is not None else None
        if sb is not None:
            self.save(sb)

    def sync(self) -> None:
        """Catch up with the sandboxes other workers created, changed or dropped: nothing when the store's
        change signal is the one seen last, one query when its version is."""
        with contextlib.suppress(StoreUnavailable):  # serve what this process holds until the store is back
            self._sync()

    def _sync(self) -> None:
        store = self.store
        if store is None:
            return
        signal = store.signal()  # read before the version: a change committed after it shows as a new signal
        if signal is not None and signal == self._signal:
            return
        version = store.version()
        if version == self._version:
            self._signal = signal
            return
        changes = store.sandbox_changes(self._version)  # what changed since: O(changes), not O(sandboxes)
        if changes is None:  # the first sync, or further behind than the store's log: read every version
            versions = store.sandbox_versions()
            changes = {i: None for i in self._by_id if i not in versions}
            changes.update(versions)
        for sandbox_id, v in changes.items():
            if v is None:  # dropped
                if sandbox_id != DEFAULT_SANDBOX:
                    self._forget(sandbox_id)
                    self._versions.pop(sandbox_id, None)
                continue
            if self._versions.get(sandbox_id) == v and sandbox_id in self._by_id:
                continue
            definition = store.load_sandbox(sandbox_id)
            if definition is not None:
                self._load(definition)
                self._versions[sandbox_id] = v
        self._version = version
        self._signal = signal

    def republish(self) -> None:
        """The store lost its state (a Redis wiped or restarted without persistence): write every sandbox
        this process holds back to it, before any sync could take the empty store's word and forget them,
        and read everything again at the next sync."""
        with self._lock:
            held = list(self._by_id.values())
        for sb in held:
            self.save(sb)
        self._version, self._signal = -1, None

    def _load(self, d: SandboxDefinition) -> None:
        """Make this process's copy of a sandbox match ``d``: the same object when there is one, so
        requests and handles holding it see the change."""
        sb = self._by_id.get(d.sandbox_id)
        if sb is None:
            sb = self._add(d.sandbox_id, d.directory, d.id_map)
        with self._lock, sb.lock:
            self._unindex(sb)
            sb.directory, sb.settings, sb.auto_sign_in = d.directory, d.settings, d.auto_sign_in
            sb.clock_offset, sb.id_map = d.clock_offset, d.id_map
            sb.keys = self._keys(d, sb.keys)
            self._index(sb)
        if d.rules or sb._engine is not None:
            sb.engine.restore(d.rules)
        if d.sandbox_id == DEFAULT_SANDBOX:
            self.template = sb.directory  # as in one process: new sandboxes copy the default's directory

    def _keys(self, d: SandboxDefinition, current: KeySet) -> KeySet:
        """The key set a loaded definition signs with: the server's (brought up to date in place, so every
        sandbox sharing it follows a rotation), the one held already, or a new one."""
        if d.server_keys:
            if [(k.pem, k.retired_at) for k in self.keys.keys] != d.keys:
                self.keys.keys[:] = self._signing_keys(d.keys)
            return self.keys
        if current is not self.keys and [(k.pem, k.retired_at) for k in current.keys] == d.keys:
            return current
        return KeySet(self._signing_keys(d.keys), grace=self.keys.grace)

    def _signing_keys(self, keys: list[tuple[bytes, float | None]]) -> list[SigningKey]:
        out = []
        for pem, retired_at in keys:
            key = self._pem_cache.get((pem, retired_at))
            if key is None:
                key = self._pem_cache[pem, retired_at] = SigningKey(*load_pem(pem, ours=True), retired_at=retired_at)
            out.append(key)
        return out
