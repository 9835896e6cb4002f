"""The README's reference sections, generated from the data they describe, so they cannot drift.

``python -m fakests.docs`` rewrites the blocks between ``<!-- BEGIN GENERATED: name -->`` and
``<!-- END GENERATED: name -->`` in README.md: the scenario file reference (from
``scenarios.SCHEMA``, the schema that validates files) and the AADSTS table (from ``catalog``).
``tests/test_docs.py`` fails when the README is out of date. The files under ``schemas/`` (the JSON
Schemas editors use) are written by the same command.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from .failures.scenarios import SCHEMA as SCENARIO_SCHEMA
from .sts.catalog import CATALOG

_BLOCK = re.compile(r"(<!-- BEGIN GENERATED: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED: (?P=name) -->)",
                    re.S)


def _type_of(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if schema.get("type") == "object" and "properties" in schema:
        return "mapping (" + ", ".join(f"`{k}`" for k in schema["properties"]) + ")"
    if "oneOf" in schema or "anyOf" in schema:
        return " or ".join(_type_of(s) for s in schema.get("oneOf", schema.get("anyOf", [])))
    kind = schema.get("type")
    if kind == "array" and schema.get("items", {}).get("title"):
        return f"list of {schema['items']['title']}"
    if kind == "array":
        return f"list of {_type_of(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        return "mapping of strings"
    if kind == "object" and "properties" in schema:
        return "mapping (" + ", ".join(f"`{k}`" for k in schema["properties"]) + ")"
    bounds = []
    if "minimum" in schema:
        bounds.append(f"≥ {schema['minimum']}")
    if "exclusiveMinimum" in schema:
        bounds.append(f"> {schema['exclusiveMinimum']}")
    if "maximum" in schema:
        bounds.append(f"≤ {schema['maximum']}")
    names = {"integer": "integer", "number": "number", "string": "string", "boolean": "true/false"}
    text = names.get(kind or "", "any")
    return f"{text} {', '.join(bounds)}".strip()


def _fields(title: str, schema: dict[str, Any]) -> list[str]:
    out = [f"**{title}** — {schema.get('description', '')}".rstrip(" —"), "", "| key | value | meaning |",
           "|---|---|---|"]
    required = set(schema.get("required", []))
    for name, prop in schema["properties"].items():
        mark = " (required)" if name in required else ""
        desc = prop.get("description", "").replace("|", "\\|")
        out.append(f"| `{name}`{mark} | {_type_of(prop)} | {desc} |")
    return [*out, ""]


def scenario_reference() -> str:
    """Markdown for every key of a scenario file, from the schema that validates them."""
    rule = SCENARIO_SCHEMA["properties"]["rules"]["items"]
    top = {**SCENARIO_SCHEMA, "description": "A scenario file: an ordered list of rules."}
    lines = _fields("Top level", top)
    lines += _fields("A rule", {**rule, "description": "Either `response` (with an optional `schedule`) or "
                                                         "`throttle`."})
    for part in ("match", "response", "schedule", "throttle"):
        lines += _fields(f"`{part}`", rule["properties"][part])
    return "\n".join(lines)


def catalog_table() -> str:
    """Markdown table of every AADSTS code fakests knows."""
    lines = [f"{len(CATALOG)} codes. Status is the token endpoint's; T = transient (retryable). Evidence: how "
             "sure we are of the wire form (recorded in real traffic, documented by Microsoft, or inferred).", "",
             "| code | name | `error` | HTTP | `suberror` | T | evidence | message |",
             "|---|---|---|---|---|---|---|---|"]
    for code in sorted(CATALOG):
        e = CATALOG[code]
        message = e.message.replace("|", "\\|")
        lines.append(f"| {code} | {e.name} | `{e.error}` | {e.status} | {e.suberror or ''} | "
                     f"{'yes' if e.transient else ''} | {e.evidence} | {message} |")
    return "\n".join(lines) + "\n"


GENERATORS = {"scenario-reference": scenario_reference, "aadsts-catalog": catalog_table}


def render(text: str) -> str:
    """``text`` with every generated block replaced by its current content."""

    def fill(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in GENERATORS:
            return match.group(0)
        return f"{match.group(1)}{GENERATORS[name]()}{match.group(4)}"

    return _BLOCK.sub(fill, text)


def schema_files() -> dict[str, str]:
    """The JSON Schemas editors use, as files under ``schemas/``."""
    from .state.config_schema import SCHEMA as CONFIG_SCHEMA

    return {"scenario.schema.json": json.dumps(SCENARIO_SCHEMA, indent=2) + "\n",
            "config.schema.json": json.dumps(CONFIG_SCHEMA, indent=2) + "\n"}


def main(argv: list[str] | None = None) -> int:
    """Rewrite README.md's generated blocks and ``schemas/``; ``--check`` only reports drift (exit 1)."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[args.index("--root") + 1]) if "--root" in args else Path.cwd()
    stale = []
    readme = root / "README.md"
    current = readme.read_text(encoding="utf-8")
    wanted = render(current)
    targets = {readme: (current, wanted)}
    for name, text in schema_files().items():
        path = root / "schemas" / name
        targets[path] = (path.read_text(encoding="utf-8") if path.exists() else "", text)
    for path, (have, want) in targets.items():
        if have != want:
            stale.append(str(path))
            if "--check" not in args:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(want, encoding="utf-8")
    if stale and "--check" in args:
        print("out of date (run python -m fakests.docs):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
