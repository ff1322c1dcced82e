"""The control state in the state db: one row, an epoch, and an audit entry per change.

The last change wins, whether it comes from the config file or the admin API. A file
change is applied only for the keys whose value changed in the file since the file was
last read (``file_snapshot``), so an operator's ``ramp`` is not undone when someone
edits an unrelated key, and a restart keeps what the operator set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, update

from memshift.config.settings import RoutingSettings, StoreName, WriteMode
from memshift.statedb import audit, control

ROW_ID = 1
FILE_KEYS = ("primary", "read_percent", "shadow_read_percent", "write_mode")


@dataclass(frozen=True, kw_only=True)
class ControlState:
    """What every proxy instance obeys, at one epoch."""

    primary: StoreName
    read_percent: int
    shadow_read_percent: int
    write_mode: WriteMode
    failed_back: bool = False
    reason: str | None = None
    epoch: int = 0


def _from_file(routing: RoutingSettings) -> dict[str, Any]:
    return {k: getattr(routing, k) for k in FILE_KEYS}


def _row_state(row: Any) -> ControlState:
    return ControlState(
        primary="new" if row.primary_store == "new" else "legacy",
        read_percent=row.read_percent,
        shadow_read_percent=row.shadow_read_percent,
        write_mode="async" if row.write_mode == "async" else "sync",
        failed_back=bool(row.failed_back),
        reason=row.reason,
        epoch=row.epoch,
    )


def _columns(state: ControlState) -> dict[str, Any]:
    return {
        "primary_store": state.primary,
        "read_percent": state.read_percent,
        "shadow_read_percent": state.shadow_read_percent,
        "write_mode": state.write_mode,
        "failed_back": int(state.failed_back),
        "reason": state.reason,
        "epoch": state.epoch,
    }


class Conflict(Exception):
    """Another instance changed the state between this one's read and its write."""


def read_state(
    conn: Connection, *, for_update: bool = False
) -> tuple[ControlState, dict[str, Any]] | None:
    """Return the stored state and file snapshot, or None before the first start.

    ``for_update``: lock the row until the transaction ends (PostgreSQL; SQLite's
    writers are serialized already), so that a change is made to the state it read.
    """
    query = select(control).where(control.c.id == ROW_ID)
    row = conn.execute(query.with_for_update() if for_update else query).first()
    if row is None:
        return None
    return _row_state(row), orjson.loads(row.file_snapshot)


def _record(
    conn: Connection,
    epoch: int,
    change: dict[str, Any],
    source: str,
    reason: str | None,
    now: int,
) -> None:
    conn.execute(
        insert(audit).values(
            epoch=epoch,
            at=now,
            source=source,
            change=orjson.dumps(change, option=orjson.OPT_SORT_KEYS).decode(),
            reason=reason,
        )
    )


def audit_event(
    conn: Connection, change: dict[str, Any], source: str, reason: str | None, now: int
) -> None:
    """Audit an operator's action that changes no control state (a report reset), at
    the current epoch."""
    found = read_state(conn)
    _record(conn, found[0].epoch if found else 0, change, source, reason, now)


def change_state(
    conn: Connection,
    changes: dict[str, Any],
    *,
    source: str,
    reason: str | None,
    now: int,
    snapshot: dict[str, Any] | None = None,
) -> ControlState:
    """Apply ``changes`` to the stored state; bump the epoch and audit if anything changed.

    The write is a compare-and-set on the epoch read: raise ``Conflict`` (and roll the
    transaction back) when another instance changed the state in between.
    """
    found = read_state(conn, for_update=True)
    assert found is not None, "the control row is created at start"
    current, old_snapshot = found
    effective = {k: v for k, v in changes.items() if getattr(current, k) != v}
    values: dict[str, Any] = {}
    if snapshot is not None and snapshot != old_snapshot:
        values["file_snapshot"] = orjson.dumps(snapshot, option=orjson.OPT_SORT_KEYS).decode()
    if not effective:
        if values:
            conn.execute(update(control).where(control.c.id == ROW_ID).values(**values))
        return current
    new = replace(current, **effective, epoch=current.epoch + 1)
    done = conn.execute(
        update(control)
        .where(control.c.id == ROW_ID, control.c.epoch == current.epoch)
        .values(**_columns(new), **values, updated_at=now)
    )
    if done.rowcount != 1:
        raise Conflict(f"the control state moved past epoch {current.epoch}")
    _record(conn, new.epoch, effective, source, reason, now)
    return new


def start_state(conn: Connection, routing: RoutingSettings, now: int) -> ControlState:
    """Return the state to start with: the stored one, updated with what changed in the file.

    Before the first start the file's values become epoch 1.
    """
    file_values = _from_file(routing)
    found = read_state(conn, for_update=True)
    if found is None:
        state = ControlState(**file_values, epoch=1)
        conn.execute(
            insert(control).values(
                id=ROW_ID,
                **_columns(state),
                updated_at=now,
                file_snapshot=orjson.dumps(file_values, option=orjson.OPT_SORT_KEYS).decode(),
            )
        )
        _record(conn, state.epoch, file_values, "file", "first start", now)
        return state
    return apply_file(conn, routing, now)


def apply_file(conn: Connection, routing: RoutingSettings, now: int) -> ControlState:
    """Apply the file's routing values that changed since the file was last read."""
    file_values = _from_file(routing)
    found = read_state(conn, for_update=True)
    assert found is not None
    state, snapshot = found
    changed = {k: v for k, v in file_values.items() if snapshot.get(k) != v}
    if state.failed_back:
        # A tripped latch keeps reads on legacy until an operator re-arms it.
        changed.pop("read_percent", None)
        changed.pop("primary", None)
    return change_state(
        conn, changed, source="file", reason="config file changed", now=now, snapshot=file_values
    )


def audit_entries(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """Return the newest ``limit`` audit entries, newest first."""
    rows = conn.execute(select(audit).order_by(audit.c.id.desc()).limit(limit)).all()
    return [
        {
            "epoch": r.epoch,
            "at": r.at,
            "source": r.source,
            "change": orjson.loads(r.change),
            "reason": r.reason,
        }
        for r in rows
    ]


def as_dict(state: ControlState) -> dict[str, Any]:
    """Return the state as plain data."""
    return asdict(state)
