"""Scenarios: ordered rules that make fakests fail the way Entra fails. Schema, loading, objects.

A rule is *match* (which requests) + *response* (what to answer instead: an AADSTS code from the
catalog, a raw status/body, ``Retry-After``, a delay, or a transport fault) + *schedule* (when:
``times``, a ``sequence`` of steps, ``every`` k-th, a seeded ``probability``, a ``window`` on the
sandbox clock, ``after`` N successes). A ``throttle`` rule answers 429 once a client (or tenant)
exceeds ``limit`` requests per ``per`` seconds.

``SCHEMA`` (JSON Schema 2020-12) is the single definition: it validates YAML files, the Python API
and the admin API alike, it is published for editors (``fakests schema``), and the README's
reference is generated from it. Loading is strict: an unknown key, an AADSTS code the catalog lacks
or a bad value raises ``ConfigError(file, key, reason)`` and nothing is loaded.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..state.errors import ConfigError
from ..state.yamlfile import read_yaml
from ..sts.catalog import CATALOG
from ..sts.identity import IDENTITY_ENDPOINTS, TOKEN_ANSWERS

# The STS's endpoints, then the managed-identity endpoints (imds, app_service, azure_ml, cloud_shell, arc,
# service_fabric).
ENDPOINTS = ["any", "discovery", "instance_discovery", "userrealm", "jwks", "authorize", "token", "devicecode",
             "device_login", "logout", *IDENTITY_ENDPOINTS]
MAX_BODY_DEPTH = 64  # levels of arrays and objects in a raw body; Entra's own bodies have three


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend((child, depth) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


FAULTS = ["reset", "hang", "close_mid_body", "truncated_json"]

_STR_OR_LIST = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
_SECONDS = {"type": "number", "minimum": 0}

MATCH = {
    "type": "object", "additionalProperties": False,
    "description": "Which requests the rule applies to. Every given field must match; none means every request.",
    "properties": {
        "endpoint": {**_STR_OR_LIST, "description": f"One or more of: {', '.join(ENDPOINTS)}."},
        "grant_type": {**_STR_OR_LIST, "description": "Token requests with this grant_type (e.g. password, "
                       "client_credentials, refresh_token, authorization_code, device_code, jwt-bearer)."},
        "client_id": {**_STR_OR_LIST, "description": "The client's application id."},
        "tenant": {**_STR_OR_LIST, "description": "The tenant path segment (GUID, domain, common, consumers...)."},
        "account_type": {"enum": ["msa", "work"], "description": "Personal Microsoft accounts or work accounts."},
        "user": {**_STR_OR_LIST, "description": "The user's username (from username, login_hint or the grant)."},
        "scope": {**_STR_OR_LIST, "description": "Requests whose scope includes this value."},
        "headers": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "Request headers that must have exactly these values."},
        "params": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "Query or form parameters that must have exactly these values."},
    },
}

RESPONSE = {
    "type": "object", "additionalProperties": False,
    "description": "What to answer instead of fakests' normal answer. Needs one of aadsts, status, fault or "
                   "token; or only delay and/or rotate_keys, after which fakests answers normally.",
    "properties": {
        "aadsts": {"type": "integer", "description": "An AADSTS code from the catalog, rendered as Entra renders it "
                   "for this endpoint (token JSON, authorize redirect, or the HTML sign-in error page)."},
        "shape": {"enum": ["server_error", "temporarily_unavailable"], "description": "For transient codes: "
                  "server_error with HTTP 500, or temporarily_unavailable with HTTP 503."},
        "status": {"type": "integer", "minimum": 100, "maximum": 599, "description": "HTTP status. With aadsts it "
                   "overrides the catalog's; without, it makes a raw response with body."},
        "error": {"type": "string", "description": "Override the OAuth error value."},
        "suberror": {"type": "string", "description": "Override the suberror."},
        "claims": {"type": "string", "description": "A claims challenge (JSON string) for the error body."},
        "body": {"description": "Raw body: a string as is, or an object/array sent as JSON."},
        "content_type": {"type": "string", "description": "Content-Type of a raw body (default text/plain for "
                         "strings, application/json; charset=utf-8 otherwise, as Entra sends JSON)."},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Extra headers."},
        "retry_after": {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "minLength": 1}],
                        "description": "Retry-After: seconds, or an HTTP date."},
        "delay": {"oneOf": [_SECONDS, {"type": "object", "additionalProperties": False, "required": ["min", "max"],
                                        "properties": {"min": _SECONDS, "max": _SECONDS}}],
                  "description": "Seconds to wait before answering (min/max for jitter, seeded)."},
        "fault": {"enum": FAULTS, "description": "A transport fault: reset the connection, hang until the client "
                  "gives up, close in the middle of the body, or send truncated JSON."},
        "hang_seconds": {**_SECONDS, "description": "How long a hang lasts at most (default 300)."},
        "rotate_keys": {"type": "boolean", "description": "Rotate this sandbox's signing keys (the old key stays in "
                        "the JWKS for its grace period), then answer normally: a key rotation mid-run."},
        "token": {"enum": list(TOKEN_ANSWERS), "description": "Managed-identity endpoints only: answer normally "
                  "(HTTP 200) but with " + "; or ".join(f"{k}: {v}" for k, v in TOKEN_ANSWERS.items()) + "."},
    },
}

SCHEDULE = {
    "type": "object", "additionalProperties": False,
    "description": "When a matching request gets the response. All given conditions must hold.",
    "properties": {
        "times": {"type": "integer", "minimum": 1, "description": "Fire this many times, then pass through."},
        "sequence": {"type": "array", "items": {"enum": ["fail", "pass"]}, "minItems": 1,
                     "description": "Steps for the 1st, 2nd... matching request; after the last step, pass."},
        "every": {"type": "integer", "minimum": 1, "description": "Fire on every k-th matching request."},
        "probability": {"type": "number", "minimum": 0, "maximum": 1, "description": "Fire with this probability."},
        "seed": {"type": "integer", "description": "Seed for probability and jitter, so a run repeats exactly."},
        "window": {"type": "object", "additionalProperties": False, "required": ["duration"],
                   "properties": {"start": _SECONDS, "duration": _SECONDS},
                   "description": "Active from start to start+duration seconds after loading (sandbox clock)."},
        "after": {"type": "integer", "minimum": 0, "description": "Let the first N matching requests pass."},
    },
}

THROTTLE = {
    "type": "object", "additionalProperties": False, "required": ["limit", "per"],
    "description": "Allow limit requests per `per` seconds for each client (or tenant), then 429 with Retry-After.",
    "properties": {
        "limit": {"type": "integer", "minimum": 0},
        "per": {**_SECONDS, "exclusiveMinimum": 0},
        "key": {"enum": ["client", "tenant"], "description": "What is counted separately (default client)."},
        "retry_after": {"type": "integer", "minimum": 0, "description": "Seconds; default: until the window ends."},
        "body": {"enum": ["json", "text"], "description": "json: Entra error JSON (AADSTS90055); text: the plain "
                 "'Too Many Requests' that Entra's gateway sends (entra-wire.md §9). Default text."},
    },
}

RULE = {
    "title": "rules (below)", "type": "object", "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$",
               "description": "Names the rule in the journal as <scenario>/<id> (default: rule<N>)."},
        "description": {"type": "string", "description": "Free text, shown in the dashboard."},
        "match": MATCH, "response": RESPONSE, "schedule": SCHEDULE, "throttle": THROTTLE,
    },
    "oneOf": [{"required": ["response"], "not": {"required": ["throttle"]}},
              {"required": ["throttle"], "not": {"anyOf": [{"required": ["response"]}, {"required": ["schedule"]}]}}],
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://fakests.test/schema/scenario.json",
    "title": "fakests scenario",
    "type": "object", "additionalProperties": False, "required": ["rules"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$",
                 "description": "The scenario's name (letters, digits, . _ -); default: the file name."},
        "description": {"type": "string", "description": "What a client sees while the scenario is armed."},
        "rules": {"type": "array", "items": RULE, "minItems": 1,
                  "description": "Tried in order; the first rule that matches and fires answers."},
    },
}


@functools.cache
def _validator() -> Any:
    """The schema's validator, made on first use: importing jsonschema takes ~30 ms of every start."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(SCHEMA)


