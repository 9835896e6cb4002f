"""A small web app that signs users in with MSAL Python's auth code flow (Starlette + uvicorn).

Configuration comes from the environment:

    AUTHORITY      e.g. https://localhost:8443/consumers (or .../<tenant id>, .../common)
    CLIENT_ID      the app registration's client id
    CLIENT_SECRET  its client secret
    CA_BUNDLE      optional: a PEM file; when set, the app trusts exactly these CAs
    PORT           optional: the port to listen on, 127.0.0.1 only (default 5000)

Run it with ``python examples/webapp/app.py``; tests build it with ``create_app(Settings(...))``.
Why the error page can always show a correlation id, even when MSAL raises on an HTTP 5xx and
keeps none of the response: see ``RecordingHttpClient`` and README.md next to this file.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import msal
import requests
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

logger = logging.getLogger("webapp")

SCOPES = ["User.Read"]
SESSION_COOKIE = "webapp_session"
HTTP_TIMEOUT = 10.0  # seconds, per request to the sign-in service
CLIENT_REQUEST_ID = "client-request-id"  # the header MSAL sends (msal/telemetry.py); Entra echoes it
# What MSAL raises when the sign-in service fails rather than answers: an HTTP 5xx, no (complete)
# answer, or a body that is not JSON. Building an application, MSAL also raises ValueError when it could
# not read the authority's OpenID configuration; redeeming a code, ValueError means a state mismatch.
SERVICE_ERRORS: tuple[type[Exception], ...] = (msal.exceptions.MsalServiceError, requests.RequestException,
                                               json.JSONDecodeError)
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


# --- configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    authority: str
    client_id: str
    client_secret: str
    ca_bundle: str | None = None  # None: requests' default trust store (certifi)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        missing = [name for name in ("AUTHORITY", "CLIENT_ID", "CLIENT_SECRET") if not environ.get(name)]
        if missing:
            raise ValueError(f"set the environment variable(s) {', '.join(missing)}")
        return cls(environ["AUTHORITY"], environ["CLIENT_ID"], environ["CLIENT_SECRET"],
                   environ.get("CA_BUNDLE") or None)


def http_session(settings: Settings) -> requests.Session:
    """The app's one HTTP session to the sign-in service. ``trust_env = False``: otherwise
    ``REQUESTS_CA_BUNDLE`` (or proxies from the environment) would override ``verify``."""
    session = requests.Session()
    session.trust_env = False
    if settings.ca_bundle:
        session.verify = settings.ca_bundle
    return session


# --- knowing which correlation id MSAL used -----------------------------------------------------------


@dataclass
class Exchange:
    """One request MSAL made through the app's HTTP client, and what came back (if anything did)."""

    method: str
    url: str
    client_request_id: str | None
    status: int | None = None
    request_id: str | None = None  # x-ms-request-id: the service's trace id
    aadsts: int | None = None  # from the body of a 5xx, which MSAL does not keep


class RecordingHttpClient:
    """MSAL's ``http_client`` for one sign-in step, wrapping the app's shared ``requests.Session``.

    MSAL documents ``http_client`` as an implementation of its ``HttpClient`` interface
    (msal/oauth2cli/http.py: ``post(url, params, data, headers, **kwargs)`` and ``get``). MSAL puts
    the ``client-request-id`` it generated for the call into ``headers`` (msal/telemetry.py), and
    Entra answers with it as the correlation id. On a 4xx MSAL returns Entra's error JSON, which
    carries ``correlation_id``; on a 5xx it raises ``MsalServiceError("HTTP Error: 500")`` and keeps
    nothing. Recording the header here is how the app still knows the id of the failed request.
    One instance per MSAL application object per web request, so concurrent sign-ins never mix.
    """

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self.exchanges: list[Exchange] = []

    def post(self, url: str, params: Any = None, data: Any = None, headers: Mapping[str, str] | None = None,
             **kwargs: Any) -> requests.Response:
        return self._send("POST", url, params=params, data=data, headers=headers, **kwargs)

    def get(self, url: str, params: Any = None, headers: Mapping[str, str] | None = None,
            **kwargs: Any) -> requests.Response:
        return self._send("GET", url, params=params, headers=headers, **kwargs)

    def close(self) -> None:
        """The shared session outlives this object."""

    def _send(self, method: str, url: str, *, headers: Mapping[str, str] | None, **kwargs: Any) -> requests.Response:
        exchange = Exchange(method, url, (headers or {}).get(CLIENT_REQUEST_ID))
        self.exchanges.append(exchange)
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        response = self.session.request(method, url, headers=dict(headers or {}), **kwargs)
        exchange.status = response.status_code
        exchange.request_id = response.headers.get("x-ms-request-id")
        if response.status_code >= 500:
            exchange.aadsts = _aadsts_in_body(response.text)
        return response

    def last(self) -> Exchange | None:
        return self.exchanges[-1] if self.exchanges else None

    def last_token_request(self) -> Exchange | None:
        return next((e for e in reversed(self.exchanges) if e.method == "POST" and e.url.endswith("/token")), None)


