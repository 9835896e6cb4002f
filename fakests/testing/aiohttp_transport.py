"""aiohttp's side of the interception: a connection to an impersonated host that is the ASGI app, in memory.

azure-identity's async credentials (``azure.identity.aio``) send through azure-core's ``AioHttpTransport``,
an ``aiohttp.ClientSession``. The session is left alone; one level below it, ``TCPConnector._create_connection``
is wrapped. For a URL an active interception takes, it returns aiohttp's own protocol (the connector's
``_factory()``, a ``ResponseHandler``) connected to a ``MemoryTransport`` instead of a TCP or TLS socket:
no DNS, no socket, no CA. Everything above the connection is aiohttp's own code, so aiohttp still writes the
request (session headers, cookies, auth, ``bytes``/``str``/``dict``/``FormData``/JSON bodies, chunked
encoding) and parses the answer into a real ``ClientResponse`` (``.json()``, ``.text()``, ``.read()``,
streaming, ``raise_for_status``, timeouts). The transport reads the request bytes with h11 (uvicorn's
dependency, so always installed), hands the request to the app on ``shared_loop()`` with the sandbox pinned in
its scope, and feeds the answer back as HTTP/1.1 bytes.

A scripted transport fault ends the way the same fault ends over TCP, because aiohttp's own protocol sees the
connection end: ``reset`` is ``ClientOSError`` (errno 104), ``close_mid_body`` a ``ClientPayloadError`` when
the body is read, ``hang`` the client's read timeout (``ServerDisconnectedError`` once ``hang_seconds``
pass). Connections are never pooled (the protocol is force-closed), so a connection made inside one
interception cannot answer a request after it.

Why not aioresponses: it replaces ``ClientSession._request`` and builds a ``ClientResponse`` by hand (a mocked
loop, headers set on private attributes), so its callback sees the call's arguments rather than the request on
the wire (a ``FormData``, a session's default headers and a ``params`` query would each need serializing again
by us), it reorders query strings, and a fault can only be an exception raised before any response exists.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import aiohttp
import h11
from aiohttp.client_proto import ResponseHandler

from ..sts.context import SANDBOX_KEY
from .transport import Exchange, exchange_asgi, shared_loop

# Finds the interception that takes a URL (intercept._current); passed in so this module needs no import of it.
Finder = Callable[[str], Any]


class MemoryTransport(asyncio.Transport):
    """The socket aiohttp's ``ResponseHandler`` writes to and reads from, for one request to the app."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: ResponseHandler, interception: Any,
                 origin: str) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self._interception = interception
        self._origin = origin  # scheme://host[:port] of the request, for the ASGI scope
        self._parser = h11.Connection(h11.SERVER)
        self._request: h11.Request | None = None
        self._body: list[bytes] = []
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # --- what aiohttp writes: the request -------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Take request bytes; once h11 has read a whole request, answer it."""
        if self._closing or self._task is not None:
            return  # one request per connection: aiohttp never pipelines, and this connection is never reused
        try:
            self._parser.receive_data(bytes(data))
            while (event := self._parser.next_event()) is not h11.NEED_DATA:
                if isinstance(event, h11.Request):
                    self._request = event
                elif isinstance(event, h11.Data):
                    self._body.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    self._task = self._loop.create_task(self._answer())
                    return
                else:  # ConnectionClosed: nothing more will come
                    return
        except h11.RemoteProtocolError as exc:  # not a request aiohttp writes, but never hang on one
            self._lose(ConnectionResetError(104, f"Connection reset by peer (fakests could not read it: {exc})"))

    def writelines(self, list_of_data: Any) -> None:
        """aiohttp writes headers and a small body together this way."""
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        """A socket could half-close; aiohttp does not ask for it."""
        return False

    def write_eof(self) -> None:
        """Nothing to do: the request is complete when h11 says so."""

    # --- what aiohttp reads: the answer ----------------------------------------------------------------------
    async def _answer(self) -> None:
        request = self._request
        assert request is not None
        target = request.target.decode("latin-1")
        url = target if "://" in target else self._origin + target  # absolute-form when sent to a proxy
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers]
        self._interception.requests += 1
        future = asyncio.run_coroutine_threadsafe(
            exchange_asgi(self._interception.app, request.method.decode("ascii"), url, headers, b"".join(self._body),
                          extra={SANDBOX_KEY: self._interception.sandbox_id}), shared_loop())
        try:
            result = await asyncio.wrap_future(future)
        except asyncio.CancelledError:  # aiohttp gave up (its timeout, or the task was cancelled)
            future.cancel()
            raise
        self._protocol.force_close()
        fault = result.fault
        if fault is None:
            self._feed(result)
            if not result.complete:  # the app ended without finishing its answer: the server hung up
                self._lose(None)
        elif fault.kind == "close_mid_body":
            self._feed(result)  # the head (with its full Content-Length) and half the body, then the end
            self._lose(None)
        elif fault.kind == "hang":
            await asyncio.sleep(fault.hang_seconds)  # aiohttp's sock_read timeout usually ends this first
            self._lose(None)
        else:  # reset, and any fault without a shape of its own here
            self._lose(ConnectionResetError(104, "Connection reset by peer"))

    def _feed(self, result: Exchange) -> None:
        if self._closing or not result.started:
            return
        try:
            reason = HTTPStatus(result.status).phrase
        except ValueError:
            reason = ""
        head = [f"HTTP/1.1 {result.status} {reason}".encode("latin-1")]
        head += [name + b": " + value for name, value in result.headers]
        self._protocol.data_received(b"\r\n".join(head) + b"\r\n\r\n" + result.body)

    def _lose(self, exc: BaseException | None) -> None:
        if not self._closing:
            self._closing = True
            self._protocol.connection_lost(exc)

    # --- the rest of a transport -------------------------------------------------------------------------------
    def close(self) -> None:
        """aiohttp closes the connection once the response is released (or on an error): end the exchange."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if not self._closing:
            self._closing = True
            self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        """As ``close``: there is no buffered data to drop."""
        self.close()

    def is_closing(self) -> bool:
        """True once either side ended the connection."""
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """No socket, peer or TLS object: aiohttp then skips TCP_NODELAY and certificate checks."""
        return default

    def get_write_buffer_size(self) -> int:
        """Writes are taken at once."""
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Writes are never buffered, so there are no limits to set."""

    def pause_reading(self) -> None:
        """The answer arrives whole; aiohttp's own StreamReader buffers it."""

    def resume_reading(self) -> None:
        """See ``pause_reading``."""

    def is_reading(self) -> bool:
        """Reading is never paused here."""
        return not self._closing


def install(find: Finder) -> None:
    """Wrap ``aiohttp.TCPConnector._create_connection`` once: a URL ``find`` returns an interception for gets an
    in-memory connection to it; every other URL (and every request while nothing is intercepted) goes on as
    before."""
    original = aiohttp.TCPConnector._create_connection

    @functools.wraps(original)
    async def _create_connection(self: aiohttp.TCPConnector, req: Any, traces: Any, timeout: Any) -> Any:
        active = find(str(req.url))
        if active is None:
            return await original(self, req, traces, timeout)
        protocol: ResponseHandler = self._factory()
        protocol.force_close()
        origin = str(req.url.origin())
        protocol.connection_made(MemoryTransport(asyncio.get_running_loop(), protocol, active, origin))
        return protocol

    aiohttp.TCPConnector._create_connection = _create_connection  # type: ignore[method-assign]

