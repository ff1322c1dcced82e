"""The write path shared by REST and MCP: identify, log, send to the primary, mirror.

``mirrored`` runs one write under its record's lock: the intent goes into the write
log before the primary sees the write, the primary's acceptance is queued, and the
mirroring is awaited (``sync``) or scheduled (``async``). How the write reaches the
primary, and what counts as accepted, is the caller's ``forward``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from memshift.config.settings import StoreName
from memshift.errors import UpstreamError
from memshift.jsonpath import document_of
from memshift.proxy.core import ProxyCore
from memshift.shadow.dispatch import Taken, created_key
from memshift.shadow.mirror import Write
from memshift.shadow.writelog import Answered
from memshift.upstream import OutboundRequest

T = TypeVar("T")


@dataclass(frozen=True)
class Accepted(Generic[T]):
    """What the primary made of a write: whether it took it, its status and document."""

    ok: bool
    status: int
    document: bytes
    result: T


async def identity(
    core: ProxyCore, authorization: str | None, rid: str, primary: StoreName
) -> str | None:
    """Return the user behind the client's credentials, asked of the primary once per token."""
    if not authorization:
        return None
    known = core.identities.known(authorization)
    if known is not None:  # the usual case, without the round of coroutines below
        return known
    whoami = core.holder.current.mirror.whoami_path

    async def fetch() -> str | None:
        request = OutboundRequest(
            "GET", whoami, (("Authorization", authorization), ("X-Request-Id", rid)), b""
        )
        answer = await core.send(primary, request, "whoami", "identity")
        doc = document_of(answer.body) if answer.status == 200 else None
        user = doc.get("user") if isinstance(doc, dict) else None
        return user if isinstance(user, str) else None

    return await core.identities.user(authorization, fetch)


async def mirrored(
    core: ProxyCore,
    write: Write,
    own: str | None,
    depends: tuple[str, ...],
    primary: StoreName,
    forward: Callable[[], Awaitable[Accepted[T]]],
) -> T:
    """Log ``write``, have ``forward`` send it to the primary, mirror what it accepted."""
    spec = write.match.spec
    state = core.plane.state
    job: Coroutine[Any, Any, None] | None = None
    async with core.lanes.lock(own):
        entry = await core.log.intent(
            idem_key=write.idempotency_key,
            user=write.user,
            route=spec.name,
            method=write.method,
            path=write.path_qs,
            body=write.body,
            record_key=own,
            depends=depends,
            primary=primary,
        )
        try:
            accepted = await forward()
        except UpstreamError as exc:
            if exc.timeout:  # it may have been applied: replay resolves it, in order
                core.lanes.block(own)
            else:
                await core.log.forget(entry)
            raise
        if not accepted.ok:
            await core.log.forget(entry)
            return accepted.result
        own = own or created_key(write.match, primary, document_of(accepted.document))
        taken = Taken(entry, primary, Answered(own, accepted.status, accepted.document))
        queued = state.write_mode == "async" and primary == "legacy"
        if queued and core.mirror_jobs.full:
            job = core.mirroring.hold(taken, "queue_full")
        else:
            job = core.mirroring.job(write, taken, depends)
            if queued:
                core.mirror_jobs.spawn(job, spec.name)
                job = None
    if job is not None:
        await job
    return accepted.result