@dataclass(frozen=True)
class Match:
    endpoint: tuple[str, ...] = ()
    grant_type: tuple[str, ...] = ()
    client_id: tuple[str, ...] = ()
    tenant: tuple[str, ...] = ()
    account_type: str | None = None
    user: tuple[str, ...] = ()
    scope: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """A rule's response (``response:`` in files)."""

    aadsts: int | None = None
    shape: str | None = None
    status: int | None = None
    error: str | None = None
    suberror: str | None = None
    claims: str | None = None
    body: Any = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_after: int | str | None = None
    delay: float | tuple[float, float] | None = None
    fault: str | None = None
    hang_seconds: float = 300.0
    rotate_keys: bool = False
    token: str | None = None


@dataclass(frozen=True)
class Schedule:
    times: int | None = None
    sequence: tuple[str, ...] = ()
    every: int | None = None
    probability: float | None = None
    seed: int | None = None
    window: tuple[float, float] | None = None  # (start, duration)
    after: int = 0


@dataclass(frozen=True)
class Throttle:
    limit: int
    per: float
    key: str = "client"
    retry_after: int | None = None
    body: str = "text"


@dataclass(frozen=True)
class Rule:
    id: str
    match: Match
    response: Reply | None = None
    schedule: Schedule = Schedule()
    throttle: Throttle | None = None
    description: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    rules: tuple[Rule, ...]
    description: str = ""
    source: str = "<api>"


