"""The report in the state db: each instance saves its own; reading merges them all."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, update

from memshift.compare.report import Report
from memshift.database import Database
from memshift.statedb import reports
from memshift.timestamps import now_us


async def save(db: Database, instance: str, report: Report) -> None:
    """Save ``report`` as ``instance``'s."""
    data = orjson.dumps(report.state()).decode()

    def write(conn: Connection) -> None:
        done = conn.execute(
            update(reports).where(reports.c.instance == instance).values(data=data, at=now_us())
        )
        if not done.rowcount:
            conn.execute(insert(reports).values(instance=instance, data=data, at=now_us()))

    await db.write(write)
    report.dirty = False


async def saved(db: Database) -> dict[str, dict[str, Any]]:
    """Return every instance's saved report state."""
    rows = await db.read(
        lambda conn: conn.execute(select(reports.c.instance, reports.c.data)).all()
    )
    return {r.instance: orjson.loads(r.data) for r in rows}


async def merged(db: Database, instance: str, live: Report) -> Report:
    """Return this instance's live report plus every other instance's saved one."""
    out = Report()
    out.absorb(live.state(), adopt_window=True)
    for name, state in (await saved(db)).items():
        if name != instance:
            out.absorb(state)
    return out
