"""The scenario engine: decides, for each request, whether a loaded rule answers instead of fakests.

Rules are tried in load order; the first whose *match* selects the request and whose *schedule*
says "fire" answers. Counting and the fire decision happen under one lock, so ``times: 5`` fires
exactly five times however many requests arrive at once (with ``serve --workers N`` or ``--store redis://``
the counters live in the shared store and the lock is the store's, so that holds across processes too).
Delays and faults happen after the lock.
Every answer that carries ``Retry-After`` is remembered per client, so a request that comes back
before that time is marked ``early_retry`` in the journal (did the client honour Retry-After?).
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from starlette.responses import PlainTextResponse, Response

from ..state.directory import MSA_TENANT_ID, User
from ..state.errors import ConfigError
from ..sts.errors import NO_STORE, EntraJSON, StsError, render_json, render_page, render_redirect
from ..sts.ids import entra_timestamp
from .faults import FaultResponse
from .scenarios import Reply, Rule, Scenario

if TYPE_CHECKING:
    from ..state.sandbox import Sandbox
    from ..state.store import Store
    from ..sts.context import StsRequest

_SHAPES = {"server_error": 500, "temporarily_unavailable": 503}
# With several workers: the store's row holding ``Engine.not_before`` (rule rows are named by ``RuleState.key``).
_NOT_BEFORE = "~not_before"


@dataclass
class RuleState:
    """A loaded rule and its counters (``matched``: requests it selected; ``fired``: answers given)."""

    rule: Rule
    scenario: str
    loaded_at: float
    rng: random.Random
    matched: int = 0
    fired: int = 0
    hits: dict[str, deque[float]] = field(default_factory=dict)  # throttle: request times per key
    key: str = field(default_factory=lambda: uuid.uuid4().hex)  # names its counters in the shared store
    sweep_at: int = field(default=0, repr=False)  # ``hits`` size at which its stale keys are dropped

    @property
    def name(self) -> str:
        return f"{self.scenario}/{self.rule.id}"

    def summary(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "rule": self.rule.id, "matched": self.matched, "fired": self.fired,
                "description": self.rule.description}


class Facts:
    """What rules match on, worked out once per request and only when a rule asks."""

    def __init__(self, ctx: StsRequest) -> None:
        self.ctx = ctx
        self._user: User | bool | None = False

    @property
    def user(self) -> User | None:
        if self._user is False:
            self._user = identify_user(self.ctx)
        return self._user  # type: ignore[return-value]

    @property
    def account_type(self) -> str | None:
        seg = self.ctx.segment.lower()
        if seg == "consumers" or seg == MSA_TENANT_ID:
            return "msa"
        user = self.user
        return None if user is None else ("msa" if user.is_msa else "work")


def identify_user(ctx: StsRequest) -> User | None:
    """The user a request is about: ROPC username, login_hint, or the user behind a code, refresh
    token or device code, or the SSO session."""
    sb, directory = ctx.sandbox, ctx.sandbox.directory
    for name in ("username", "login_hint", "login"):
        value = ctx.get(name)
        if value and directory.user(value):
            return directory.user(value)
    oid = None
    if (code := ctx.get("code")) and (issued := sb.get_code(code)) is not None:
        oid = issued.user_oid
    elif (rt := ctx.get("refresh_token")) and (refresh := sb.get_refresh(rt)) is not None:
        oid = refresh.user_oid
    elif (dc := ctx.get("device_code")) and (device := sb.get_device(dc)) is not None:
        oid = device.user_oid
    else:
        oid = sb.session_user(ctx.request.cookies.get(f"fakests-session-{sb.sandbox_id}"))
    return directory.user_by_oid(oid) if oid else None


def matches(rule: Rule, ctx: StsRequest, facts: Facts) -> bool:
    m = rule.match
    if m.endpoint and "any" not in m.endpoint and ctx.endpoint not in m.endpoint:
        return False
    if m.grant_type:
        grant = ctx.get("grant_type") or ""
        if not any(grant == g or grant.endswith(":" + g) for g in m.grant_type):
            return False
    if m.client_id and (ctx.notes.get("client_id") or ctx.client_id) not in m.client_id:
        return False
    if m.tenant and ctx.segment.lower() not in {t.lower() for t in m.tenant}:
        return False
    if m.scope and not set(m.scope) & set((ctx.get("scope") or "").split()):
        return False
    if any(ctx.headers.get(k.lower()) != v for k, v in m.headers.items()):
        return False
    if any(ctx.get(k) != v for k, v in m.params.items()):
        return False
    if m.user and (facts.user is None or facts.user.username.lower() not in {u.lower() for u in m.user}):
        return False
    return not (m.account_type and facts.account_type != m.account_type)


def _fires(state: RuleState, now: float) -> bool:
    """Counts the request and says whether the rule answers it. Call under the engine lock."""
    s = state.rule.schedule
    if s.window is not None:
        start, duration = s.window
        if not (start <= now - state.loaded_at < start + duration):
            return False
    state.matched += 1
    n = state.matched
    if n <= s.after:
        return False
    if s.sequence and (n - s.after > len(s.sequence) or s.sequence[n - s.after - 1] == "pass"):
        return False
    if s.every is not None and (n - s.after) % s.every != 0:
        return False
    if s.probability is not None and state.rng.random() >= s.probability:
        return False
    return not (s.times is not None and state.fired >= s.times)


class Engine:
    """The rules loaded in one sandbox, and the decision for each request."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.states: list[RuleState] = []  # replaced, never changed in place (``_candidates`` indexes it)
        self.not_before: dict[str, float] = {}  # client key -> time its last Retry-After ends
        self._sweep_at = SWEEP_FROM  # ``not_before`` size at which its ended waits are dropped
        self._lock = threading.Lock()
        # ``states`` indexed by the client ids rules name, so a request only tries the rules that can
        # match it (50 rules for other clients cost nothing); rebuilt when ``states`` is replaced.
        self._indexed: list[RuleState] | None = None
        self._open: list[tuple[int, RuleState]] = []  # rules that name no client_id, with load position
        self._by_client: dict[str, list[tuple[int, RuleState]]] = {}
        # With a store: its change signal and the shared ``not_before`` read under it. Every write goes
        # through a transaction that moves the signal, so while it stands still the copy is current.
        self._shared_not_before: tuple[int, dict[str, float]] | None = None

    # --- loading ------------------------------------------------------------------------------------
    def load(self, scenario: Scenario) -> list[RuleState]:
        """Add a scenario's rules after those already loaded (a scenario of the same name is replaced)."""
        now = self.sandbox.now()
        new = [RuleState(r, scenario.name, now, random.Random(r.schedule.seed)) for r in scenario.rules]
        with self._lock:
            kept = [s for s in self.states if s.scenario != scenario.name]
            limit = self.sandbox.settings.max_rules
            if len(kept) + len(new) > limit:
                raise ConfigError(scenario.source, "rules", f"{len(kept)} rules are loaded and this scenario adds "
                                  f"{len(new)}: at most {limit} per sandbox (max_rules); clear some first")
            self.states = kept + new
        self.sandbox.interceptor = self.intercept
        self._changed()
        return new

    def remove(self, states: list[RuleState]) -> None:
        with self._lock:
            self.states = [s for s in self.states if s not in states]
        self._changed()

    def clear(self, scenario: str | None = None) -> None:
        with self._lock:
            self.states = [s for s in self.states if scenario is not None and s.scenario != scenario]
            if not self.states:
                self.not_before.clear()
        self._changed()

    def summary(self) -> list[dict[str, Any]]:
        store = self.sandbox.store
        if store is not None:  # the counters are the store's: other workers count too
            for state in list(self.states):
                _restore(state, store.rule_state(self.sandbox.sandbox_id, state.key))
        with self._lock:
            return [s.summary() for s in self.states]

    # --- several workers: rules travel in the sandbox's definition, counters in the store ------------
    def _changed(self) -> None:
        """Tell the other workers (a no-op in one process) and drop the counters of unloaded rules."""
        store = self.sandbox.store
        if store is None:
            return
        self.sandbox.persist()
        keep = [s.key for s in self.states]
        store.prune_rules(self.sandbox.sandbox_id, [*keep, _NOT_BEFORE] if keep else [])

    def restore(self, rules: list[tuple[str, Rule, float, str]]) -> None:
        """Hold the rules another worker loaded (from the sandbox's definition); a rule held already
        keeps its object, so ``ArmedRule`` handles stay valid."""
        with self._lock:
            if [s.key for s in self.states] == [r[3] for r in rules]:
                return
            held = {s.key: s for s in self.states}
            self.states = [held.get(key) or RuleState(rule, scenario, loaded_at, random.Random(rule.schedule.seed),
                                                      key=key) for scenario, rule, loaded_at, key in rules]
            if not self.states:
                self.not_before.clear()
        self.sandbox.interceptor = self.intercept

    # --- deciding -----------------------------------------------------------------------------------
    def _candidates(self, client_id: str | None) -> list[RuleState]:
        """The rules a request from ``client_id`` can match, in load order: those naming no client_id
        and those naming this one (``matches`` rejects every other). Call under the lock."""
        if self._indexed is not self.states:
            self._open, self._by_client = [], {}
            for position, state in enumerate(self.states):
                if state.rule.match.client_id:
                    for cid in dict.fromkeys(state.rule.match.client_id):
                        self._by_client.setdefault(cid, []).append((position, state))
                else:
                    self._open.append((position, state))
            self._indexed = self.states
        named = self._by_client.get(client_id) if client_id is not None else None
        if not named:
            return [state for _, state in self._open]
        return [state for _, state in sorted(self._open + named, key=lambda p: p[0])]

    def intercept(self, ctx: StsRequest) -> Response | Awaitable[Response | None] | None:
        """The scripted answer to ``ctx``, if a rule gives one (awaitable only when a rule delays it):
        most requests match no rule, and they pay for no coroutine."""
        facts = Facts(ctx)
        now = ctx.now
        client_id = ctx.notes.get("client_id") or ctx.client_id
        client_key = client_id or "-"
        store = self.sandbox.store
        if store is not None:
            chosen, throttled, seconds = self._decide_shared(store, ctx, facts, client_id, client_key, now)
        else:
            with self._lock:
                if now < self.not_before.get(client_key, 0.0):
                    ctx.notes["early_retry"] = True
                chosen, throttled = self._decide(self._candidates(client_id), ctx, facts, now)
                seconds = _delay(chosen)
        if throttled is not None:
            state, wait = throttled
            ctx.notes.update(rule=state.name, aadsts=90055 if state.rule.throttle.body == "json" else None)  # type: ignore[union-attr]
            self._remember(client_key, now, str(wait))
            return _throttle_response(state, ctx, wait)
        if chosen is None:
            return None
        ctx.notes["rule"] = chosen.name
        reply = chosen.rule.response
        assert reply is not None
        if reply.rotate_keys:
            sb = self.sandbox
            with sb.lock:
                sb.keys = sb.keys.rotated_copy(now)
            sb.persist()
        if seconds is not None:
            return self._after(seconds, reply, ctx, client_key, now)
        return self._answer(reply, ctx, client_key, now)

    async def _after(self, seconds: float, reply: Reply, ctx: StsRequest, client_key: str,
                     now: float) -> Response | None:
        await asyncio.sleep(seconds)
        return self._answer(reply, ctx, client_key, now)

    def _answer(self, reply: Reply, ctx: StsRequest, client_key: str, now: float) -> Response | None:
        if reply.token is not None:
            ctx.notes["token"] = reply.token  # the managed-identity endpoint answers, with this token (identity.py)
        if reply.aadsts is None and reply.status is None and reply.fault is None:
            return None  # a slow STS, a key rotation or a token answer: answer normally
        response = render_reply(reply, ctx)
        if reply.retry_after is not None:
            self._remember(client_key, now, str(reply.retry_after))
        return response

    @staticmethod
    def _decide(states: list[RuleState], ctx: StsRequest, facts: Facts, now: float, *, matched: bool = False,
                ) -> tuple[RuleState | None, tuple[RuleState, int] | None]:
        """Count the request against ``states`` in order; the rule that answers it, or the throttle
        that refuses it with its wait. ``matched``: the states are known to match. Call under the lock."""
        for state in states:
            if not matched and not matches(state.rule, ctx, facts):
                continue
            if state.rule.throttle is not None:
                state.matched += 1
                wait = _throttle(state, ctx, now)
                if wait is not None:
                    state.fired += 1
                    return None, (state, wait)
                continue
            if _fires(state, now):
                state.fired += 1
                return state, None
        return None, None

    def _decide_shared(self, store: Store, ctx: StsRequest, facts: Facts, client_id: str | None,
                       client_key: str, now: float,
                       ) -> tuple[RuleState | None, tuple[RuleState, int] | None, float | None]:
        """``_decide`` with the counters of every worker: matching needs no counters, so it runs first;
        then, only if some rule matches, load, decide and save under the store's lock for this sandbox
        (it stands in for ``self._lock`` across processes and replicas: ``times: 2`` fires exactly twice)."""
        sandbox_id = self.sandbox.sandbox_id
        with self._lock:
            candidates = self._candidates(client_id)
        hits = [state for state in candidates if matches(state.rule, ctx, facts)]
        if not hits:
            signal = store.signal()  # before the read: a write committed after it moves the signal
            cached = self._shared_not_before
            if signal is not None and cached is not None and cached[0] == signal:
                not_before = cached[1]
            else:
                not_before = store.rule_state(sandbox_id, _NOT_BEFORE) or {}
                if signal is not None:
                    self._shared_not_before = (signal, not_before)
            if now < not_before.get(client_key, 0.0):
                ctx.notes["early_retry"] = True
            return None, None, None
        with store.exclusive(sandbox_id):
            not_before = store.rule_state(sandbox_id, _NOT_BEFORE) or {}
            if now < not_before.get(client_key, 0.0):
                ctx.notes["early_retry"] = True
            for state in hits:
                _restore(state, store.rule_state(sandbox_id, state.key))
            chosen, throttled = self._decide(hits, ctx, facts, now, matched=True)
            seconds = _delay(chosen)  # drawn here: the seeded generator's state is saved with the counters
            for state in hits:
                store.save_rule_state(sandbox_id, state.key, _counters(state))
        return chosen, throttled, seconds

    def _remember(self, key: str, now: float, retry_after: str) -> None:
        seconds = _retry_after_seconds(retry_after, now)
        if not seconds:
            return
        store = self.sandbox.store
        if store is not None:
            with store.exclusive(self.sandbox.sandbox_id):
                not_before = store.rule_state(self.sandbox.sandbox_id, _NOT_BEFORE) or {}
                not_before[key] = max(not_before.get(key, 0.0), now + seconds)
                if len(not_before) >= SWEEP_FROM:  # the store's copy: its size is checked on each write
                    _sweep(not_before, lambda until: until <= now)
                store.save_rule_state(self.sandbox.sandbox_id, _NOT_BEFORE, not_before)
            return
        with self._lock:
            self.not_before[key] = max(self.not_before.get(key, 0.0), now + seconds)
            if len(self.not_before) >= self._sweep_at:
                self._sweep_at = _sweep(self.not_before, lambda until: until <= now)


