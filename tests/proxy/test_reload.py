"""A reload whose listener fails: rolled back, shown on /status, tried again, never stuck."""

from __future__ import annotations

from typing import Any

from memshift.config.settings import Settings
from tests.helpers import eventually
from tests.proxy.conftest import ADMIN, MakeStack


async def _status(stack: Any) -> dict[str, Any]:
    doc: dict[str, Any] = await (await stack.admin.get("/status", headers=ADMIN)).json()
    return doc


async def test_a_failing_listener_rolls_back_and_the_next_good_edit_applies(
    make_stack: MakeStack,
) -> None:
    """The control change a failed reload made is taken back; /status says why; the
    same file applies once the listener works, and so does the next edit."""
    stack = await make_stack(seed=0)
    failures = iter([RuntimeError("disk full")])

    async def flaky(_settings: Settings, _changed: frozenset[str]) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure

    stack.core.holder.subscribe("flaky", flaky)
    text = stack.config.read_text()
    stack.config.write_text(text.replace("[routing]", "[routing]\nread_percent = 30"))
    await eventually(lambda: stack.core.holder.last is not None, within=5)
    status = await _status(stack)
    assert "failed" == status["last_reload"]["outcome"]
    assert "flaky: disk full" == status["last_reload"]["reason"]
    assert ["routing.read_percent"] == status["last_reload"]["keys"]
    assert (0, 0) == (status["read_percent"], stack.core.holder.current.routing.read_percent)
    # The watcher tries the same file again a moment later; the listener works now.
    await eventually(lambda: stack.core.plane.state.read_percent == 30, within=5)
    assert "applied" == (await _status(stack))["last_reload"]["outcome"]
    stack.config.write_text(text.replace("[routing]", "[routing]\nread_percent = 40"))
    await eventually(lambda: stack.core.plane.state.read_percent == 40, within=5)
    stack.config.write_text(text.replace("[routing]", "[routing]\nread_percent = 400"))
    await eventually(lambda: stack.core.holder.last.outcome == "rejected", within=5)
    rejected = (await _status(stack))["last_reload"]
    assert (["routing.read_percent"], 40) == (rejected["keys"], stack.core.plane.state.read_percent)
