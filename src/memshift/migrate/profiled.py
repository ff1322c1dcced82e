"""Verify, repair and backfill for any store whose profile says how (``[records.KIND]``).

Kinds are taken in the order the profile gives (a relation's entities before it).
Records are matched by identity, never by position: a name the client chose (or a key
of several fields) is the same in both stores; an id the store gave is paired through
the id map, and a record's references to others are translated the same way, so both
stores' records are compared in the primary's terms.

- **verify** reads each kind from both stores and names every record missing from the
  secondary, extra in it, or different (each differing path, both values);
- **repair** makes the secondary match as it goes: creates what is missing, deletes
  what is extra, updates what differs (or deletes and creates it again, where the
  store has no update), then verify runs again;
- **backfill** creates in the secondary what it lacks of the primary.

Each look at a kind, and each batch of copies, runs while the stores are *quiet*
(``Quiet``): in the proxy, no write is on its way and the backlog is empty, and writes
that come wait; so what is copied is what the primary holds, and no live write
overtakes a copy. A write the secondary refused because its record was not there
yet (``divergent``) is settled by the copy of that record, which holds its effect.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson
import structlog

from memshift import jsonpath
from memshift.compare.diff import Difference, DiffOptions, diff
from memshift.compare.normalize import redact
from memshift.config.settings import RecordRecipe, Settings, StoreName, other
from memshift.ids import Id, IdForms, forms_of, record_key
from memshift.migrate.marks import mark_backfilled
from memshift.migrate.progress import Progress
from memshift.shadow.idmap import IdMap
from memshift.shadow.recipes import RecordIO, Refused, Send, created_id, without

log = structlog.get_logger("memshift.migrate")
SAMPLES = 20
BATCH = 200


class Quiet(Protocol):
    """Keeps live writes out of a step of migration (see the module)."""

    def __call__(self) -> contextlib.AbstractAsyncContextManager[None]: ...


def alone() -> contextlib.AbstractAsyncContextManager[None]:
    """No proxy runs: nothing to keep out."""
    return contextlib.nullcontext()


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


@dataclass
class Repaired:
    """What a repair did."""

    created: int = 0
    updated: int = 0
    recreated: int = 0
    deleted: int = 0
    not_repaired: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {**asdict(self), "not_repaired": self.not_repaired[:50]}


@dataclass
class _Seen:
    """A secondary record: as the store has it, and in the primary's terms."""

    original: dict[str, Any]
    normal: dict[str, Any]


