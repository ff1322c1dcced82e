"""The consistency report: what was compared, per route and field path, with evidence.

Counts per route (compared, matched, mismatched, in-flight, noise), the paths that
differ most, the latest samples (bounded), and a per-minute series for a chart. The
state is plain JSON, so each instance saves its own in the state db and ``GET /report``
merges every instance's.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from memshift.compare.compare import Comparison
from memshift.compare.diff import generic
from memshift.compare.normalize import redact

SAMPLES = 50
SERIES_BUCKET_S = 60
SERIES_LENGTH = 180
TOP_FIELDS = 20


@dataclass
class RouteTally:
    """Counts of one route."""

    compared: int = 0
    matched: int = 0
    mismatched: int = 0
    inflight: int = 0
    noise: int = 0
    fields: Counter[str] = field(default_factory=Counter)

    def document(self, route: str) -> dict[str, Any]:
        judged = self.compared - self.inflight
        return {
            "route": route,
            "compared": self.compared,
            "matched": self.matched,
            "mismatched": self.mismatched,
            "inflight": self.inflight,
            "noise": self.noise,
            "mismatch_rate": round(self.mismatched / judged, 6) if judged else 0.0,
            "fields": [{"path": p, "count": n} for p, n in self.fields.most_common(TOP_FIELDS)],
        }


class Report:
    """The running tally of comparisons, and the noise learned per route."""

    def __init__(self) -> None:
        self.routes: dict[str, RouteTally] = {}
        self.samples: deque[dict[str, Any]] = deque(maxlen=SAMPLES)
        self.series: dict[int, list[int]] = {}
        self.noise_paths: dict[str, set[str]] = {}
        self.dropped = 0
        self.errors = 0
        self.dirty = False

    def record(self, comparison: Comparison, now: float | None = None) -> None:
        """Count ``comparison``; keep it as a sample unless it matched."""
        at = time.time() if now is None else now
        tally = self.routes.setdefault(comparison.route, RouteTally())
        tally.compared += 1
        setattr(tally, comparison.verdict, getattr(tally, comparison.verdict) + 1)
        if comparison.verdict == "mismatched":
            tally.fields.update({generic(d.path) for d in comparison.differences})
        bucket = int(at // SERIES_BUCKET_S * SERIES_BUCKET_S)
        point = self.series.setdefault(bucket, [0, 0])
        point[0] += 1
        point[1] += comparison.verdict == "mismatched"
        if len(self.series) > SERIES_LENGTH:
            del self.series[min(self.series)]
        if comparison.verdict != "matched":
            self.samples.appendleft(_sample(comparison, at))
        self.dirty = True

    def learn_noise(self, route: str, paths: set[str]) -> None:
        """Remember paths that differ between two reads of one store as noise."""
        known = self.noise_paths.setdefault(route, set())
        if not paths <= known:
            known |= paths
            self.dirty = True

    def state(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "routes": {
                r: {**t.document(r), "fields": dict(t.fields)} for r, t in self.routes.items()
            },
            "samples": list(self.samples),
            "series": {str(k): v for k, v in self.series.items()},
            "noise_paths": {r: sorted(p) for r, p in self.noise_paths.items()},
            "dropped": self.dropped,
            "errors": self.errors,
        }

    def absorb(self, state: dict[str, Any]) -> None:
        """Add a saved report's counts into this one (merging instances, or restoring)."""
        for route, doc in state.get("routes", {}).items():
            tally = self.routes.setdefault(route, RouteTally())
            for name in ("compared", "matched", "mismatched", "inflight", "noise"):
                setattr(tally, name, getattr(tally, name) + int(doc.get(name, 0)))
            tally.fields.update(doc.get("fields", {}))
        merged = sorted([*self.samples, *state.get("samples", [])], key=lambda s: -s["at"])
        self.samples = deque(merged[:SAMPLES], maxlen=SAMPLES)
        for key, (compared, mismatched) in state.get("series", {}).items():
            point = self.series.setdefault(int(key), [0, 0])
            point[0] += compared
            point[1] += mismatched
        for route, paths in state.get("noise_paths", {}).items():
            self.noise_paths.setdefault(route, set()).update(paths)
        self.dropped += int(state.get("dropped", 0))
        self.errors += int(state.get("errors", 0))

    def document(self) -> dict[str, Any]:
        """Return ``GET /report``: totals, routes, samples and the series."""
        routes = [t.document(r) for r, t in sorted(self.routes.items())]
        totals = {
            k: sum(r[k] for r in routes)
            for k in ("compared", "matched", "mismatched", "inflight", "noise")
        }
        judged = totals["compared"] - totals["inflight"]
        totals["mismatch_rate"] = round(totals["mismatched"] / judged, 6) if judged else 0.0
        totals |= {"dropped": self.dropped, "errors": self.errors}
        for doc in routes:
            doc["noise_paths"] = sorted(self.noise_paths.get(doc["route"], ()))
        return {
            "totals": totals,
            "routes": routes,
            "samples": list(self.samples),
            "series": [
                {"at": k, "compared": v[0], "mismatched": v[1]}
                for k, v in sorted(self.series.items())
            ],
        }


def _sample(c: Comparison, at: float) -> dict[str, Any]:
    return {
        "at": at,
        "route": c.route,
        "verdict": c.verdict,
        "differences": [
            {
                "path": d.path,
                "kind": d.kind,
                "control": redact(d.control),
                "candidate": redact(d.candidate),
            }
            for d in (c.differences or c.noise)[:20]
        ],
        "control": {"store": c.control.store, "status": c.control.status, "error": c.control.error},
        "candidate": {
            "store": c.candidate.store,
            "status": c.candidate.status,
            "error": c.candidate.error,
        },
    }
