"""Health windows: counts, error rate and percentiles over a sliding window."""

from __future__ import annotations

from memshift.control.health import HealthWindow, size_class


def test_figures_over_the_window() -> None:
    """Requests, errors and latency percentiles cover the window and nothing older."""
    window = HealthWindow(window_s=10)
    window.record(0.001, error=True, now=980)  # before the window: forgotten
    for i in range(100):
        window.record(0.010, error=False, now=1000 + i % 5)
    window.record(0.500, error=True, now=1004)
    figures = window.figures(now=1005)
    assert (101, 1) == (figures.requests, figures.errors)
    assert abs(figures.error_rate - 1 / 101) < 1e-9
    assert 9.5 <= figures.p50_ms <= 11.5
    assert 9.5 <= figures.p99_ms <= 11.5
    assert 0 == window.figures(now=1020).requests


def test_p99_sees_the_slow_tail() -> None:
    """A slow 2% tail shows in p99 and not in p50."""
    window = HealthWindow(window_s=30)
    for i in range(1000):
        window.record(0.2 if i % 50 == 0 else 0.002, error=False, now=5)
    figures = window.figures(now=5)
    assert figures.p50_ms < 3
    assert 180 < figures.p99_ms < 230


def test_callers_and_classes() -> None:
    """Distinct callers of requests and of errors; latency per class, errors apart."""
    window = HealthWindow(window_s=10)
    for i in range(30):
        window.record(0.010, error=False, caller=f"c{i % 3}", kind="a small", now=100)
    window.record(0.500, error=True, caller="c9", kind="a small", now=101)
    window.record(0.200, error=False, caller="c1", kind="a large", now=102)
    figures = window.figures(now=103)
    assert (4, 1) == (figures.callers, figures.error_callers)
    assert {"a small", "a large"} == set(figures.classes)
    small = figures.classes["a small"]
    assert (30, 3) == (small.requests, small.callers)
    assert 9.5 <= small.p99_ms <= 11.5  # the slow error is not the class's latency
    for i in range(100):
        window.record(0.01, error=False, caller=f"x{i}", kind="a small", now=103)
    assert 16 == window.figures(now=103).callers  # no more than a rule needs


def test_size_classes() -> None:
    assert ["small", "small", "medium", "large"] == [
        size_class(n) for n in (0, 16 * 1024, 16 * 1024 + 1, 1024 * 1024 + 1)
    ]
