"""Each store's health as this instance sees it: every exchange, in a window and the metrics.

``StoreHealth.observe`` is the observer the store links report to (``links/stores.py``):
the one place where health windows and metrics see each store's outcomes and latency,
the shadow helper's exchanges included (it passes them on), each counted for the
caller behind it (``control/callers.py``) in its class of comparable requests.
"""

from __future__ import annotations

from memshift.config.settings import STORE_NAMES
from memshift.control.callers import CALLER
from memshift.control.health import HealthWindow, size_class
from memshift.links.stores import Exchange
from memshift.proxy.metrics import STATUS_CLASS, ProxyMetrics


class StoreHealth:
    """The health windows of both stores, fed by every exchange."""

    def __init__(self, window_s: float, metrics: ProxyMetrics) -> None:
        self.windows = {name: HealthWindow(window_s) for name in STORE_NAMES}
        self.metrics = metrics

    def observe(self, exchange: Exchange) -> None:
        """Record one exchange with a store (its observer: ``links/stores.py``)."""
        store, route, purpose, status, elapsed_s, timeout, size = exchange
        if purpose == "migrate":  # memshift's own reads and copies: not the store's health
            self.metrics.upstream_outcome(store, route, purpose, _outcome(status, timeout)).inc()
            return
        caller = CALLER.get()
        if status is None:
            self.windows[store].record(0.0, error=True, caller=caller)
            outcome = "timeout" if timeout else "unreachable"
            self.metrics.upstream_outcome(store, route, purpose, outcome).inc()
            return
        kind = f"{route} {size_class(size)}"
        self.windows[store].record(elapsed_s, error=status >= 500, caller=caller, kind=kind)
        self.metrics.upstream_outcome(store, route, purpose, STATUS_CLASS[status // 100]).inc()
        self.metrics.upstream_latency(store, route).observe(elapsed_s)

    def resize(self, window_s: float) -> None:
        """Judge over ``window_s`` seconds from now on."""
        for window in self.windows.values():
            window.window_s = window_s


def _outcome(status: int | None, timeout: bool) -> str:
    if status is None:
        return "timeout" if timeout else "unreachable"
    return STATUS_CLASS[status // 100]
