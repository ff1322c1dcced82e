"""Copying one record from one store to the other, exactly once, and pairing the ids.

A copy is planned in the state db first (the exact body and ``Idempotency-Key`` it will
send, and the backlog writes it takes over), then created on the target as the
target's admin with the source's owner, version and timestamps, then finished in one
transaction: the id pair recorded, the taken-over writes marked copied, the plan
dropped. A crash between plan and finish leaves the plan, and ``resume`` sends the
same request again, which the store's idempotency turns into the same record.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from memshift.config.settings import StoreName
from memshift.database import Database
from memshift.ids import Id, decode, encode
from memshift.migrate.bulk import Bulk, chunks
from memshift.migrate.walk import CREATE_PATHS, StoreClient
from memshift.shadow.idmap import IdMap
from memshift.shadow.writelog import Moved, WriteLog
from memshift.statedb import copy_plans, id_map
from memshift.timestamps import now_us

# The fields of each kind that hold ids of other records, and their kinds.
INNER: dict[str, tuple[tuple[str, str], ...]] = {
    "context": (),
    "memory": (("context_id", "context"),),
    "relation": (("source_id", "memory"), ("target_id", "memory")),
}


class Conflict(Exception):
    """Someone else changed what a copy meant to take over; try the record later."""


@dataclass(frozen=True)
class Plan:
    """One planned copy: what is sent, under which key, and what it takes over."""

    kind: str
    source_id: Id
    target: StoreName
    key: str
    body: dict[str, Any]
    adopted: tuple[int, ...] = ()


async def translate_ids(
    idmap: IdMap, kind: str, record: dict[str, Any], source: StoreName, target: StoreName
) -> tuple[dict[str, Any], list[str]]:
    """Return ``record`` with its inner ids in ``target``'s space, and those with no pair."""
    out, unmapped = dict(record), []
    for name, inner in INNER[kind]:
        value = out.get(name)
        if isinstance(value, int):
            found = await idmap.translate(inner, [value], source, target)
            if value in found:
                out[name] = found[value]
            else:
                unmapped.append(f"{inner}:{value}")
    return out, unmapped


class Copier:
    """Creates copies of records on ``target`` and pairs them with their originals."""

    def __init__(
        self, state: Database, idmap: IdMap, source: StoreClient, target: StoreClient
    ) -> None:
        self.state = state
        self.idmap = idmap
        self.source = source
        self.target = target

    async def plan(
        self, kind: str, record: dict[str, Any], key: str, adopted: tuple[int, ...] = ()
    ) -> Plan | None:
        """Plan the copy of ``record``; None while one of its inner ids has no pair."""
        body, unmapped = await translate_ids(
            self.idmap, kind, record, self.source.name, self.target.name
        )
        if unmapped:
            return None
        body.pop("id", None)
        plan = Plan(kind, record["id"], self.target.name, key, body, adopted)
        try:
            await self.state.write(partial(_save_plans, plans=[plan]))
        except SAIntegrityError as exc:
            raise Conflict(f"{kind} {plan.source_id}: another copy of it is planned") from exc
        except Moved as exc:
            raise Conflict(f"{kind} {plan.source_id}: its backlog writes moved on") from exc
        return plan

    async def run(self, plan: Plan) -> tuple[Id | None, str]:
        """Create the planned copy and finish; return its id (None if refused) and why."""
        status, answer = await self.target.call(
            "POST", CREATE_PATHS[plan.kind], plan.body, plan.key
        )
        if status not in (200, 201) or not isinstance(answer, dict):
            await self.state.write(partial(_drop_plans, plans=[plan]))
            code = answer.get("error", {}).get("code") if isinstance(answer, dict) else None
            return None, f"{status} {code or ''}".strip()
        copy_id: Id = answer["id"]
        await self.state.write(partial(_finish_all, plans=[plan], ids=[copy_id]))
        legacy_id, new_id = self._pair(plan, copy_id)
        self.idmap.remember(plan.kind, legacy_id, new_id)
        return copy_id, "created"

    async def plan_batch(
        self, kind: str, items: list[tuple[dict[str, Any], str, tuple[int, ...]]]
    ) -> tuple[list[Plan], list[dict[str, Any]]]:
        """Plan the copies of ``(record, key, adopted)`` items in one transaction.

        Return the plans, and the records one of whose inner ids has no pair yet (not
        planned). Raise ``Conflict`` if one of them cannot be planned: then none is.
        """
        for name, inner in INNER[kind]:  # one look at the id map for the whole batch
            refs = [r[name] for r, _, _ in items if isinstance(r.get(name), int)]
            await self.idmap.translate(inner, refs, self.source.name, self.target.name)
        plans, waiting = [], []
        for record, key, adopted in items:
            body, unmapped = await translate_ids(
                self.idmap, kind, record, self.source.name, self.target.name
            )
            if unmapped:
                waiting.append(record)
                continue
            body.pop("id", None)
            plans.append(Plan(kind, record["id"], self.target.name, key, body, adopted))

        try:
            await self.state.write(partial(_save_plans, plans=plans))
        except (SAIntegrityError, Moved) as exc:
            raise Conflict(f"{kind}: a copy of the batch is planned or its writes moved") from exc
        return plans, waiting

    async def run_batch(
        self, bulk: Bulk, plans: list[Plan]
    ) -> tuple[list[tuple[Plan, Id]], list[Plan]]:
        """Create planned copies with the target's bulk import and finish them.

        Return each plan made with its copy's id, and the plans of requests the target
        refused (dropped, their taken-over writes back in the backlog): copy those one
        by one.
        """
        made: list[tuple[Plan, Id]] = []
        refused: list[Plan] = []
        sizes = [len(orjson.dumps(p.body)) for p in plans]
        for part in chunks(sizes):
            chunk = [plans[at] for at in part]
            status, answer = await bulk.put(chunk[0].kind, [(p.key, p.body) for p in chunk])
            if status != 200 or not isinstance(answer, dict):
                await self.state.write(partial(_drop_plans, plans=chunk))
                refused += chunk
                continue
            ids: list[Id] = [item["id"] for item in answer["items"]]
            await self.state.write(partial(_finish_all, plans=chunk, ids=ids))
            for plan, copy_id in zip(chunk, ids, strict=True):
                self.idmap.remember(plan.kind, *self._pair(plan, copy_id))
            made += zip(chunk, ids, strict=True)
        return made, refused

    async def drop(self, adopted: tuple[int, ...]) -> bool:
        """Mark backlog writes done without a copy (their record is gone); all or none."""
        try:
            await self.state.write(lambda conn: WriteLog.moot_in(conn, adopted))
        except Moved:
            return False
        return True

    @staticmethod
    def _pair(plan: Plan, copy_id: Id) -> tuple[Id, Id]:
        return (copy_id, plan.source_id) if plan.target == "legacy" else (plan.source_id, copy_id)

    async def pending(self) -> list[Plan]:
        """Return the plans a previous run left unfinished."""
        rows = await self.state.read(lambda conn: conn.execute(select(copy_plans)).all())
        return [
            Plan(
                r.kind,
                decode(r.source_id),
                "legacy" if r.target == "legacy" else "new",
                r.idem_key,
                orjson.loads(r.body),
                tuple(orjson.loads(r.adopted)),
            )
            for r in rows
        ]


