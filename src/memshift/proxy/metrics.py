"""Prometheus metrics of one proxy instance, on a registry of its own."""

from __future__ import annotations

import os
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


M = TypeVar("M", Counter, Histogram)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# "2xx" of status 2xx (index: status // 100), built once.
STATUS_CLASS = tuple(f"{n}xx" for n in range(10))
# Label values come from memshift's own closed sets, never from a client's strings.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """An HTTP method as a label value: one of the standard ones, or ``other``."""
    return method if method in _METHODS else "other"


class Children(Generic[M]):
    """The label children of one metric, each looked up once.

    ``labels()`` validates and locks on every call; on the request path a dict lookup
    does. Only for label sets memshift bounds itself (stores, configured routes and
    tools, purposes, jobs): a client's strings go to the log, never to a label.
    """

    def __init__(self, metric: M) -> None:
        self.metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *labels: str) -> M:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self.metric.labels(*labels)
        return child


class ProxyMetrics:
    """Counters, histograms and gauges that ``GET /metrics`` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
        self.upstream_outcome = Children(self.requests)
        self.upstream_latency = Children(self.latency)
        self.client_outcome = Children(self.client_requests)
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
        self.mirror_outcome = Children(self.mirror_writes)
        self.comparisons = Counter(
            "memshift_comparisons",
            "Shadow reads compared, by route and verdict.",
            ["route", "verdict"],
            registry=r,
        )
        self.comparison = Children(self.comparisons)
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
        self.background_failures = Children(self.background)
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

    def render(self, state: ControlState, log: dict[str, int]) -> bytes:
        """Return the exposition text, with the control gauges set from ``state``."""
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