def _delay(chosen: RuleState | None) -> float | None:
    """Seconds the chosen rule waits before answering (jitter drawn from its seeded generator)."""
    delay = chosen.rule.response.delay if chosen is not None and chosen.rule.response is not None else None
    if delay is None or chosen is None:
        return None
    return chosen.rng.uniform(*delay) if isinstance(delay, tuple) else delay


def _uses_rng(rule: Rule) -> bool:
    return rule.schedule.probability is not None or (rule.response is not None
                                                     and isinstance(rule.response.delay, tuple))


def _counters(state: RuleState) -> dict[str, Any]:
    """A rule's counters as the store keeps them (the generator's state only when the rule draws)."""
    return {"matched": state.matched, "fired": state.fired, "hits": state.hits,
            "rng": state.rng.getstate() if _uses_rng(state.rule) else None}


def _restore(state: RuleState, row: dict[str, Any] | None) -> None:
    """Set a rule's counters from the store (a rule no worker has counted yet keeps its zeros)."""
    if row is None:
        return
    state.matched, state.fired, state.hits = row["matched"], row["fired"], row["hits"]
    if row["rng"] is not None:
        state.rng.setstate(row["rng"])


def _retry_after_seconds(value: str, now: float) -> float:
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return 0.0


SWEEP_FROM = 1024  # per-client throttle and Retry-After memory is swept of stale keys from this size on