def _aadsts_in_body(text: str) -> int | None:
    try:
        codes = json.loads(text).get("error_codes") or []
    except (ValueError, AttributeError):
        return None
    return codes[0] if codes and isinstance(codes[0], int) else None


# --- what the user is told ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInProblem:
    """What the error page shows: a message, and the ids that let support find the request."""

    message: str
    aadsts: int | None = None
    correlation_id: str | None = None
    request_id: str | None = None
    status: int = 400

    @classmethod
    def from_error_result(cls, result: Mapping[str, Any]) -> SignInProblem:
        """An MSAL error dict: Entra's token error JSON (4xx), or the error the authorize endpoint
        sent back to the redirect URI (MSAL keeps only ``error``, ``error_description`` and
        ``error_uri`` of that; the ids are in the description's ``Trace ID:`` / ``Correlation ID:`` lines)."""
        description = str(result.get("error_description") or result.get("error") or "Sign-in failed.")
        codes = result.get("error_codes") or []
        code = codes[0] if codes else _search(r"\bAADSTS(\d+)", description)
        return cls(message=description.splitlines()[0],
                   aadsts=int(code) if code else None,
                   correlation_id=result.get("correlation_id") or _search(rf"Correlation ID: ({_GUID})", description),
                   request_id=result.get("trace_id") or _search(rf"Trace ID: ({_GUID})", description))

    @classmethod
    def service_failed(cls, exc: Exception, exchange: Exchange | None) -> SignInProblem:
        """MSAL raised: an HTTP 5xx (``MsalServiceError``) or no answer at all (a ``requests`` error).
        The correlation id is the ``client-request-id`` the app's HTTP client saw MSAL send."""
        status = exchange.status if exchange is not None else None
        if status is not None and status >= 400:
            message = f"The sign-in service had a problem (HTTP {status}). Try again."
        elif status is not None:
            message = "The sign-in service sent an answer the app could not read. Try again."
        elif isinstance(exc, msal.exceptions.MsalServiceError):  # replayed from MSAL's cache: nothing was sent
            message = f"The sign-in service had a problem ({exc}). Try again."
        else:
            message = "The connection to the sign-in service failed. Try again."
        return cls(message=message, aadsts=exchange.aadsts if exchange else None,
                   correlation_id=exchange.client_request_id if exchange else None,
                   request_id=exchange.request_id if exchange else None, status=502)


def _search(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1) if match else None


# --- server-side sessions -----------------------------------------------------------------------------


@dataclass
class Session:
    flow: dict[str, Any] | None = None  # the pending auth code flow (one sign-in at a time)
    user: dict[str, Any] | None = None  # the signed-in user's ID token claims
    token_cache: str | None = None  # msal.SerializableTokenCache, serialized


@dataclass
class SessionStore:
    """Sessions in memory, keyed by a random cookie value."""

    sessions: dict[str, Session] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, request: Request) -> tuple[str, Session]:
        key = request.cookies.get(SESSION_COOKIE, "")
        with self.lock:
            if key not in self.sessions:
                key = secrets.token_urlsafe(32)
                self.sessions[key] = Session()
            return key, self.sessions[key]

    def drop(self, key: str) -> None:
        with self.lock:
            self.sessions.pop(key, None)


def _with_cookie(response: Response, key: str) -> Response:
    # SameSite=None: Entra's form_post is a cross-site POST, which does not carry Lax cookies, so the
    # callback would find no session. None requires Secure; Chromium treats http://localhost and
    # http://127.0.0.1 as secure and keeps such cookies, and in production the app is served over https.
    response.set_cookie(SESSION_COOKIE, key, httponly=True, secure=True, samesite="none", path="/")
    return response


# --- pages --------------------------------------------------------------------------------------------


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:42rem;margin:3rem auto;line-height:1.5}"
        "dt{font-weight:bold}dd{font-family:monospace;margin:0 0 .5rem 0}"
        ".error{border-left:4px solid #c50f1f;padding-left:1rem}</style></head>"
        f"<body><header id=\"app-header\"><a href=\"/\">Example web app</a></header>{body}</body></html>",
        status_code=status, headers={"Cache-Control": "no-store"})


def _error_page(problem: SignInProblem) -> HTMLResponse:
    rows = [("Error code", "error-code", f"AADSTS{problem.aadsts}" if problem.aadsts else None),
            ("Correlation ID", "correlation-id", problem.correlation_id),
            ("Request ID", "request-id", problem.request_id)]
    details = "".join(f"<dt>{label}</dt><dd id=\"{ident}\">{html.escape(value)}</dd>"
                      for label, ident, value in rows if value)
    return _page("Sign-in failed", (
        "<main class=\"error\"><h1>Sign-in failed</h1>"
        f"<p id=\"message\">{html.escape(problem.message)}</p>"
        f"<dl>{details}</dl>"
        "<p>If this keeps happening, give the correlation ID to your administrator.</p>"
        "<p><a id=\"try-again\" href=\"/login\">Try again</a></p></main>"), problem.status)