# Plans are saved, dropped and finished a batch at a time (one plan is a batch of
# one), with one statement each whatever their number: built per record,
# SQLAlchemy's statements cost more than the copies.


def _save_plans(conn: Connection, plans: list[Plan]) -> None:
    if not plans:
        return
    WriteLog.adopt_in(conn, tuple(i for plan in plans for i in plan.adopted))
    conn.execute(insert(copy_plans), [_plan_row(plan) for plan in plans])


def _plan_row(plan: Plan) -> dict[str, Any]:
    return {
        "kind": plan.kind,
        "source_id": encode(plan.source_id),
        "target": plan.target,
        "idem_key": plan.key,
        "body": orjson.dumps(plan.body),
        "adopted": orjson.dumps(list(plan.adopted)).decode(),
        "at": now_us(),
    }


def _forget_plans(conn: Connection, plans: list[Plan]) -> None:
    kind = plans[0].kind
    sources = [encode(plan.source_id) for plan in plans]
    conn.execute(
        delete(copy_plans).where(copy_plans.c.kind == kind, copy_plans.c.source_id.in_(sources))
    )


def _drop_plans(conn: Connection, plans: list[Plan]) -> None:
    WriteLog.restore_in(conn, tuple(i for plan in plans for i in plan.adopted))
    _forget_plans(conn, plans)


def _finish_all(conn: Connection, plans: list[Plan], ids: list[Id]) -> None:
    pairs = [[encode(i) for i in Copier._pair(p, c)] for p, c in zip(plans, ids, strict=True)]
    kind = plans[0].kind
    # A pair a repair replaces (its copy was lost) goes; a pair is otherwise written once.
    for column, at in ((id_map.c.legacy_id, 0), (id_map.c.new_id, 1)):
        wanted = [pair[at] for pair in pairs]
        conn.execute(delete(id_map).where(id_map.c.kind == kind, column.in_(wanted)))
    conn.execute(insert(id_map), [{"kind": kind, "legacy_id": a, "new_id": b} for a, b in pairs])
    WriteLog.copied_in(conn, tuple(i for plan in plans for i in plan.adopted))
    _forget_plans(conn, plans)
