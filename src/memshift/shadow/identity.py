"""Who a client is: the store's user behind a bearer token, cached by digest.

memshift never keeps a client's token, yet a write must be replayable as its user
(same owner, same ``Idempotency-Key`` scope). The user name is asked once per token
(``GET /v1/whoami`` at the primary) and cached under a digest of the credentials.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

Fetch = Callable[[], Awaitable[str | None]]


class Identities:
    """A bounded, expiring cache of credential digest → user name."""

    def __init__(self, ttl_s: float = 300.0, size: int = 50_000) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()  # oldest first

    def known(self, authorization: str) -> str | None:
        """Return the cached user behind ``authorization``; None if it must be asked."""
        found = self._cache.get(_digest(authorization))
        return found[0] if found and found[1] > time.monotonic() else None

    async def user(self, authorization: str, fetch: Fetch) -> str | None:
        """Return the user behind ``authorization`` (None if the store does not know it)."""
        user = self.known(authorization)
        if user is not None:
            return user
        user = await fetch()
        if user is not None:
            if len(self._cache) >= self.size:
                self._cache.popitem(last=False)
            self._cache[_digest(authorization)] = (user, time.monotonic() + self.ttl_s)
        return user


def _digest(authorization: str) -> str:
    return hashlib.sha256(authorization.encode()).hexdigest()
