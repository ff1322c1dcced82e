"""``memshift verify``: both stores compared record by record, through their APIs.

Every record of the primary is looked up in the secondary through the id map, the
copy's ids translated into the primary's, both normalized with the compare rules, and
diffed; then every record of the secondary without a live original is extra. Both
stores are walked a page at a time (checked concurrently), so memory does not grow
with their size. With a ``Repairer``, each finding is fixed as it is found
(``repair.py``).

Where both stores have bulk paths (``bulk.py``), digests are compared first: a page
of the primary's digests (and the ids each record refers to) against the digests of
their copies, fetched in one request; only the records whose digests or references
differ are read whole and diffed. The walk for extras then reads the secondary's ids
alone: a copy the first walk found paired with its original is no extra, and only
the others are looked up. Without bulk paths, every record is read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, TextIO

from memshift.compare.compare import Observation, differences
from memshift.compare.diff import Difference, DiffOptions
from memshift.compare.normalize import ignore, redact
from memshift.config.settings import Settings, StoreName, other
from memshift.database import Database
from memshift.ids import Id
from memshift.migrate.bulk import Bulk, usable
from memshift.migrate.copy import INNER, translate_ids
from memshift.migrate.progress import Progress
from memshift.migrate.repair import Repairer
from memshift.migrate.walk import ID_CACHE, KINDS, StoreClient
from memshift.shadow.idmap import IdMap

SAMPLES = 20
DIGEST_PAGE = 1000
ID_PAGE = 10_000  # ids of the secondary per page of the walk for extras


@dataclass
class KindResult:
    """What verify found for one kind of record."""

    checked: int = 0
    missing: int = 0
    extra: int = 0
    differing: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def note(self, what: str, sample: dict[str, Any]) -> None:
        setattr(self, what, getattr(self, what) + 1)
        if len(self.samples) < SAMPLES:
            self.samples.append({"problem": what, **sample})


class Verifier:
    """Walks ``primary`` and ``secondary`` and diffs what it finds."""

    def __init__(
        self,
        settings: Settings,
        idmap: IdMap,
        primary: StoreName,
        repairer: Repairer | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.idmap = idmap
        self.primary = StoreClient(settings.stores[primary])
        self.secondary = StoreClient(settings.stores[other(primary)])
        self.rules = [ignore(settings.compare.ignore)]
        self.options = DiffOptions(tolerance=settings.compare.tolerance)
        self.repairer = repairer
        self.results = {kind: KindResult() for kind in KINDS}
        self.stream = stream or sys.stderr  # looked up now: a test may have replaced it
        self.bulk = usable(self.primary, self.secondary)
        self.first, self.second = Bulk(self.primary), Bulk(self.secondary)

    async def _total(self) -> int:
        _, stats = await self.primary.get("/v1/stats")
        if not isinstance(stats, dict):
            return 0
        return sum(int(stats.get(k, 0)) for k in ("contexts", "memories", "relations"))

    async def run(self) -> dict[str, KindResult]:
        """Compare both stores (repairing as it goes, with a repairer); return the findings.

        Progress (records checked of the primary's, per second, time left) is drawn on a
        terminal and logged elsewhere."""
        try:
            progress = Progress("verify", await self._total(), self.stream)
            if self.bulk:
                await self._by_digests(progress)
            else:
                await self._one_by_one(progress)
            if self.repairer is not None:
                await self.repairer.finish()
            progress.finish()
            return self.results
        finally:
            await self.primary.close()
            await self.secondary.close()

    async def _one_by_one(self, progress: Progress) -> None:
        """Compare every kind record by record, each read whole from both stores."""
        for kind in KINDS:
            async for records in self.primary.records(kind):
                await asyncio.gather(*(self._check(kind, r) for r in records))
                progress.advance(len(records), kind)
            async for records in self.secondary.records(kind):
                await asyncio.gather(*(self._extra(kind, r) for r in records))
                progress.advance(0, f"{kind}: extra ones")

    async def _by_digests(self, progress: Progress) -> None:
        """Compare every kind digests first (see the module), a page at a time.

        For each kind, the primary's pages come first, each next one read while the
        last is checked; every copy found there is marked paired. Then the secondary's
        ids: those not marked are looked up. A copy a repair makes is not marked, so it
        is looked up and found paired. Without a repair, the walk for extras of one kind
        runs beside the digest walk of the next."""
        behind: asyncio.Future[None] | None = None
        try:
            for kind in KINDS:
                paired = await self._digest_walk(kind, progress)
                if self.repairer is not None:
                    await self._extras_walk(kind, paired, progress)
                    continue
                if behind is not None:
                    await behind
                behind = asyncio.ensure_future(self._extras_walk(kind, paired, progress))
            if behind is not None:
                await behind
        finally:
            if behind is not None and not behind.done():
                behind.cancel()

    async def _digest_walk(self, kind: str, progress: Progress) -> Marks:
        paired = Marks()
        async with contextlib.aclosing(_pages(self.first, kind, DIGEST_PAGE)) as pages:
            async for lines in pages:
                await self._check_page(kind, lines, paired)
                progress.advance(len(lines), kind)
        return paired

    async def _extras_walk(self, kind: str, paired: Marks, progress: Progress) -> None:
        ids = _pages(self.second, kind, ID_PAGE, digest=False)
        async with contextlib.aclosing(ids) as pages:
            async for lines in pages:
                await self._extra_page(kind, [line for line in lines if line["id"] not in paired])
                progress.advance(0, f"{kind}: extra ones")

    async def _check_page(self, kind: str, lines: list[dict[str, Any]], paired: Marks) -> None:
        first, second = self.primary.name, self.secondary.name
        self.results[kind].checked += len(lines)
        pairs = await self.idmap.translate(kind, [line["id"] for line in lines], first, second)
        copies = await self.second.lookup(kind, list(pairs.values()))
        back: dict[str, dict[Id, Id]] = {}  # per reference: the copies' ids in the primary's
        for name, inner in INNER[kind]:
            refs = [c[name] for c in copies.values() if c.get(name) is not None]
            back[name] = await self.idmap.translate(inner, refs, second, first)
        lost: list[Id] = []
        suspects: list[tuple[Id, Id]] = []
        for line in lines:
            pair = pairs.get(line["id"])
            copy = copies.get(pair) if pair is not None else None
            if pair is None or copy is None:
                lost.append(line["id"])
                continue
            paired.add(pair)
            same_refs = all(
                (None if copy.get(name) is None else back[name].get(copy[name])) == line.get(name)
                for name, _ in INNER[kind]
            )
            if copy["digest"] != line["digest"] or not same_refs:
                suspects.append((line["id"], pair))
        if suspects:
            whole = await self.first.lookup(kind, [i for i, _ in suspects], content=True)
            copied = await self.second.lookup(kind, [p for _, p in suspects], content=True)
            for record_id, pair in suspects:
                if record_id not in whole:
                    continue  # deleted since the page was read
                if pair not in copied:
                    lost.append(record_id)
                    continue
                await self._compare(kind, whole[record_id], copied[pair])
        if lost:
            whole = await self.first.lookup(kind, lost, content=True)
            for record_id in lost:
                if record_id in whole:
                    await self._missing(kind, whole[record_id])

    async def _extra_page(self, kind: str, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        first, second = self.primary.name, self.secondary.name
        back = await self.idmap.translate(kind, [line["id"] for line in lines], second, first)
        originals = await self.first.lookup(kind, list(back.values()))
        extra = [
            line["id"]
            for line in lines
            if line["id"] not in back or back[line["id"]] not in originals
        ]
        if not extra:
            return
        whole = await self.second.lookup(kind, extra, content=True)
        for record_id in extra:
            record = whole.get(record_id)
            if record is not None:
                self._noted_extra(kind, record)

    async def _check(self, kind: str, record: dict[str, Any]) -> None:
        found = self.results[kind]
        found.checked += 1
        first, second = self.primary.name, self.secondary.name
        pair = await self.idmap.translate(kind, [record["id"]], first, second)
        copy = await self.secondary.one(kind, pair[record["id"]]) if pair else None
        if copy is None:
            await self._missing(kind, record)
            return
        await self._compare(kind, record, copy)

    async def _missing(self, kind: str, record: dict[str, Any]) -> None:
        self.results[kind].note("missing", {"id": record["id"], self.primary.name: redact(record)})
        if self.repairer is not None:
            await self.repairer.missing(kind, record)

    async def _compare(self, kind: str, record: dict[str, Any], copy: dict[str, Any]) -> None:
        """Diff ``record`` and its copy, in the primary's ids; note and repair a difference."""
        found = self.results[kind]
        first, second = self.primary.name, self.secondary.name
        back, _ = await translate_ids(self.idmap, kind, copy, second, first)
        back["id"] = record["id"]
        diffs = differences(
            Observation(first, 200, record),
            Observation(second, 200, back),
            self.rules,
            self.options,
        )
        if diffs:
            found.note("differing", {"id": record["id"], "differences": self._shown(diffs)})
            if self.repairer is not None:
                await self.repairer.differing(kind, record, copy)

    def _shown(self, diffs: list[Difference]) -> list[dict[str, Any]]:
        return [
            {
                "path": d.path,
                "kind": d.kind,
                self.primary.name: redact(d.control),
                self.secondary.name: redact(d.candidate),
            }
            for d in diffs[:10]
        ]

    async def _extra(self, kind: str, record: dict[str, Any]) -> None:
        first, second = self.primary.name, self.secondary.name
        back = await self.idmap.translate(kind, [record["id"]], second, first)
        if back and await self.primary.one(kind, back[record["id"]]) is not None:
            return
        self._noted_extra(kind, record)

    def _noted_extra(self, kind: str, record: dict[str, Any]) -> None:
        second = self.secondary.name
        self.results[kind].note("extra", {f"{second}_id": record["id"], second: redact(record)})
        if self.repairer is not None:
            self.repairer.extra(kind, record["id"])


async def verify(
    settings: Settings, state: Database, primary: StoreName, *, repair: bool = False
) -> tuple[dict[str, KindResult], dict[str, Any] | None]:
    """Compare both stores; with ``repair``, fix the secondary and compare again.

    Return the (final) findings per kind, and what the repair did.
    """
    idmap = IdMap(state, ID_CACHE)
    if not repair:
        return await Verifier(settings, idmap, primary).run(), None
    repairer = Repairer(settings, state, idmap, primary)
    try:
        await Verifier(settings, idmap, primary, repairer).run()
    finally:
        await repairer.close()
    again = Verifier(settings, IdMap(state, ID_CACHE), primary)
    return await again.run(), repairer.done.document()


async def _pages(
    source: Bulk, kind: str, size: int, *, digest: bool = True
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Yield ``source``'s export pages of ``kind``, reading each next one while the last
    is checked."""
    ahead: asyncio.Future[list[dict[str, Any]]] | None
    ahead = asyncio.ensure_future(source.export(kind, 0, size, digest=digest))
    try:
        while ahead is not None:
            lines = await ahead
            ahead = None
            if len(lines) == size:
                after = lines[-1]["id"]
                ahead = asyncio.ensure_future(source.export(kind, after, size, digest=digest))
            if lines:
                yield lines
    finally:
        if ahead is not None:
            ahead.cancel()


class Marks:
    """A set of record ids, a bit each for the ids of the reference store (small
    integers), so that marking every record of a store costs little memory."""

    BITS = 1 << 27  # ids below this take a bit; others (rare) a set entry

    def __init__(self) -> None:
        self.bits = bytearray()
        self.others: set[Id] = set()

    def add(self, record_id: Id) -> None:
        if type(record_id) is int and 0 <= record_id < self.BITS:
            at = record_id >> 3
            if at >= len(self.bits):
                self.bits.extend(bytes(max(at + 1 - len(self.bits), len(self.bits))))
            self.bits[at] |= 1 << (record_id & 7)
        else:
            self.others.add(record_id)

    def __contains__(self, record_id: object) -> bool:
        if type(record_id) is int and 0 <= record_id < self.BITS:
            at = record_id >> 3
            return at < len(self.bits) and bool(self.bits[at] & (1 << (record_id & 7)))
        return record_id in self.others


def all_equal(results: dict[str, KindResult]) -> bool:
    """Whether verify found nothing missing, extra or differing."""
    return all(not (r.missing or r.extra or r.differing) for r in results.values())


def summary(
    results: dict[str, KindResult], primary: StoreName, repaired: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return verify's JSON document."""
    doc = {
        "equal": all_equal(results),
        "primary": primary,
        "secondary": other(primary),
        "kinds": {k: vars(r) for k, r in results.items()},
    }
    if repaired is not None:
        doc["repaired"] = repaired
    return doc


def text(results: dict[str, KindResult], repaired: dict[str, Any] | None = None) -> str:
    """Return verify's findings as a table for people."""
    return text_of(summary(results, "legacy", repaired))


def text_of(doc: dict[str, Any]) -> str:
    """Return verify's document (``summary``) as a table for people."""
    repaired = doc.get("repaired")
    lines = []
    if repaired is not None:
        lines.append(
            "repaired: "
            + ", ".join(f"{n} {what}" for what, n in repaired.items() if isinstance(n, int))
        )
        lines += [f"  not repaired: {item}" for item in repaired.get("not_repaired", [])[:10]]
    lines.append(f"{'kind':<10}{'checked':>9}{'missing':>9}{'extra':>7}{'differing':>11}")
    for kind, r in doc["kinds"].items():
        lines.append(
            f"{kind:<10}{r['checked']:>9}{r['missing']:>9}{r['extra']:>7}{r['differing']:>11}"
        )
        for sample in r["samples"][:5]:
            named = (v for k, v in sample.items() if k.endswith(("_id", "_key")))
            where = sample.get("id", sample.get("key", next(named, "")))
            detail = ", ".join(d["path"] for d in sample.get("differences", []))
            lines.append(f"  {sample['problem']:<9} {kind} {where} {detail}")
    verdict = "equal" if doc["equal"] else "NOT equal"
    return "\n".join([*lines, f"stores are {verdict}"])
