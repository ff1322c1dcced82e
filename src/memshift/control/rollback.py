"""Judging the new store: healthy, inconclusive, or tripped, from windows of figures.

Fewer samples than ``min_samples`` is *inconclusive*, never healthy and never a trip.
A threshold crossed with enough samples behind it trips failback, whatever else is
still inconclusive: the error rate of the new store, the ratio of its p99 latency to
legacy's, the share of compared reads that mismatched.

One caller cannot decide a migration. A rule trips only when what crosses it (the
errors, a slow class of requests, the mismatches) came from ``min_callers`` distinct
callers, or from every caller active in the window when fewer are (a desktop client
on ``memshift stdio`` is the only caller there is). Latency is compared class by class
(a route and a size class of the request body, ``health.size_class``): new's p99 in a
class against legacy's in the same class, both with ``min_samples``; the worst class
is the ratio judged. Large bodies slow on both stores are compared with each other.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from memshift.config.settings import RollbackSettings
from memshift.control.health import ClassFigures, HealthFigures, distinct_callers, remember_caller

State = Literal["healthy", "inconclusive", "tripped"]


@dataclass(frozen=True)
class Verdict:
    """The judgement of one moment: its state, why, and the figures behind it."""

    state: State
    reason: str | None
    figures: dict[str, Any]


class CompareWindow:
    """Judged, mismatched and pending reads over the last ``window_s`` seconds, since
    judgement was last re-opened (``reopen``), with the callers of the judged and of
    the mismatched ones.

    Only ``matched``, ``mismatched`` and ``noise`` are judged: a read of a record not on
    new yet (``pending``), one raced by a write (``inflight``) or one new failed to
    answer (``error``, counted in its health) says nothing about new's data.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seconds: deque[_CompareSecond] = deque()

    def record(self, verdict: str, now: float | None = None, caller: str = "") -> None:
        """Count one comparison's verdict, for ``caller``."""
        judged, pending = verdict in ("matched", "mismatched", "noise"), verdict == "pending"
        if not judged and not pending:
            return
        at = int(time.monotonic() if now is None else now)
        if not self._seconds or self._seconds[-1].at != at:
            self._seconds.append(_CompareSecond(at))
        slot = self._seconds[-1]
        slot.pending += int(pending)
        if judged:
            slot.compared += 1
            remember_caller(slot.callers, caller)
        if verdict == "mismatched":
            slot.mismatched += 1
            remember_caller(slot.mismatch_callers, caller)

    def reopen(self) -> None:
        """Forget every read so far: judgement starts again (rearm, promote, ramp)."""
        self._seconds.clear()

    def figures(self, now: float | None = None) -> tuple[int, int]:
        """Return (compared, mismatched) within the window."""
        compared, mismatched, _ = self.counts(now)
        return compared, mismatched

    def _recent(self, now: float | None) -> deque[_CompareSecond]:
        at = time.monotonic() if now is None else now
        while self._seconds and self._seconds[0].at <= at - self.window_s:
            self._seconds.popleft()
        return self._seconds

    def counts(self, now: float | None = None) -> tuple[int, int, int]:
        """Return (compared, mismatched, pending) within the window."""
        seconds = self._recent(now)
        return (
            sum(s.compared for s in seconds),
            sum(s.mismatched for s in seconds),
            sum(s.pending for s in seconds),
        )

    def callers(self, now: float | None = None) -> tuple[int, int]:
        """Return the distinct callers of (judged, mismatched) reads within the window."""
        seconds = self._recent(now)
        return (
            distinct_callers(s.callers for s in seconds),
            distinct_callers(s.mismatch_callers for s in seconds),
        )


@dataclass
class _CompareSecond:
    at: int
    compared: int = 0
    mismatched: int = 0
    pending: int = 0
    callers: set[str] = field(default_factory=set)
    mismatch_callers: set[str] = field(default_factory=set)


def judge(
    new: HealthFigures,
    legacy: HealthFigures,
    compared: int,
    mismatched: int,
    rules: RollbackSettings,
    *,
    comparing: bool,
    compare_callers: tuple[int, int] = (1, 1),
) -> Verdict:
    """Return the verdict on the new store from the window's figures.

    ``compare_callers``: the distinct callers of the judged reads and of the
    mismatched ones.
    """
    figures: dict[str, Any] = {
        "new_requests": new.requests,
        "new_error_rate": round(new.error_rate, 6),
        "new_p99_ms": new.p99_ms,
        "legacy_requests": legacy.requests,
        "legacy_p99_ms": legacy.p99_ms,
        "compared": compared,
        "mismatched": mismatched,
        "callers": max(new.callers, legacy.callers),
    }
    enough = rules.min_samples
    # Several callers must stand behind a trip; all of them, when fewer are active.
    needed = max(1, min(rules.min_callers, max(new.callers, legacy.callers)))
    held: list[str] = []
    if new.requests >= enough and new.error_rate > rules.max_error_rate:
        reason = (
            f"error_rate {new.error_rate:.4f} > {rules.max_error_rate} over {new.requests} requests"
        )
        if new.error_callers >= needed:
            return Verdict("tripped", f"{reason} of {new.error_callers} callers", figures)
        held.append(f"{reason}, but of {new.error_callers} caller(s) of {needed} needed")
    slow = _slowest_class(new, legacy, enough)
    if slow is not None:
        kind, ratio, new_cls, legacy_cls = slow
        figures["latency_ratio"] = round(ratio, 3)
        figures["latency_class"] = kind
        if ratio > rules.max_latency_ratio:
            reason = (
                f"latency_ratio {ratio:.2f} > {rules.max_latency_ratio} "
                f"(p99 {new_cls.p99_ms} ms against {legacy_cls.p99_ms} ms, {kind})"
            )
            if new_cls.callers >= needed:
                return Verdict("tripped", reason, figures)
            held.append(f"{reason}, but of {new_cls.callers} caller(s) of {needed} needed")
    if compared >= enough and mismatched / compared > rules.max_mismatch_rate:
        rate = mismatched / compared
        reason = (
            f"mismatch_rate {rate:.4f} > {rules.max_mismatch_rate} over {compared} compared reads"
        )
        readers, mismatchers = compare_callers
        needed_reads = max(1, min(rules.min_callers, readers))
        if mismatchers >= needed_reads:
            return Verdict("tripped", reason, figures)
        held.append(f"{reason}, but of {mismatchers} caller(s) of {needed_reads} needed")
    if held:
        return Verdict("inconclusive", "; ".join(held), figures)
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


def _slowest_class(
    new: HealthFigures, legacy: HealthFigures, enough: int
) -> tuple[str, float, ClassFigures, ClassFigures] | None:
    """The class of comparable requests where new's p99 is furthest above legacy's,
    among those with ``enough`` samples on both stores."""
    worst: tuple[str, float, ClassFigures, ClassFigures] | None = None
    for kind, ours in new.classes.items():
        theirs = legacy.classes.get(kind)
        if theirs is None or min(ours.requests, theirs.requests) < enough:
            continue
        if theirs.p99_ms <= 0:
            continue
        ratio = ours.p99_ms / theirs.p99_ms
        if worst is None or ratio > worst[1]:
            worst = (kind, ratio, ours, theirs)
    return worst