def _sweep(memory: dict[str, Any], stale: Callable[[Any], bool]) -> int:
    """Drop ``memory``'s stale entries (a throttle window or a Retry-After that is over: forgetting it
    changes no answer). Returns the size at which to sweep next: twice what is left, so sweeping costs
    O(1) per new key however many clients stay active."""
    for key in [k for k, v in memory.items() if stale(v)]:
        del memory[key]
    return max(SWEEP_FROM, 2 * len(memory))


def _throttle(state: RuleState, ctx: StsRequest, now: float) -> int | None:
    """Seconds to wait if this request is over the limit (it is then not counted), else None."""
    t = state.rule.throttle
    assert t is not None
    key = (ctx.notes.get("client_id") or ctx.client_id or "-") if t.key == "client" else ctx.segment.lower()
    hits = state.hits.get(key)
    if hits is None:
        if len(state.hits) >= max(state.sweep_at, SWEEP_FROM):  # clients come and go: forget the quiet ones
            state.sweep_at = _sweep(state.hits, lambda times: not times or times[-1] <= now - t.per)
        hits = state.hits[key] = deque()
    while hits and hits[0] <= now - t.per:
        hits.popleft()
    if len(hits) < t.limit:
        hits.append(now)
        return None
    window_end = (hits[0] + t.per - now) if hits else t.per
    return t.retry_after if t.retry_after is not None else max(1, int(window_end + 0.999))


