"""What every admin endpoint shares: the browser guard, the bearer-token check, JSON bodies checked field by
field, the sandbox named in the path, and errors as ``{"error", "error_description"}`` (never a 500).

The browser guard exists because fakests runs beside a developer's browser, and on loopback its admin API
is open by default. A web page from another origin must not change or read its state, so, as Vite,
webpack-dev-server and Jupyter do for the same class of attack:
- a request whose ``Origin`` is not fakests' own (or whose ``Sec-Fetch-Site`` says cross-site) is refused:
  a page's cross-origin ``fetch`` and form posts always carry one;
- a body must be sent with a type a browser cannot send cross-origin without a preflight (JSON, YAML),
  and fakests answers no preflight: so even a browser that sent no ``Origin`` cannot write;
- while no admin token is set, the ``Host`` must be one fakests is known by (loopback names and
  addresses, the public URL, the TLS names): DNS rebinding gives the attacker's page the same origin
  as fakests, but not its host name.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..failures.faults import INPROCESS_KEY
from ..state.errors import ConfigError, StoreUnavailable
from ..state.sandbox import Sandbox, Sandboxes
from ..state.settings import Settings
from ..state.tls import TlsFiles
from ..sts.context import origin_of


class Host(Protocol):
    """What the admin API needs of the running server (``server.runtime.Runtime`` is one)."""

    settings: Settings
    sandboxes: Sandboxes
    tls: TlsFiles | None
    client_cert_path: Path

    def identity_port(self) -> int | None:
        """The port of the managed-identity endpoints beside the STS; None when none are served."""


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
        settings = host_of(request).settings
        token = settings.admin_token
        refused = browser_guard(request, settings)
        if refused is not None:
            return refused
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
        except StoreUnavailable as exc:
            return error_response(503, "temporarily_unavailable", f"{exc}; retry in {exc.retry_after} s.",
                                  {"Retry-After": str(exc.retry_after)})
        if request.method != "GET" and response.status_code < 400 and "sandbox_id" in request.path_params:
            # Every change to a sandbox comes through here: with several workers, the others must see it.
            sandboxes_of(request).persist(request.path_params["sandbox_id"])
        return response

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


# Content types a page may send cross-origin without a preflight (the Fetch standard's CORS-safelisted
# request-header values of Content-Type), and none at all: a body sent so is refused.
SIMPLE_TYPES = ("", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data")



def browser_guard(request: Request, settings: Settings) -> Response | None:
    """A 403 or 415 for what a web page from another origin may have sent; None for everything else."""
    headers = request.headers
    origin = headers.get("origin")
    own = {origin_of(request, None, {"host": headers.get("host", "")})}
    if settings.public_url:
        own.add(settings.public_url.rstrip("/"))
    if (origin is not None and origin not in own) or headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return error_response(403, "forbidden", f"Cross-origin requests to the admin API are refused (Origin: "
                                                f"{origin or 'none'}); call it from a test, a script or the dashboard.")
    if request.method not in ("GET", "HEAD", "OPTIONS") and _has_body(request):
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type in SIMPLE_TYPES:
            return error_response(415, "invalid_request", f"A body sent as {media_type or 'no Content-Type'!r} is "
                                  "refused (a web page could send it cross-origin): send JSON (Content-Type: "
                                  "application/json), or a scenario as YAML (Content-Type: application/yaml).")
    trusted = request.scope.get(INPROCESS_KEY)  # the in-process transport: a test, never a browser
    if not settings.admin_token and not trusted and not _known_host(headers.get("host"), settings):
        return error_response(403, "forbidden", f"Host {headers.get('host', '')!r} is not a name this fakests is known "
                              "by, and its admin API has no token: use localhost or 127.0.0.1, add the name to "
                              "tls_names or public_url, or set an admin token.")
    return None


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length.strip() not in ("", "0")) or "transfer-encoding" in request.headers


def _known_host(host: str | None, settings: Settings) -> bool:
    """Whether ``host`` (a Host header) names fakests: loopback, the public URL's host or a TLS name."""
    if not host:
        return False
    name = host.lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        if ipaddress.ip_address(name).is_loopback:
            return True
    except ValueError:
        pass
    names = {n.lower() for n in settings.tls_names}
    if settings.public_url:
        names.add((urlsplit(settings.public_url).hostname or "").lower())
    if settings.host not in ("0.0.0.0", "::", ""):
        names.add(settings.host.lower())
    return name in names


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
    """The request body, refused with a 413 past ``max_body``: at once when ``Content-Length`` says so,
    else as soon as what arrived passes it (a 100 MB body is never held in memory to be refused)."""
    limit = host_of(request).settings.max_body
    length = request.headers.get("content-length", "")
    if length.strip().isdigit() and int(length) > limit:
        raise AdminError(413, "invalid_request", "The request body is too large.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise AdminError(413, "invalid_request", "The request body is too large.")
    return bytes(body)


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
