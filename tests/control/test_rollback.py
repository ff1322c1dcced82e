"""The verdict on the new store: inconclusive without data, tripped past a threshold."""

from __future__ import annotations

from memshift.config.settings import RollbackSettings, Step
from memshift.control.health import ClassFigures, HealthFigures, HealthWindow
from memshift.control.rollback import CompareWindow, judge
from memshift.control.schedule import Schedule

RULES = RollbackSettings(
    min_samples=50, max_error_rate=0.01, max_latency_ratio=3.0, max_mismatch_rate=0.01
)


def figures(requests: int, errors: int = 0, p99: float = 10.0, callers: int = 5) -> HealthFigures:
    """A store's window: ``callers`` callers behind its requests and its errors, all of
    its requests in one class."""
    classes = {"memories.item small": ClassFigures(requests - errors, callers, p99)}
    rate = errors / requests if requests else 0.0
    return HealthFigures(requests, errors, rate, p99 / 2, p99, callers, callers, classes)


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


def test_one_caller_among_many_trips_nothing() -> None:
    """Errors, a slow class or mismatches of one caller, while five are active, hold the
    verdict at inconclusive and say why; of three callers they trip."""
    one = HealthFigures(100, 50, 0.5, 5, 10, callers=5, error_callers=1)
    verdict = judge(one, figures(100), 0, 0, RULES, comparing=False)
    assert "inconclusive" == verdict.state
    assert "of 1 caller(s) of 3 needed" in str(verdict.reason)
    three = HealthFigures(100, 50, 0.5, 5, 10, callers=5, error_callers=3)
    assert "tripped" == judge(three, figures(100), 0, 0, RULES, comparing=False).state

    slow_of_one = HealthFigures(
        100, 0, 0.0, 5, 100, callers=5, classes={"k": ClassFigures(100, 1, 100.0)}
    )
    legacy = HealthFigures(100, 0, 0.0, 5, 10, callers=5, classes={"k": ClassFigures(100, 5, 10)})
    assert "inconclusive" == judge(slow_of_one, legacy, 0, 0, RULES, comparing=False).state

    mism = judge(figures(100), figures(100), 100, 50, RULES, comparing=True, compare_callers=(5, 1))
    assert "inconclusive" == mism.state
    mism = judge(figures(100), figures(100), 100, 50, RULES, comparing=True, compare_callers=(5, 3))
    assert "tripped" == mism.state


def test_the_only_caller_can_trip() -> None:
    """With one caller active (a desktop client on memshift stdio), its errors trip."""
    alone = HealthFigures(100, 50, 0.5, 5, 10, callers=1, error_callers=1)
    legacy = figures(100, callers=1)
    assert "tripped" == judge(alone, legacy, 0, 0, RULES, comparing=False).state


def test_large_bodies_slow_on_both_stores_are_not_a_slow_new_store() -> None:
    """A few callers' 8 MiB writes, slow on both stores, beside fast small reads: new's
    overall p99 is many times legacy's, but class by class it is not."""
    new, legacy = HealthWindow(60), HealthWindow(60)
    for i in range(200):
        caller = f"c{i % 5}"
        legacy.record(0.002, error=False, caller=caller, kind="memories.item small", now=10)
        new.record(0.002, error=False, caller=caller, kind="memories.item small", now=10)
    for i in range(60):  # mirrored large writes: both stores take them, both are slow
        caller = f"c{i % 5}"
        new.record(0.9, error=False, caller=caller, kind="memories.create large", now=10)
        legacy.record(0.6, error=False, caller=caller, kind="memories.create large", now=10)
    for i in range(6000):  # reads served by legacy alone: its overall mix is faster
        legacy.record(0.002, error=False, caller=f"c{i % 5}", kind="memories.list small", now=10)
    ours, theirs = new.figures(now=10), legacy.figures(now=10)
    assert ours.p99_ms / theirs.p99_ms > RULES.max_latency_ratio  # the overall figure lies
    verdict = judge(ours, theirs, 0, 0, RULES, comparing=False)
    assert "healthy" == verdict.state, verdict.reason
    assert verdict.figures["latency_ratio"] < 2
    assert "memories.create large" == verdict.figures["latency_class"]
