"""Progress of long migration work: a live line on a terminal, a log event elsewhere; pacing."""

from __future__ import annotations

import asyncio
import time
from typing import TextIO

import structlog

log = structlog.get_logger("memshift.migrate")

LOG_EVERY_S = 5.0
DRAW_EVERY_S = 0.2


def eta_text(seconds: float | None) -> str:
    """Return a remaining time for people: ``42 s``, ``3 min 20 s``, ``1 h 05 min``."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Records done out of an expected total, with the rate and the time left."""

    def __init__(self, what: str, total: int, stream: TextIO, *, tty: bool | None = None) -> None:
        self.what = what
        self.total = total
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.done = 0
        self.before = 0  # records done by an earlier run (resumed): not work of this one
        self.started = time.monotonic()
        self._drawn = 0.0
        self._logged = self.started

    def resume(self, done: int) -> None:
        """Start from ``done`` records an earlier run did: counted, but not in the rate."""
        self.done = self.before = done

    def rate(self) -> float:
        """Records per second of this run's own work so far."""
        return (self.done - self.before) / max(time.monotonic() - self.started, 1e-6)

    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None before there is a rate."""
        rate = self.rate()
        return max(self.total - self.done, 0) / rate if rate > 0 else None

    def line(self, stage: str) -> str:
        """Return the progress line."""
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return (
            f"{self.what}: {self.done}/{self.total}{share} {stage}, "
            f"{self.rate():.0f}/s, ETA {eta_text(self.eta_s())}"
        )

    def advance(self, count: int, stage: str) -> None:
        """Count ``count`` more records done; draw or log when it is time."""
        self.done += count
        now = time.monotonic()
        if self.tty and now - self._drawn >= DRAW_EVERY_S:
            self._drawn = now
            self.stream.write("\r\x1b[2K" + self.line(stage))
            self.stream.flush()
        elif not self.tty and now - self._logged >= LOG_EVERY_S:
            self._logged = now
            log.info(
                "progress",
                what=self.what,
                stage=stage,
                done=self.done,
                total=self.total,
                rate_per_s=round(self.rate(), 1),
                eta_s=None if self.eta_s() is None else round(self.eta_s() or 0.0),
            )

    def finish(self) -> None:
        """End the live line."""
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line("done") + "\n")
            self.stream.flush()


class Pacer:
    """Keeps work under ``rate`` items per second (no limit for None)."""

    def __init__(self, rate: float | None) -> None:
        self.gap = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()

    async def wait(self, count: int = 1) -> None:
        """Return when ``count`` more items may start."""
        if not self.gap:
            return
        now = time.monotonic()
        start = max(self._next, now)
        self._next = start + self.gap * count
        if start > now:
            await asyncio.sleep(start - now)