# --- the app ------------------------------------------------------------------------------------------


def create_app(settings: Settings) -> Starlette:
    http = http_session(settings)
    store = SessionStore()

    def msal_app(recorder: RecordingHttpClient,
                 cache: msal.SerializableTokenCache) -> msal.ConfidentialClientApplication:
        # A new application object per request: it keeps each session's token cache apart, and the
        # recorder sees only this request's calls. It reads the authority's OpenID configuration,
        # so building it can fail like any request to the sign-in service.
        return msal.ConfidentialClientApplication(
            settings.client_id, client_credential=settings.client_secret, authority=settings.authority,
            http_client=recorder, instance_discovery=False, token_cache=cache)

    def load_cache(session: Session) -> msal.SerializableTokenCache:
        cache = msal.SerializableTokenCache()
        if session.token_cache:
            cache.deserialize(session.token_cache)
        return cache

    def failed(key: str, problem: SignInProblem) -> Response:
        code = f"AADSTS{problem.aadsts}" if problem.aadsts else "-"
        logger.warning("sign-in failed: %s (code %s, correlation id %s, request id %s)", problem.message, code,
                       problem.correlation_id or "-", problem.request_id or "-")
        return _with_cookie(_error_page(problem), key)

    async def index(request: Request) -> Response:
        key, session = store.get(request)
        if session.user:
            name = session.user.get("name") or session.user.get("preferred_username") or "there"
            body = (f"<h1>Hello, <span id=\"user-name\">{html.escape(name)}</span></h1>"
                    f"<p>Signed in as <span id=\"username\">{html.escape(session.user.get('preferred_username', ''))}"
                    "</span>.</p><p><a id=\"sign-out\" href=\"/logout\">Sign out</a></p>")
        else:
            body = "<h1>Welcome</h1><p><a id=\"sign-in\" href=\"/login\">Sign in</a></p>"
        return _with_cookie(_page("Example web app", body), key)

    async def login(request: Request) -> Response:
        key, session = store.get(request)
        redirect_uri = str(request.url_for("auth_callback"))
        recorder = RecordingHttpClient(http)
        try:
            app = await run_in_threadpool(msal_app, recorder, load_cache(session))
            flow = await run_in_threadpool(app.initiate_auth_code_flow, SCOPES, redirect_uri=redirect_uri,
                                           response_mode="form_post")
        except (*SERVICE_ERRORS, ValueError) as exc:
            return failed(key, SignInProblem.service_failed(exc, recorder.last()))
        session.flow = flow
        return _with_cookie(RedirectResponse(flow["auth_uri"], status_code=302), key)

    async def auth_callback(request: Request) -> Response:
        key, session = store.get(request)
        auth_response = dict(await request.form())
        flow, session.flow = session.flow, None  # a flow is good for one answer
        if flow is None:
            return failed(key, SignInProblem("Your sign-in took too long or was started in another window. "
                                             "Sign in again."))
        cache = load_cache(session)
        recorder = RecordingHttpClient(http)
        try:
            app = await run_in_threadpool(msal_app, recorder, cache)
        except (*SERVICE_ERRORS, ValueError) as exc:
            return failed(key, SignInProblem.service_failed(exc, recorder.last()))
        try:
            result = await run_in_threadpool(app.acquire_token_by_auth_code_flow, flow, auth_response)
        except SERVICE_ERRORS as exc:
            return failed(key, SignInProblem.service_failed(exc, recorder.last_token_request()))
        except ValueError:  # the answer's state is not this session's: a stale tab, or CSRF
            return failed(key, SignInProblem("This sign-in response does not belong to your session. Sign in again."))
        if "error" in result:
            return failed(key, SignInProblem.from_error_result(result))
        session.user = result.get("id_token_claims") or {}
        session.token_cache = cache.serialize() if cache.has_state_changed else session.token_cache
        return _with_cookie(RedirectResponse("/", status_code=303), key)

    async def logout(request: Request) -> Response:
        key, _ = store.get(request)
        store.drop(key)
        # Entra redirects after sign-out only to a URI registered on the app named by client_id.
        query = urlencode({"post_logout_redirect_uri": str(request.url_for("index")), "client_id": settings.client_id})
        target = f"{settings.authority}/oauth2/v2.0/logout?{query}"
        response = RedirectResponse(target, status_code=302)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="none")
        return response

    app = Starlette(routes=[
        Route("/", index, name="index"),
        Route("/login", login, name="login"),
        Route("/auth/callback", auth_callback, methods=["POST"], name="auth_callback"),
        Route("/logout", logout, name="logout"),
    ])
    app.state.sessions = store
    return app


def main() -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        raise SystemExit(f"{exc}: see examples/webapp/README.md") from None
    uvicorn.run(create_app(settings), host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))


if __name__ == "__main__":
    main()
