"""``memshift verify``: both stores compared record by record, through their APIs.

Every legacy record is looked up in new through the id map, its ids translated, both
normalized with the compare rules, and diffed; then every new record without a pair is
extra. Both stores are walked page by page, so memory does not grow with their size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memshift.compare.compare import Observation, differences
from memshift.compare.diff import DiffOptions
from memshift.compare.normalize import ignore, redact
from memshift.config.settings import Settings
from memshift.migrate.walk import KINDS, StoreReader
from memshift.shadow.idmap import IdMap

INNER = {
    "context": (),
    "memory": (("context_id", "context"),),
    "relation": (("source_id", "memory"), ("target_id", "memory")),
}
SAMPLES = 20


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


async def _translated(idmap: IdMap, kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """Return a new-store record with its ids in legacy's (unmapped ids left as they are)."""
    out = dict(record)
    for name, inner in (("id", kind),) + INNER[kind]:
        value = out.get(name)
        if isinstance(value, int):
            found = await idmap.translate(inner, [value], "new", "legacy")
            out[name] = found.get(value, value)
    return out


async def verify(settings: Settings, idmap: IdMap) -> dict[str, KindResult]:
    """Compare both stores; return what was found per kind."""
    legacy, new = (StoreReader(settings.stores["legacy"]), StoreReader(settings.stores["new"]))
    rules = [ignore(settings.compare.ignore)]
    options = DiffOptions(tolerance=settings.compare.tolerance)
    results = {kind: KindResult() for kind in KINDS}
    try:
        for kind in KINDS:
            found = results[kind]
            async for record in legacy.records(kind):
                found.checked += 1
                pair = await idmap.translate(kind, [record["id"]], "legacy", "new")
                copy = await new.one(kind, pair[record["id"]]) if pair else None
                if copy is None:
                    found.note("missing", {"id": record["id"], "legacy": redact(record)})
                    continue
                diffs = differences(
                    Observation("legacy", 200, record),
                    Observation("new", 200, await _translated(idmap, kind, copy)),
                    rules,
                    options,
                )
                if diffs:
                    found.note(
                        "differing",
                        {
                            "id": record["id"],
                            "differences": [
                                {
                                    "path": d.path,
                                    "kind": d.kind,
                                    "legacy": redact(d.control),
                                    "new": redact(d.candidate),
                                }
                                for d in diffs[:10]
                            ],
                        },
                    )
            async for record in new.records(kind):
                back = await idmap.translate(kind, [record["id"]], "new", "legacy")
                if not back or await legacy.one(kind, back[record["id"]]) is None:
                    found.note("extra", {"new_id": record["id"], "new": redact(record)})
        return results
    finally:
        await legacy.close()
        await new.close()


def summary(results: dict[str, KindResult]) -> dict[str, Any]:
    """Return verify's JSON document."""
    equal = all(not (r.missing or r.extra or r.differing) for r in results.values())
    return {"equal": equal, "kinds": {k: vars(r) for k, r in results.items()}}


def text(results: dict[str, KindResult]) -> str:
    """Return verify's findings as a table for people."""
    lines = [f"{'kind':<10}{'checked':>9}{'missing':>9}{'extra':>7}{'differing':>11}"]
    for kind, r in results.items():
        lines.append(f"{kind:<10}{r.checked:>9}{r.missing:>9}{r.extra:>7}{r.differing:>11}")
        for sample in r.samples[:5]:
            where = sample.get("id", sample.get("new_id"))
            detail = ", ".join(d["path"] for d in sample.get("differences", []))
            lines.append(f"  {sample['problem']:<9} {kind} {where} {detail}")
    verdict = "equal" if summary(results)["equal"] else "NOT equal"
    return "\n".join([*lines, f"stores are {verdict}"])
