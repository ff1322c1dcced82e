"""Prometheus metrics of one proxy instance, on a registry of its own."""

from __future__ import annotations

import math
import os
from bisect import bisect_left
from typing import Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from memshift.control.state import ControlState

# The *_created series only add noise for operators.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# "2xx" of status 2xx (index: status // 100), built once.
STATUS_CLASS = tuple(f"{n}xx" for n in range(10))
# Label values come from memshift's own closed sets, never from a client's strings.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """An HTTP method as a label value: one of the standard ones, or ``other``."""
    return method if method in _METHODS else "other"


class Tally:
    """What the request path counts, kept here and added to the metrics in bulk.

    prometheus_client validates and takes a lock on every ``inc`` and ``observe``, and
    a mirrored write made six of them. Here each is an addition to a plain number,
    and ``flush`` (before every scrape) adds them to the metrics at once. With ``serve
    --workers`` a scrape reads every worker's files, which only its own worker can
    flush: there each count goes straight in (``batched`` False).
    """

    def __init__(self, *, batched: bool) -> None:
        self.batched = batched
        self._pending: list[Count | Latency] = []

    def flush(self) -> None:
        """Add everything counted since the last flush to the metrics."""
        for item in self._pending:
            item.flush()

    def keep(self, item: Count | Latency) -> None:
        self._pending.append(item)


class Count:
    """One label child of a counter, counted through a ``Tally``."""

    __slots__ = ("_batched", "_child", "_pending")

    def __init__(self, child: Counter, tally: Tally) -> None:
        self._child = child
        self._batched = tally.batched
        self._pending = 0.0
        tally.keep(self)

    def inc(self, amount: float = 1) -> None:
        if self._batched:
            self._pending += amount
        else:
            self._child.inc(amount)

    def flush(self) -> None:
        if self._pending:
            amount, self._pending = self._pending, 0.0
            self._child.inc(amount)


