"""Reading back a create whose answer was lost, on a store that must not get it twice.

A create mirrored to a store without idempotency keys (``idempotency = "none"``) whose
answer never came is held: sent again, it could make its record twice, and what waits
behind it waits. Where the store's profile says how to export the kind the create
makes (``[records.KIND] export``), replay reads it back instead of leaving it for an
operator's ``verify --repair``:

- the candidates are the store's records of that kind that no id pair claims and that
  hold every field the create sent, with the value sent;
- one candidate: the create was applied. Its id is paired with the primary's and the
  write is done;
- none: it was not applied. It goes back to the backlog, to be sent (once: nothing of
  it is on the store);
- several: it stays held. Only a record-by-record repair can tell them apart.

A write is read back once it has been held ``AFTER_S`` (a store may still be applying
what it never answered), then at most every ``EVERY_S``: an export reads every record
of the kind. Writes of other shapes (an update, a delete, a create of several records)
stay held: a profile that knows them to be repeatable says so, and they are never held.
"""

from __future__ import annotations

import enum
import time
from typing import Any

import structlog

from memshift.config.settings import RecordRecipe, Settings, StoreName, other
from memshift.ids import Id
from memshift.jsonpath import document_of, values
from memshift.shadow.mirror import Mirror, Write
from memshift.shadow.recipes import RecordIO
from memshift.shadow.records import created_ids
from memshift.shadow.writelog import Entry

log = structlog.get_logger("memshift.shadow")

AFTER_S, EVERY_S = 2.0, 10.0


class Found(enum.Enum):
    """What reading a held create back told."""

    APPLIED = "applied"  # paired: the write is done
    ABSENT = "absent"  # not applied: send it
    UNSURE = "unsure"  # still held


class Readback:
    """Reads held creates back from the store that holds them (see the module)."""

    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror
        self._due: dict[int, float] = {}  # entry id → when it may be read back next

    def forget(self, entry_id: int) -> None:
        self._due.pop(entry_id, None)

    async def settle(self, row: Entry, write: Write, settings: Settings) -> Found:
        """Read back the held create ``row`` (``write``) on the secondary, when due."""
        now = time.monotonic()
        due = self._due.setdefault(row.id, now + AFTER_S)
        if now < due or row.primary_body is None:
            return Found.UNSURE
        self._due[row.id] = now + EVERY_S
        spec = write.match.spec
        recipe = next((r for r in settings.records if r.kind == spec.creates), None)
        primary: StoreName = "new" if row.primary_store == "new" else "legacy"
        first = document_of(row.primary_body)
        made = created_ids(spec, first)
        if recipe is None or len(recipe.key) != 1 or len(made) != 1:
            return Found.UNSURE
        target = other(primary)
        request = await self.mirror.request(write, target, first)
        if request is None:
            return Found.UNSURE
        sent = _fields(request.body)
        if not sent:
            return Found.UNSURE
        candidates = await self._candidates(recipe, target, settings, sent)
        log.info(
            "held_write_read_back",
            entry=row.id,
            route=spec.name,
            store=target,
            candidates=len(candidates),
        )
        if len(candidates) > 1:
            return Found.UNSURE
        if not candidates:
            self.forget(row.id)
            return Found.ABSENT
        translator = self.mirror.translator
        ids = {primary: made[0], target: candidates[0]}
        legacy = translator.canonical(recipe.kind, ids["legacy"], "legacy")
        new = translator.canonical(recipe.kind, ids["new"], "new")
        if legacy is None or new is None:
            return Found.UNSURE
        await translator.idmap.record(recipe.kind, legacy, new)
        self.forget(row.id)
        return Found.APPLIED

    async def _candidates(
        self, recipe: RecordRecipe, store: StoreName, settings: Settings, sent: dict[str, Any]
    ) -> list[Id]:
        """The ids of ``store``'s unpaired records of the kind that hold what was sent."""
        io = RecordIO(store, self.mirror.send, settings)
        translator = self.mirror.translator
        holding: list[Id] = []
        async for page in io.export(recipe):
            for record in page:
                if all(record.get(k) == v for k, v in sent.items()):
                    found = values(record, recipe.key[0])
                    key = translator.canonical(recipe.kind, found[0], store) if found else None
                    if key is not None:
                        holding.append(key)
        if not holding:
            return []
        paired = await translator.idmap.translate(recipe.kind, holding, store, other(store))
        return [key for key in holding if key not in paired]


def _fields(body: bytes) -> dict[str, Any]:
    """The fields a create sent: its JSON object (a tool's: its arguments)."""
    doc = document_of(body)
    return dict(doc) if isinstance(doc, dict) else {}
