"""The verdict on the new store: inconclusive without data, tripped past a threshold."""

from __future__ import annotations

from memshift.config.settings import RollbackSettings, Step
from memshift.control.health import HealthFigures
from memshift.control.rollback import CompareWindow, judge
from memshift.control.schedule import Schedule

RULES = RollbackSettings(
    min_samples=50, max_error_rate=0.01, max_latency_ratio=3.0, max_mismatch_rate=0.01
)


def figures(requests: int, errors: int = 0, p99: float = 10.0) -> HealthFigures:
    return HealthFigures(requests, errors, errors / requests if requests else 0.0, p99 / 2, p99)


def test_too_little_data_is_inconclusive_never_healthy() -> None:
    """Below min_samples nothing trips and nothing is healthy, even at a 100% error rate."""
    verdict = judge(figures(10, errors=10), figures(100), 0, 0, RULES, comparing=False)
    assert ("inconclusive", "fewer than 50 samples: new") == (verdict.state, verdict.reason)


def test_each_threshold_trips() -> None:
    """Error rate, latency ratio and mismatch rate each trip with enough samples."""
    assert "error_rate" in str(
        judge(figures(100, errors=5), figures(100), 0, 0, RULES, comparing=False).reason
    )
    slow = judge(figures(100, p99=50), figures(100, p99=10), 0, 0, RULES, comparing=False)
    assert ("tripped", 5.0) == (slow.state, slow.figures["latency_ratio"])
    assert "mismatch_rate" in str(
        judge(figures(100), figures(100), 100, 2, RULES, comparing=True).reason
    )


def test_healthy_needs_every_figure() -> None:
    """Healthy only when new, legacy and (when comparing) comparisons all have samples."""
    assert "healthy" == judge(figures(100), figures(100), 100, 0, RULES, comparing=True).state
    assert "inconclusive" == judge(figures(100), figures(100), 10, 0, RULES, comparing=True).state
    assert "healthy" == judge(figures(100), figures(100), 0, 0, RULES, comparing=False).state


def test_compare_window_judges_only_what_says_something_of_new() -> None:
    """Only matched, mismatched and noise are judged; pending is counted apart; in-flight
    and error are not counted; the window forgets what is older than it, and all of it
    when judgement re-opens."""
    window = CompareWindow(10)
    window.record("mismatched", now=100)
    for verdict in ("inflight", "error", "pending", "matched", "noise"):
        window.record(verdict, now=105)
    assert (3, 1, 1) == window.counts(now=106)
    assert (2, 0) == window.figures(now=111)
    window.reopen()
    assert (0, 0, 0) == window.counts(now=111)


def test_schedule_moves_only_on_healthy_holds() -> None:
    """Each step is left after its hold of healthy time; inconclusive time does not count."""
    steps = (Step(read_percent=10, hold_s=2), Step(read_percent=50, hold_s=3))
    plan = Schedule()
    assert Step(read_percent=10, hold_s=2) == plan.tick(steps, 0, "healthy", 1)
    assert [None, None, None] == [
        plan.tick(steps, 10, v, 1) for v in ("healthy", "inconclusive", "inconclusive")
    ]
    assert Step(read_percent=50, hold_s=3) == plan.tick(steps, 10, "healthy", 1)
    assert None is plan.tick(steps, 50, "healthy", 100)  # the last step: nowhere to go
