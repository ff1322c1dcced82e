"""Whose a write is: the user both stores must apply it as, told by the primary's ``identity``.

memshift never keeps a client's token, yet a write must be replayable as its user
(same owner, same ``Idempotency-Key`` scope). How the user is known is the primary's
``[stores.NAME] identity``:

- ``whoami``: asked of the primary once per credentials (``[mirror] whoami_path``,
  ``GET /v1/whoami`` on the reference store), as the client, and cached by a digest of
  the credentials. The primary refusing them (401, 403) is the client's answer: the
  store would refuse the write itself, and nothing is applied anywhere.
- ``none``: the store has no users; every write is everyone's.
- ``{ header = "X-User" }``: the client says so in that header.

A write whose user cannot be told (no credentials, no such header, a ``whoami`` that
answers nothing usable) is not mirrorable: the write path refuses it, or passes it to
the primary alone where ``[mirror] unidentified = "pass"``, never silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from memshift.config.settings import Settings, StoreName
from memshift.jsonpath import document_of
from memshift.links.stores import StoreLinks
from memshift.links.wire import OutboundRequest, UpstreamResponse
from memshift.shadow.identity import Identities

ANYONE = ""  # the user of a store without users


@dataclass(slots=True)
class Who:
    """Whose a write is: its ``user``, or why it cannot be told (``unknown``), or the
    primary's refusal of the client's credentials."""

    user: str | None
    unknown: str | None = None
    status: int = 401  # the client's answer when it is unknown: 401, or 502 (the store's)
    refusal: UpstreamResponse | None = None


class Identity:
    """The user behind a client's write."""

    def __init__(self, settings: Callable[[], Settings], links: StoreLinks) -> None:
        self.settings = settings
        self.links = links
        self.cache = Identities()

    def known(self, headers: Callable[[str], str | None], primary: StoreName) -> str | None:
        """The user behind these headers if it is known without asking anyone (for the
        report's samples of reads); None when it is not."""
        mode = self.settings().stores[primary].identity
        if mode == "none":
            return None
        if mode.startswith("header:"):
            return headers(mode.partition(":")[2]) or None
        authorization = headers("Authorization")
        return self.cache.known(authorization) if authorization else None

    async def who(self, headers: Callable[[str], str | None], rid: str, primary: StoreName) -> Who:
        """Whose the write with these request ``headers`` is, by ``primary``'s identity.

        Raise ``UpstreamError`` when the primary cannot be asked.
        """
        mode = self.settings().stores[primary].identity
        if mode == "none":
            return Who(ANYONE)
        if mode.startswith("header:"):
            name = mode.partition(":")[2]
            value = headers(name)
            return Who(value) if value else Who(None, f"no {name} header")
        authorization = headers("Authorization")
        if not authorization:
            return Who(None, "no credentials")
        known = self.cache.known(authorization)
        if known is not None:  # the usual case, without the round of coroutines below
            return Who(known)
        refused: list[UpstreamResponse] = []
        user = await self.cache.user(
            authorization, lambda: self._whoami(authorization, rid, primary, refused)
        )
        if user is not None:
            return Who(user)
        if refused:
            return Who(None, "the primary does not know these credentials", refusal=refused[0])
        path = self.settings().mirror.whoami_path
        return Who(None, f"the primary's {path} names no user", 502)

    async def _whoami(
        self, authorization: str, rid: str, primary: StoreName, refused: list[UpstreamResponse]
    ) -> str | None:
        path = self.settings().mirror.whoami_path
        request = OutboundRequest(
            "GET", path, (("Authorization", authorization), ("X-Request-Id", rid)), b""
        )
        answer = await self.links.send(primary, request, "whoami", "identity")
        if answer.status in (401, 403):
            refused.append(answer)
            return None
        doc = document_of(answer.body) if answer.status == 200 else None
        user = doc.get("user") if isinstance(doc, dict) else None
        return user if isinstance(user, str) else None