def _throttle_response(state: RuleState, ctx: StsRequest, wait: int) -> Response:
    t = state.rule.throttle
    assert t is not None
    headers = {"Retry-After": str(wait)}
    if t.body == "json":
        exc = StsError(90055, status=429, headers=headers)
        ctx.notes["error"] = exc.error
        return render_json(exc, ctx.ids, ctx.now, ctx.origin)
    return PlainTextResponse("Too Many Requests", status_code=429, headers=headers)


def render_reply(reply: Reply, ctx: StsRequest) -> Response:
    """A rule's response, rendered as Entra would render it for this endpoint."""
    headers = dict(reply.headers)
    if reply.retry_after is not None:
        headers["Retry-After"] = str(reply.retry_after)
    if reply.fault is not None:
        ctx.notes["fault"] = reply.fault
        return FaultResponse(reply.fault, reply.hang_seconds, headers)
    if reply.aadsts is not None:
        status = reply.status or (_SHAPES.get(reply.shape or "") if reply.shape else None)
        error = reply.error or (reply.shape if reply.shape else None)
        exc = StsError(reply.aadsts, status=status, error=error, suberror=reply.suberror, claims=reply.claims,
                       headers=headers, **_message_params(ctx))
        ctx.notes.update(aadsts=exc.code, error=exc.error)
        return _render_for_endpoint(exc, ctx)
    body = reply.body
    if body is None and reply.status is not None and ctx.shape is not None:
        return ctx.shape.status(ctx, reply.status, reply.error, headers)
    if isinstance(body, dict | list):
        return EntraJSON(body, status_code=reply.status or 200, headers={**NO_STORE, **headers},
                         media_type=reply.content_type or EntraJSON.media_type)
    return Response("" if body is None else str(body), status_code=reply.status or 200, headers=headers,
                    media_type=reply.content_type or "text/plain")


