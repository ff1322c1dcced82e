"""Mirrored writes: apply to the secondary what the primary accepted.

The secondary is reached as the write's user, as its ``identity`` says: with its own
service token acting as that user (``X-Act-As``; never the client's token), with that
user in a header, or as no one for a store without users; with the same
``Idempotency-Key`` the primary saw (where the store honours keys), ids translated
into the secondary's, and, for a create, the primary's provenance fields copied in so
that the copy is exact. The pair of ids a create produced is recorded in the id map.
Failed attempts are retried (``retry.py``); what comes of a write is an ``Outcome``:
done, backlog (try again later) or divergent (refused).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import structlog

from memshift.config.settings import MirrorSettings, RouteSpec, StoreEndpoint, StoreName
from memshift.errors import UpstreamError
from memshift.jsonpath import document_of
from memshift.links.wire import OutboundRequest, UpstreamResponse
from memshift.shadow.records import created_ids
from memshift.shadow.retry import Retryable, Unsure, first_wait, retrying
from memshift.shadow.routes import RouteMatch
from memshift.shadow.translate import Translator

log = structlog.get_logger("memshift.shadow")

Send = Callable[[StoreName, OutboundRequest, str, str], Awaitable[UpstreamResponse]]
ACT_AS = "X-Act-As"


@dataclass(slots=True)
class Write:
    """A client's write as memshift keeps it: client-side ids, the user, no token."""

    match: RouteMatch
    method: str
    path_qs: str
    body: bytes
    idempotency_key: str
    user: str
    request_id: str = ""


class Kind(Enum):
    DONE = "done"
    BACKLOG = "backlog"
    DIVERGENT = "divergent"
    UNMAPPED = "unmapped"
    HELD = "held"  # sent, answer lost, must not go twice: for verify --repair


@dataclass(slots=True)
class Outcome:
    """What came of one mirrored write."""

    kind: Kind
    reason: str = ""
    status: int | None = None
    body: bytes = b""


UNREAD: Any = object()  # an answer not parsed yet


