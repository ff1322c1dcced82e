"""Console sessions: the admin token exchanged once for a cookie, and a CSRF token per session.

A session is a random id (256 bits) kept in this process, with its expiry and its
CSRF token; the cookie holds the id only. Signing in compares the token in constant
time; a wrong one is refused without saying more. Sessions end at their expiry, when
signed out, or when the process stops (an operator signs in again). At most
``LIMIT`` sessions live at once: the oldest goes first.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

COOKIE = "memshift_console"
CSRF_HEADER = "X-CSRF-Token"
LIFETIME_S = 8 * 3600
LIMIT = 1000


@dataclass(frozen=True)
class Session:
    """One signed-in browser."""

    id: str
    csrf: str
    expires: float


class Sessions:
    """The signed-in browsers of one admin API."""

    def __init__(self, lifetime_s: float = LIFETIME_S) -> None:
        self.lifetime_s = lifetime_s
        self._live: OrderedDict[str, Session] = OrderedDict()  # oldest first

    def sign_in(self, offered: str, expected: str) -> Session | None:
        """A new session when ``offered`` is the admin token; None otherwise."""
        if not expected or not hmac.compare_digest(offered.encode(), expected.encode()):
            return None
        self._forget_expired()
        while len(self._live) >= LIMIT:
            self._live.popitem(last=False)
        made = Session(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time() + self.lifetime_s
        )
        self._live[made.id] = made
        return made

    def find(self, cookie: str | None) -> Session | None:
        """The live session a cookie names, if any."""
        if not cookie:
            return None
        found = self._live.get(cookie)
        if found is None or found.expires <= time.time():
            self._live.pop(cookie, None)
            return None
        return found

    def sign_out(self, cookie: str | None) -> None:
        if cookie:
            self._live.pop(cookie, None)

    @staticmethod
    def csrf_ok(session: Session, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(session.csrf.encode(), str(offered).encode())

    def _forget_expired(self) -> None:
        now = time.time()
        for key in [k for k, s in self._live.items() if s.expires <= now]:
            del self._live[key]
