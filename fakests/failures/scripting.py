"""One-line failures for tests: ``fake_sts.fail("token", aadsts=70012, times=2)`` and friends.

Keyword arguments are sorted into a rule's ``match``, ``response`` and ``schedule`` by name and
then go through the same schema as scenario files (``scenarios.parse``), so a mistake in a test
reads exactly like a mistake in a file.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..state.errors import ConfigError
from .engine import Engine, RuleState
from .scenarios import MATCH, RESPONSE, SCHEDULE, THROTTLE, Scenario, parse

# ``headers`` means response headers in the one-line API; request headers to match are ``request_headers``.
_MATCH_KEYS = set(MATCH["properties"]) - {"headers"}
_RESPONSE_KEYS = set(RESPONSE["properties"])
_SCHEDULE_KEYS = set(SCHEDULE["properties"])
_THROTTLE_KEYS = set(THROTTLE["properties"])
_serial = itertools.count(1)  # names armed rules "fake_sts.fail-1", ... (valid scenario names, never reused)


class ArmedRule:
    """A rule armed from a test: its counters, and ``remove()``."""

    def __init__(self, engine: Engine, state: RuleState) -> None:
        self._engine = engine
        self.state = state

    @property
    def matched(self) -> int:
        """Requests the rule selected (whether or not its schedule let it answer)."""
        return self.state.matched

    @property
    def fired(self) -> int:
        """Requests the rule answered."""
        return self.state.fired

    @property
    def name(self) -> str:
        return self.state.name

    def remove(self) -> None:
        self._engine.remove([self.state])

    def __repr__(self) -> str:
        return f"<ArmedRule {self.name} matched={self.matched} fired={self.fired}>"


def build_rule(endpoint: str | list[str], kwargs: dict[str, Any], *, throttle: bool = False) -> dict[str, Any]:
    """A rule document from ``fail()``-style keyword arguments."""
    rule: dict[str, Any] = {"match": {"endpoint": endpoint}}
    body_key = "throttle" if throttle else "response"
    allowed = _THROTTLE_KEYS if throttle else _RESPONSE_KEYS
    for key, value in kwargs.items():
        if value is None:
            continue
        if key in ("id", "description"):
            rule[key] = value
        elif key == "request_headers":
            rule["match"]["headers"] = value
        elif key in _MATCH_KEYS and key != "endpoint":
            rule["match"][key] = value
        elif key in allowed:
            rule.setdefault(body_key, {})[key] = value
        elif key in _SCHEDULE_KEYS and not throttle:
            rule.setdefault("schedule", {})[key] = value
        else:
            known = sorted((_MATCH_KEYS | allowed | {"request_headers"} | (set() if throttle else _SCHEDULE_KEYS))
                           - {"endpoint"})
            raise ConfigError("fake_sts", key, f"unknown argument; known: {', '.join(known)}")
    if throttle:
        rule.setdefault("throttle", {})
    return rule


def arm(engine: Engine, rule: dict[str, Any], source: str) -> ArmedRule:
    """Validate and load one rule under a scenario name of its own."""
    scenario = parse({"rules": [rule]}, source)
    named = Scenario(f"{source}-{next(_serial)}", scenario.rules, source=source)
    [state] = engine.load(named)
    return ArmedRule(engine, state)


@contextmanager
def armed(engine: Engine, rule: dict[str, Any], source: str) -> Iterator[ArmedRule]:
    handle = arm(engine, rule, source)
    try:
        yield handle
    finally:
        handle.remove()