def _render_for_endpoint(exc: StsError, ctx: StsRequest) -> Response:
    if ctx.shape is not None:  # an endpoint with an error shape of its own (managed identity)
        return ctx.shape.error(ctx, exc)
    if ctx.endpoint == "device_login":
        return render_page(exc, ctx.ids, ctx.now)
    if ctx.endpoint == "authorize":
        from ..sts.signin import redirect_allowed

        app = ctx.sandbox.directory.apps.get(ctx.client_id or "")
        redirect_uri = ctx.get("redirect_uri")
        if app is None or redirect_uri is None or not redirect_allowed(app, redirect_uri):
            return render_page(exc, ctx.ids, ctx.now)
        return render_redirect(exc, ctx.ids, ctx.now, ctx.origin, redirect_uri=redirect_uri, state=ctx.get("state"),
                               response_mode=ctx.get("response_mode") or "query")
    return render_json(exc, ctx.ids, ctx.now, ctx.origin)


def _message_params(ctx: StsRequest) -> dict[str, object]:
    """Values for the catalog's message templates, from the request."""
    app = ctx.sandbox.directory.apps.get(ctx.client_id or "")
    scope = ctx.get("scope") or ""
    resource = next((s.rpartition("/")[0] for s in scope.split() if "/" in s), "https://graph.microsoft.com")
    user = identify_user(ctx)
    # The grant's own issue time when the request carries a refresh token we issued (50173, 700082, 70043).
    grant = ctx.sandbox.get_refresh(ctx.get("refresh_token") or "")
    issued = grant.issued_at if grant is not None else ctx.now
    return {"client_id": ctx.client_id or "", "app_name": app.display_name if app else "", "tenant": ctx.segment,
            "tenant_name": ctx.segment, "username": user.username if user else (ctx.get("username") or ""),
            "scope": scope, "resource": resource, "grant_type": ctx.get("grant_type") or "",
            "redirect_uri": ctx.get("redirect_uri") or "", "parameter": "", "detail": "", "idp": "live.com",
            "segment": ctx.segment, "response_type": ctx.get("response_type") or "",
            "method": ctx.request.method, "methods": "POST", "now": entra_timestamp(ctx.now),
            "issued": entra_timestamp(issued), "valid_from": entra_timestamp(ctx.now),
            "inactive": f"{int(ctx.now - issued)} seconds"}
