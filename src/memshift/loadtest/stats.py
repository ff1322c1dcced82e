"""Latency and outcome records of a load test, and their summary."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def percentile(values: list[float], pct: float) -> float:
    """Return the ``pct`` percentile of ``values`` (nearest rank; NaN when empty)."""
    ordered = sorted(values)
    return percentile_of_sorted(ordered, pct)


def percentile_of_sorted(ordered: list[float], pct: float) -> float:
    """:func:`percentile` of values already sorted."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class OpStats:
    """What one operation did: latencies of its successes, its errors by kind."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        """Requests that completed, failed ones included."""
        return len(self.latencies) + sum(self.errors.values())

    def ok(self, seconds: float) -> None:
        """Record a success that took ``seconds``."""
        self.latencies.append(seconds)

    def failed(self, kind: str) -> None:
        """Record a failure: an HTTP status (``"503"``) or a transport error's name."""
        self.errors[kind] += 1

    def merge(self, other: OpStats) -> None:
        """Add ``other``'s records to these."""
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        """Count, errors, throughput and latency (ms) over a run of ``elapsed_s``."""
        ordered = sorted(self.latencies)

        def ms(value: float) -> float | None:
            return None if math.isnan(value) else round(value * 1000, 3)

        return {
            "count": self.count,
            "errors": sum(self.errors.values()),
            "error_kinds": dict(sorted(self.errors.items())),
            "throughput_rps": round(self.count / elapsed_s, 1) if elapsed_s > 0 else 0.0,
            "p50_ms": ms(percentile_of_sorted(ordered, 50)),
            "p95_ms": ms(percentile_of_sorted(ordered, 95)),
            "p99_ms": ms(percentile_of_sorted(ordered, 99)),
            "mean_ms": ms(sum(ordered) / len(ordered)) if ordered else None,
            "max_ms": ms(ordered[-1]) if ordered else None,
        }


def summarize(ops: dict[str, OpStats], elapsed_s: float) -> dict[str, Any]:
    """Per-operation summaries and the totals."""
    total = OpStats()
    for stats in ops.values():
        total.merge(stats)
    return {
        "operations": {name: stats.summary(elapsed_s) for name, stats in ops.items()},
        "total": total.summary(elapsed_s),
    }


def table(doc: dict[str, Any]) -> str:
    """Return the summary of :func:`summarize` as a table for people."""
    headers = ["operation", "count", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    rows = [
        [
            name,
            str(s["count"]),
            str(s["errors"]),
            f"{s['throughput_rps']:.1f}",
            *(
                ("-" if s[k] is None else f"{s[k]:.2f}")
                for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
            ),
        ]
        for name, s in [*doc["operations"].items(), ("total", doc["total"])]
    ]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [headers, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    kinds = {name: s["error_kinds"] for name, s in doc["operations"].items() if s["error_kinds"]}
    for name, found in kinds.items():
        lines.append(f"{name} errors: " + ", ".join(f"{k} x{v}" for k, v in found.items()))
    return "\n".join(lines)
