"""The write path, once for every protocol: identify, log, send to the primary, mirror.

A write runs under its record's lock: the intent goes into the write log before the
primary sees it, then the primary's answer decides what becomes of it:

- accepted (2xx): it joins the record's lane and is mirrored before the client's
  answer (``write_mode = "sync"``) or on the mirror pool (``"async"``);
- refused, or certainly not sent (``NotSent``): the intent is forgotten;
- outcome unknown (the connection was lost mid-answer, the primary timed out, the
  client went away): the intent is kept as ``unknown`` and its record blocked, and
  replay asks the primary again under the write's key, then mirrors what it applied.
  The client gets 502 or 504, and retrying with the same ``Idempotency-Key`` is safe.

The client always gets the primary's status and body, with ids in legacy's terms.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from aiohttp import web

from memshift.config.settings import Settings, StoreName
from memshift.control.plane import ControlPlane
from memshift.errors import NotSent
from memshift.ids import IdForms, forms_of
from memshift.jsonpath import document_of
from memshift.proxy.call import Call, Reply
from memshift.proxy.headers import fresh_id
from memshift.proxy.identity import Identity
from memshift.scheduler import Scheduler
from memshift.shadow.dispatch import Mirroring, Taken, lane_keys
from memshift.shadow.lanes import Lanes
from memshift.shadow.mirror import Write
from memshift.shadow.records import GLOBAL, created
from memshift.shadow.writelog import Answered, WriteLog

log = structlog.get_logger("memshift.proxy")


class WritePath:
    """Writes of every protocol: logged, sent to the primary, mirrored."""

    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        plane: ControlPlane,
        identity: Identity,
        writelog: WriteLog,
        lanes: Lanes,
        mirroring: Mirroring,
        on_error: Callable[[str, BaseException], None],
    ) -> None:
        self.settings = settings
        self.plane = plane
        self.identity = identity
        self.writelog = writelog
        self.lanes = lanes
        self.mirroring = mirroring
        mirror = settings().mirror
        self.jobs = Scheduler(
            name="mirror",
            limit=mirror.workers,
            pending_limit=mirror.queue,
            close_timeout=10.0,
            on_error=on_error,
        )

    async def write(self, call: Call) -> web.StreamResponse:
        """Serve one write; the client gets the primary's answer."""
        primary = self.plane.state.primary
        key = call.client_key or f"memshift-{fresh_id()}"
        user = await self.identity.user(call.credentials, call.rid, primary)
        if user is None:  # the primary does not know this caller: it refuses, nothing to mirror
            return await call.serve(primary, "write", key)
        reply, job = await self._logged(call, call.write(key, user), primary, key)
        if job is not None:
            await job
        if reply is None:
            return call.refuse(409, "not_migrated", "the record is not in the primary yet", primary)
        response = await call.respond(primary, reply)
        if response is None:  # a create on new as primary, its pair not made yet
            log.error("answer_not_translatable", store=primary, route=call.route)
            response = await call.respond(primary, reply, translate=False)
            assert response is not None
        return response

    async def _logged(
        self, call: Call, write: Write, primary: StoreName, key: str
    ) -> tuple[Reply | None, Coroutine[Any, Any, None] | None]:
        """Log ``write``, send it to the primary, and return its answer and the mirroring
        work to await (None: nothing to await here)."""
        records = call.records()
        single = self.settings().one_at_a_time(primary)
        keys = (GLOBAL,) if single else records.keys
        logged = keys if keys or records.creates else (GLOBAL,)  # keyless: before all
        depends = records.depends
        async with self.lanes.lock(keys, barrier=records.keyless and not single):
            entry = await self.writelog.intent(
                idem_key=write.idempotency_key,
                user=write.user,
                route=write.match.spec.name,
                method=write.method,
                path=write.path_qs,
                body=write.body,
                keys=logged,
                depends=depends,
                primary=primary,
            )
            try:
                reply = await call.send(primary, "write", key)
            except NotSent:
                await self.writelog.forget(entry)
                raise
            except BaseException as exc:  # sent, and no answer: it may have been applied
                self.lanes.block(entry, logged)
                await asyncio.shield(self.writelog.unknown(entry, repr(exc)[:500]))
                raise
            if reply is None or not reply.accepted:
                await self.writelog.forget(entry)
                return reply, None
            spec = write.match.spec
            made = created(spec, primary, document_of(reply.document), self.forms())
            own = lane_keys(records, made, one_at_a_time=single, kind=spec.creates, entry_id=entry)
            taken = Taken(entry, primary, Answered(own, reply.outcome, reply.document))
            queued = self.plane.state.write_mode == "async" and primary == "legacy"
            if queued and self.jobs.full:
                return reply, self.mirroring.hold(taken, "queue_full")
            job = self.mirroring.job(write, taken, depends)
            if queued:
                self.jobs.spawn(job, write.match.spec.name)
                return reply, None
            return reply, job

    def forms(self) -> IdForms:
        return forms_of(self.settings().ids)

    async def close(self) -> None:
        """Finish the mirroring in flight (for a while)."""
        await self.jobs.close()
