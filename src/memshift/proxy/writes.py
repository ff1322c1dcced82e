"""The write path, once for every protocol: identify, log, send to the primary, mirror.

A write runs under its record's lock: the intent goes into the write log before the
primary sees it, then the primary's answer decides what becomes of it:

- accepted (2xx): it joins the record's lane and is mirrored before the client's
  answer (``write_mode = "sync"``) or on the mirror pool (``"async"``);
- refused, or certainly not sent (``NotSent``): the intent is forgotten;
- outcome unknown (the connection was lost mid-answer, the primary timed out, the
  client went away): the intent is kept as ``unknown`` and its record blocked, and
  replay asks the primary again under the write's key, then mirrors what it applied
  (a write the primary must not get twice is ``held`` for ``verify --repair``). The
  client gets 502 or 504, and retrying with the same ``Idempotency-Key`` is safe. A
  later write of that record first settles it at the primary (``Replayer.settle_unsure``)
  so the primary applies the two in their order; while the primary cannot be asked,
  the later write is refused with 503 ``earlier_write_unsettled``.

Writes to one record reach the secondary in the primary's order: within an instance
through its lanes (``shadow/lanes.py``), and, while other instances share the state
db (``control/peers.py``), across them through the shared write log: a write waits
until no other instance has an earlier write of its records on the way to the
primary, and joins the backlog when an earlier one is not on the secondary yet.

The client always gets the primary's status and body, with ids in legacy's terms.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog
from aiohttp import web

from memshift.config.settings import Settings, StoreName
from memshift.control.peers import Peers
from memshift.control.plane import ControlPlane
from memshift.errors import NotSent
from memshift.ids import IdForms
from memshift.jsonpath import document_of
from memshift.proxy.call import Call, Reply
from memshift.proxy.headers import fresh_id
from memshift.proxy.identity import Identity, Who
from memshift.scheduler import Scheduler
from memshift.shadow.dispatch import Mirroring, Taken, lane_keys
from memshift.shadow.lanes import Lanes
from memshift.shadow.mirror import Write
from memshift.shadow.records import GLOBAL, created
from memshift.shadow.writelog import INTENT, UNFINISHED, Answered, WriteLog

log = structlog.get_logger("memshift.proxy")
TURN_WITHIN_S, TURN_POLL_S = 30.0, 0.01


class _Unsettled(Exception):
    """An earlier write of the record has an outcome not settled at the primary yet."""


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
        counted_unmirrored: Callable[[], None],
        peers: Peers,
        settle: Callable[[list[int]], Awaitable[bool]],
    ) -> None:
        self.settings = settings
        self.plane = plane
        self.identity = identity
        self.writelog = writelog
        self.lanes = lanes
        self.mirroring = mirroring
        self.counted_unmirrored = counted_unmirrored
        self.peers = peers
        self.settle = settle
        self.unmirrored = 0  # writes passed to the primary alone, unidentified
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
        await self.peers.ready()  # the other instances order writes with this one
        primary = self.plane.state.primary
        key = call.client_key or f"memshift-{fresh_id()}"
        who = await self.identity.who(call.header, call.rid, primary)
        if who.refusal is not None:  # the primary would refuse the write: nothing to mirror
            message = "the store does not know these credentials"
            return call.refuse(who.refusal.status, "unauthorized", message, primary)
        if who.user is None:
            return await self._unidentified(call, primary, key, who)
        try:
            reply, job = await self._logged(call, call.write(key, who.user), primary, key)
        except _Unsettled:
            message = (
                "an earlier write of this record has no known outcome yet: memshift is "
                "settling it with the store; send this one again shortly"
            )
            return call.refuse(503, "earlier_write_unsettled", message, primary)
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
            unsure = self.lanes.unsure_of(logged)
            if unsure and not await self.settle(unsure):
                raise _Unsettled
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
                instance=self.peers.name,
            )
            if self.peers.shared:
                await self._turn(entry, logged)
            try:
                reply = await call.send(primary, "write", key)
            except NotSent:
                await self.writelog.forget(entry)
                raise
            except BaseException as exc:  # sent, and no answer: it may have been applied
                self.lanes.block(entry, logged)
                why = repr(exc)[:500]
                if write.match.spec.repeatable(self.settings().stores[primary]):
                    self.lanes.unsure(entry, logged)
                    await asyncio.shield(self.writelog.unknown(entry, why))
                else:  # asking again could apply it twice: an operator's to settle
                    await asyncio.shield(self.writelog.held(entry, why))
                raise
            if reply is None or not reply.accepted:
                await self.writelog.forget(entry)
                return reply, None
            spec = write.match.spec
            doc = document_of(reply.document)
            made = created(spec, primary, doc, self.forms())
            own = lane_keys(records, made, one_at_a_time=single, kind=spec.creates, entry_id=entry)
            taken = Taken(entry, primary, Answered(own, reply.outcome, reply.document), doc)
            if self.peers.shared and await self._behind(entry, own):
                return reply, self.mirroring.hold(taken, "behind_another_instance")
            queued = self.plane.state.write_mode == "async" and primary == "legacy"
            if queued and self.jobs.full:
                return reply, self.mirroring.hold(taken, "queue_full")
            job = self.mirroring.job(write, taken, depends)
            if queued:
                self.jobs.spawn(job, write.match.spec.name)
                return reply, None
            return reply, job

    async def _turn(self, entry: int, keys: tuple[str, ...]) -> None:
        """Across instances: wait until no other live instance has an earlier write of
        these records on its way (so the primary applies writes of one record in the
        log's order), for at most ``TURN_WITHIN_S``."""
        deadline = time.monotonic() + TURN_WITHIN_S
        while time.monotonic() < deadline:
            ahead = await self.writelog.earlier(entry, keys, (INTENT,))
            if not any(self.peers.is_alive(i) and i != self.peers.name for i in ahead):
                return
            await asyncio.sleep(TURN_POLL_S)
        log.warning("write_order_wait_gave_up", entry=entry, keys=list(keys))

    async def _behind(self, entry: int, keys: tuple[str, ...]) -> bool:
        """Across instances: whether an earlier write of these records by another
        instance is not on the secondary yet (then this one joins the backlog after it)."""
        ahead = await self.writelog.earlier(entry, keys, UNFINISHED)
        return any(i != self.peers.name for i in ahead)

    async def _unidentified(
        self, call: Call, primary: StoreName, key: str, who: Who
    ) -> web.StreamResponse:
        """A write whose user cannot be told: refused, or the primary's alone if so set."""
        why = who.unknown or "unknown"
        if self.settings().mirror.unidentified == "refuse":
            log.warning("write_refused_unidentified", reason=why)
            message = f"memshift cannot tell whose write this is ({why}), so it is not sent"
            return call.refuse(who.status, "unidentified_write", message, primary)
        self.unmirrored += 1
        self.counted_unmirrored()
        log.warning("write_not_mirrored", reason=why, route=call.route)
        return await call.serve(primary, "write", key)

    def forms(self) -> IdForms:
        return self.settings().forms

    async def close(self) -> None:
        """Finish the mirroring in flight (for a while)."""
        await self.jobs.close()
