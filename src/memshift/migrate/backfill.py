"""``memshift backfill``: copy to new what it lacks, safely while traffic flows.

Legacy is walked through its API as its admin, contexts first, then memories, then
relations (so that a copy's inner ids always have pairs), in batches: with the bulk
paths of both stores (``[store] bulk``, ``bulk.py``) a batch is one export page, read
in one request and copied with one import; without them, one request per record. Per
batch: records already paired are skipped without being read; the others are read
between two looks at the write log (``fence.py``), which decide whether each is
copied, copied with its backlog writes taken over, left to the mirror, or tried again
later. Copies are exact (owner, version, timestamps) and made once (``copy.py``).
A batch is read and sorted while the one before it is being copied (of the same
kind: a kind's copies are all made before the next kind is read).

After every batch is copied a checkpoint (where the walk is, the counts, the records to try
again) is saved in the state db, so ``--resume`` goes on after a crash or Ctrl-C.
Every ``check_every`` batches a sample of fresh copies is read back from new and
compared with what was copied; a difference stops the backfill.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import structlog
from sqlalchemy import Connection

from memshift.compare.compare import Observation, differences
from memshift.compare.diff import DiffOptions
from memshift.compare.normalize import ignore
from memshift.config.settings import Settings
from memshift.database import Database
from memshift.errors import IntegrityError
from memshift.ids import Id
from memshift.migrate.bulk import Bulk, usable
from memshift.migrate.copy import Conflict, Copier, translate_ids
from memshift.migrate.fence import Fence, moot, verdict
from memshift.migrate.marks import note_backfilled
from memshift.migrate.progress import Pacer, Progress
from memshift.migrate.walk import ID_CACHE, KINDS, StoreClient
from memshift.shadow.idmap import IdMap
from memshift.shadow.writelog import WriteLog
from memshift.statedb import drop_doc, load_doc, save_doc
from memshift.timestamps import format_ts, now_us

log = structlog.get_logger("memshift.migrate")

CHECKPOINT, REPORT = "backfill.checkpoint", "backfill.report"
SAMPLE = 3
KEEP_RECENT = 50  # fresh copies kept for the next check, sampled evenly
KEEP_FAILURES = 20


@dataclass(frozen=True)
class Options:
    """How a backfill runs."""

    batch: int = 500
    resume: bool = False
    rate: float | None = None
    check_every: int = 10
    settle_s: float = 30.0
    concurrency: int = 8


@dataclass
class Counts:
    """What became of the records of one kind."""

    seen: int = 0
    copied: int = 0
    present: int = 0
    left_to_mirror: int = 0
    gone: int = 0
    failed: int = 0
    writes_taken_over: int = 0
    writes_dropped: int = 0


@dataclass
class Sorted:
    """A batch of legacy's records read and sorted, before anything is counted or copied."""

    tally: Counts = field(default_factory=Counts)
    deferred: list[tuple[str, int]] = field(default_factory=list)
    copies: list[tuple[dict[str, Any], tuple[int, ...]]] = field(default_factory=list)


