"""The request path's counts, kept in a tally and flushed, read as if counted one by one."""

from __future__ import annotations

import math
import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from memshift.proxy.metrics import Counts, Latencies, Tally

BOUNDS = (0.0005, 0.001, 0.01, 0.1, 1.0)


def _metrics(batched: bool) -> tuple[CollectorRegistry, Tally, Counts, Latencies]:
    registry = CollectorRegistry()
    tally = Tally(batched=batched)
    counter = Counter("t_requests", "requests", ["store", "outcome"], registry=registry)
    latency = Histogram(
        "t_latency_seconds", "latency", ["store"], buckets=BOUNDS, registry=registry
    )
    return registry, tally, Counts(counter, tally), Latencies(latency, BOUNDS, tally)


def _exposed(registry: CollectorRegistry) -> tuple[list[str], dict[str, float]]:
    """Every line but the sums, and the sums (added in another order: equal to rounding)."""
    lines = generate_latest(registry).decode().splitlines()
    sums = {line.split(" ")[0]: float(line.split(" ")[1]) for line in lines if "_sum{" in line}
    return [line for line in lines if "_sum{" not in line], sums


def _same(one: CollectorRegistry, other: CollectorRegistry) -> bool:
    (lines, sums), (other_lines, other_sums) = _exposed(one), _exposed(other)
    return (
        lines == other_lines
        and sums.keys() == other_sums.keys()
        and all(math.isclose(sums[k], other_sums[k], rel_tol=1e-12) for k in sums)
    )


def test_a_flushed_tally_exposes_what_counting_one_by_one_does() -> None:
    """Bounds themselves (``le`` includes them), values past the last bound, two stores,
    and scrapes between the counts: the exposition is the same (sums to rounding)."""
    rng = random.Random(7)
    values = [*BOUNDS, 0.0, 5.0, 1e9, *(rng.uniform(0, 2) for _ in range(500))]
    batched, direct = _metrics(True), _metrics(False)
    for n, value in enumerate(values):
        for _, _, counts, latencies in (batched, direct):
            store = "legacy" if n % 3 else "new"
            counts(store, "2xx" if value < 1 else "5xx").inc()
            latencies(store).observe(value)
        if n % 97 == 0:  # a scrape in between
            batched[1].flush()
            assert _same(batched[0], direct[0])
    assert not _same(batched[0], direct[0])  # not flushed yet
    batched[1].flush()
    batched[1].flush()  # nothing counted twice
    assert _same(batched[0], direct[0])
    assert b't_requests_total{outcome="5xx",store="new"}' in generate_latest(batched[0])