class Latency:
    """One label child of a histogram, observed through a ``Tally``: each value is
    counted in its bucket here, and the buckets' counts and the sum go to the
    histogram's own at a flush (one addition per bucket, not one per value)."""

    __slots__ = ("_batched", "_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Histogram, bounds: tuple[float, ...], tally: Tally) -> None:
        self._child = child
        self._bounds = (*bounds, math.inf)  # as the histogram's: upper bounds, +Inf last
        # Adding a bucket's count at once needs the histogram's buckets: observed one
        # by one where this prometheus_client keeps them otherwise.
        self._batched = tally.batched and _bucketed(child, self._bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        tally.keep(self)

    def observe(self, value: float) -> None:
        if self._batched:
            self._counts[bisect_left(self._bounds, value)] += 1  # the first bound >= value
            self._sum += value
        else:
            self._child.observe(value)

    def flush(self) -> None:
        if not self._sum and not any(self._counts):
            return
        buckets = self._child._buckets
        for index, count in enumerate(self._counts):
            if count:
                buckets[index].inc(count)
                self._counts[index] = 0
        self._child._sum.inc(self._sum)
        self._sum = 0.0


def _bucketed(child: Histogram, bounds: tuple[float, ...]) -> bool:
    """Whether ``child`` keeps per-bucket counts with these bounds, as this code reads them."""
    buckets = getattr(child, "_buckets", None)
    return (
        tuple(getattr(child, "_upper_bounds", ())) == bounds
        and isinstance(buckets, list)
        and len(buckets) == len(bounds)
        and all(hasattr(b, "inc") for b in buckets)
        and hasattr(getattr(child, "_sum", None), "inc")
    )


C = TypeVar("C", Count, Latency)


class Children(Generic[C]):
    """The label children of one metric, each looked up once.

    ``labels()`` validates and locks on every call; on the request path a dict lookup
    does. Only for label sets memshift bounds itself (stores, configured routes and
    tools, purposes, jobs): a client's strings go to the log, never to a label.
    """

    def __init__(self, metric: Counter | Histogram, tally: Tally) -> None:
        self.metric = metric
        self._tally = tally
        self._children: dict[tuple[str, ...], C] = {}

    def __call__(self, *labels: str) -> C:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._made(self.metric.labels(*labels))
        return child

    def _made(self, child: Counter | Histogram) -> C:
        raise NotImplementedError


class Counts(Children[Count]):
    """The label children of one counter, counted through the tally."""

    def __init__(self, metric: Counter, tally: Tally) -> None:
        super().__init__(metric, tally)

    def _made(self, child: Counter | Histogram) -> Count:
        assert isinstance(child, Counter)
        return Count(child, self._tally)


class Latencies(Children[Latency]):
    """The label children of one histogram, observed through the tally."""

    def __init__(self, metric: Histogram, bounds: tuple[float, ...], tally: Tally) -> None:
        super().__init__(metric, tally)
        self._bounds = bounds

    def _made(self, child: Counter | Histogram) -> Latency:
        assert isinstance(child, Histogram)
        return Latency(child, self._bounds, self._tally)


class ProxyMetrics:
    """Counters, histograms and gauges that ``GET /metrics`` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tally = Tally(batched=not os.environ.get(MULTIPROCESS_ENV))
        self.requests = Counter(
            "memshift_upstream_requests",
            "Requests sent to a store, by purpose and outcome.",
            ["store", "route", "purpose", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "memshift_upstream_latency_seconds",
            "Time a store took to answer.",
            ["store", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.client_requests = Counter(
            "memshift_client_requests",
            "Client requests answered, by route, store and status.",
            ["route", "served_by", "status_class"],
            registry=r,
        )
        self.upstream_outcome = Counts(self.requests, self.tally)
        self.upstream_latency = Latencies(self.latency, _LATENCY_BUCKETS, self.tally)
        self.client_outcome = Counts(self.client_requests, self.tally)
        self.mirror_failures = Counter(
            "memshift_mirror_failures",
            "Mirrored writes the secondary did not take.",
            ["store", "reason"],
            registry=r,
        )
        self.mirror_writes = Counter(
            "memshift_mirror_writes",
            "Mirrored writes by outcome (done, backlog, divergent).",
            ["store", "outcome"],
            registry=r,
        )
        self.mirror_outcome = Counts(self.mirror_writes, self.tally)
        self.comparisons = Counter(
            "memshift_comparisons",
            "Shadow reads compared, by route and verdict.",
            ["route", "verdict"],
            registry=r,
        )
        self.comparison = Counts(self.comparisons, self.tally)
        self.shadow_dropped = Counter(
            "memshift_shadow_dropped",
            "Shadow reads dropped because the scheduler was full.",
            registry=r,
        )
        self.read_fallbacks = Counter(
            "memshift_read_fallbacks",
            "Reads meant for the new store served by legacy.",
            ["reason"],
            registry=r,
        )
        self.mcp_unclassified = Counter(
            "memshift_mcp_unclassified_tool_calls",
            "MCP tool calls of tools in neither write_tools nor read_tools (primary only);"
            " the tool's name is in the log.",
            registry=r,
        )
        self.unmirrored = Counter(
            "memshift_unmirrored_writes",
            "Writes whose user could not be told, passed to the primary alone"
            " ([mirror] unidentified = pass); each is logged write_not_mirrored.",
            registry=r,
        )
        self.background = Counter(
            "memshift_background_failures",
            "Failures of background work, by job (logged with their traceback).",
            ["job"],
            registry=r,
        )
        self.background_failures = Counts(self.background, self.tally)
        self.mcp_sessions = Gauge(
            "memshift_mcp_sessions",
            "Open MCP client sessions of this instance.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.mcp_dropped_replies = Counter(
            "memshift_mcp_dropped_notification_replies",
            "Error replies a store sent to a notification, dropped.",
            registry=r,
        )
        self.unrouted = Counter(
            "memshift_unrouted_requests",
            "Requests matching no configured route (primary only).",
            ["method"],
            registry=r,
        )
        self.failbacks = Counter(
            "memshift_failbacks", "Automatic failbacks this instance triggered.", registry=r
        )
        self.epoch = Gauge(
            "memshift_control_epoch",
            "Epoch of the control state.",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.read_percent = Gauge(
            "memshift_read_percent",
            "Share of reads served by new.",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.shadow_percent = Gauge(
            "memshift_shadow_read_percent",
            "Share of reads compared.",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.primary = Gauge(
            "memshift_primary",
            "1 for the primary store.",
            ["store"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.failed_back = Gauge(
            "memshift_failed_back",
            "1 while failback is latched.",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.repair_backlog = Gauge(
            "memshift_repair_backlog",
            "Mirrored writes waiting for replay.",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.repair_age = Gauge(
            "memshift_repair_backlog_age_seconds",
            "Age of the oldest write waiting for replay.",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.divergent = Gauge(
            "memshift_divergent_writes",
            "Writes the secondary refused, kept for an operator.",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.held = Gauge(
            "memshift_held_writes",
            "Writes whose answer was lost on a store without idempotency keys: held, never"
            " sent twice, until verify --repair.",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.wal_commits = Gauge(
            "memshift_write_log_commits",
            "Group commits of the write log since start.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.wal_operations = Gauge(
            "memshift_write_log_operations",
            "Write log operations since start.",
            registry=r,
            multiprocess_mode="livesum",
        )

    def sample(self, name: str, **labels: str) -> float:
        """The value of one sample now (``memshift_client_requests_total``...); 0 if none."""
        self.tally.flush()
        return self.registry.get_sample_value(name, labels) or 0.0

    def render(self, state: ControlState, log: dict[str, int]) -> bytes:
        """Return the exposition text, with the control gauges set from ``state``."""
        self.tally.flush()
        self.epoch.set(state.epoch)
        self.read_percent.set(state.read_percent)
        self.shadow_percent.set(state.shadow_read_percent)
        for store in ("legacy", "new"):
            self.primary.labels(store=store).set(int(state.primary == store))
        self.failed_back.set(int(state.failed_back))
        self.repair_backlog.set(log["backlog"])
        self.repair_age.set(log["age_s"])
        self.divergent.set(log["divergent"])
        self.held.set(log["held"])
        self.wal_commits.set(log["commits"])
        self.wal_operations.set(log["operations"])
        if os.environ.get(MULTIPROCESS_ENV):  # serve --workers: every worker's figures
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(merged))
        return bytes(generate_latest(self.registry))
