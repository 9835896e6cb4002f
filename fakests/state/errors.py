"""``ConfigError``: a bad config, scenario or state file, named with its key and what is wrong; and
``StoreUnavailable``: the shared store did not answer.

It lives in the lowest wing because every wing reads files: the CLI turns it into one line and exit 2,
the admin API into a 400.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A mistake in a config or scenario file: which file, which key, and what is wrong."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(source, key, reason)
        self.source = source
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        where = f"{self.source}: {self.key}" if self.key else self.source
        return f"{where}: {self.reason}"


class StoreUnavailable(ConnectionError):
    """The shared store did not answer (a hung or stopped Redis). Requests that need it get Entra's 503
    with ``Retry-After: retry_after``; what the process holds in memory (discovery, the JWKS) still answers."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
