"""In-process transport: a ``requests`` adapter that calls the ASGI app directly (no socket, no TLS).

MSAL Python takes any ``requests.Session`` as ``http_client`` (msal/oauth2cli/http.py), and
azure-identity takes one through azure-core's ``RequestsTransport(session=...)``, so one adapter
serves both real clients unmodified. The app runs on a private event loop in a daemon thread, the
way a server would run it; calls from any thread are handed to that loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from starlette.types import ASGIApp, Message

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _shared_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="fakests-inprocess", daemon=True).start()
            _loop = loop
    return _loop


class TransportFault(requests.ConnectionError):
    """What a dropped connection looks like in-process: ``requests.ConnectionError``, as over TCP."""


async def call_asgi(app: ASGIApp, method: str, url: str, headers: Mapping[str, str], body: bytes,
                    client: tuple[str, int] = ("127.0.0.1", 50000)) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One HTTP exchange with an ASGI app: (status, raw headers, body)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host_header = parts.netloc
    raw_headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()
                   if k.lower() != "host"]
    raw_headers.insert(0, (b"host", host_header.encode("latin-1")))
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method.upper(),
        "scheme": parts.scheme, "path": parts.path or "/", "raw_path": (parts.path or "/").encode(),
        "query_string": parts.query.encode(), "root_path": "", "headers": raw_headers,
        "server": (parts.hostname or "localhost", port), "client": client,
    }
    sent = False
    status = 500
    out_headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []
    done = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, out_headers, done
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done = True

    await app(scope, receive, send)
    if not done:
        raise TransportFault("Connection aborted: the server closed the connection before the response ended")
    return status, out_headers, b"".join(chunks)


class ASGIAdapter(BaseAdapter):
    """A ``requests`` transport adapter that answers from an ASGI app in this process."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__()
        self.app = app

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        future: Future[tuple[int, list[tuple[bytes, bytes]], bytes]] = asyncio.run_coroutine_threadsafe(
            call_asgi(self.app, request.method or "GET", request.url or "/", request.headers, body), _shared_loop())
        wait = timeout[1] if isinstance(timeout, tuple) else timeout
        try:
            status, headers, content = future.result(timeout=wait)
        except TimeoutError:
            future.cancel()
            raise requests.ReadTimeout(f"Read timed out. (read timeout={wait})", request=request) from None
        except TransportFault as exc:
            raise TransportFault(str(exc), request=request) from None
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict()
        for k, v in headers:
            key = k.decode("latin-1")
            value = v.decode("latin-1")
            response.headers[key] = f"{response.headers[key]}, {value}" if key in response.headers else value
        response._content = content
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        response.reason = ""
        cookies = [v.decode("latin-1") for k, v in headers if k.lower() == b"set-cookie"]
        if cookies:
            _store_cookies(response, request, cookies)
        return response

    def close(self) -> None:
        pass


def _store_cookies(response: requests.Response, request: requests.PreparedRequest, cookies: list[str]) -> None:
    # requests extracts cookies from the urllib3 response's headers; give it an object that has them.
    from http.client import HTTPMessage

    msg = HTTPMessage()
    for c in cookies:
        msg["Set-Cookie"] = c

    class _Orig:
        def __init__(self) -> None:
            self.msg = msg

        def info(self) -> HTTPMessage:
            return msg

    class _Raw:
        _original_response = _Orig()

    response.raw = _Raw()
    requests.cookies.extract_cookies_to_jar(response.cookies, request, response.raw)


def session_for(app: ASGIApp, origin: str) -> requests.Session:
    """A ``requests.Session`` whose requests to ``origin`` (e.g. ``https://fakests.test``) are
    answered in-process. Other URLs still go to the network. ``trust_env`` is off so proxy and CA
    environment variables cannot reroute it."""
    session = requests.Session()
    session.trust_env = False
    session.mount(origin.rstrip("/") + "/", ASGIAdapter(app))
    return session
