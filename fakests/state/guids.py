"""Fast random ids for a test double: GUIDs and nonces from a per-process generator.

Trace and correlation ids, claim nonces and the fresh ids of every sandbox's directory copy come from here;
keys, codes and secrets never do (they come from ``secrets``).
"""

from __future__ import annotations

import os
import random


class _Ids:
    """The generator of ids (trace and correlation ids) and claim nonces (``aio``, ``rh``, ``uti``): a
    Mersenne Twister seeded from ``os.urandom``, re-seeded in a forked child. A token request needs five
    such values; a system call or a lock per value cost more than the rest of them. Its output can be
    predicted from enough of it, which is harmless for ids: never use it for keys, codes or secrets
    (those come from ``secrets``)."""

    rng = random.Random(os.urandom(32))

    @classmethod
    def reseed(cls) -> None:  # a forked child must not repeat its parent's ids
        cls.rng = random.Random(os.urandom(32))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Ids.reseed)

_GUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_GUID_SET = (0x8000 << 48) | (4 << 76)  # RFC 4122 variant, version 4 (as uuid.UUID(version=4) sets them)


def random_bytes(n: int) -> bytes:
    """``n`` random bytes for ids and nonces; see ``_Ids``."""
    return _Ids.rng.randbytes(n)


def new_guid() -> str:
    """A random (version 4) GUID string, as ``str(uuid.uuid4())`` gives, in a third of the time."""
    h = "%032x" % (_Ids.rng.getrandbits(128) & _GUID_CLEAR | _GUID_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
