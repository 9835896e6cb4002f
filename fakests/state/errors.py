"""``ConfigError``: a bad config, scenario or state file, named with its key and what is wrong.

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
