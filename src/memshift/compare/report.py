"""The consistency report: what was compared, per route and field path, with evidence.

Counts per route of each verdict (matched, mismatched, pending, in-flight, noise,
error), the paths that differ most, the latest samples (bounded), and a per-minute
series for a chart. The state is plain JSON, so each instance saves its own in the
state db and ``GET /report`` merges every instance's.

The figures an operator acts on are those of the current **window**: since the last
change of the control state that re-opens judgement (rearm, promote, ramp) or the last
``POST /report/reset``. Totals since the proxy started are kept beside them
(``since_start``). A window is named by an id every instance agrees on (the control
epoch that opened it, or the reset's time), so merging instances adds up only the
counts of the same window.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from memshift.compare.compare import JUDGED, Comparison
from memshift.compare.diff import generic
from memshift.compare.normalize import redact

SAMPLES = 50
SERIES_BUCKET_S = 60
SERIES_LENGTH = 180
TOP_FIELDS = 20
COUNTS = ("compared", "matched", "mismatched", "pending", "inflight", "noise", "errors")
_FIELD_OF = {"error": "errors"}  # the verdict "error" is counted as "errors"


@dataclass
class RouteTally:
    """Counts of one route."""

    compared: int = 0
    matched: int = 0
    mismatched: int = 0
    pending: int = 0
    inflight: int = 0
    noise: int = 0
    errors: int = 0
    fields: Counter[str] = field(default_factory=Counter)

    def count(self, verdict: str) -> None:
        self.compared += 1
        name = _FIELD_OF.get(verdict, verdict)
        setattr(self, name, getattr(self, name) + 1)

    def add(self, doc: dict[str, Any]) -> None:
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + int(doc.get(name, 0)))
        self.fields.update(doc.get("fields", {}))

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTS}

    def document(self, route: str) -> dict[str, Any]:
        return {"route": route, **_counts(self.counts())} | {
            "fields": [{"path": p, "count": n} for p, n in self.fields.most_common(TOP_FIELDS)]
        }


def _counts(values: dict[str, int]) -> dict[str, Any]:
    """Counts and the mismatch rate (over judged reads: matched, mismatched, noise)."""
    out: dict[str, Any] = {name: int(values.get(name, 0)) for name in COUNTS}
    judged = out["matched"] + out["mismatched"] + out["noise"]
    out["mismatch_rate"] = round(out["mismatched"] / judged, 6) if judged else 0.0
    return out


@dataclass(frozen=True)
class Window:
    """Where the current figures start: when, why, and the id instances share."""

    id: str = "start"
    since: float = 0.0
    opened_by: str = "start"  # start | rearm | promote | ramp | reset
    reason: str | None = None


class Report:
    """The running tally of comparisons, and the noise learned per route."""

    def __init__(self) -> None:
        self.window = Window(since=time.time())
        self.routes: dict[str, RouteTally] = {}  # this window's
        self.since_start: dict[str, RouteTally] = {}
        self.samples: deque[dict[str, Any]] = deque(maxlen=SAMPLES)
        self.series: dict[int, list[int]] = {}
        self.noise_paths: dict[str, set[str]] = {}
        self.dropped = 0
        self.failures = 0  # shadow reads that failed in memshift itself
        self.dirty = False

    def record(
        self,
        comparison: Comparison,
        now: float | None = None,
        *,
        records: list[dict[str, Any]] | None = None,
        user: str | None = None,
    ) -> None:
        """Count ``comparison``; keep it as a sample unless it matched."""
        at = time.time() if now is None else now
        for tallies in (self.routes, self.since_start):
            tally = tallies.setdefault(comparison.route, RouteTally())
            tally.count(comparison.verdict)
            if comparison.verdict == "mismatched":
                tally.fields.update({generic(d.path) for d in comparison.differences})
        bucket = int(at // SERIES_BUCKET_S * SERIES_BUCKET_S)
        point = self.series.setdefault(bucket, [0, 0])
        point[0] += comparison.verdict in JUDGED
        point[1] += comparison.verdict == "mismatched"
        if len(self.series) > SERIES_LENGTH:
            del self.series[min(self.series)]
        if comparison.verdict != "matched":
            self.samples.appendleft(_sample(comparison, at, records or [], user))
        self.dirty = True

    def open_window(self, window: Window) -> bool:
        """Start counting afresh from ``window`` (unless it is the one counting now)."""
        if window.id == self.window.id:
            return False
        self.window = window
        self.routes = {}
        self.samples.clear()
        self.dirty = True
        return True

    def learn_noise(self, route: str, paths: set[str]) -> None:
        """Remember paths that differ between two reads of one store as noise."""
        known = self.noise_paths.setdefault(route, set())
        if not paths <= known:
            known |= paths
            self.dirty = True

    def state(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "window": asdict(self.window),
            "routes": {
                r: {**_counts(t.counts()), "fields": dict(t.fields)} for r, t in self.routes.items()
            },
            "since_start": {
                r: {**_counts(t.counts()), "fields": dict(t.fields)}
                for r, t in self.since_start.items()
            },
            "samples": list(self.samples),
            "series": {str(k): v for k, v in self.series.items()},
            "noise_paths": {r: sorted(p) for r, p in self.noise_paths.items()},
            "dropped": self.dropped,
            "failures": self.failures,
        }

    def absorb(self, state: dict[str, Any], *, adopt_window: bool = False) -> None:
        """Add a saved report's counts into this one (merging instances, or restoring).

        Its window's counts and samples count only when it is this report's window;
        ``adopt_window`` (restoring an instance's own report) takes its window first.
        """
        window = Window(**state["window"]) if "window" in state else Window()
        if adopt_window:
            self.window = window
        same = window.id == self.window.id
        for route, doc in state.get("since_start", state.get("routes", {})).items():
            self.since_start.setdefault(route, RouteTally()).add(doc)
        if same:
            for route, doc in state.get("routes", {}).items():
                self.routes.setdefault(route, RouteTally()).add(doc)
            merged = sorted([*self.samples, *state.get("samples", [])], key=lambda s: -s["at"])
            self.samples = deque(merged[:SAMPLES], maxlen=SAMPLES)
        for key, (compared, mismatched) in state.get("series", {}).items():
            point = self.series.setdefault(int(key), [0, 0])
            point[0] += compared
            point[1] += mismatched
        for route, paths in state.get("noise_paths", {}).items():
            self.noise_paths.setdefault(route, set()).update(paths)
        self.dropped += int(state.get("dropped", 0))
        self.failures += int(state.get("failures", state.get("errors", 0)))

    def document(self) -> dict[str, Any]:
        """Return ``GET /report``: this window's totals and routes, the totals since
        start, the samples and the series."""
        routes = [t.document(r) for r, t in sorted(self.routes.items())]
        for doc in routes:
            doc["noise_paths"] = sorted(self.noise_paths.get(doc["route"], ()))
        totals = _counts({name: sum(r[name] for r in routes) for name in COUNTS})
        since = _counts(
            {name: sum(getattr(t, name) for t in self.since_start.values()) for name in COUNTS}
        )
        return {
            "window": asdict(self.window),
            "totals": totals | {"dropped": self.dropped, "failures": self.failures},
            "routes": routes,
            "since_start": {
                "totals": since,
                "routes": [t.document(r) for r, t in sorted(self.since_start.items())],
            },
            "samples": list(self.samples),
            "series": [
                {"at": k, "compared": v[0], "mismatched": v[1]}
                for k, v in sorted(self.series.items())
            ],
        }


def _sample(
    c: Comparison, at: float, records: list[dict[str, Any]], user: str | None
) -> dict[str, Any]:
    return {
        "at": at,
        "route": c.route,
        "verdict": c.verdict,
        "records": records,
        "user": user,
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
