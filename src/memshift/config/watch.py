"""Live reload: validate, then apply with every listener isolated, within a second or two.

The watcher polls the file's modification time, size and content digest. A changed
file is loaded and validated in full; a file that is refused (``rejected``) leaves the
running settings as they are, and the refusal names the key at fault.

A valid file is applied by telling each listener the new settings and the dotted keys
that changed. Listeners run one at a time, each isolated: when one fails, its
traceback is logged, the settings in force go back to the old ones, and the listeners
that had already applied the change are told the old settings again (``failed``);
the watcher tries the same file again later, with a growing pause, and never stops.

The last outcome (applied, rejected or failed, when, which keys, why) is kept for
``GET /status``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from memshift.config.load import load_settings
from memshift.config.settings import Settings
from memshift.errors import ConfigError

log = structlog.get_logger("memshift.config")

Listener = Callable[[Settings, frozenset[str]], Awaitable[None]]
RESTART_KEYS = ("proxy.listen", "admin.listen", "state.url", "compare.helper")
RETRY_MIN_S, RETRY_MAX_S = 1.0, 30.0


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


@dataclass(frozen=True)
class Reload:
    """The outcome of the last reload: what ``GET /status`` shows."""

    outcome: Literal["applied", "rejected", "failed"]
    at: float
    keys: tuple[str, ...] = ()
    reason: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "at": self.at,
            "keys": list(self.keys),
            "reason": self.reason,
        }


class SettingsHolder:
    """The settings in force, swapped whole when a valid new file is applied."""

    def __init__(self, settings: Settings) -> None:
        self.current = settings
        self._listeners: list[tuple[str, Listener]] = []
        self.last: Reload | None = None

    def subscribe(self, name: str, listener: Listener) -> None:
        """Tell ``listener`` (``name`` in logs) of every change applied from now on."""
        self._listeners.append((name, listener))

    async def offer(self, candidate: Settings) -> bool:
        """Apply ``candidate``; return whether it is in force now (False: rolled back)."""
        old = self.current
        changed = changed_keys(old, candidate)
        if not changed:
            return True
        self.current = candidate
        applied: list[tuple[str, Listener]] = []
        for name, listener in self._listeners:
            try:
                await listener(candidate, changed)
            except Exception as exc:
                log.error("config_listener_failed", listener=name, exc_info=exc)
                await self._roll_back(old, changed, applied)
                self.last = Reload("failed", time.time(), tuple(sorted(changed)), f"{name}: {exc}")
                return False
            applied.append((name, listener))
        later = sorted(k for k in changed if k.startswith(RESTART_KEYS))
        if later:
            log.warning("config_needs_restart", keys=later)
        log.info("config_reloaded", keys=sorted(changed), source=candidate.source)
        self.last = Reload("applied", time.time(), tuple(sorted(changed)))
        return True

    async def _roll_back(
        self, old: Settings, changed: frozenset[str], applied: list[tuple[str, Listener]]
    ) -> None:
        self.current = old
        for name, listener in reversed(applied):
            try:
                await listener(old, changed)
            except Exception as exc:
                log.error("config_rollback_failed", listener=name, exc_info=exc)

    def rejected(self, error: ConfigError) -> None:
        """Note a file that was refused; the settings in force stay."""
        self.last = Reload("rejected", time.time(), (error.key,) if error.key else (), str(error))


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
    retry_at, pause = 0.0, RETRY_MIN_S
    while True:
        await asyncio.sleep(interval_s)
        try:
            now = await asyncio.to_thread(_fingerprint, path)
            if now is None or (now == seen and time.monotonic() < retry_at):
                continue
            if now != seen:
                pause = RETRY_MIN_S
            seen = now
            retry_at = float("inf")
            try:
                candidate = await asyncio.to_thread(load_settings, path)
            except ConfigError as exc:
                log.error("config_rejected", key=exc.key, error=exc.message, source=str(path))
                holder.rejected(exc)
                continue
            if not await holder.offer(candidate):
                retry_at, pause = time.monotonic() + pause, min(pause * 2, RETRY_MAX_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the watcher outlives anything a reload meets
            log.error("config_watch_failed", exc_info=exc)
