"""The read ramp: which store serves a caller's reads.

A caller's bucket is a stable hash of its sticky key, a number in [0, 100). It is
served by the new store when its bucket is below ``read_percent``, so a caller stays on
one store while the percent holds, and raising the percent only moves callers to the new
store, never back and forth.
"""

from __future__ import annotations

import hashlib

_SCALE = 100 / 2**64


def bucket(sticky_key: str) -> float:
    """Return the caller's bucket in [0, 100)."""
    digest = hashlib.blake2b(sticky_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") * _SCALE


def reads_from_new(sticky_key: str, read_percent: int) -> bool:
    """Return whether the caller's reads go to the new store at ``read_percent``."""
    return read_percent > 0 and (read_percent >= 100 or bucket(sticky_key) < read_percent)
