"""``Server``: uvicorn's Server with an event-driven main loop and a shutdown without fixed sleeps.

Stock uvicorn polls for shutdown every 0.1 s and sleeps 0.1 s on the way out; here the main loop waits
on an event and shutdown aborts what is left, so a stop takes milliseconds instead of ~200 ms
(``../shared/bench/README.md``). ``FakeSTS`` (in a thread) and ``fakests serve`` (in the foreground,
or one per worker process) both run it; ``configure_logging`` sets up the request log they share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import threading
import time

import uvicorn


class Server(uvicorn.Server):
    """uvicorn's Server with an event-driven main loop and a shutdown without fixed sleeps."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # on_tick refreshes the Date header when counter % 10 == 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    def wake(self) -> None:
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        # Idle keep-alive TLS connections wait for the peer's close_notify, which an idle client
        # never sends: give in-flight responses a moment, then drop what is left.
        deadline = time.monotonic() + 0.05
        while self.server_state.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        # Handlers waiting on the client (a scripted hang) end when they see the disconnect.
        deadline = time.monotonic() + 0.2
        while self.server_state.tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        for task in self.server_state.tasks:
            task.cancel()


def run_in_thread(config: uvicorn.Config, name: str) -> tuple[Server, threading.Thread]:
    """``Server(config)`` running in a daemon thread, returned once it listens; ``RuntimeError`` if it
    cannot (the port is taken)."""
    server = Server(config)

    def run() -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind: reported below instead
            server.run()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"could not listen on {config.host}:{config.port}")
        time.sleep(0.001)
    return server, thread


def stop_thread(server: Server, thread: threading.Thread) -> None:
    """Stop a server that ``run_in_thread`` started, and wait for its thread."""
    server.should_exit = True
    server.wake()
    thread.join(timeout=5)


def configure_logging() -> None:
    """``fakests.requests`` (one line per request) at INFO on stderr."""
    logger = logging.getLogger("fakests")
    if not any(getattr(h, "_fakests", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s", "%H:%M:%S"))
        handler._fakests = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
