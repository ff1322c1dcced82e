"""The shared control state: epochs, audit, restarts, and the last change winning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memshift.config.settings import RoutingSettings
from memshift.control.plane import ControlPlane
from memshift.database import Database
from memshift.statedb import open_state


@pytest.fixture(params=["sqlite", "postgresql"])
def state_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh state db of each kind."""
    url = (
        f"sqlite:///{tmp_path}/state.db"
        if request.param == "sqlite"
        else request.getfixturevalue("make_pg_url")()
    )
    db = open_state(url)
    yield db
    db.close()


def file_routing(**values: object) -> RoutingSettings:
    return RoutingSettings(**values)  # type: ignore[arg-type]


async def test_first_start_and_changes_are_audited(state_db: Database) -> None:
    """The first start is epoch 1; each real change bumps the epoch with an audit entry."""
    plane = ControlPlane(state_db)
    assert 1 == (await plane.start(file_routing(read_percent=5))).epoch
    state = await plane.change({"read_percent": 20}, source="admin", reason="canary")
    assert (2, 20) == (state.epoch, state.read_percent)
    assert 2 == (await plane.change({"read_percent": 20}, source="admin")).epoch
    entries = await plane.audit()
    assert [
        (2, "admin", {"read_percent": 20}, "canary"),
        (
            1,
            "file",
            {
                "primary": "legacy",
                "read_percent": 5,
                "shadow_read_percent": 100,
                "write_mode": "sync",
            },
            "first start",
        ),
    ] == [(e["epoch"], e["source"], e["change"], e["reason"]) for e in entries]


async def test_restart_keeps_what_the_operator_set(state_db: Database) -> None:
    """After a restart with an unchanged file the operator's ramp still holds."""
    await ControlPlane(state_db).start(file_routing(read_percent=0))
    await ControlPlane(state_db).change({"read_percent": 40}, source="admin")
    again = await ControlPlane(state_db).start(file_routing(read_percent=0))
    assert (40, 2) == (again.read_percent, again.epoch)


async def test_a_file_change_wins_when_it_is_the_last(state_db: Database) -> None:
    """A value changed in the file while the proxy was down is applied at start."""
    await ControlPlane(state_db).start(file_routing(read_percent=0))
    await ControlPlane(state_db).change({"read_percent": 40}, source="admin")
    plane = ControlPlane(state_db)
    state = await plane.start(file_routing(read_percent=10))
    assert (10, 3, "file") == (state.read_percent, state.epoch, (await plane.audit())[0]["source"])


async def test_unrelated_file_edit_keeps_the_ramp(state_db: Database) -> None:
    """Changing shadow_read_percent in the file does not undo an operator's ramp."""
    plane = ControlPlane(state_db)
    await plane.start(file_routing(read_percent=0))
    await plane.change({"read_percent": 60}, source="admin")
    state = await plane.apply_file(file_routing(read_percent=0, shadow_read_percent=20))
    assert (60, 20) == (state.read_percent, state.shadow_read_percent)


async def test_instances_converge_on_the_newest_epoch(state_db: Database) -> None:
    """A change made by one instance is adopted by another on refresh."""
    one, two = ControlPlane(state_db), ControlPlane(state_db)
    await one.start(file_routing())
    await two.start(file_routing())
    await one.change({"read_percent": 70}, source="admin")
    assert (True, 70) == (await two.refresh(), two.state.read_percent)
    assert not await two.refresh()