@dataclass
class Checkpoint:
    """Where a backfill is: the kind and cursor to go on from, counts, records to retry."""

    kind: str = KINDS[0]
    cursor: str = ""
    walked: bool = False
    counts: dict[str, Counts] = field(default_factory=lambda: {k: Counts() for k in KINDS})
    deferred: list[tuple[str, int]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    started_at: int = field(default_factory=now_us)
    bulk: bool = False  # whether ``cursor`` is an id (bulk export) or a list cursor

    def document(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, doc: dict[str, Any]) -> Checkpoint:
        return cls(
            kind=doc["kind"],
            cursor=doc["cursor"],
            walked=doc["walked"],
            counts={k: Counts(**v) for k, v in doc["counts"].items()},
            deferred=[(k, int(i)) for k, i in doc["deferred"]],
            failures=doc["failures"],
            started_at=doc["started_at"],
            bulk=bool(doc.get("bulk", False)),
        )


class Backfill:
    """One backfill run."""

    def __init__(
        self, settings: Settings, state: Database, options: Options, stream: TextIO
    ) -> None:
        self.state = state
        self.options = options
        self.stream = stream
        self.idmap = IdMap(state, ID_CACHE)
        self.legacy = StoreClient(settings.stores["legacy"])
        self.new = StoreClient(settings.stores["new"])
        self.bulk = usable(self.legacy, self.new)
        self.source, self.target = Bulk(self.legacy), Bulk(self.new)
        self.copier = Copier(state, self.idmap, self.legacy, self.new)
        self.fence = Fence(WriteLog(state), settings.routes)
        self.rules = [ignore(settings.compare.ignore)]
        self.diff = DiffOptions(tolerance=settings.compare.tolerance)
        self.pacer = Pacer(options.rate)
        self.limit = asyncio.Semaphore(options.concurrency)
        self.point = Checkpoint(bulk=self.bulk)
        self.recent: list[tuple[str, dict[str, Any], Id]] = []
        self.fresh = 0  # copies made since the last check
        self.batches = 0

    async def run(self) -> dict[str, Any]:
        """Backfill; return the report (also saved in the state db)."""
        try:
            found = await self.state.read(lambda conn: load_doc(conn, CHECKPOINT))
            if self.options.resume and found is not None:
                self.point = Checkpoint.load(found)
                log.info("backfill_resumed", kind=self.point.kind, walked=self.point.walked)
            if self.point.bulk != self.bulk:  # the other path's cursor: walk the kind again
                self.point.cursor, self.point.bulk = "", self.bulk
            await self._finish_plans()
            progress = Progress("backfill", await self._total(), self.stream)
            progress.resume(sum(c.seen for c in self.point.counts.values()))
            if not self.point.walked:
                await self._walk(progress)
            await self._retry(progress)
            progress.finish()
            return await self._report()
        finally:
            await self.legacy.close()
            await self.new.close()

    async def _total(self) -> int:
        _, stats = await self.legacy.get("/v1/stats")
        if not isinstance(stats, dict):
            return 0
        return sum(int(stats.get(k, 0)) for k in ("contexts", "memories", "relations"))

    async def _finish_plans(self) -> None:
        """Send again the copies a previous run planned but did not finish."""
        for plan in await self.copier.pending():
            copy_id, why = await self.copier.run(plan)
            log.info("backfill_plan_finished", kind=plan.kind, id=plan.source_id, result=why)
            counts = self.point.counts[plan.kind]
            if copy_id is None:
                self._failed(plan.kind, plan.source_id, why)
            else:
                counts.copied += 1
                counts.writes_taken_over += len(plan.adopted)

    async def _walk(self, progress: Progress) -> None:
        """Walk legacy kind by kind; each batch is sorted (read, fenced) while the one
        before it is being copied, and counted and checkpointed once copied."""
        start = KINDS.index(self.point.kind)
        for kind in KINDS[start:]:
            cursor = self.point.cursor if kind == self.point.kind else ""
            sending: tuple[asyncio.Future[None], list[int], str] | None = None
            try:
                async for ids, after in self._ids(kind, cursor):
                    batch = await self._sort(kind, ids, first=True)
                    if sending is not None:
                        await self._landed(kind, *sending, progress)
                        sending = None
                    self._count(kind, batch)
                    sending = (asyncio.ensure_future(self._send(kind, batch.copies)), ids, after)
                if sending is not None:
                    await self._landed(kind, *sending, progress)
                    sending = None
            finally:
                if sending is not None:  # stopped: a copy in flight is left to its plan
                    sending[0].cancel()
                    await asyncio.wait([sending[0]])
        self.point.walked = True
        await self._sweep()
        await self._save()

    async def _landed(
        self,
        kind: str,
        sending: asyncio.Future[None],
        ids: list[int],
        after: str,
        progress: Progress,
    ) -> None:
        """Wait for a batch's copies; then count it and move the checkpoint past it."""
        await sending
        progress.advance(len(ids), kind)
        self.batches += 1
        if self.batches % self.options.check_every == 0:
            await self._check()
        self.point.kind, self.point.cursor = kind, after
        if not after and kind != KINDS[-1]:  # this kind is done: resume at the next
            self.point.kind = KINDS[KINDS.index(kind) + 1]
        await self._save()

    async def _ids(self, kind: str, cursor: str) -> AsyncIterator[tuple[list[int], str]]:
        """Yield legacy's ids of ``kind`` in batches, each with the cursor after it."""
        if not self.bulk:
            async for found in self.legacy.batches(kind, cursor, self.options.batch):
                yield found
            return
        after = int(cursor) if cursor.isdigit() else 0
        while True:
            lines = await self.source.export(kind, after, self.options.batch, digest=False)
            ids = [int(line["id"]) for line in lines]
            more = len(ids) == self.options.batch
            yield ids, str(ids[-1]) if more else ""
            if not more:
                return
            after = ids[-1]

    async def _retry(self, progress: Progress) -> None:
        """Try deferred records again while the writes in their way settle."""
        deadline = time.monotonic() + self.options.settle_s
        while self.point.deferred and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            todo, self.point.deferred = self.point.deferred, []
            for kind in KINDS:
                ids = [i for k, i in todo if k == kind]
                for at in range(0, len(ids), self.options.batch):
                    await self._batch(kind, ids[at : at + self.options.batch], first=False)
            await self._sweep()
            progress.advance(0, "retrying")
            await self._save()
        await self._check()

    async def _batch(self, kind: str, ids: list[int], *, first: bool) -> None:
        batch = await self._sort(kind, ids, first=first)
        self._count(kind, batch)
        await self._send(kind, batch.copies)

    async def _sort(self, kind: str, ids: list[int], *, first: bool) -> Sorted:
        """Read a batch of legacy's records between two looks at the write log, and
        sort them: to copy, present, gone, left to mirroring, or deferred. Changes
        nothing (``_count`` adds the tally to the checkpoint)."""
        batch = Sorted()
        tally = batch.tally
        if first:
            tally.seen += len(ids)
        paired = await self.idmap.translate(kind, ids, "legacy", "new")
        tally.present += len(paired)
        todo = [i for i in ids if i not in paired]
        if not todo:
            return batch
        keys = [f"{kind}:{i}" for i in todo]
        before = await self.fence.look(keys)
        records = await self._read(kind, todo)
        after, unknown = await self.fence.settled(keys)
        paired = await self.idmap.translate(kind, todo, "legacy", "new")  # after the look
        for record_id, record in zip(todo, records, strict=True):
            if record is None:
                tally.gone += 1
            elif record_id in paired:
                tally.present += 1
            else:
                what, adopted = verdict(f"{kind}:{record_id}", before, after, unknown)
                if what == "mirror":
                    tally.left_to_mirror += 1
                elif what == "in_flight":
                    batch.deferred.append((kind, record_id))
                else:
                    batch.copies.append((record, adopted))
        return batch

    def _count(self, kind: str, batch: Sorted) -> None:
        counts = self.point.counts[kind]
        for name, value in vars(batch.tally).items():
            setattr(counts, name, getattr(counts, name) + value)
        self.point.deferred += batch.deferred

    async def _send(self, kind: str, copies: list[tuple[dict[str, Any], tuple[int, ...]]]) -> None:
        """Copy a sorted batch's records: in one import on the bulk path."""
        if self.bulk and copies:
            await self._copy_batch(kind, copies)
        else:
            await asyncio.gather(*(self._copy(kind, r, adopted) for r, adopted in copies))

    async def _read(self, kind: str, ids: list[int]) -> list[dict[str, Any] | None]:
        """Legacy's records of ``ids`` whole (None for one it no longer has)."""
        if not self.bulk:
            return list(await asyncio.gather(*(self.legacy.one(kind, i) for i in ids)))
        found = await self.source.lookup(kind, ids, content=True, digest=False)
        return [found.get(i) for i in ids]

    async def _copy_batch(
        self, kind: str, copies: list[tuple[dict[str, Any], tuple[int, ...]]]
    ) -> None:
        """Copy records with one bulk import; one by one what it cannot take."""
        await self.pacer.wait(len(copies))
        items = [(r, f"backfill-{kind}-{r['id']}", adopted) for r, adopted in copies]
        try:
            plans, waiting = await self.copier.plan_batch(kind, items)
        except Conflict:
            await asyncio.gather(*(self._copy(kind, r, adopted) for r, adopted in copies))
            return
        self.point.deferred += [(kind, r["id"]) for r in waiting]
        made, refused = await self.copier.run_batch(self.target, plans)
        by_id = {r["id"]: (r, adopted) for r, adopted in copies}
        counts = self.point.counts[kind]
        for plan, copy_id in made:
            counts.copied += 1
            counts.writes_taken_over += len(plan.adopted)
            self._fresh_copy(kind, by_id[plan.source_id][0], copy_id)
        if refused:
            log.info("backfill_batch_refused", kind=kind, records=len(refused))
            await asyncio.gather(*(self._copy(kind, *by_id[p.source_id]) for p in refused))

    def _fresh_copy(self, kind: str, record: dict[str, Any], copy_id: Id) -> None:
        """Keep a fresh copy for the next check: an even sample of ``KEEP_RECENT``."""
        self.fresh += 1
        if len(self.recent) < KEEP_RECENT:
            self.recent.append((kind, record, copy_id))
        elif (at := random.randrange(self.fresh)) < KEEP_RECENT:
            self.recent[at] = (kind, record, copy_id)

    async def _sweep(self) -> None:
        """Drop backlog writes of records made and deleted before backfill reached them."""
        keys = []
        for key in await self.fence.backlog_keys():
            kind, _, number = key.partition(":")
            if kind in self.point.counts and number.isdigit():
                keys.append((kind, int(number)))
        for kind, record_id in keys:
            if await self.idmap.translate(kind, [record_id], "legacy", "new"):
                continue
            key = f"{kind}:{record_id}"
            before = await self.fence.look([key])
            if await self.legacy.one(kind, record_id) is not None:
                continue  # still there: the walk copies it
            after, unknown = await self.fence.settled([key])
            if await self.idmap.translate(kind, [record_id], "legacy", "new"):
                continue
            dropped = moot(key, before, after, unknown)
            if dropped and await self.copier.drop(dropped):
                self.point.counts[kind].writes_dropped += len(dropped)
                log.info("backfill_dropped_moot_writes", record=key, writes=len(dropped))

    async def _copy(self, kind: str, record: dict[str, Any], adopted: tuple[int, ...]) -> None:
        async with self.limit:
            await self.pacer.wait()
            try:
                plan = await self.copier.plan(
                    kind, record, f"backfill-{kind}-{record['id']}", adopted
                )
            except Conflict:
                plan = None
            if plan is None:  # its writes moved on, or a record it refers to has no copy yet
                self.point.deferred.append((kind, record["id"]))
                return
            copy_id, why = await self.copier.run(plan)
        counts = self.point.counts[kind]
        if copy_id is None:
            self._failed(kind, record["id"], why)
            return
        counts.copied += 1
        counts.writes_taken_over += len(adopted)
        self._fresh_copy(kind, record, copy_id)

    def _failed(self, kind: str, record_id: Id, why: str) -> None:
        self.point.counts[kind].failed += 1
        log.warning("backfill_refused", kind=kind, id=record_id, answer=why)
        if len(self.point.failures) < KEEP_FAILURES:
            self.point.failures.append({"kind": kind, "id": record_id, "answer": why})

    async def _check(self) -> None:
        """Read a sample of fresh copies back from new; stop on any difference."""
        sample = random.sample(self.recent, min(SAMPLE, len(self.recent)))
        self.recent.clear()
        self.fresh = 0
        problems = []
        for kind, record, copy_id in sample:
            copy = await self.new.one(kind, copy_id)
            if copy is None:
                problems.append(f"{kind} {record['id']}: its copy {copy_id} is not in new")
                continue
            if copy.get("version") != record.get("version"):
                continue  # changed by a mirrored write since: nothing to compare
            back, _ = await translate_ids(self.idmap, kind, copy, "new", "legacy")
            back["id"] = record["id"]
            found = differences(
                Observation("legacy", 200, record),
                Observation("new", 200, back),
                self.rules,
                self.diff,
            )
            problems += [f"{kind} {record['id']}: {d.path} differs in new" for d in found]
        if problems:
            raise IntegrityError(problems)

    async def _save(self) -> None:
        doc = self.point.document()
        await self.state.write(lambda conn: save_doc(conn, CHECKPOINT, doc))

    async def _report(self) -> dict[str, Any]:
        elapsed = (now_us() - self.point.started_at) / 1e6
        copied = sum(c.copied for c in self.point.counts.values())
        report = {
            "complete": not self.point.deferred and not self.point.failures,
            "started_at": format_ts(self.point.started_at),
            "finished_at": format_ts(now_us()),
            "elapsed_s": round(elapsed, 1),
            "copied_per_s": round(copied / elapsed, 1) if elapsed > 0 else 0.0,
            "bulk": self.bulk,
            "kinds": {k: asdict(c) for k, c in self.point.counts.items()},
            "deferred": len(self.point.deferred),
            "deferred_sample": [f"{k}:{i}" for k, i in self.point.deferred[:20]],
            "failures": self.point.failures,
        }

        def save(conn: Connection) -> None:
            save_doc(conn, REPORT, report)
            if report["complete"]:
                drop_doc(conn, CHECKPOINT)
                note_backfilled(conn)

        await self.state.write(save)
        return report


def text(report: dict[str, Any]) -> str:
    """Return a backfill report as a table for people."""
    names = ("seen", "copied", "present", "left_to_mirror", "gone", "failed")
    lines = [f"{'kind':<10}" + "".join(f"{n:>16}" for n in names)]
    for kind, counts in report["kinds"].items():
        lines.append(f"{kind:<10}" + "".join(f"{counts[n]:>16}" for n in names))
    lines.append(f"{report['copied_per_s']} copies/s over {report['elapsed_s']} s")
    lines += [f"  refused: {f['kind']} {f['id']}: {f['answer']}" for f in report["failures"]]
    if report["deferred"]:
        lines.append(
            f"{report['deferred']} record(s) still had writes on their way "
            f"({', '.join(report['deferred_sample'][:5])}); run again with --resume"
        )
    lines.append("backfill complete" if report["complete"] else "backfill NOT complete")
    return "\n".join(lines)
