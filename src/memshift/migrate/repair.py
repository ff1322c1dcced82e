"""``memshift verify --repair``: make the secondary match the primary, finding by finding.

- *missing*: the record is copied (``copy.py``), exactly; a pair whose copy was lost is
  replaced, and the id map's generation bumped so that running proxies reload pairs.
- *differing*: a memory or context is PATCHed, as the secondary's admin, with every
  field of the original, owner, version and timestamps included; a relation (which has
  no PATCH) is deleted and copied again.
- *extra*: deleted once the walk is over, relations first, then memories, then
  contexts, so that nothing is deleted while something else still needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from memshift.config.settings import Settings, StoreName, other
from memshift.database import Database
from memshift.migrate.copy import Conflict, Copier, translate_ids
from memshift.migrate.walk import ITEM_PATHS, KINDS, StoreClient
from memshift.shadow.idmap import IdMap, bump_generation
from memshift.timestamps import now_us

log = structlog.get_logger("memshift.migrate")

KEEP = 50


@dataclass
class Repaired:
    """What a repair did."""

    created: int = 0
    updated: int = 0
    recreated: int = 0
    deleted: int = 0
    not_repaired: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {**vars(self), "not_repaired": self.not_repaired[:KEEP]}


class Repairer:
    """Fixes the secondary's copy of each record verify finds wrong."""

    def __init__(
        self, settings: Settings, state: Database, idmap: IdMap, primary: StoreName
    ) -> None:
        self.state = state
        self.primary = StoreClient(settings.stores[primary])
        self.secondary = StoreClient(settings.stores[other(primary)])
        self.copier = Copier(state, idmap, self.primary, self.secondary)
        self.done = Repaired()
        self.extras: dict[str, list[int]] = {kind: [] for kind in KINDS}
        self.replaced = 0

    async def missing(self, kind: str, record: dict[str, Any]) -> None:
        """Copy a record the secondary lacks."""
        if await self._copy(kind, record):
            self.done.created += 1

    async def differing(self, kind: str, record: dict[str, Any], copy: dict[str, Any]) -> None:
        """Make the secondary's copy of ``record`` equal to it."""
        if kind == "relation":
            status, _ = await self.secondary.call("DELETE", f"{ITEM_PATHS[kind]}{copy['id']}")
            if status in (204, 404) and await self._copy(kind, record):
                self.done.recreated += 1
            return
        body, unmapped = await translate_ids(
            self.copier.idmap, kind, record, self.primary.name, self.secondary.name
        )
        if unmapped:
            self._not_repaired(kind, record["id"], f"no pair for {', '.join(unmapped)}")
            return
        body.pop("id", None)
        status, answer = await self.secondary.call("PATCH", f"{ITEM_PATHS[kind]}{copy['id']}", body)
        if status == 200:
            self.done.updated += 1
        else:
            self._not_repaired(kind, record["id"], f"PATCH answered {status}: {answer}")

    def extra(self, kind: str, copy_id: int) -> None:
        """Note a record only the secondary has, for deletion at the end."""
        self.extras[kind].append(copy_id)

    async def finish(self) -> None:
        """Delete the extras (relations, memories, contexts); tell proxies of new pairs."""
        for kind in reversed(KINDS):
            for copy_id in self.extras[kind]:
                status, answer = await self.secondary.call("DELETE", f"{ITEM_PATHS[kind]}{copy_id}")
                if status in (204, 404):
                    self.done.deleted += 1
                else:
                    self._not_repaired(kind, copy_id, f"DELETE answered {status}: {answer}")
        if self.replaced:
            await self.state.write(bump_generation)
            log.info("id_map_pairs_replaced", pairs=self.replaced)

    async def _copy(self, kind: str, record: dict[str, Any]) -> bool:
        was = await self.copier.idmap.translate(
            kind, [record["id"]], self.primary.name, self.secondary.name
        )
        try:
            plan = await self.copier.plan(kind, record, f"repair-{kind}-{record['id']}-{now_us()}")
        except Conflict as exc:
            self._not_repaired(kind, record["id"], str(exc))
            return False
        if plan is None:
            self._not_repaired(kind, record["id"], "a record it refers to has no copy")
            return False
        copy_id, why = await self.copier.run(plan)
        if copy_id is None:
            self._not_repaired(kind, record["id"], f"create answered {why}")
            return False
        self.replaced += bool(was)
        return True

    def _not_repaired(self, kind: str, record_id: int, why: str) -> None:
        log.warning("repair_failed", kind=kind, id=record_id, reason=why)
        self.done.not_repaired.append(f"{kind} {record_id}: {why}")

    async def close(self) -> None:
        await self.primary.close()
        await self.secondary.close()
