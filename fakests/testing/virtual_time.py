"""Virtual time: one clock for the test process, moved by sleeping instead of by waiting.

Clients' retry policies sleep for a minute or more (azure-identity waits 5 + 10 + 20 + 40 s on IMDS 410s,
``../shared/clients-2026.md`` §1), and a test of that must not take a minute. Under ``VirtualTime``:

- time-machine (a well-kept library) stops the wall clock: ``time.time``, ``datetime.now``... read the
  virtual clock, in every thread, so MSAL's throttle cache and token expiry, azure-core's retry timing, the
  app's own clock and fakests' sandbox clock (``Sandbox.now``: its windows, Retry-After memory and journal
  times) all agree;
- ``time.sleep`` and ``asyncio.sleep`` move that clock forward by what they were asked, at once, and are
  recorded (``slept``): azure-core's sync and async retry sleeps, the app's own, a scripted ``delay``.

The monotonic clocks (``time.monotonic``, ``perf_counter``) keep real time: socket timeouts and the event
loop's timers are real, so a scripted ``hang`` still lasts until the client's real timeout. Code that did
``from time import sleep`` before the block keeps the real sleep.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType
from typing import Any

_real_sleep = time.sleep
_real_async_sleep = asyncio.sleep


class VirtualTime:
    """``with VirtualTime() as clock:`` the test process runs on a virtual clock that only sleeps move.

    ``start`` (epoch seconds) defaults to the real time at entry; ``time.time()`` reads the clock,
    ``clock.slept`` lists every sleep (seconds) in the order they came, ``clock.elapsed`` sums them.
    """

    def __init__(self, start: float | None = None) -> None:
        self.start = start
        self.slept: list[float] = []
        self._lock = threading.Lock()
        self._traveller: Any = None
        self._coordinates: Any = None

    def __enter__(self) -> VirtualTime:
        import time_machine

        self._traveller = time_machine.travel(self.start if self.start is not None else time.time(), tick=False)
        self._coordinates = self._traveller.start()
        time.sleep = self._sleep
        asyncio.sleep = self._async_sleep  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        time.sleep = _real_sleep
        asyncio.sleep = _real_async_sleep
        self._traveller.stop()

    @property
    def elapsed(self) -> float:
        """Virtual seconds slept since the block began."""
        return sum(self.slept)

    def _sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        with self._lock:
            self.slept.append(seconds)
            self._coordinates.shift(seconds)
        _real_sleep(0)  # let other threads run, as a sleep would

    async def _async_sleep(self, delay: float, result: Any = None) -> Any:
        if delay > 0:
            with self._lock:
                self.slept.append(delay)
                self._coordinates.shift(delay)
        return await _real_async_sleep(0, result)
