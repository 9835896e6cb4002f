"""The path every STS request takes: ids, parameters, sandbox, the failure hook, errors, journal.

``sts_endpoint(name, handler)`` turns ``async handler(StsRequest) -> Response`` into a Starlette
endpoint. Around the handler it: reads the query and form (bounded, malformed -> AADSTS9002313),
finds the sandbox and tenant, offers the request to the sandbox's ``interceptor`` (scripted
failures answer here, before any validation, exactly like a real outage would), renders a raised
``StsError`` the way this endpoint renders errors, turns any other exception into Entra's generic
500 (and remembers it, so the pytest fixture can fail the test), adds ``client-request-id`` and
``x-ms-request-id`` to every response, and writes one journal entry and one log line.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..state.directory import Tenant
from ..state.errors import StoreUnavailable
from ..state.journal import next_seq, redact
from ..state.sandbox import Sandbox, Sandboxes
from .errors import StsError, internal_error, render_json, render_page
from .ids import RequestIds

log = logging.getLogger("fakests.requests")
# An ASGI scope entry naming the sandbox that answers, whatever tenant or client the request names: set by
# in-process interception (``testing.intercept``), where requests name an app's own fixed ids.
SANDBOX_KEY = "fakests.sandbox"
MAX_INTERNAL_ERRORS = 100  # per sandbox

Handler = Callable[["StsRequest"], Awaitable[Response]]
ErrorRenderer = Callable[["StsRequest", StsError], Response]
StatusRenderer = Callable[["StsRequest", int, "str | None", dict[str, str]], Response]


@dataclass(frozen=True)
class ErrorShape:
    """How an endpoint that does not speak Entra's JSON renders what it refuses (the managed-identity
    endpoints, each in its source's shape): an Entra error met while serving it, and a scenario's bare
    ``status`` (no body). The endpoint's own failures and the scenario engine's use the same one."""

    error: ErrorRenderer
    status: StatusRenderer


@dataclass
class StsRequest:
    """One request to an STS endpoint, with everything handlers need and the journal records."""

    request: Request
    endpoint: str
    sandbox: Sandbox
    tenant: Tenant | None
    segment: str
    query: dict[str, str]
    form: dict[str, str]
    ids: RequestIds
    origin: str
    now: float
    headers: dict[str, str]  # by lower-case name, first value (``first_headers``)
    notes: dict[str, Any] = field(default_factory=dict)  # rule, fault, grant_type... for the journal
    shape: ErrorShape | None = None  # the endpoint's own error shape, if not Entra's (``sts_endpoint``)

    @property
    def params(self) -> dict[str, str]:
        """Query then form; the form wins (Entra reads POST bodies, msal-node adds query extras)."""
        return {**self.query, **self.form}

    def get(self, name: str) -> str | None:
        value = self.form.get(name, self.query.get(name))
        return value if value else None

    def require(self, name: str) -> str:
        """A parameter that must be present and non-empty (AADSTS900144 otherwise)."""
        value = self.get(name)
        if value is None:
            raise StsError(900144, parameter=name)
        return value

    @property
    def client_id(self) -> str | None:
        return self.get("client_id")

    def url(self, path: str) -> str:
        return self.origin + path


class BodyTooLarge(Exception):
    pass


def first_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """A request's headers by name (ASGI names are lower case), first value of each: what Starlette's
    ``Headers.get`` returns, decoded once per request instead of scanned per lookup."""
    headers: dict[str, str] = {}
    for key, value in raw:
        name = key.decode("latin-1")
        if name not in headers:
            headers[name] = value.decode("latin-1")
    return headers


async def read_params(request: Request, max_body: int,
                      headers: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Query and form parameters, first value of each name. Only url-encoded bodies are forms.
    ``headers``: the request's, from ``first_headers``."""
    query = dict(reversed(list(request.query_params.multi_items()))) if request.scope.get("query_string") else {}
    if request.method != "POST":
        return query, {}
    declared = headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > max_body:
        raise BodyTooLarge
    body = await _read_body(request, max_body)
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if not body or ctype != "application/x-www-form-urlencoded":
        return query, {}
    try:
        pairs = parse_form(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StsError(9002313, detail=f"The request body could not be parsed: {type(exc).__name__}.") from None
    return query, dict(reversed(pairs))


MAX_FORM_FIELDS = 1000


def parse_form(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict")``,
    answer for answer and error for error (a test holds the two together), without its per-field
    argument coercion: every token request parses one form."""
    if not text:
        return []
    if text.count("&") >= MAX_FORM_FIELDS:
        raise ValueError("Max number of fields exceeded")
    pairs = []
    for item in text.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = unquote(name, errors="strict")
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = unquote(value, errors="strict")
        pairs.append((name, value))
    return pairs


async def _read_body(request: Request, max_body: int) -> bytes:
    """The request body from ASGI ``receive`` (``Request.stream`` costs an async generator per request),
    up to ``max_body`` bytes. Each STS request reads its body once, here."""
    receive = request.receive
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        body += message.get("body", b"")
        if len(body) > max_body:
            raise BodyTooLarge
        if not message.get("more_body", False):
            return body


# A Host header that can be a URL's authority: a name or IPv4 address, or an [IPv6] address; a port.
_HOST = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def origin_of(request: Request, public_url: str | None, headers: dict[str, str] | None = None) -> str:
    """The origin clients reach us at: the configured public URL, else scheme://Host of the request
    (the address the server listens on when Host is absent or cannot be part of a URL, e.g. ``[::1``)."""
    if public_url:
        return public_url.rstrip("/")
    host = (headers if headers is not None else request.headers).get("host", "")
    if not _HOST.fullmatch(host):
        name, port = request.scope.get("server") or ("localhost", None)
        host = f"[{name}]" if ":" in name else name
        host = f"{host}:{port}" if port else host
    return f"{request.scope.get('scheme', 'http')}://{host}"


def request_path(request: Request) -> str:
    """``request.url.path`` without building the URL (several µs per request): for a plain path, one that
    starts with a single "/" and is printable ASCII, it is the path with "?", "#" and "\\" escaped."""
    path: str = request.scope["path"]
    if path.startswith("/") and not path.startswith("//") and path.isascii() and path.isprintable():
        return path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    return request.url.path


# --- CORS for browser apps ---------------------------------------------------------------------------
# The endpoints a single-page app calls with fetch(): the token endpoint (code and refresh-token
# redemption; its grant rules decide who may redeem cross-origin) and the device-code endpoint.
# Discovery and the JWKS answer with ``Access-Control-Allow-Origin: *`` themselves (entra-wire.md §1.3).
CORS_ENDPOINTS = frozenset({"token", "devicecode"})
# What msal-browser may send on /token: its client-request-id, library headers (x-client-SKU, -VER,
# -OS, -CPU), x-ms-* (x-ms-lib-capability...), x-app-name/-ver, and X-AnchorMailbox (msal-common
# Token.ts ``createTokenRequestHeaders`` adds it unless ``preventCorsPreflight``).
_ALLOWED_REQUEST_HEADERS = re.compile(
    r"content-type|client-request-id|return-client-request-id|x-anchormailbox|x-client-[a-z0-9-]+|x-ms-[a-z0-9-]+"
    r"|x-app-[a-z0-9-]+")
# What a browser app must read of an answer: the ids (an app shows them with an error) and Retry-After
# (msal-browser's throttling reads it). Other safelisted headers need no exposing.
EXPOSED_HEADERS = "client-request-id, x-ms-request-id, Retry-After"


def cors_headers(origin: str) -> dict[str, str]:
    """The CORS headers of every answer (success, Entra error, scripted failure, 429, 5xx) to a request
    from ``origin``: the origin echoed, so the browser hands the body to the app. Without them an error
    is an opaque network failure and the app can never show the AADSTS code and the correlation id.
    Which origins get tokens is the grants' business (``grants.cross_origin_rules``): every error is
    readable, a success only reaches a spa origin. Echoing the origin rather than ``*`` is what a
    credentialed request would need (Entra's exact value was not found; clients-2026.md §3)."""
    return {"access-control-allow-origin": origin, "access-control-expose-headers": EXPOSED_HEADERS,
            "vary": "Origin"}


def is_preflight(request: Request, headers: dict[str, str]) -> bool:
    """A CORS preflight: ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``. Any other
    ``OPTIONS`` is a wrong method (AADSTS900561), as before."""
    return (request.method == "OPTIONS" and "origin" in headers
            and "access-control-request-method" in headers)


def preflight(ctx: StsRequest) -> Response:
    """A CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``): POST allowed, with the
    request headers msal-browser sends (others are left out, so a browser refuses them as it would
    with Entra). It is answered before scripted failures, like a front door that is up: a rule armed
    on ``token`` applies to the POST that follows, which is what an app then sees."""
    wanted = ctx.headers.get("access-control-request-headers", "")
    allowed = [h.strip() for h in wanted.split(",") if _ALLOWED_REQUEST_HEADERS.fullmatch(h.strip().lower())]
    headers = {"access-control-allow-methods": "POST, OPTIONS", "access-control-max-age": "86400"}
    if allowed:
        headers["access-control-allow-headers"] = ", ".join(allowed)
    ctx.notes["preflight"] = True
    return Response(status_code=204, headers=headers)


def sts_endpoint(name: str, handler: Handler, *, errors: str = "json",
                 shape: ErrorShape | None = None) -> Callable[[Request], Awaitable[Response]]:
    """Wrap ``handler`` as the STS endpoint ``name``; ``errors`` is "json" or "page" (HTML), or
    ``shape`` renders them (the managed-identity endpoints, in their sources' shapes)."""

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        sandboxes: Sandboxes = request.app.state.sandboxes
        settings = sandboxes.settings
        segment = request.path_params.get("tenant", "common")
        headers = first_headers(request.scope["headers"])
        origin = origin_of(request, settings.public_url, headers)
        ctx: StsRequest | None = None
        sandbox = sandboxes.default
        ids = RequestIds.new(headers, request.query_params if request.scope.get("query_string") else None)
        try:
            query, form = await read_params(request, settings.max_body, headers)
            # The ids come from the headers, then the query, then the form: only a form naming the
            # client's id when neither of the others did changes them.
            if ids.client_request_id is None and (form.get("client-request-id") or form.get("x-ms-client-request-id")):
                ids = RequestIds.new(form)
            sandbox, tenant = sandboxes.resolve(segment, form.get("client_id") or query.get("client_id"),
                                                pinned=request.scope.get(SANDBOX_KEY))
            sandbox.touch()
            ctx = StsRequest(request, name, sandbox, tenant, segment, query, form, ids, origin, sandbox.now(),
                             headers=headers, shape=shape)
            response = preflight(ctx) if name in CORS_ENDPOINTS and is_preflight(request, headers) else None
            if response is None and sandbox.interceptor is not None:
                answer = sandbox.interceptor(ctx)
                response = await answer if inspect.isawaitable(answer) else answer
            if response is None:
                response = await handler(ctx)
        except ClientDisconnect:
            # The client gave up mid-body: nobody reads an answer, but the journal shows what it did.
            ctx = ctx or _unparsed(request, name, sandboxes, segment, ids, origin, headers, shape)
            ctx.notes.update(error="client_disconnected")
            response = Response(status_code=499)  # nginx's "client closed request"; never sent
        except (StsError, BodyTooLarge, StoreUnavailable) as raised:
            exc = _as_sts_error(raised)
            if ctx is None:  # rejected while reading the body: journal it all the same
                ctx = _unparsed(request, name, sandboxes, segment, ids, origin, headers, shape)
            ctx.notes.setdefault("aadsts", exc.code)
            ctx.notes.setdefault("error", exc.error)
            page = errors == "page" and not isinstance(raised, BodyTooLarge)
            if shape is not None:
                response = shape.error(ctx, exc)
            else:
                response = render_page(exc, ids, ctx.now) if page else render_json(exc, ids, ctx.now, origin)
        except Exception:
            text = traceback.format_exc()
            # Kept for the fixture to fail the test with; the first ones say what broke, so a flood of
            # the same crash is bounded (memory, the store, the log).
            try:
                if len(sandbox.internal_errors) < MAX_INTERNAL_ERRORS:
                    log.error("internal error in %s: %s", name, text)
                    sandbox.internal_errors.append(text)
            except Exception:  # the store that keeps them is failing too: the answer still goes out
                _lost(sandbox)
            response = internal_error(ids, time.time(), origin)
            if ctx is not None:
                ctx.notes.update(aadsts=50000, error="server_error")
        _add_missing_headers(response, ids.headers())
        if name in CORS_ENDPOINTS and "origin" in headers:
            _add_missing_headers(response, cors_headers(headers["origin"]))
        if ctx is not None:
            try:
                committed = _record(ctx, response, (time.perf_counter() - started) * 1000)
                if committed is not None:  # a shared journal: the row is in the store before the answer leaves
                    await committed
            except Exception:  # a full disk, an unreachable store: a test double keeps answering
                _lost(ctx.sandbox)
        return response

    endpoint.__name__ = name
    return endpoint


def _as_sts_error(raised: Exception) -> StsError:
    """The Entra error a refused request gets: its own, 9002313/413 for a body over ``max_body``, or, when
    the shared store does not answer (replicas), Entra's 503 for a backend it cannot reach, with
    Retry-After, rather than a 500 that fails the test (AADSTS90033 is transient)."""
    if isinstance(raised, StsError):
        return raised
    if isinstance(raised, BodyTooLarge):
        return StsError(9002313, status=413, detail="The request body is too large.")
    assert isinstance(raised, StoreUnavailable)
    return StsError(90033, headers={"Retry-After": str(raised.retry_after)})


def _lost(sandbox: Sandbox) -> None:
    """Count a journal row that could not be written; log the first and then every thousandth."""
    sandbox.journal_lost += 1
    if sandbox.journal_lost == 1 or sandbox.journal_lost % 1000 == 0:
        log.warning("sandbox %s: %d request(s) could not be journaled: %s", sandbox.sandbox_id,
                    sandbox.journal_lost, traceback.format_exc(limit=1).strip().splitlines()[-1])


def _unparsed(request: Request, name: str, sandboxes: Sandboxes, segment: str, ids: RequestIds,
              origin: str, headers: dict[str, str], shape: ErrorShape | None) -> StsRequest:
    """The context of a request rejected before its body was read (malformed or too large), so that
    it is journaled like any other: its sandbox is found from the path and the query alone."""
    query = dict(reversed(list(request.query_params.multi_items())))
    sandbox, tenant = sandboxes.resolve(segment, query.get("client_id"), pinned=request.scope.get(SANDBOX_KEY))
    return StsRequest(request, name, sandbox, tenant, segment, query, {}, ids, origin, sandbox.now(), headers=headers,
                      shape=shape)


def _header(raw: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of header ``name`` (lower case) in ASGI raw headers: what Starlette's
    ``Headers.get`` returns, without a ``Headers`` object and a ``KeyError`` per missing name."""
    for key, value in raw:
        if key == name:
            return value.decode("latin-1")
    return None


def _add_missing_headers(response: Response, headers: dict[str, str]) -> None:
    """``response.headers.setdefault(name, value)`` for each of ``headers`` (lower-case names), on the
    raw list that ``response.headers`` wraps."""
    raw = response.raw_headers
    present = {key for key, _ in raw}
    for key, value in headers.items():
        name = key.encode("latin-1")
        if name not in present:
            raw.append((name, value.encode("latin-1")))


def _record(ctx: StsRequest, response: Response, duration_ms: float) -> Awaitable[None] | None:
    params = ctx.params
    notes = ctx.notes
    # JournalEntry's fields, in order: the journal builds the entry only when it is read.
    row = (
        next_seq(), ctx.sandbox.sandbox_id, ctx.endpoint, ctx.request.method, request_path(ctx.request), ctx.now,
        redact(params), notes.get("client_id") or params.get("client_id"), params.get("grant_type"),
        ctx.ids.client_request_id, ctx.ids.trace_id, ctx.ids.correlation_id, response.status_code,
        notes.get("aadsts"), notes.get("error"), notes.get("rule"), _header(response.raw_headers, b"retry-after"),
        notes.get("fault"), round(duration_ms, 3), ctx.headers.get("user-agent"), bool(notes.get("early_retry")),
        os.getpid(),
    )
    committed = ctx.sandbox.journal.record_row(row)
    if ctx.sandbox.settings.log_requests and log.isEnabledFor(logging.INFO):
        log.info("%s %s %s sandbox=%s status=%s aadsts=%s rule=%s correlation_id=%s", ctx.request.method,
                 row[4], ctx.endpoint, row[1], row[12], row[13] or "-", row[15] or "-", row[11])
    return committed

