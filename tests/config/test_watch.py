"""Live reload: a valid change is swapped in within the watch interval, a bad one refused."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from structlog.testing import capture_logs

from memshift.config.load import load_settings
from memshift.config.settings import Settings
from memshift.config.watch import SettingsHolder, changed_keys, watch
from tests.helpers import eventually

CONFIG = """
[admin]
token = "adm"
[stores.legacy]
url = "http://127.0.0.1:1"
token = "a"
[stores.new]
url = "http://127.0.0.1:2"
token = "b"
[routing]
read_percent = {percent}
"""


async def test_reload_swaps_valid_and_refuses_invalid(tmp_path: Path) -> None:
    """An edit reaches the holder and its listeners; an invalid edit leaves it as it was."""
    path = tmp_path / "memshift.toml"
    path.write_text(CONFIG.format(percent=0))
    holder = SettingsHolder(load_settings(path))
    heard: list[frozenset[str]] = []

    async def listener(_settings: Settings, changed: frozenset[str]) -> None:
        heard.append(changed)

    holder.subscribe("test", listener)
    task = asyncio.ensure_future(watch(holder, path, interval_s=0.05))
    try:
        path.write_text(CONFIG.format(percent=25))
        await eventually(lambda: holder.current.routing.read_percent == 25)
        assert [frozenset({"routing.read_percent"})] == heard
        with capture_logs() as logs:
            path.write_text(CONFIG.format(percent=250))
            await eventually(lambda: any(e["event"] == "config_rejected" for e in logs))
        rejected = next(e for e in logs if e["event"] == "config_rejected")
        assert ("routing.read_percent", 25) == (
            rejected["key"],
            holder.current.routing.read_percent,
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_changed_keys_lists_dotted_names(tmp_path: Path) -> None:
    """changed_keys names exactly the settings that differ."""
    path = tmp_path / "a.toml"
    path.write_text(CONFIG.format(percent=1))
    one = load_settings(path)
    path.write_text(CONFIG.format(percent=2).replace("127.0.0.1:2", "127.0.0.1:3"))
    assert {"routing.read_percent", "stores.new.url"} == changed_keys(one, load_settings(path))