class ProfiledMigration:
    """Verify, repair and backfill over recipes (see the module)."""

    def __init__(
        self,
        settings: Settings,
        send: Send,
        idmap: IdMap,
        primary: StoreName,
        quiet: Quiet = alone,
        progress: Callable[[str], Progress] | None = None,
        settled: Callable[[tuple[str, ...]], Awaitable[Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.idmap = idmap
        self.primary = primary
        self.secondary = other(primary)
        self.ios = {name: RecordIO(name, send, settings) for name in (primary, other(primary))}
        self.quiet = quiet
        self.progress = progress
        self.settled = settled  # told of the records a copy made (divergent writes of them)
        self.forms: IdForms = forms_of(settings.ids)

    # Identity and terms.

    def _natural(self, recipe: RecordRecipe) -> bool:
        return len(recipe.key) > 1 or self.forms.natural(recipe.kind)

    def _key_values(self, recipe: RecordRecipe, record: dict[str, Any]) -> list[Any]:
        return [next(iter(jsonpath.values(record, path)), None) for path in recipe.key]

    async def _translate(
        self, kind: str, value: Any, source: StoreName, target: StoreName
    ) -> Id | None:
        if value is None:
            return None
        if self.forms.natural(kind):
            return self.forms.canonical(kind, value)
        side = self.forms.canonical(kind, value) if source == "legacy" else value
        if not isinstance(side, int | str):
            return None
        found = await self.idmap.translate(kind, [side], source, target)
        return found.get(side)

    async def _in_terms(
        self, recipe: RecordRecipe, record: dict[str, Any], source: StoreName, target: StoreName
    ) -> dict[str, Any] | None:
        """``record`` with its own id and references as ``target`` has them; None when one
        has no pair there."""
        out: dict[str, Any] = orjson.loads(orjson.dumps(record))
        wanted = [] if self._natural(recipe) else [(recipe.key[0], recipe.kind)]
        for path, kind in (*wanted, *recipe.refs):
            for container, key in jsonpath.places(out, path):
                if container[key] is None:
                    continue
                found = await self._translate(kind, container[key], source, target)
                if found is None:
                    return None
                container[key] = found
        return out

    def _identity(self, recipe: RecordRecipe, normal: dict[str, Any]) -> str:
        return orjson.dumps(self._key_values(recipe, normal)).decode()

    def _compared(self, recipe: RecordRecipe, normal: dict[str, Any]) -> dict[str, Any]:
        return without(normal, recipe.ignore)

    # Reading a kind.

    async def _secondary(
        self, recipe: RecordRecipe
    ) -> tuple[dict[str, _Seen], list[dict[str, Any]]]:
        """The secondary's records by identity in the primary's terms, and those with no
        pair (extra, for a kind whose ids the stores give)."""
        seen: dict[str, _Seen] = {}
        unpaired: list[dict[str, Any]] = []
        async for page in self.ios[self.secondary].export(recipe):
            for record in page:
                normal = await self._in_terms(recipe, record, self.secondary, self.primary)
                if normal is None:
                    unpaired.append(record)
                else:
                    seen[self._identity(recipe, normal)] = _Seen(record, normal)
        return seen, unpaired

    # Verify and repair.

    async def verify(self, repair: bool) -> tuple[dict[str, KindResult], dict[str, Any] | None]:
        """Compare both stores (repairing with ``repair``, then comparing again)."""
        if not repair:
            return await self._verify(None), None
        done = Repaired()
        await self._verify(done)
        results = await self._verify(None)
        if all(not (r.missing or r.extra or r.differing) for r in results.values()):
            await mark_backfilled(self.idmap.db)
        return results, done.document()

    async def _verify(self, repair: Repaired | None) -> dict[str, KindResult]:
        results: dict[str, KindResult] = {}
        progress = self.progress("verify") if self.progress else None
        for recipe in self.settings.records:
            found = results[recipe.kind] = KindResult()
            async with self.quiet():
                await self._verify_kind(recipe, found, repair, progress)
        if progress:
            progress.finish()
        return results

    async def _verify_kind(
        self,
        recipe: RecordRecipe,
        found: KindResult,
        repair: Repaired | None,
        progress: Progress | None,
    ) -> None:
        theirs, unpaired = await self._secondary(recipe)
        options = DiffOptions(
            tolerance=self.settings.compare.tolerance, unordered=frozenset(recipe.unordered)
        )
        async for page in self.ios[self.primary].export(recipe):
            for record in page:
                found.checked += 1
                mine = await self._in_terms(recipe, record, self.primary, self.primary)
                assert mine is not None
                ident = self._identity(recipe, mine)
                copy = theirs.pop(ident, None)
                if copy is None:
                    found.note("missing", {"key": ident, self.primary: redact(record)})
                    if repair is not None:
                        await self._create(recipe, record, repair)
                    continue
                diffs = diff(
                    self._compared(recipe, mine), self._compared(recipe, copy.normal), options
                )
                if diffs:
                    found.note("differing", {"key": ident, "differences": self._shown(diffs)})
                    if repair is not None:
                        await self._fix(recipe, record, copy.original, repair)
            if progress:
                progress.advance(len(page), recipe.kind)
        extra = [s.original for s in theirs.values()] + unpaired
        for record in extra:
            ident = orjson.dumps(self._key_values(recipe, record)).decode()
            found.note("extra", {f"{self.secondary}_key": ident, self.secondary: redact(record)})
            if repair is not None:
                await self._delete(recipe, record, repair)

    def _shown(self, diffs: list[Difference]) -> list[dict[str, Any]]:
        return [
            {
                "path": d.path,
                "kind": d.kind,
                self.primary: redact(d.control),
                self.secondary: redact(d.candidate),
            }
            for d in diffs[:10]
        ]

    async def _create(self, recipe: RecordRecipe, record: dict[str, Any], done: Repaired) -> bool:
        """Copy ``record`` into the secondary (and pair its id); False if it cannot."""
        ident = orjson.dumps(self._key_values(recipe, record)).decode()
        if recipe.create is None:
            done.not_repaired.append(f"{recipe.kind} {ident}: the profile cannot create one")
            return False
        theirs = await self._in_terms(recipe, record, self.primary, self.secondary)
        if theirs is None and not self._natural(recipe):
            # Its own id has no pair yet (of course): only its references must have one.
            plain = {**record}
            theirs = await self._refs_only(recipe, plain)
        if theirs is None:
            done.not_repaired.append(f"{recipe.kind} {ident}: it refers to a record with no copy")
            return False
        try:
            answer = await self.ios[self.secondary].create(recipe, theirs)
        except Refused as exc:
            done.not_repaired.append(f"{recipe.kind} {ident}: {exc}")
            return False
        if not self._natural(recipe):
            mine = self._key_values(recipe, record)[0]
            made = created_id(self.settings, recipe, answer)
            legacy_side = self.forms.canonical(recipe.kind, mine)
            if made is None or legacy_side is None:
                done.not_repaired.append(f"{recipe.kind} {ident}: the create named no new id")
                return False
            pair = (legacy_side, made) if self.primary == "legacy" else (made, legacy_side)
            await self.idmap.record(recipe.kind, *pair)
        done.created += 1
        return True

    async def _refs_only(
        self, recipe: RecordRecipe, record: dict[str, Any]
    ) -> dict[str, Any] | None:
        out: dict[str, Any] = orjson.loads(orjson.dumps(record))
        for path, kind in recipe.refs:
            for container, key in jsonpath.places(out, path):
                if container[key] is None:
                    continue
                found = await self._translate(kind, container[key], self.primary, self.secondary)
                if found is None:
                    return None
                container[key] = found
        return out

    async def _fix(
        self, recipe: RecordRecipe, record: dict[str, Any], copy: dict[str, Any], done: Repaired
    ) -> None:
        ident = orjson.dumps(self._key_values(recipe, record)).decode()
        theirs = await self._in_terms(recipe, record, self.primary, self.secondary)
        if theirs is None:
            done.not_repaired.append(f"{recipe.kind} {ident}: it refers to a record with no copy")
            return
        try:
            if recipe.update is not None:
                await self.ios[self.secondary].update(recipe, theirs)
                done.updated += 1
                return
            if recipe.delete is None or recipe.create is None:
                done.not_repaired.append(f"{recipe.kind} {ident}: the profile cannot change one")
                return
            await self.ios[self.secondary].delete(recipe, copy)
        except Refused as exc:
            done.not_repaired.append(f"{recipe.kind} {ident}: {exc}")
            return
        if await self._create(recipe, record, done):
            done.created -= 1
            done.recreated += 1

    async def _delete(self, recipe: RecordRecipe, record: dict[str, Any], done: Repaired) -> None:
        ident = orjson.dumps(self._key_values(recipe, record)).decode()
        if recipe.delete is None:
            done.not_repaired.append(f"{recipe.kind} {ident}: the profile cannot delete one")
            return
        try:
            await self.ios[self.secondary].delete(recipe, record)
        except Refused as exc:
            done.not_repaired.append(f"{recipe.kind} {ident}: {exc}")
            return
        done.deleted += 1

    # Backfill.

    async def backfill(self, batch: int = BATCH) -> dict[str, Any]:
        """Copy into the secondary what it lacks of the primary, kind by kind."""
        counts: dict[str, dict[str, int]] = {}
        refused: list[str] = []
        started = time.monotonic()
        progress = self.progress("backfill") if self.progress else None
        for recipe in self.settings.records:
            counts[recipe.kind] = dict.fromkeys(
                ("seen", "copied", "present", "left_to_mirror", "gone", "failed"), 0
            )
            while True:  # one batch per quiet spell; what is left is looked at again
                async with self.quiet():
                    left = await self._backfill_batch(recipe, batch, counts[recipe.kind], refused)
                if progress:
                    progress.total = max(progress.total, counts[recipe.kind]["seen"])
                    progress.advance(counts[recipe.kind]["copied"] - progress.done, recipe.kind)
                if not left:
                    break
        if progress:
            progress.finish()
        elapsed = time.monotonic() - started
        copied = sum(c["copied"] for c in counts.values())
        if not refused:
            await mark_backfilled(self.idmap.db)
        return {
            "complete": not refused,
            "kinds": counts,
            "failures": [
                {"kind": kind, "id": what, "answer": why}
                for kind, _, rest in (r.partition(" ") for r in refused[:20])
                for what, _, why in (rest.partition(": "),)
            ],
            "deferred": 0,
            "deferred_sample": [],
            "copied_per_s": round(copied / elapsed, 1) if elapsed > 0 else 0.0,
            "elapsed_s": round(elapsed, 1),
        }

    async def _backfill_batch(
        self, recipe: RecordRecipe, batch: int, counts: dict[str, int], refused: list[str]
    ) -> bool:
        """Copy up to ``batch`` missing records; return whether more may be missing."""
        theirs, _unpaired = await self._secondary(recipe)
        done = Repaired()
        seen = copied = 0
        made: list[str] = []
        async for page in self.ios[self.primary].export(recipe):
            for record in page:
                seen += 1
                mine = await self._in_terms(recipe, record, self.primary, self.primary)
                assert mine is not None
                if self._identity(recipe, mine) in theirs:
                    continue
                if copied >= batch:
                    continue
                before = len(done.not_repaired)
                if await self._create(recipe, record, done):
                    copied += 1
                    key = self._record_key(recipe, record)
                    if key:
                        made.append(key)
                elif len(done.not_repaired) > before:
                    refused.append(done.not_repaired[-1])
        counts["seen"] = seen
        counts["copied"] += copied
        counts["present"] = seen - copied - len(refused)
        counts["failed"] = len(refused)
        if made and self.settled is not None:
            await self.settled(tuple(made))
        return copied >= batch

    def _record_key(self, recipe: RecordRecipe, record: dict[str, Any]) -> str | None:
        if len(recipe.key) != 1:
            return None
        value = self.forms.canonical(recipe.kind, self._key_values(recipe, record)[0])
        return None if value is None else record_key(recipe.kind, value)


def summary(results: dict[str, KindResult], primary: StoreName, repaired: Any) -> dict[str, Any]:
    """Verify's JSON document, as the reference store's verify gives it."""
    doc: dict[str, Any] = {
        "equal": all(not (r.missing or r.extra or r.differing) for r in results.values()),
        "primary": primary,
        "secondary": other(primary),
        "kinds": {k: asdict(r) for k, r in results.items()},
    }
    if repaired is not None:
        doc["repaired"] = repaired
    return doc
