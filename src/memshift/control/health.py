"""Health windows: each store's requests, errors and latency over the last ``window_s``.

Outcomes are kept per second, so memory stays bounded by the window's length whatever
the traffic; latency percentiles come from a fixed log-scale histogram per second.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field

# Buckets grow by 10% from 0.05 ms: about 190 buckets up to an hour.
_BASE_MS, _GROWTH, _BUCKETS = 0.05, 1.1, 190


def _bucket_ms(index: int) -> float:
    return _BASE_MS * _GROWTH**index


# Bucket i holds latencies above the upper bound of bucket i - 1, up to its own.
_UPPER = tuple(_bucket_ms(i) for i in range(_BUCKETS - 1))


def _bucket_of(ms: float) -> int:
    return bisect_left(_UPPER, ms)  # a search in C: this runs on every store exchange


@dataclass
class _Second:
    at: int
    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * _BUCKETS)


@dataclass(frozen=True)
class HealthFigures:
    """One store's figures over the window."""

    requests: int
    errors: int
    error_rate: float
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
        }


class HealthWindow:
    """Outcomes of one store's requests over a sliding window."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seconds: deque[_Second] = deque()

    def record(self, seconds: float, *, error: bool, now: float | None = None) -> None:
        """Count one request that took ``seconds`` (an error if ``error``)."""
        at = int(time.monotonic() if now is None else now)
        if not self._seconds or self._seconds[-1].at != at:
            self._seconds.append(_Second(at))
            self._prune(at)
        slot = self._seconds[-1]
        slot.requests += 1
        slot.errors += int(error)
        slot.latency[_bucket_of(seconds * 1000)] += 1

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
        )


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
