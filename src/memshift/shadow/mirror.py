"""Mirrored writes: apply to the secondary what the primary accepted.

The secondary is reached with its own service token (never the client's), with the
same ``Idempotency-Key`` the primary saw, ids translated into the secondary's, and, for
a create, the primary's provenance fields copied in so that the copy is exact. The pair
of ids a create produced is recorded in the id map. A write the secondary did not take
is counted, logged and kept in the failure log with the client-side request, to be
applied again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
import structlog

from memshift.config.settings import StoreName
from memshift.errors import UpstreamError
from memshift.shadow.failures import Failure, FailureLog
from memshift.shadow.routes import RouteMatch
from memshift.shadow.translate import Translator
from memshift.upstream import OutboundRequest, UpstreamResponse

log = structlog.get_logger("memshift.shadow")

Send = Callable[[StoreName, OutboundRequest, str, str], Awaitable[UpstreamResponse]]


@dataclass(frozen=True)
class Write:
    """A client's write as memshift keeps it: ids as the client sent them, no token."""

    match: RouteMatch
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: bytes
    idempotency_key: str
    request_id: str


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


class Mirror:
    """Applies accepted writes to the secondary store."""

    def __init__(
        self,
        translator: Translator,
        failures: FailureLog,
        send: Send,
        tokens: Callable[[StoreName], str],
        on_failure: Callable[[StoreName, str], None],
    ) -> None:
        self.translator = translator
        self.failures = failures
        self.send = send
        self.tokens = tokens
        self.on_failure = on_failure

    async def _request(
        self, write: Write, target: StoreName, answer: UpstreamResponse
    ) -> OutboundRequest | str:
        """Return the request for ``target``, or why it cannot be made yet."""
        spec = write.match.spec
        path = await self.translator.path(write.match, "legacy", target)
        query = await self.translator.query(list(write.query), spec, "legacy", target)
        if path is None or query is None:
            return "unmapped_id"
        body = write.body
        doc = _json(body)
        if isinstance(doc, dict) and (spec.request_ids or spec.copy_from_answer):
            if not await self.translator.document(doc, spec.request_ids, "legacy", target):
                return "unmapped_id"
            first = _json(answer.body) if spec.creates else None
            if isinstance(first, dict):
                doc |= {f: first[f] for f in spec.copy_from_answer if f in first}
            body = orjson.dumps(doc)
        headers = [
            ("Authorization", f"Bearer {self.tokens(target)}"),
            ("Idempotency-Key", write.idempotency_key),
            ("X-Request-Id", write.request_id),
        ]
        if body:
            headers.append(("Content-Type", "application/json"))
        path_qs = f"{path}?{urlencode(query)}" if query else path
        return OutboundRequest(write.method, path_qs, tuple(headers), body)

    async def apply(
        self, write: Write, primary: StoreName, answer: UpstreamResponse, target: StoreName
    ) -> bool:
        """Apply ``write`` (accepted by ``primary`` with ``answer``) to ``target``.

        Never raises for a failure of the mirror itself: whatever goes wrong is counted,
        logged and kept in the failure log, and the client's answer stays the primary's.
        """
        try:
            return await self._apply(write, primary, answer, target)
        except Exception as exc:
            log.exception("mirror_crashed", store=target, route=write.match.spec.name)
            return await self._fail(write, target, None, f"internal: {type(exc).__name__}")

    async def _apply(
        self, write: Write, primary: StoreName, answer: UpstreamResponse, target: StoreName
    ) -> bool:
        request = await self._request(write, target, answer)
        if isinstance(request, str):
            return await self._fail(write, target, None, request)
        try:
            result = await self.send(target, request, write.match.spec.name, "mirror")
        except UpstreamError as exc:
            return await self._fail(
                write, target, None, "timeout" if exc.timeout else "unreachable"
            )
        if not 200 <= result.status < 300:
            reason = "rejected" if result.status < 500 else "server_error"
            return await self._fail(write, target, result.status, reason, result.body[:500])
        await self._pair(write, primary, answer, target, result)
        return True

    async def _pair(
        self,
        write: Write,
        primary: StoreName,
        answer: UpstreamResponse,
        target: StoreName,
        result: UpstreamResponse,
    ) -> None:
        kind = write.match.spec.creates
        if kind is None:
            return
        first, copy = _json(answer.body), _json(result.body)
        if not (isinstance(first, dict) and isinstance(copy, dict)):
            return
        ids = {primary: first.get("id"), target: copy.get("id")}
        if isinstance(ids["legacy"], int) and isinstance(ids["new"], int):
            await self.translator.idmap.record(kind, ids["legacy"], ids["new"])

    async def _fail(
        self,
        write: Write,
        target: StoreName,
        status: int | None,
        reason: str,
        detail: bytes = b"",
    ) -> bool:
        self.on_failure(target, reason)
        log.warning(
            "mirror_write_failed",
            store=target,
            route=write.match.spec.name,
            reason=reason,
            status=status,
        )
        path = f"{write.path}?{urlencode(write.query)}" if write.query else write.path
        await self.failures.add(
            Failure(
                store=target,
                route=write.match.spec.name,
                method=write.method,
                path=path,
                body=write.body,
                status=status,
                error=f"{reason}: {detail.decode(errors='replace')}" if detail else reason,
            )
        )
        return False
