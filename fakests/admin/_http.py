"""What every admin endpoint shares: the bearer-token check, JSON bodies checked field by field, the
sandbox named in the path, and errors as ``{"error", "error_description"}`` (never a 500)."""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..state.errors import ConfigError
from ..state.sandbox import Sandbox, Sandboxes
from ..state.settings import Settings
from ..state.tls import TlsFiles


class Host(Protocol):
    """What the admin API needs of the running server (``server.runtime.Runtime`` is one)."""

    settings: Settings
    sandboxes: Sandboxes
    tls: TlsFiles | None
    client_cert_path: Path


Endpoint = Callable[[Request], Awaitable[Response]]
BODY = "body"  # the ConfigError source of request bodies: keys then read like "secrets[0].value"

class AdminError(Exception):
    """A request the admin API refuses: rendered as ``{"error", "error_description"}``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def error_response(status: int, error: str, description: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


def admin_endpoint(handler: Endpoint, *, public: bool = False) -> Endpoint:
    """Wrap a handler: the bearer-token check, then ``AdminError``/``ConfigError`` as JSON errors."""

    async def endpoint(request: Request) -> Response:
        token = host_of(request).settings.admin_token
        if token and not public:
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
                return error_response(401, "unauthorized", "This endpoint needs 'Authorization: Bearer <admin_token>'.",
                              {"WWW-Authenticate": 'Bearer realm="fakests-admin"'})
        try:
            response = await handler(request)
        except AdminError as exc:
            return error_response(exc.status, exc.error, exc.description)
        except ConfigError as exc:
            return error_response(400, "invalid_request", f"{exc.key}: {exc.reason}" if exc.key else exc.reason)
        if request.method != "GET" and response.status_code < 400 and "sandbox_id" in request.path_params:
            # Every change to a sandbox comes through here: with several workers, the others must see it.
            sandboxes_of(request).persist(request.path_params["sandbox_id"])
        return response

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def host_of(request: Request) -> Host:
    host: Host = request.app.state.runtime
    return host


def sandboxes_of(request: Request) -> Sandboxes:
    sandboxes: Sandboxes = request.app.state.sandboxes
    return sandboxes


def sandbox_of(request: Request) -> Sandbox:
    sandbox_id = request.path_params["sandbox_id"]
    sb = sandboxes_of(request).get(sandbox_id)
    if sb is None:
        raise AdminError(404, "not_found", f"No sandbox {sandbox_id!r} (it may have expired or been deleted).")
    sb.touch()  # admin use keeps a sandbox alive too (Sandboxes.expire_idle)
    return sb


async def read_raw_body(request: Request) -> bytes:
    """The request body, refused with a 413 past ``max_body``."""
    raw = await request.body()
    if len(raw) > host_of(request).settings.max_body:
        raise AdminError(413, "invalid_request", "The request body is too large.")
    return raw


async def read_body(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The JSON object in the request body; ``{}`` for an empty body when ``optional``."""
    raw = await read_raw_body(request)
    if not raw:  # absent; whitespace alone is not JSON, and is rejected below
        if optional:
            return {}
        raise AdminError(400, "invalid_request", "A JSON object body is required.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdminError(400, "invalid_request", f"The body is not valid JSON: {exc}") from None
    except RecursionError:
        raise AdminError(400, "invalid_request", "The body is not valid JSON: nested too deeply.") from None
    if not isinstance(body, dict):
        raise AdminError(400, "invalid_request", f"The body must be a JSON object, got {type(body).__name__}.")
    return body


def checked_fields(body: Mapping[str, Any], spec: Mapping[str, type], *, required: bool = False) -> dict[str, Any]:
    """``body`` checked against ``spec`` (name -> bool, str, float or dict): unknown fields and wrong types fail."""
    for name in body:
        if name not in spec:
            raise AdminError(400, "invalid_request", f"{name}: unknown field; known: {', '.join(spec) or 'none'}")
    if required and not body:
        raise AdminError(400, "invalid_request", f"Give at least one of: {', '.join(spec)}.")
    for name, value in body.items():
        kind = spec[name]
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not (isinstance(value, bool) if kind is bool else number if kind is float else isinstance(value, kind)):
            wanted = {bool: "true or false", float: "a number", str: "a string", dict: "a JSON object"}[kind]
            raise AdminError(400, "invalid_request", f"{name}: must be {wanted}, got {json.dumps(value)}")
    return dict(body)