def _tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _key(path: Sequence[object]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse(data: object, source: str = "<api>", default_name: str = "scenario") -> Scenario:
    """Validate ``data`` (a parsed YAML/JSON document) and build the ``Scenario``."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if errors:
        err = errors[0]
        if err.validator == "oneOf" and err.schema is RULE:
            both = isinstance(err.instance, dict) and {"response", "throttle"} <= set(err.instance)
            raise ConfigError(source, _key(err.absolute_path), (
                "a rule has 'response' or 'throttle', not both" if both else
                "needs what to answer with: a 'response' (aadsts, status, fault, delay or rotate_keys; in "
                "fake_sts.fail(), e.g. aadsts=70012) or a 'throttle'"))
        raise ConfigError(source, _key(err.absolute_path), err.message)
    assert isinstance(data, dict)
    rules = []
    seen: set[str] = set()
    for i, raw in enumerate(data["rules"]):
        rule = _rule(raw, i, source)
        if rule.id in seen:
            raise ConfigError(source, f"rules[{i}].id", f"duplicate rule id '{rule.id}'")
        seen.add(rule.id)
        rules.append(rule)
    return Scenario(data.get("name", default_name), tuple(rules), data.get("description", ""), source)


def _rule(raw: dict[str, Any], i: int, source: str) -> Rule:
    m = raw.get("match", {})
    match = Match(_tuple(m.get("endpoint")), _tuple(m.get("grant_type")), _tuple(m.get("client_id")),
                  _tuple(m.get("tenant")), m.get("account_type"), _tuple(m.get("user")), _tuple(m.get("scope")),
                  {k.lower(): v for k, v in m.get("headers", {}).items()}, dict(m.get("params", {})))
    for name in match.endpoint:
        if name not in ENDPOINTS:
            raise ConfigError(source, f"rules[{i}].match.endpoint", f"unknown endpoint '{name}'; known: "
                              f"{', '.join(ENDPOINTS)}")
    rid = raw.get("id", f"rule{i + 1}")
    if "throttle" in raw:
        t = raw["throttle"]
        return Rule(rid, match, throttle=Throttle(t["limit"], float(t["per"]), t.get("key", "client"),
                                                  t.get("retry_after"), t.get("body", "text")),
                    description=raw.get("description", ""))
    r = raw["response"]
    key = f"rules[{i}].response"
    if "aadsts" in r and r["aadsts"] not in CATALOG:
        raise ConfigError(source, f"{key}.aadsts", f"AADSTS{r['aadsts']} is not in the catalog "
                          "(see the README's AADSTS table, or use status/body for a raw response)")
    if "shape" in r and "aadsts" not in r:
        raise ConfigError(source, f"{key}.shape", "shape applies to an aadsts code")
    if "shape" in r and not CATALOG[r["aadsts"]].transient:
        transient = ", ".join(str(c) for c, e in sorted(CATALOG.items()) if e.transient)
        raise ConfigError(source, f"{key}.shape", f"AADSTS{r['aadsts']} is not transient, and only transient codes "
                          f"come as server_error or temporarily_unavailable ({transient})")
    if not ({"aadsts", "status", "fault", "delay", "rotate_keys", "token"} & set(r)):
        raise ConfigError(source, key, "needs one of aadsts, status, fault, token, delay or rotate_keys")
    if "fault" in r and ({"aadsts", "status", "body"} & set(r)):
        raise ConfigError(source, f"{key}.fault", "a transport fault sends no status or body")
    if "token" in r:
        if {"aadsts", "status", "body", "fault"} & set(r):
            raise ConfigError(source, f"{key}.token", "a token answer is a normal answer: no aadsts, status, body "
                              "or fault with it")
        if not match.endpoint or not set(match.endpoint) <= set(IDENTITY_ENDPOINTS):
            raise ConfigError(source, f"{key}.token", "applies to managed-identity endpoints only: match endpoint "
                              f"one or more of {', '.join(IDENTITY_ENDPOINTS)}")
    if "body" in r:
        try:
            json.dumps(r["body"])
        except (TypeError, ValueError):
            raise ConfigError(source, f"{key}.body", "must be a string or plain JSON data (quote dates)") from None
        except RecursionError:
            raise ConfigError(source, f"{key}.body", f"nested deeper than {MAX_BODY_DEPTH} levels") from None
        if _depth(r["body"]) > MAX_BODY_DEPTH:
            # Deeper bodies fail to reach other workers (pickle recurses): every process must agree.
            raise ConfigError(source, f"{key}.body", f"nested deeper than {MAX_BODY_DEPTH} levels")
    delay = r.get("delay")
    if isinstance(delay, dict):
        if delay["min"] > delay["max"]:
            raise ConfigError(source, f"{key}.delay", "min must not be greater than max")
        delay = (float(delay["min"]), float(delay["max"]))
    reply = Reply(r.get("aadsts"), r.get("shape"), r.get("status"), r.get("error"), r.get("suberror"),
                  r.get("claims"), r.get("body"), r.get("content_type"), dict(r.get("headers", {})),
                  r.get("retry_after"), delay, r.get("fault"), float(r.get("hang_seconds", 300.0)),
                  bool(r.get("rotate_keys", False)), r.get("token"))
    s = raw.get("schedule", {})
    w = s.get("window")
    schedule = Schedule(s.get("times"), tuple(s.get("sequence", ())), s.get("every"), s.get("probability"),
                        s.get("seed"), (float(w.get("start", 0)), float(w["duration"])) if w else None,
                        s.get("after", 0))
    return Rule(rid, match, reply, schedule, description=raw.get("description", ""))


def load_file(path: Path) -> Scenario:
    """A scenario from a YAML file; every problem names the file, the key and the reason."""
    source = str(path)
    data = read_yaml(path, source)
    return parse(data, source, default_name=path.stem)


def bundled_dir() -> Path:
    """The scenario library shipped with fakests: ``fakests/scenarios/`` in a wheel (pyproject.toml
    force-includes it), the repository's ``scenarios/`` in a checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "scenarios", package.parent / "scenarios"):
        if candidate.is_dir():
            return candidate
    return package / "scenarios"


def find(name_or_path: str, search: Sequence[Path] = ()) -> Path:
    """A scenario file by path, or by name in ``search`` directories and then the bundled library."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    for directory in (*search, bundled_dir()):
        for suffix in (".yaml", ".yml"):
            candidate = directory / f"{name_or_path}{suffix}"
            if candidate.exists():
                return candidate
    known = sorted({p.stem for d in (*search, bundled_dir()) if d.is_dir() for p in d.glob("*.y*ml")})
    raise ConfigError(name_or_path, "", f"no such scenario; known: {', '.join(known) or 'none'}")
