"""The admin API's scenario, token and OpenAPI endpoints (mounted by ``admin.routes`` under ``/_fakests``).

Scenario documents arrive as JSON or YAML and go through ``scenarios.parse``, the same strict check
as files: a mistake answers 400 ``invalid_scenario`` with the ``key`` and ``reason``, and nothing is
loaded. Tokens are minted by ``mint.mint_token``. The access rules and error style are ``admin``'s.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..failures import scenarios
from ..state.errors import ConfigError
from ..state.yamlfile import parse_yaml
from ..sts.context import origin_of
from . import openapi
from ._http import BODY, AdminError, admin_endpoint, checked_fields, host_of, read_body, read_raw_body, sandbox_of
from .mint import mint_token

SCENARIO_SOURCE = "request body"
JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
# A library name, not a path: no separators, no "..", and not a file name find() would open as is.
LIBRARY_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
TOKEN_FIELDS = {"kind": str, "claims": dict, "audience": str, "tenant_id": str, "user": str, "client_id": str,
                "flavor": str}


def invalid_scenario(exc: ConfigError) -> Response:
    """A scenario mistake: ``error_description`` is ``source: key: reason``, and each part on its own."""
    return JSONResponse({"error": "invalid_scenario", "error_description": str(exc), "key": exc.key,
                         "reason": exc.reason}, status_code=400)


def _parse_document(raw: bytes, media_type: str) -> Any:
    """The scenario document in a request body, as JSON or YAML by ``media_type`` (JSON when absent)."""
    if media_type in YAML_TYPES:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(SCENARIO_SOURCE, "", f"not valid UTF-8: {exc}") from None
        return parse_yaml(text, SCENARIO_SOURCE)
    if media_type and media_type not in JSON_TYPES:
        raise AdminError(415, "invalid_request", f"Content-Type {media_type!r} is not supported: send the scenario "
                                                 f"as {', '.join(JSON_TYPES + YAML_TYPES)}.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(SCENARIO_SOURCE, "", f"not valid JSON: {exc}") from None


def _library_scenario(request: Request, name: Any) -> scenarios.Scenario:
    if not isinstance(name, str) or not LIBRARY_NAME.match(name) or name.endswith((".yaml", ".yml")):
        raise ConfigError(SCENARIO_SOURCE, "name", f"must be the name of a library scenario (see GET "
                                                   f"/_fakests/scenarios), got {json.dumps(name)}")
    scenario_dir = host_of(request).settings.scenario_dir
    try:
        path = scenarios.find(name, [scenario_dir])
    except ConfigError:
        known = ", ".join(entry["name"] for entry in library(scenario_dir)) or "none"
        raise ConfigError(SCENARIO_SOURCE, "name", f"no scenario named {name!r}; known: {known}") from None
    return scenarios.load_file(path)


async def scenario_load(request: Request) -> Response:
    """``POST /sandboxes/{id}/scenarios``: load a scenario document (JSON, or YAML with Content-Type
    ``application/yaml``/``text/yaml``), or ``{"name": ...}`` for a library scenario. Its rules go after
    those loaded already; a loaded scenario of the same name (default ``scenario``) is replaced.
    201 with the new rules and their counters; 400 ``invalid_scenario`` with ``key`` and ``reason``."""
    sb = sandbox_of(request)
    raw = await read_raw_body(request)
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        if not raw.strip():
            raise ConfigError(SCENARIO_SOURCE, "", "a scenario document or {\"name\": ...} is required")
        data = _parse_document(raw, media_type)
        if isinstance(data, dict) and set(data) == {"name"}:
            scenario = _library_scenario(request, data["name"])
        else:
            scenario = scenarios.parse(data, source=SCENARIO_SOURCE)
    except ConfigError as exc:
        return invalid_scenario(exc)
    except RecursionError:
        return invalid_scenario(ConfigError(SCENARIO_SOURCE, "", "the document is nested too deeply"))
    try:
        states = sb.engine.load(scenario)
    except ConfigError as exc:  # over max_rules
        return invalid_scenario(exc)
    return JSONResponse({"name": scenario.name, "description": scenario.description.strip(), "source": scenario.source,
                         "rules": [s.summary() for s in states]}, status_code=201)


async def scenario_list(request: Request) -> Response:
    """``GET /sandboxes/{id}/scenarios``: the loaded rules in the order they are tried, with counters
    (``matched``: requests the rule selected; ``fired``: requests it answered)."""
    return JSONResponse({"rules": sandbox_of(request).engine.summary()})


async def scenario_clear(request: Request) -> Response:
    """``DELETE /sandboxes/{id}/scenarios?name=``: unload every rule, or those of scenario ``name``
    (idempotent: a name that is not loaded is not an error)."""
    sb = sandbox_of(request)
    query = dict(request.query_params)
    for key in query:
        if key != "name":
            raise AdminError(400, "invalid_request", f"{key}: unknown parameter; known: name")
    sb.engine.clear(query.get("name"))
    return Response(status_code=204)


def library(scenario_dir: Path) -> list[dict[str, Any]]:
    """The scenarios ``{"name": ...}`` can load: ``scenario_dir``'s, then the bundled ones (a name in both
    means the ``scenario_dir`` file). Each is loaded strictly; a broken one carries its error instead."""
    out: list[dict[str, Any]] = []
    seen_names: set[str] = set()
    seen_dirs: set[Path] = set()
    for origin, directory in (("scenario_dir", scenario_dir), ("bundled", scenarios.bundled_dir())):
        if not directory.is_dir() or directory.resolve() in seen_dirs:
            continue
        seen_dirs.add(directory.resolve())
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")], key=lambda p: p.name):
            if path.stem in seen_names:
                continue
            seen_names.add(path.stem)
            entry: dict[str, Any] = {"name": path.stem, "path": str(path), "origin": origin}
            try:
                scenario = scenarios.load_file(path)
            except ConfigError as exc:
                entry.update(error=str(exc), key=exc.key, reason=exc.reason)
            except RecursionError:
                entry.update(error=f"{path}: nested too deeply", key="", reason="nested too deeply")
            else:
                entry.update(description=scenario.description.strip(), rules=len(scenario.rules))
            out.append(entry)
    return out


async def scenario_library(request: Request) -> Response:
    """``GET /scenarios``: the scenario library (``scenario_dir`` and the bundled scenarios): name,
    description, path and rule count of each, or ``error``/``key``/``reason`` for a broken file."""
    return JSONResponse({"scenarios": library(host_of(request).settings.scenario_dir)})


async def token_mint(request: Request) -> Response:
    """``POST /sandboxes/{id}/tokens``: sign a token for testing a resource server, valid or wrong in
    one chosen way (``flavor``); see ``mint.mint_token`` for the fields and their defaults."""
    sb = sandbox_of(request)
    body = checked_fields(await read_body(request, optional=True), TOKEN_FIELDS)
    origin = origin_of(request, host_of(request).settings.public_url)
    return JSONResponse(mint_token(sb, origin, source=BODY, **body))


async def openapi_document(request: Request) -> Response:
    """``GET /openapi.json``: the OpenAPI 3.1 description of this admin API."""
    origin = origin_of(request, host_of(request).settings.public_url)
    return JSONResponse(openapi.document(f"{origin}/_fakests"))


def routes() -> list[BaseRoute]:
    """The routes of this module, relative to ``/_fakests``."""
    sb = "/sandboxes/{sandbox_id}"
    return [
        Route("/openapi.json", admin_endpoint(openapi_document), methods=["GET"]),
        Route("/scenarios", admin_endpoint(scenario_library), methods=["GET"]),
        Route(f"{sb}/scenarios", admin_endpoint(scenario_load), methods=["POST"]),
        Route(f"{sb}/scenarios", admin_endpoint(scenario_list), methods=["GET"]),
        Route(f"{sb}/scenarios", admin_endpoint(scenario_clear), methods=["DELETE"]),
        Route(f"{sb}/tokens", admin_endpoint(token_mint), methods=["POST"]),
    ]
