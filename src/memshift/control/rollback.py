"""Judging the new store: healthy, inconclusive, or tripped, from windows of figures.

Fewer samples than ``min_samples`` is *inconclusive*, never healthy and never a trip.
A threshold crossed with enough samples behind it trips failback, whatever else is
still inconclusive: the error rate of the new store, the ratio of its p99 latency to
legacy's, the share of compared reads that mismatched.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from memshift.config.settings import RollbackSettings
from memshift.control.health import HealthFigures

State = Literal["healthy", "inconclusive", "tripped"]


@dataclass(frozen=True)
class Verdict:
    """The judgement of one moment: its state, why, and the figures behind it."""

    state: State
    reason: str | None
    figures: dict[str, Any]


class CompareWindow:
    """Judged, mismatched and pending reads over the last ``window_s`` seconds, since
    judgement was last re-opened (``reopen``).

    Only ``matched``, ``mismatched`` and ``noise`` are judged: a read of a record not on
    new yet (``pending``), one raced by a write (``inflight``) or one new failed to
    answer (``error``, counted in its health) says nothing about new's data.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seconds: deque[list[int]] = deque()

    def record(self, verdict: str, now: float | None = None) -> None:
        """Count one comparison's verdict."""
        judged, pending = verdict in ("matched", "mismatched", "noise"), verdict == "pending"
        if not judged and not pending:
            return
        at = int(time.monotonic() if now is None else now)
        if not self._seconds or self._seconds[-1][0] != at:
            self._seconds.append([at, 0, 0, 0])
        self._seconds[-1][1] += int(judged)
        self._seconds[-1][2] += int(verdict == "mismatched")
        self._seconds[-1][3] += int(pending)

    def reopen(self) -> None:
        """Forget every read so far: judgement starts again (rearm, promote, ramp)."""
        self._seconds.clear()

    def figures(self, now: float | None = None) -> tuple[int, int]:
        """Return (compared, mismatched) within the window."""
        compared, mismatched, _ = self.counts(now)
        return compared, mismatched

    def counts(self, now: float | None = None) -> tuple[int, int, int]:
        """Return (compared, mismatched, pending) within the window."""
        at = time.monotonic() if now is None else now
        while self._seconds and self._seconds[0][0] <= at - self.window_s:
            self._seconds.popleft()
        return (
            sum(s[1] for s in self._seconds),
            sum(s[2] for s in self._seconds),
            sum(s[3] for s in self._seconds),
        )


def judge(
    new: HealthFigures,
    legacy: HealthFigures,
    compared: int,
    mismatched: int,
    rules: RollbackSettings,
    *,
    comparing: bool,
) -> Verdict:
    """Return the verdict on the new store from the window's figures."""
    figures: dict[str, Any] = {
        "new_requests": new.requests,
        "new_error_rate": round(new.error_rate, 6),
        "new_p99_ms": new.p99_ms,
        "legacy_requests": legacy.requests,
        "legacy_p99_ms": legacy.p99_ms,
        "compared": compared,
        "mismatched": mismatched,
    }
    enough = rules.min_samples
    if new.requests >= enough and new.error_rate > rules.max_error_rate:
        return Verdict(
            "tripped",
            f"error_rate {new.error_rate:.4f} > {rules.max_error_rate} "
            f"over {new.requests} requests",
            figures,
        )
    if new.requests >= enough and legacy.requests >= enough and legacy.p99_ms > 0:
        ratio = new.p99_ms / legacy.p99_ms
        figures["latency_ratio"] = round(ratio, 3)
        if ratio > rules.max_latency_ratio:
            return Verdict(
                "tripped",
                f"latency_ratio {ratio:.2f} > {rules.max_latency_ratio} "
                f"(p99 {new.p99_ms} ms against {legacy.p99_ms} ms)",
                figures,
            )
    if compared >= enough and mismatched / compared > rules.max_mismatch_rate:
        rate = mismatched / compared
        return Verdict(
            "tripped",
            f"mismatch_rate {rate:.4f} > {rules.max_mismatch_rate} over {compared} compared reads",
            figures,
        )
    short = [
        name
        for name, n in (
            ("new", new.requests),
            ("legacy", legacy.requests),
            *((("compared", compared),) if comparing else ()),
        )
        if n < enough
    ]
    if short:
        return Verdict("inconclusive", f"fewer than {enough} samples: {', '.join(short)}", figures)
    return Verdict("healthy", None, figures)
