"""Health windows: each store's requests, errors and latency over the last ``window_s``.

Outcomes are kept per second, so memory stays bounded by the window's length whatever
the traffic; latency percentiles come from a fixed log-scale histogram per second.

So that one caller cannot decide a migration, a window also knows who its requests
came from (``callers.py``: at most ``CALLERS_KEPT`` a second, enough for any rule)
and who its errors came from; and latency is kept per *class* of comparable requests,
a route and a size class of the request body (``size_class``), so that a few large
bodies, slow on both stores, are compared with each other and not with small reads.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

# Buckets grow by 10% from 0.05 ms: about 190 buckets up to an hour.
_BASE_MS, _GROWTH, _BUCKETS = 0.05, 1.1, 190


def _bucket_ms(index: int) -> float:
    return _BASE_MS * _GROWTH**index


# Bucket i holds latencies above the upper bound of bucket i - 1, up to its own.
_UPPER = tuple(_bucket_ms(i) for i in range(_BUCKETS - 1))


def _bucket_of(ms: float) -> int:
    return bisect_left(_UPPER, ms)  # a search in C: this runs on every store exchange


# A second remembers this many distinct callers at most (a rule asks for fewer).
CALLERS_KEPT = 16
# Request bodies up to each bound are of that class; larger ones are "large".
_SIZE_CLASSES = ((16 * 1024, "small"), (1024 * 1024, "medium"))


def size_class(nbytes: int) -> str:
    """The size class of a request body of ``nbytes``: small, medium or large."""
    for bound, name in _SIZE_CLASSES:
        if nbytes <= bound:
            return name
    return "large"


def remember_caller(seen: set[str], caller: str) -> None:
    """Add ``caller`` to ``seen``, which keeps at most ``CALLERS_KEPT``."""
    if len(seen) < CALLERS_KEPT:
        seen.add(caller)


@dataclass
class _Class:
    """One second of one class of comparable requests."""

    requests: int = 0
    callers: set[str] = field(default_factory=set)
    latency: dict[int, int] = field(default_factory=dict)  # bucket: count


@dataclass
class _Second:
    at: int
    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * _BUCKETS)
    callers: set[str] = field(default_factory=set)
    error_callers: set[str] = field(default_factory=set)
    classes: dict[str, _Class] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassFigures:
    """One class of comparable requests (a route and a size class) over the window."""

    requests: int
    callers: int
    p99_ms: float


@dataclass(frozen=True)
class HealthFigures:
    """One store's figures over the window.

    ``callers``: distinct callers of its requests, ``error_callers``: of its errors
    (both at most ``CALLERS_KEPT``); ``classes``: latency per class of comparable
    requests.
    """

    requests: int
    errors: int
    error_rate: float
    p50_ms: float
    p99_ms: float
    callers: int = 0
    error_callers: int = 0
    classes: dict[str, ClassFigures] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "callers": self.callers,
            "error_callers": self.error_callers,
        }


class HealthWindow:
    """Outcomes of one store's requests over a sliding window."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seconds: deque[_Second] = deque()

    def record(
        self,
        seconds: float,
        *,
        error: bool,
        caller: str = "",
        kind: str = "",
        now: float | None = None,
    ) -> None:
        """Count one request of ``caller`` that took ``seconds`` (an error if ``error``);
        ``kind``: its class of comparable requests (a route and a ``size_class``)."""
        at = int(time.monotonic() if now is None else now)
        if not self._seconds or self._seconds[-1].at != at:
            self._seconds.append(_Second(at))
            self._prune(at)
        slot = self._seconds[-1]
        slot.requests += 1
        bucket = _bucket_of(seconds * 1000)
        slot.latency[bucket] += 1
        remember_caller(slot.callers, caller)
        if error:
            slot.errors += 1
            remember_caller(slot.error_callers, caller)
            return  # an error's latency says nothing of the store's speed
        cls = slot.classes.get(kind)
        if cls is None:
            cls = slot.classes[kind] = _Class()
        cls.requests += 1
        remember_caller(cls.callers, caller)
        cls.latency[bucket] = cls.latency.get(bucket, 0) + 1

    def reopen(self) -> None:
        """Forget every request so far: judgement starts again (rearm, promote, ramp)."""
        self._seconds.clear()

    def _prune(self, now: float) -> None:
        while self._seconds and self._seconds[0].at <= now - self.window_s:
            self._seconds.popleft()

    def figures(self, now: float | None = None) -> HealthFigures:
        """Return the figures of the window ending now."""
        self._prune(time.monotonic() if now is None else now)
        requests = sum(s.requests for s in self._seconds)
        errors = sum(s.errors for s in self._seconds)
        merged = [sum(col) for col in zip(*(s.latency for s in self._seconds), strict=True)]
        return HealthFigures(
            requests=requests,
            errors=errors,
            error_rate=errors / requests if requests else 0.0,
            p50_ms=_percentile(merged, requests, 0.50),
            p99_ms=_percentile(merged, requests, 0.99),
            callers=distinct_callers(s.callers for s in self._seconds),
            error_callers=distinct_callers(s.error_callers for s in self._seconds),
            classes=self._classes(),
        )

    def _classes(self) -> dict[str, ClassFigures]:
        gathered: dict[str, tuple[int, set[str], list[int]]] = {}
        for second in self._seconds:
            for kind, cls in second.classes.items():
                requests, callers, latency = gathered.setdefault(kind, (0, set(), [0] * _BUCKETS))
                for bucket, count in cls.latency.items():
                    latency[bucket] += count
                callers |= cls.callers
                gathered[kind] = (requests + cls.requests, callers, latency)
        return {
            kind: ClassFigures(
                requests, min(len(callers), CALLERS_KEPT), _percentile(latency, requests, 0.99)
            )
            for kind, (requests, callers, latency) in gathered.items()
        }


def distinct_callers(sets: Iterable[set[str]]) -> int:
    """How many distinct callers ``sets`` hold together (at most ``CALLERS_KEPT``)."""
    seen: set[str] = set()
    for one in sets:
        seen |= one
    return min(len(seen), CALLERS_KEPT)


def _percentile(histogram: list[int], total: int, q: float) -> float:
    if not total:
        return 0.0
    rank = math.ceil(q * total)
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return round(_bucket_ms(index), 3)
    return round(_bucket_ms(len(histogram) - 1), 3)
