"""Shared state for several replicas behind a load balancer: Redis (``fakests serve --store redis://...``).

``store.SharedStore`` (SQLite) serves the worker processes of one machine; replicas on several machines
need a network store, and an existing one rather than a home-made one. ``RedisStore`` keeps the same
methods (``store.Store``) with Redis' own primitives:

* grants (codes, refresh tokens, device codes, sessions): one hash per grant, ``{prefix}grant:{sandbox}:
  {kind}:{key}``, expiring by itself a day after the grant's ``expires_at`` (the day keeps AADSTS70008
  "expired" answers, as the SQLite store's clean-up does). Single use is a Lua script that reads and
  sets ``redeemed`` in one step; a device code's user code is a key pointing at its grant, same TTL.
  A sorted set per sandbox indexes its grants by expiry, so dropping a sandbox deletes exactly its
  keys (no scan of the whole keyspace); ``expire_grants`` trims the index of what Redis expired.
* rule counters: a hash per sandbox; "read, decide, write" runs under ``redis.lock.Lock`` (one lock per
  sandbox, auto-released after ``LOCK_TIMEOUT`` if its holder dies), so ``times: 2`` fires exactly twice
  however requests are spread over replicas and workers.
* the journal: a stream per sandbox, trimmed to about ``journal_size`` (``XADD MAXLEN ~``); each entry's
  ``seq`` is ``INCR`` of one counter, in the same script, so ``since`` orders requests of every replica.
* sandbox definitions: a hash of pickles plus a hash of versions, and ``INCR`` of a global version that
  each request compares with (one ``GET`` when nothing changed), as the SQLite store's ``meta`` row.
* ``share``: ``SET NX`` then ``GET``, for what the replicas must agree on once (``runtime.share_state``:
  signing keys, the TLS CA, the client certificate; the generated admin token).

Every key starts with a prefix (``fakests:``, or ``?prefix=NAME`` in the URL), so several fakests can
share one Redis. Nothing is ever removed at start: a replica that starts while the store holds a
default sandbox takes it as it is (rules, counters and journal included). To start afresh, use a new
prefix or delete the old keys (``redis-cli --scan --pattern 'fakests:*' | xargs redis-cli del``).
Blobs are pickles, as in the SQLite store: the store is fakests' private state, so only let fakests
(and trusted people) write to it. Needs ``pip install 'fakests[redis]'`` and Redis >= 6.2.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import pickle
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ConfigError, StoreUnavailable
from .journal import JournalEntry, entry_from_row
from .store import LOG_KEEP, Store

try:
    import redis
except ImportError:  # the optional extra: only ``--store redis://`` needs it
    redis = None  # type: ignore[assignment]

SCHEMES = ("redis", "rediss", "unix")
DEFAULT_PREFIX = "fakests:"
GRANT_GRACE = 86400.0  # grants stay a day past expiry, so late redemptions get "expired", not "unknown"
LOCK_TIMEOUT = 10.0  # a holder that died releases the lock after this long (sections take milliseconds)
LOCK_WAIT = 30.0  # give up waiting for the lock after this long (the request then fails with a 500)
# A hung Redis must not hang fakests: a command gives up after SOCKET_TIMEOUT, and then, for DOWN_FOR
# seconds, every store call fails at once (a circuit breaker) and requests that need the store get
# Entra's 503 with Retry-After: DOWN_FOR. The event loop waits at most SOCKET_TIMEOUT per DOWN_FOR.
SOCKET_TIMEOUT = 2.0
DOWN_FOR = 5
log = logging.getLogger("fakests.store")
F = TypeVar("F", bound=Callable[..., Any])

# Atomic steps, as Lua scripts (Redis runs each alone). KEYS and ARGV as documented on each.
_SAVE_SANDBOX = """
-- KEYS: version, definitions, versions, log; ARGV: id, blob, only_if_absent ('1'/'0'), log_keep. Returns
-- the new version, or 0 when only_if_absent and the sandbox is there already.
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local v = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], v)
redis.call('ZADD', KEYS[4], v, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', v - tonumber(ARGV[4]))
return v
"""
_DROP_SANDBOX = """
-- KEYS: version, definitions, versions, log; ARGV: id, log_keep. Drops the definition under a new version.
local v = redis.call('INCR', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], v, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', v - tonumber(ARGV[2]))
return v
"""
_CHANGES = """
-- KEYS: version, versions, log; ARGV: since, log_keep. Returns {} when since is older than the log
-- remembers, else {1, id1, version1 or '', id2, ...}: one snapshot, as a script runs alone.
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
local since = tonumber(ARGV[1])
if since < 0 or since <= v - tonumber(ARGV[2]) then return {} end
local out = {1}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. since, '+inf')) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
return out
"""
_CLAIM = """
-- KEYS: grant. Returns {blob, redeemed-before} and marks it redeemed, or nil if there is no such grant.
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return false end
local r = redis.call('HGET', KEYS[1], 'r') or '0'
redis.call('HSET', KEYS[1], 'r', '1')
return {v, r}
"""
_UPDATE = """
-- KEYS: grant; ARGV: blob. Changes the value of a grant that exists (its TTL and redeemed flag stay).
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'v', ARGV[1]) end
return 0
"""
_RECORD = """
-- KEYS: journal seq, the sandbox's stream; ARGV: blob, bound. Returns the entry's seq.
local s = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 's', s, 'e', ARGV[1])
return s
"""
_PRUNE = """
-- KEYS: the sandbox's rules hash; ARGV: names to keep. Deletes every other field.
local keep = {}
for _, name in ipairs(ARGV) do keep[name] = true end
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  if not keep[name] then redis.call('HDEL', KEYS[1], name) end
end
return 0
"""


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and the banner."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _guarded(method: F) -> F:
    """A store call behind the breaker: refused at once while Redis is known down; a connection error or
    timeout opens the breaker for ``DOWN_FOR`` seconds. Either way the caller gets ``StoreUnavailable``."""

    @functools.wraps(method)
    def call(self: RedisStore, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() < self.down_until:
            raise StoreUnavailable(f"the store at {self.url} is unreachable", DOWN_FOR)
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self.down_until = time.monotonic() + DOWN_FOR
            log.warning("the store at %s did not answer (%s): store calls fail for %d s", self.url, exc, DOWN_FOR)
            raise StoreUnavailable(f"the store at {self.url} is unreachable: {exc}", DOWN_FOR) from None

    return call  # type: ignore[return-value]


class RedisStore:
    """The state every replica (and each replica's workers) shares, in Redis under ``prefix``."""

    remote = True  # each replica has its own state directory: keys and certificates are shared here

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX, url: str = "") -> None:
        self.redis = client
        self.prefix = prefix
        self.url = url
        self.down_until = 0.0  # monotonic time until which the breaker is open
        # The store's epoch: a marker key set once. Missing or changed, the store lost its state (a Redis
        # wiped or restarted without persistence): ``on_lost`` then lets this replica offer what it holds.
        self.on_lost: Callable[[], None] | None = None
        self.epoch = self._ensure_epoch()
        self._save = client.register_script(_SAVE_SANDBOX)
        self._drop = client.register_script(_DROP_SANDBOX)
        self._changes = client.register_script(_CHANGES)
        self._claim = client.register_script(_CLAIM)
        self._update = client.register_script(_UPDATE)
        self._record = client.register_script(_RECORD)
        self._prune = client.register_script(_PRUNE)

    @classmethod
    def connect(cls, url: str, setting: str = "--store") -> RedisStore:
        """A store on the Redis at ``url`` (``redis://[:password@]host:port/db``, ``rediss://`` for TLS,
        ``unix:///path.sock?db=N``; ``?prefix=NAME`` namespaces the keys). A bad scheme, a missing
        ``redis`` package or a Redis that does not answer PING is a ``ConfigError`` naming ``setting``:
        start-up stops there, not at the first request."""
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ConfigError(setting, "", f"expected redis://host:port/db, rediss://... or unix:///path.sock, "
                                           f"got {redact_url(url)!r}")
        if redis is None:
            raise ConfigError(setting, "", "the Redis store needs the redis package: pip install 'fakests[redis]'")
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = next((v for k, v in query if k == "prefix"), DEFAULT_PREFIX)
        if not prefix:
            raise ConfigError(setting, "", "prefix: must not be empty (it namespaces fakests' keys)")
        rest = urlencode([(k, v) for k, v in query if k != "prefix"])
        plain = url.partition("?")[0] + (f"?{rest}" if rest else "")  # not urlunsplit: it drops unix:'s //
        try:
            client = redis.Redis.from_url(plain, socket_connect_timeout=SOCKET_TIMEOUT, socket_timeout=SOCKET_TIMEOUT,
                                          health_check_interval=30)
            client.ping()
        except (redis.RedisError, ValueError, OSError) as exc:
            raise ConfigError(setting, "", f"cannot use the Redis at {redact_url(url)}: {exc}") from None
        return cls(client, prefix, redact_url(url))

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @contextlib.contextmanager
    def exclusive(self, scope: str = "") -> Iterator[None]:
        """The body runs alone among every process and replica asking for ``scope`` (the engine asks
        per sandbox): a ``redis.lock.Lock``, polled every 2 ms (sections take a few round trips)."""
        lock = self.redis.lock(self._key("lock", scope), timeout=LOCK_TIMEOUT, sleep=0.002,
                               blocking_timeout=LOCK_WAIT, thread_local=False)
        if not _guarded(lambda store: lock.acquire())(self):
            raise TimeoutError(f"fakests: the store's lock {scope!r} was held for over {LOCK_WAIT:.0f} s")
        try:
            yield
        finally:
            # LockNotOwnedError if it expired meanwhile: exclusivity was lost, say so. A store that went
            # away meanwhile frees it by itself (LOCK_TIMEOUT).
            with contextlib.suppress(StoreUnavailable):
                _guarded(lambda store: lock.release())(self)

    def share(self, name: str, offer: bytes) -> bytes:
        """The first value ever offered under ``name`` (``SET NX``, then ``GET``): every replica gets the
        same, whichever started first."""
        key = self._key("shared", name)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(key, offer, nx=True)
        pipe.get(key)
        value: bytes = pipe.execute()[1]
        return value

    # --- the epoch: noticing that Redis lost everything ----------------------------------------------
    def _ensure_epoch(self) -> bytes:
        key = self._key("epoch")
        self.redis.set(key, secrets.token_hex(8), nx=True)
        epoch: bytes = self.redis.get(key)
        return epoch

    def check_epoch(self) -> bool:
        """Whether the store lost its state since this replica last looked (then ``on_lost`` runs, and the
        epoch this replica knows is the new one). Runtime calls it every second, and ``version`` on each sync."""
        current = self.redis.get(self._key("epoch"))
        if current == self.epoch:
            return False
        self.epoch = self._ensure_epoch()
        log.warning("the store at %s lost its state (epoch %s -> %s): offering this replica's", self.url,
                    None if current is None else current.decode(), self.epoch.decode())
        if self.on_lost is not None:
            self.on_lost()
        return True

    # --- sandbox definitions -------------------------------------------------------------------------
    def version(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self._key("version"))
        pipe.get(self._key("epoch"))
        version, epoch = pipe.execute()
        if epoch != self.epoch:
            self.check_epoch()
            return -2  # unlike any version held: the caller syncs everything again
        return int(version or 0)

    def signal(self) -> None:
        """No shared memory between machines: readers always ask ``version``."""
        return None

    def _definitions(self, sandbox_id: str, definition: Any, only_if_absent: bool) -> int:
        blob = pickle.dumps(definition, protocol=pickle.HIGHEST_PROTOCOL)
        keys = [self._key("version"), self._key("sandboxes"), self._key("sandbox-versions"), self._key("sandbox-log")]
        return int(self._save(keys=keys, args=[sandbox_id, blob, "1" if only_if_absent else "0", LOG_KEEP]))

    def save_sandbox(self, sandbox_id: str, definition: Any) -> int:
        """Store a sandbox's definition; returns its new version (the writer need not reload it)."""
        return self._definitions(sandbox_id, definition, only_if_absent=False)

    def seed_sandbox(self, sandbox_id: str, definition: Any) -> bool:
        """``save_sandbox`` unless the store holds that sandbox already; True if this call wrote it (the
        first replica to start seeds the default sandbox; the others take what is there)."""
        return self._definitions(sandbox_id, definition, only_if_absent=True) != 0

    def drop_sandbox(self, sandbox_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        self._drop(keys=[self._key("version"), self._key("sandboxes"), self._key("sandbox-versions"),
                         self._key("sandbox-log")], args=[sandbox_id, LOG_KEEP], client=pipe)
        pipe.zrem(self._key("used"), sandbox_id)
        pipe.delete(self._key("rules", sandbox_id), self._key("journal", sandbox_id), self._key("errors", sandbox_id))
        pipe.execute()
        index = self._key("grants", sandbox_id)
        while names := self.redis.zrange(index, 0, 999):  # its grants, a thousand at a time
            pipe = self.redis.pipeline(transaction=True)
            pipe.unlink(*names)
            pipe.zrem(index, *names)
            pipe.execute()
        self.redis.delete(index)

    def touch_sandboxes(self, used: dict[str, float]) -> None:
        """Record that these sandboxes were used at these (epoch) times: a sorted set, the latest wins (GT)."""
        if used:
            self.redis.zadd(self._key("used"), used, gt=True)

    def idle_sandboxes(self, before: float) -> list[str]:
        """Sandboxes no replica has used since ``before`` (epoch seconds)."""
        return [k.decode() for k in self.redis.zrangebyscore(self._key("used"), "-inf", f"({before}")]

    def sandboxes(self) -> dict[str, tuple[int, Any]]:
        """Every sandbox: id -> (version, definition)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self._key("sandbox-versions"))
        pipe.hgetall(self._key("sandboxes"))
        versions, blobs = pipe.execute()
        return {k.decode(): (int(versions.get(k, 0)), pickle.loads(v)) for k, v in blobs.items()}

    def sandbox_versions(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall(self._key("sandbox-versions")).items()}

    def sandbox_changes(self, since: int) -> dict[str, int | None] | None:
        """As ``SharedStore.sandbox_changes``: from a sorted set of the ids changed, scored by version."""
        reply = self._changes(keys=[self._key("version"), self._key("sandbox-versions"), self._key("sandbox-log")],
                              args=[since, LOG_KEEP])
        if not reply:
            return None
        pairs = reply[1:]
        return {pairs[i].decode(): int(pairs[i + 1]) if pairs[i + 1] else None for i in range(0, len(pairs), 2)}

    def load_sandbox(self, sandbox_id: str) -> Any | None:
        blob = self.redis.hget(self._key("sandboxes"), sandbox_id)
        return pickle.loads(blob) if blob is not None else None

    # --- grants -----------------------------------------------------------------------------------------
    def _grant(self, sandbox: str, kind: str, key: str) -> str:
        return self._key("grant", sandbox, kind, key)

    def put_grant(self, sandbox: str, kind: str, key: str, value: Any, expires_at: float,
                  lookup: str | None = None) -> None:
        """Store a grant (replacing one of that key, redeemed or not); Redis deletes it a day after
        ``expires_at`` (wall clock)."""
        gone = int(max(expires_at + GRANT_GRACE, time.time() + 1) * 1000)
        name = self._grant(sandbox, kind, key)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(name)
        pipe.hset(name, mapping={"v": pickle.dumps(value), "r": "0"})
        pipe.pexpireat(name, gone)
        pipe.zadd(self._key("grants", sandbox), {name: gone})
        if lookup is not None:
            pipe.set(self._key("lookup", kind, lookup), f"{sandbox}\n{key}", pxat=gone)
        pipe.execute()

    def get_grant(self, sandbox: str, kind: str, key: str) -> Any | None:
        blob = self.redis.hget(self._grant(sandbox, kind, key), "v")
        return pickle.loads(blob) if blob is not None else None

    def claim_grant(self, sandbox: str, kind: str, key: str) -> tuple[Any | None, bool]:
        """The grant and whether this call was the first to claim it (single use across replicas)."""
        found = self._claim(keys=[self._grant(sandbox, kind, key)])
        if found is None:
            return None, False
        blob, redeemed = found
        return pickle.loads(blob), redeemed in (b"0", "0")

    def update_grant(self, sandbox: str, kind: str, key: str, value: Any) -> None:
        self._update(keys=[self._grant(sandbox, kind, key)], args=[pickle.dumps(value)])

    def find_grant(self, kind: str, lookup: str) -> tuple[str, str, Any] | None:
        """(sandbox, key, value) of the grant of ``kind`` whose lookup value is ``lookup``."""
        pointer = self.redis.get(self._key("lookup", kind, lookup))
        if pointer is None:
            return None
        sandbox, _, key = pointer.decode().partition("\n")
        value = self.get_grant(sandbox, kind, key)
        return (sandbox, key, value) if value is not None else None

    def delete_grant(self, sandbox: str, kind: str, key: str) -> None:
        name = self._grant(sandbox, kind, key)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(name)  # a lookup left behind finds nothing, then expires
        pipe.zrem(self._key("grants", sandbox), name)
        pipe.execute()

    def expire_grants(self, now: float) -> None:
        """Grant keys expire by themselves (TTL); drop their names from the sandboxes' indexes."""
        pipe = self.redis.pipeline(transaction=False)
        for sandbox in self.sandbox_versions():
            pipe.zremrangebyscore(self._key("grants", sandbox), "-inf", int(now * 1000))
        pipe.execute()

    # --- rule counters --------------------------------------------------------------------------------
    def rule_state(self, sandbox: str, name: str) -> dict[str, Any] | None:
        blob = self.redis.hget(self._key("rules", sandbox), name)
        return pickle.loads(blob) if blob is not None else None

    def save_rule_state(self, sandbox: str, name: str, state: dict[str, Any]) -> None:
        self.redis.hset(self._key("rules", sandbox), name, pickle.dumps(state))

    def clear_rules(self, sandbox: str) -> None:
        self.redis.delete(self._key("rules", sandbox))

    def prune_rules(self, sandbox: str, keep: list[str]) -> None:
        """Forget the counters of rules no longer loaded (a scenario loaded again starts from zero)."""
        self._prune(keys=[self._key("rules", sandbox)], args=keep)

    # --- journal and internal errors --------------------------------------------------------------------
    def record(self, row: tuple[Any, ...], bound: int) -> None:
        """Journal ``row`` (``journal.entry_row``); the store numbers it."""
        self._record(keys=[self._key("journal-seq"), self._key("journal", row[1])],
                     args=[pickle.dumps(row), max(bound, 1)])

    def record_soon(self, row: tuple[Any, ...], bound: int) -> None:
        """``record``, at once: a Redis script call is one round trip, which grouping would not save."""
        self.record(row, bound)

    def journal(self, sandbox: str, bound: int) -> list[JournalEntry]:
        """The newest ``bound`` entries, oldest first, each with the store's ``seq`` (one order across
        every replica and worker)."""
        rows = self.redis.xrevrange(self._key("journal", sandbox), count=max(bound, 1))
        return [entry_from_row(pickle.loads(fields[b"e"]), int(fields[b"s"])) for _, fields in reversed(rows)]

    def journal_count(self, sandbox: str, bound: int) -> int:
        return min(int(self.redis.xlen(self._key("journal", sandbox))), bound)

    def clear_journal(self, sandbox: str) -> None:
        self.redis.delete(self._key("journal", sandbox))

    def add_error(self, sandbox: str, text: str) -> None:
        self.redis.rpush(self._key("errors", sandbox), text)

    def errors(self, sandbox: str) -> list[str]:
        return [t.decode() for t in self.redis.lrange(self._key("errors", sandbox), 0, -1)]

    def now(self) -> float:
        return time.time()


# Every call of the Store protocol goes through the breaker, but for these: ``exclusive`` guards its own lock
# calls, ``signal`` asks no one, ``record_soon`` calls ``record``.
_UNGUARDED = {"exclusive", "signal", "record_soon"}
for _name in [n for n, v in vars(Store).items() if callable(v) and not n.startswith("_") and n not in _UNGUARDED]:
    setattr(RedisStore, _name, _guarded(getattr(RedisStore, _name)))
RedisStore.check_epoch = _guarded(RedisStore.check_epoch)  # type: ignore[method-assign]
