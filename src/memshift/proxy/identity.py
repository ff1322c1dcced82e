"""Who a client is, asked of the primary once per credentials and cached by their digest.

memshift never keeps a client's token, yet a write must be replayable as its user
(same owner, same ``Idempotency-Key`` scope). The user name comes from the primary's
``[mirror] whoami_path`` (``GET /v1/whoami`` on the reference store), as the client.
"""

from __future__ import annotations

from collections.abc import Callable

from memshift.config.settings import Settings, StoreName
from memshift.jsonpath import document_of
from memshift.links.stores import StoreLinks
from memshift.links.wire import OutboundRequest
from memshift.shadow.identity import Identities


class Identity:
    """The user behind a client's credentials."""

    def __init__(self, settings: Callable[[], Settings], links: StoreLinks) -> None:
        self.settings = settings
        self.links = links
        self.cache = Identities()

    async def user(self, authorization: str | None, rid: str, primary: StoreName) -> str | None:
        """Return the user behind ``authorization``; None when the primary knows none.

        Raise ``UpstreamError`` when the primary cannot be asked.
        """
        if not authorization:
            return None
        known = self.cache.known(authorization)
        if known is not None:  # the usual case, without the round of coroutines below
            return known
        whoami = self.settings().mirror.whoami_path

        async def fetch() -> str | None:
            request = OutboundRequest(
                "GET", whoami, (("Authorization", authorization), ("X-Request-Id", rid)), b""
            )
            answer = await self.links.send(primary, request, "whoami", "identity")
            doc = document_of(answer.body) if answer.status == 200 else None
            user = doc.get("user") if isinstance(doc, dict) else None
            return user if isinstance(user, str) else None

        return await self.cache.user(authorization, fetch)
