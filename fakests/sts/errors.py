"""The one error type, ``StsError``, and the one place that renders it.

Entra renders an AADSTS error three ways (entra-wire.md §5): token-endpoint JSON; a redirect to
the client's ``redirect_uri`` carrying ``error``/``error_description``/``error_uri``/``state``; and,
when the redirect target cannot be trusted (unknown client, bad redirect URI, unknown tenant), its
own HTML "Sorry, but we're having trouble signing you in" page. All three come from here.

Config and scenario mistakes are a different thing (``ConfigError``): they stop start-up and name
the file, the key and the reason.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from . import pages
from .catalog import Aadsts, lookup
from .ids import RequestIds, entra_timestamp, page_timestamp

# Token-endpoint responses never cache (entra-wire.md §5.3).
NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", "Expires": "-1"}
# Entra's sign-in, consent, device-code, logout and error pages refuse to be framed, so a page from
# another origin cannot overlay them (clickjacking). Redirects back to the app carry no page to frame.
NO_FRAMING = {"X-Frame-Options": "DENY"}


class EntraJSON(JSONResponse):
    """JSON as Entra's STS sends it, answers and errors alike: ``application/json; charset=utf-8``
    (entra-wire.md §1 discovery, §5.3 token endpoint). The admin API keeps Starlette's plain JSON."""

    media_type = "application/json; charset=utf-8"


class StsError(Exception):
    """An Entra error: an AADSTS code from the catalog, with the values its message needs.

    ``status``, ``error``, ``suberror`` and ``claims`` override the catalog (scenarios do that, and
    a few endpoints answer the same code with another ``error``, e.g. ``invalid_tenant`` for 90002 on
    discovery). ``headers`` are added to the response (``Retry-After``).
    """

    def __init__(
        self,
        code: int,
        *,
        status: int | None = None,
        error: str | None = None,
        suberror: str | None = None,
        claims: str | None = None,
        headers: dict[str, str] | None = None,
        error_subcode: str | None = None,
        **params: object,
    ) -> None:
        self.entry: Aadsts = lookup(code)
        self.params = params
        self.status = status or self.entry.status
        self.error = error or self.entry.error
        self.suberror = suberror if suberror is not None else self.entry.suberror
        self.claims = claims
        self.headers = headers or {}
        self.error_subcode = error_subcode
        super().__init__(self.description)

    @property
    def code(self) -> int:
        return self.entry.code

    @property
    def message(self) -> str:
        """The catalog message with this error's values; a missing value shows as ``{name}``."""
        return self.entry.message.format_map(_Keep(self.params))

    @property
    def description(self) -> str:
        return f"AADSTS{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"StsError({self.code}, status={self.status}, error={self.error!r})"


class _Keep(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def error_body(exc: StsError, ids: RequestIds, now: float, origin: str) -> dict[str, Any]:
    """Entra's token-endpoint error JSON (entra-wire.md §5.1), fields in Entra's order."""
    stamp = entra_timestamp(now)
    body: dict[str, Any] = {
        "error": exc.error,
        "error_description": (
            f"{exc.description}\r\nTrace ID: {ids.trace_id}\r\n"
            f"Correlation ID: {ids.correlation_id}\r\nTimestamp: {stamp}"
        ),
        "error_codes": [exc.code],
        "timestamp": stamp,
        "trace_id": ids.trace_id,
        "correlation_id": ids.correlation_id,
        "error_uri": f"{origin}/error?code={exc.code}",
    }
    if exc.suberror:
        body["suberror"] = exc.suberror
    if exc.claims:
        body["claims"] = exc.claims
    return body


def render_json(exc: StsError, ids: RequestIds, now: float, origin: str) -> Response:
    """The error as the token, devicecode and discovery endpoints answer it."""
    headers = {**NO_STORE, **ids.headers(), **exc.headers}
    if exc.status == 401 and exc.error == "invalid_client":
        headers.setdefault("WWW-Authenticate", 'Bearer error="invalid_client"')
    return EntraJSON(error_body(exc, ids, now, origin), status_code=exc.status, headers=headers)


def _dotnet_quote(params: dict[str, str]) -> str:
    # Entra's redirects are encoded the .NET way: '+' for space and lower-case hex (§1.7).
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), urlencode(params))


def redirect_params(exc: StsError, ids: RequestIds, now: float, origin: str, state: str | None) -> dict[str, str]:
    """The parameters of an authorize error redirect (§1.7, §5.4)."""
    body = error_body(exc, ids, now, origin)
    params = {"error": exc.error}
    if exc.error_subcode:
        params["error_subcode"] = exc.error_subcode
    params["error_description"] = body["error_description"]
    params["error_uri"] = body["error_uri"]
    if exc.suberror:
        params["suberror"] = exc.suberror
    if exc.claims:
        params["claims"] = exc.claims
    if state is not None:
        params["state"] = state
    return params


def render_redirect(
    exc: StsError,
    ids: RequestIds,
    now: float,
    origin: str,
    *,
    redirect_uri: str,
    state: str | None,
    response_mode: str,
) -> Response:
    """The error sent back to a trusted ``redirect_uri`` in the requested ``response_mode``."""
    return deliver(redirect_uri, redirect_params(exc, ids, now, origin, state), response_mode, ids)


def deliver(redirect_uri: str, params: dict[str, str], response_mode: str, ids: RequestIds) -> Response:
    """Send authorize results to the client: a 302 with query or fragment, or a form_post page."""
    headers = {**NO_STORE, **ids.headers()}
    if response_mode == "form_post":
        return HTMLResponse(pages.form_post(redirect_uri, params), headers=headers)
    sep = "#" if response_mode == "fragment" else ("&" if "?" in redirect_uri else "?")
    return RedirectResponse(redirect_uri + sep + _dotnet_quote(params), status_code=302, headers=headers)


def render_page(exc: StsError, ids: RequestIds, now: float, *, status: int | None = None) -> Response:
    """Entra's own sign-in error page, for errors it cannot send back to the client."""
    html = pages.error_page(
        message=exc.description,
        request_id=ids.trace_id,
        correlation_id=ids.correlation_id,
        timestamp=page_timestamp(now),
    )
    return HTMLResponse(html, status_code=status or exc.status, headers={**NO_STORE, **NO_FRAMING, **ids.headers()})


def internal_error(ids: RequestIds, now: float, origin: str) -> Response:
    """What a bug in fakests looks like to a client: Entra's generic 500, never a traceback."""
    return render_json(StsError(50000, status=500), ids, now, origin)


def json_dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
