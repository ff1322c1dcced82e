"""Live reload: validate-then-swap, within about a second of the file changing.

The watcher polls the file's modification time, size and content digest. A changed
file is loaded and validated in full; if it is refused, the refusal is logged with the
key at fault and the running settings stay. If it is accepted, the listeners get the
new settings and the set of dotted keys that changed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import structlog

from memshift.config.load import load_settings
from memshift.config.settings import Settings
from memshift.errors import ConfigError

log = structlog.get_logger("memshift.config")

Listener = Callable[[Settings, frozenset[str]], Awaitable[None]]
RESTART_KEYS = ("proxy.listen", "admin.listen", "state.url", "compare.helper")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Return ``{dotted key: value}`` of a settings tree."""
    if is_dataclass(value) and not isinstance(value, type):
        items = {f.name: getattr(value, f.name) for f in fields(value)}
    elif isinstance(value, dict):
        items = {str(k): v for k, v in value.items()}
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for name, item in items.items():
        out.update(flatten(item, f"{prefix}.{name}" if prefix else name))
    return out


def changed_keys(old: Settings, new: Settings) -> frozenset[str]:
    """Return the dotted keys whose values differ between ``old`` and ``new``."""
    a, b = flatten(old), flatten(new)
    return frozenset(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


class SettingsHolder:
    """The settings in force, swapped whole when a valid new file arrives."""

    def __init__(self, settings: Settings) -> None:
        self.current = settings
        self.listeners: list[Listener] = []

    async def offer(self, candidate: Settings) -> frozenset[str]:
        """Swap in ``candidate``; tell the listeners what changed; return the changed keys."""
        changed = changed_keys(self.current, candidate)
        if not changed:
            return changed
        self.current = candidate
        for listener in self.listeners:
            await listener(candidate, changed)
        later = sorted(k for k in changed if k.startswith(RESTART_KEYS))
        if later:
            log.warning("config_needs_restart", keys=later)
        log.info("config_reloaded", keys=sorted(changed), source=candidate.source)
        return changed


def _fingerprint(path: Path) -> tuple[float, int, str] | None:
    try:
        stat = path.stat()
        return stat.st_mtime, stat.st_size, hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


async def watch(holder: SettingsHolder, path: Path, interval_s: float = 0.5) -> None:
    """Reload ``path`` into ``holder`` whenever it changes; run until cancelled."""
    # Start from nothing: the file is read once more at once, so that a change made
    # between loading the settings and starting the watch is not missed.
    seen: tuple[float, int, str] | None = None
    while True:
        await asyncio.sleep(interval_s)
        now = await asyncio.to_thread(_fingerprint, path)
        if now is None or now == seen:
            continue
        seen = now
        try:
            candidate = await asyncio.to_thread(load_settings, path)
        except ConfigError as exc:
            log.error("config_rejected", key=exc.key, error=exc.message, source=str(path))
            continue
        await holder.offer(candidate)
