"""Transport faults: what a broken network does to a client, done for real.

- ``reset``: the TCP connection is reset (SO_LINGER 0, then abort): the client sees
  ``ConnectionResetError`` (requests: ``ConnectionError``).
- ``hang``: nothing is sent until the client gives up (its read timeout) or ``hang_seconds`` pass,
  then the connection is dropped.
- ``close_mid_body``: status and headers (with the full Content-Length) and half the body, then the
  connection closes: requests raises ``ChunkedEncodingError`` ("Connection broken: IncompleteRead").
- ``truncated_json``: a complete 200 whose JSON body is cut short: the client's JSON parser fails.

Over uvicorn the app needs the connection's transport; ``FaultyHttpToolsProtocol`` (uvicorn's own
httptools protocol plus one line) puts it in the ASGI scope. In-process, ``transport.call_asgi``
turns ``InProcessFault`` into the same exceptions requests raises over a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

TRANSPORT_KEY = "fakests.testing.transport"
INPROCESS_KEY = "fakests.inprocess"
_TOKEN_BODY = b'{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0eXAiOiJKV1Qi'


class InProcessFault(Exception):
    """Raised through the in-process transport; ``kind`` says which network failure to imitate."""

    def __init__(self, kind: str, hang_seconds: float = 0.0) -> None:
        super().__init__(kind)
        self.kind = kind
        self.hang_seconds = hang_seconds


class FaultResponse(Response):
    """An ASGI response that breaks the connection the way ``kind`` says."""

    def __init__(self, kind: str, hang_seconds: float = 300.0, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=200, headers=headers)
        # What the journal records: 0 where no HTTP response reached the client at all.
        self.status_code = 0 if kind in ("reset", "hang") else 200
        self.kind = kind
        self.hang_seconds = hang_seconds
        # Starlette adds content-length: 0 for an empty Response; faults write their own.
        self.extra = [(k, v) for k, v in self.raw_headers if k not in (b"content-length", b"content-type")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.kind == "truncated_json":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json; charset=utf-8"),
                                    (b"content-length", str(len(_TOKEN_BODY)).encode()), *self.extra]})
            await send({"type": "http.response.body", "body": _TOKEN_BODY})
            return
        if scope.get(INPROCESS_KEY):
            if self.kind == "close_mid_body":
                await self._half_body(send)
            raise InProcessFault(self.kind, self.hang_seconds)
        transport: Any = scope.get(TRANSPORT_KEY)
        if self.kind == "hang":
            # Until the client gives up (it disconnects) or hang_seconds pass.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_disconnected(receive), self.hang_seconds)
        elif self.kind == "close_mid_body":
            await self._half_body(send)
            await asyncio.sleep(0.05)  # let the partial body reach the socket before closing
        if transport is None:  # a server without the protocol hook: the best we can do is an error
            raise ConnectionAbortedError(f"fakests fault '{self.kind}' needs FaultyHttpToolsProtocol")
        if self.kind == "reset":
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        # Return only once uvicorn has seen the disconnect; otherwise it logs an unfinished response.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_disconnected(receive), 1.0)

    async def _half_body(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json; charset=utf-8"),
                                (b"content-length", str(len(_TOKEN_BODY) * 2).encode()), *self.extra]})
        await send({"type": "http.response.body", "body": _TOKEN_BODY, "more_body": True})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


# The request line plus headers a client may send. uvicorn's httptools protocol has no limit of its own
# (a 16 MB header is read into memory and served); Entra's front end and common servers stop at 16-64 KiB.
MAX_HEAD_BYTES = 64 * 1024


class _HeadTooLarge(Exception):
    pass


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
    HttpToolsProtocol = None

if HttpToolsProtocol is not None:

    class FaultyHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc, valid-type]
        """uvicorn's httptools protocol with the transport in the scope and a cap on the request head.

        At module level: ``serve --workers N`` pickles uvicorn's config, this class included, into
        each worker process, and pickle finds classes by module and name."""

        head_bytes = 0
        head_too_large = False
        # Bytes received since the last request's head ended: httptools reports a header only once it
        # is complete, so a value that never ends would grow without bound before ``_count`` saw it.
        reading_head = True
        unparsed = 0

        # httptools calls these per request and per header: the parent's methods are called directly,
        # without super()'s lookup.
        _parent_message_begin = HttpToolsProtocol.on_message_begin
        _parent_url = HttpToolsProtocol.on_url
        _parent_header = HttpToolsProtocol.on_header
        _parent_headers_complete = HttpToolsProtocol.on_headers_complete
        _parent_message_complete = HttpToolsProtocol.on_message_complete
        _parent_data_received = HttpToolsProtocol.data_received

        def data_received(self, data: bytes) -> None:
            self._parent_data_received(data)
            # Counted after parsing: a chunk that completes the head (whose complete headers ``_count``
            # bounds) is not counted, whatever body follows it in the same read.
            if self.reading_head and not self.head_too_large:
                self.unparsed += len(data)
                if self.unparsed > 2 * MAX_HEAD_BYTES:  # twice: the chunk may end a previous body
                    self.head_too_large = True
                    self.send_400_response("Request header fields too large.")

        def on_message_begin(self) -> None:
            self.head_bytes = 0
            self._parent_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            self._parent_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            self._parent_header(name, value)

        def _count(self, size: int) -> None:
            self.head_bytes += size
            if self.head_bytes > MAX_HEAD_BYTES:
                self.head_too_large = True
                raise _HeadTooLarge  # httptools stops parsing; uvicorn then calls send_400_response

        def send_400_response(self, msg: str) -> None:
            if not self.head_too_large:
                return super().send_400_response(msg)
            body = b"Request header fields too large."
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                 b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                                 b"connection: close\r\n\r\n%s" % (len(body), body))
            self.transport.close()
            return None

        def on_headers_complete(self) -> None:
            self.reading_head, self.unparsed = False, 0
            self.scope[TRANSPORT_KEY] = self.transport  # type: ignore[literal-required]
            self._parent_headers_complete()

        def on_message_complete(self) -> None:
            self.reading_head, self.unparsed = True, 0
            self._parent_message_complete()


def protocol_class() -> type | str:
    """uvicorn's httptools protocol with the transport in the scope and a cap on the request head
    (``MAX_HEAD_BYTES``: answered 431 and closed), or ``"auto"`` without httptools."""
    return "auto" if HttpToolsProtocol is None else FaultyHttpToolsProtocol
