"""In-process interception of Entra's host names, for pytest (the moto model).

``with fake_sts.intercept():`` answers every request that ``requests`` (MSAL Python, azure-identity's
default transport), ``httpx`` (sync and async) or ``aiohttp`` (azure-identity's async credentials) sends
to ``login.microsoftonline.com``, ``login.windows.net`` or ``login.microsoft.com`` from this test's
sandbox, in this process: no socket, no CA, no hosts file, and the app keeps its production authority.
Other hosts are untouched. The sandbox answers whatever tenant and client the request names (an app's
own fixed ids, which the test adds to its sandbox with ``add_tenant`` and ``add_app``), so tests with the
same fixed ids stay isolated: a shared server routes by tenant segment, interception routes by test.

How: ``requests.adapters.HTTPAdapter.send`` and httpx's ``HTTPTransport.handle_request`` /
``AsyncHTTPTransport.handle_async_request`` and aiohttp's ``TCPConnector._create_connection``
(``aiohttp_transport.py``: an in-memory connection, so aiohttp writes and parses the bytes itself) are
wrapped once; while an interception is active, a request to one of its hosts is handed to the ASGI app with
the sandbox pinned in its scope (``sts.context.SANDBOX_KEY``). httpx and aiohttp are optional: a library
that is not installed is simply not wrapped.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from starlette.types import ASGIApp

from ..state.settings import PUBLIC_CLOUD_HOSTS
from ..sts.context import SANDBOX_KEY
from .transport import ASGIAdapter, exchange_asgi, shared_loop

_active: list[Interception] = []  # innermost last; tests in one process run one at a time
_lock = threading.Lock()
_installed = False


class Interception:
    """One active interception: the app that answers, the sandbox it pins, the hosts it takes."""

    def __init__(self, app: ASGIApp, sandbox_id: str, hosts: tuple[str, ...], scheme: str = "https") -> None:
        self.app = app
        self.sandbox_id = sandbox_id
        self.hosts = frozenset(h.lower() for h in hosts)
        self.scheme = scheme
        self.adapter = ASGIAdapter(app, extra={SANDBOX_KEY: sandbox_id})
        self.requests = 0  # how many requests it answered

    def takes(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme == self.scheme and (parts.hostname or "") in self.hosts


def _current(url: str) -> Interception | None:
    return next((i for i in reversed(_active) if i.takes(url)), None)


def _install() -> None:
    """Wrap the transports once; with no interception active they behave exactly as before."""
    global _installed
    with _lock:
        if _installed:
            return
        original_send = HTTPAdapter.send

        def send(self: HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
            active = None if isinstance(self, ASGIAdapter) else _current(request.url or "")
            if active is None:
                return original_send(self, request, *args, **kwargs)
            active.requests += 1
            return active.adapter.send(request, *args, **kwargs)

        HTTPAdapter.send = send  # type: ignore[method-assign]
        _install_httpx()
        _install_aiohttp()
        _installed = True


def _install_httpx() -> None:
    try:
        import httpx
    except ImportError:  # httpx is optional: nothing to intercept
        return

    def answer(active: Interception, request: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        active.requests += 1
        result = asyncio.run_coroutine_threadsafe(
            exchange_asgi(active.app, request.method, str(request.url), headers, request.read(),
                          extra={SANDBOX_KEY: active.sandbox_id}), shared_loop()).result(timeout=60)
        fault = result.fault
        # A fault raises what httpx raises over a socket (httpcore's mapping), not requests' exceptions.
        if fault is not None and fault.kind == "hang":
            timeout = (request.extensions.get("timeout") or {}).get("read")
            if timeout is not None and timeout < fault.hang_seconds:
                time.sleep(timeout)
                raise httpx.ReadTimeout("timed out", request=request)
            time.sleep(fault.hang_seconds)
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        if fault is not None and fault.kind == "close_mid_body":
            raise httpx.RemoteProtocolError(
                f"peer closed connection without sending complete message body (received {len(result.body)} bytes)",
                request=request)
        if fault is not None:
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
        if not result.complete:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return result.status, result.headers, result.body

    sync_handle = httpx.HTTPTransport.handle_request

    def handle_request(self: Any, request: Any) -> Any:
        active = _current(str(request.url))
        if active is None:
            return sync_handle(self, request)
        status, headers, body = answer(active, request)
        return httpx.Response(status, headers=headers, content=body, request=request)

    async_handle = httpx.AsyncHTTPTransport.handle_async_request

    async def handle_async_request(self: Any, request: Any) -> Any:
        active = _current(str(request.url))
        if active is None:
            return await async_handle(self, request)
        await request.aread()
        status, headers, body = await asyncio.get_running_loop().run_in_executor(None, answer, active, request)
        return httpx.Response(status, headers=headers, content=body, request=request)

    httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
    httpx.AsyncHTTPTransport.handle_async_request = handle_async_request  # type: ignore[method-assign]


def _install_aiohttp() -> None:
    try:
        from . import aiohttp_transport
    except ImportError:  # aiohttp is optional: nothing to intercept
        return
    aiohttp_transport.install(_current)


# IMDS's address: where ManagedIdentityCredential and MSAL's ManagedIdentityClient go when no managed-identity
# variable is set (plain HTTP, as Azure serves it).
IMDS_HOST = "169.254.169.254"


@contextmanager
def intercept(app: ASGIApp, sandbox_id: str, hosts: tuple[str, ...] = PUBLIC_CLOUD_HOSTS,
              scheme: str = "https") -> Iterator[Interception]:
    """Answer requests to ``scheme://`` ``hosts`` from ``sandbox_id`` in ``app`` while the block runs."""
    _install()
    active = Interception(app, sandbox_id, hosts, scheme)
    _active.append(active)
    try:
        yield active
    finally:
        _active.remove(active)