class Mirror:
    """Builds and sends writes to a store on behalf of their users."""

    def __init__(
        self,
        translator: Translator,
        send: Send,
        stores: Callable[[], dict[StoreName, StoreEndpoint]],
        settings: Callable[[], MirrorSettings],
    ) -> None:
        self.translator = translator
        self.send = send
        self.stores = stores
        self.settings = settings

    async def request(self, write: Write, target: StoreName, first: Any) -> OutboundRequest | None:
        """Return ``write`` as ``target`` must get it; None while an id has no pair.

        ``first``: the primary's answer document, whose provenance a create copies.
        """
        spec = write.match.spec
        fill = None
        if spec.creates and spec.copy_from_answer and isinstance(first, dict):
            fill = {f: first[f] for f in spec.copy_from_answer if f in first}
        translated = await self.translator.request(
            write.match, write.path_qs, write.body, target, fill
        )
        if translated is None:
            return None
        path_qs, body = translated
        headers = self._as_user(target, write.user)
        if spec.keyed(self.stores()[target]):
            headers.append(("Idempotency-Key", write.idempotency_key))
        if write.request_id:
            headers.append(("X-Request-Id", write.request_id))
        if body:
            headers.append(("Content-Type", "application/json"))
        return OutboundRequest(write.method, path_qs, tuple(headers), body)

    def _as_user(self, target: StoreName, user: str) -> list[tuple[str, str]]:
        """The headers that make ``target`` apply a write as ``user`` (its ``identity``)."""
        store = self.stores()[target]
        headers = [("Authorization", f"Bearer {store.token}")] if store.token else []
        if store.identity == "whoami":
            headers.append((ACT_AS, user))
        elif store.identity.startswith("header:"):
            headers.append((store.identity.partition(":")[2], user))
        return headers

    async def attempt(
        self,
        store: StoreName,
        request: OutboundRequest,
        spec: RouteSpec,
        purpose: str,
        attempts: int | None = None,
    ) -> UpstreamResponse:
        """Send with retries; return the answer (2xx or 4xx); raise ``Retryable`` at the
        end, or ``Unsure`` at once when a write that must not go twice lost its answer."""
        settings = self.settings()
        again = spec.repeatable(self.stores()[store])
        try:
            return await self._once(store, request, spec.name, purpose, again)
        except Retryable:
            if (attempts or settings.retry_attempts) <= 1:
                raise
        await asyncio.sleep(first_wait(settings))
        async for attempt in retrying(settings, attempts, after_first=True):
            with attempt:
                return await self._once(store, request, spec.name, purpose, again)
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    async def _once(
        self, store: StoreName, request: OutboundRequest, route: str, purpose: str, again: bool
    ) -> UpstreamResponse:
        try:
            answer = await self.send(store, request, route, purpose)
        except UpstreamError as exc:
            reason = "timeout" if exc.timeout else "unreachable"
            if exc.sent and not again:
                raise Unsure(f"{reason}: outcome unknown") from exc
            raise Retryable(reason) from exc
        if answer.status >= 500:
            raise Retryable("server_error", answer.status, answer.body[:500])
        return answer

    async def apply(
        self,
        write: Write,
        primary: StoreName,
        answer: bytes,
        target: StoreName,
        attempts: int | None = None,
        still: Callable[[], Awaitable[bool]] | None = None,
        answer_doc: Any = UNREAD,
    ) -> Outcome:
        """Apply ``write`` (accepted by ``primary`` with ``answer``) to ``target``.

        ``answer_doc``: ``answer`` already parsed (``document_of``), if it was.

        ``still``, asked once the ids are translated, says whether the write is still
        to be sent; when it is not (backfill took it over), it is left unmapped.
        """
        first = None
        if write.match.spec.creates:
            first = document_of(answer) if answer_doc is UNREAD else answer_doc
        request = await self.request(write, target, first)
        if request is None:
            return Outcome(Kind.UNMAPPED, "unmapped_id")
        if still is not None and not await still():
            return Outcome(Kind.UNMAPPED, "taken_over")
        try:
            result = await self.attempt(target, request, write.match.spec, "mirror", attempts)
        except Retryable as exc:
            return Outcome(Kind.BACKLOG, exc.reason, exc.status, exc.body)
        except Unsure as exc:
            return Outcome(Kind.HELD, exc.reason)
        if result.status == 404 and self._deleted_already(write, target):
            return Outcome(Kind.DONE)
        if not 200 <= result.status < 300:
            return Outcome(Kind.DIVERGENT, "rejected", result.status, result.body[:2000])
        await self._pair(write, primary, first, target, result)
        return Outcome(Kind.DONE)

    def _deleted_already(self, write: Write, target: StoreName) -> bool:
        """Whether a 404 to ``write`` is its effect: a DELETE sent again, without a key,
        to a store where deleting twice does what once does (the first took it)."""
        spec, store = write.match.spec, self.stores()[target]
        return write.method == "DELETE" and spec.repeatable(store) and not spec.keyed(store)

    async def _pair(
        self,
        write: Write,
        primary: StoreName,
        first: Any,
        target: StoreName,
        result: UpstreamResponse,
    ) -> None:
        """Pair the ids a create made on both stores (replacing any pair of either id: a
        store that reuses ids gave one of them to a record deleted since)."""
        spec = write.match.spec
        forms = self.translator.forms()
        if spec.creates and not forms.natural(spec.creates):
            mine = created_ids(spec, first)
            theirs = created_ids(spec, document_of(result.body))
            if len(mine) != len(theirs):
                log.warning("created_ids_differ", route=spec.name, primary=len(mine))
            for made, copy in zip(mine, theirs, strict=False):
                ids = {primary: made, target: copy}
                legacy = forms.canonical(spec.creates, ids["legacy"])
                new = self.translator.canonical(spec.creates, ids["new"], "new")
                if legacy is not None and new is not None:
                    await self.translator.idmap.record(spec.creates, legacy, new, wait=False)
