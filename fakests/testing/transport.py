"""In-process transport: a ``requests`` adapter that calls the ASGI app directly (no socket, no TLS).

MSAL Python takes any ``requests.Session`` as ``http_client`` (msal/oauth2cli/http.py), and
azure-identity takes one through azure-core's ``RequestsTransport(session=...)``, so one adapter
serves both real clients unmodified. The app runs on a private event loop in a daemon thread, the
way a server would run it; calls from any thread are handed to that loop.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.client import HTTPMessage
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from starlette.types import ASGIApp, Message
from urllib3 import HTTPHeaderDict, HTTPResponse

from ..failures.faults import INPROCESS_KEY, InProcessFault

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def shared_loop() -> asyncio.AbstractEventLoop:
    """The event loop in-process requests run on (a daemon thread of its own, made on first use)."""
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="fakests-inprocess", daemon=True).start()
            _loop = loop
    return _loop


class TransportFault(requests.ConnectionError):
    """What a dropped connection looks like in-process: ``requests.ConnectionError``, as over TCP."""


@dataclass
class Exchange:
    """What an ASGI app did with one request: what it sent before it ended, or before a fault broke it."""

    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    started: bool = False  # http.response.start was sent
    complete: bool = False  # the last body chunk was sent
    fault: InProcessFault | None = None  # the transport fault the app scripted, if any


async def exchange_asgi(app: ASGIApp, method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes,
                        client: tuple[str, int] = ("127.0.0.1", 50000), extra: Mapping[str, Any] | None = None,
                        ) -> Exchange:
    """One HTTP exchange with an ASGI app, with no mapping to any client library's exceptions.

    ``headers`` are pairs, so a repeated header stays repeated. Each client transport (``requests``,
    httpx, aiohttp) turns the result, faults included, into what that client would see over a socket."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    raw_headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers
                   if k.lower() != "host"]
    raw_headers.insert(0, (b"host", parts.netloc.encode("latin-1")))
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method.upper(),
        "scheme": parts.scheme, "path": parts.path or "/", "raw_path": (parts.path or "/").encode(),
        "query_string": parts.query.encode(), "root_path": "", "headers": raw_headers,
        "server": (parts.hostname or "localhost", port), "client": client, INPROCESS_KEY: True, **(extra or {}),
    }
    result = Exchange()
    chunks: list[bytes] = []
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            result.status = message["status"]
            result.headers = list(message.get("headers", []))
            result.started = True
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                result.complete = True

    try:
        await app(scope, receive, send)
    except InProcessFault as fault:
        result.fault = fault
    result.body = b"".join(chunks)
    return result


async def call_asgi(app: ASGIApp, method: str, url: str, headers: Mapping[str, str], body: bytes,
                    client: tuple[str, int] = ("127.0.0.1", 50000), extra: Mapping[str, Any] | None = None,
                    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One HTTP exchange with an ASGI app: (status, raw headers, body); faults raise what ``requests`` raises."""
    result = await exchange_asgi(app, method, url, headers.items(), body, client=client, extra=extra)
    fault = result.fault
    if fault is not None:
        if fault.kind == "hang":
            await asyncio.sleep(fault.hang_seconds)  # the adapter's read timeout usually ends this first
        if fault.kind == "close_mid_body":
            raise requests.exceptions.ChunkedEncodingError(
                f"('Connection broken: IncompleteRead({len(result.body)} bytes read)', IncompleteRead)")
        raise TransportFault("('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))")
    if not result.complete:
        raise TransportFault("Connection aborted: the server closed the connection before the response ended")
    return result.status, result.headers, result.body


class ASGIAdapter(HTTPAdapter):
    """A ``requests`` transport adapter that answers from an ASGI app in this process.

    Responses are built exactly as requests builds them from a socket (``HTTPAdapter.build_response``
    over a ``urllib3.HTTPResponse``), so cookies, ``raw`` and streaming behave the same; azure-core
    relies on ``response.raw``."""

    def __init__(self, app: ASGIApp, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(max_retries=0)
        self.app = app
        self.extra = dict(extra or {})  # ASGI scope entries of every request (the interception's sandbox)

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        future: Future[tuple[int, list[tuple[bytes, bytes]], bytes]] = asyncio.run_coroutine_threadsafe(
            call_asgi(self.app, request.method or "GET", request.url or "/", request.headers, body,
                      extra=self.extra), shared_loop())
        wait = timeout[1] if isinstance(timeout, tuple) else timeout
        try:
            status, headers, content = future.result(timeout=wait)
        except TimeoutError:
            future.cancel()
            raise requests.ReadTimeout(f"Read timed out. (read timeout={wait})", request=request) from None
        except TransportFault as exc:
            raise TransportFault(str(exc), request=request) from None
        except requests.exceptions.ChunkedEncodingError as exc:
            raise requests.exceptions.ChunkedEncodingError(str(exc), request=request) from None
        message = HTTPMessage()
        for k, v in headers:
            message[k.decode("latin-1")] = v.decode("latin-1")
        raw = HTTPResponse(body=io.BytesIO(content), headers=HTTPHeaderDict(message.items()), status=status,
                           preload_content=False, decode_content=False, original_response=_Original(message),
                           request_url=request.url)
        return self.build_response(request, raw)


class _Original:
    """The http.client response requests reads cookies from (``.msg``)."""

    def __init__(self, msg: HTTPMessage) -> None:
        self.msg = msg

    def info(self) -> HTTPMessage:
        return self.msg

    def isclosed(self) -> bool:
        return True


def session_for(app: ASGIApp, origin: str) -> requests.Session:
    """A ``requests.Session`` whose requests to ``origin`` (e.g. ``https://fakests.test``) are
    answered in-process. Other URLs still go to the network. ``trust_env`` is off so proxy and CA
    environment variables cannot reroute it."""
    session = requests.Session()
    session.trust_env = False
    session.mount(origin.rstrip("/") + "/", ASGIAdapter(app))
    return session
