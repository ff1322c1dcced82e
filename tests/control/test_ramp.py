"""The read ramp: sticky per caller, and monotone as the percent rises."""

from __future__ import annotations

from memshift.control.ramp import bucket, reads_from_new

KEYS = [f"Bearer tok-{i}" for i in range(5000)]


def test_bucket_is_stable_and_in_range() -> None:
    """A caller's bucket is the same every time and lies in [0, 100)."""
    first = [bucket(k) for k in KEYS]
    assert first == [bucket(k) for k in KEYS]
    assert all(0 <= b < 100 for b in first)


def test_raising_the_percent_only_moves_callers_to_new() -> None:
    """Callers on new at p stay on new at every higher percent; 0 is none, 100 is all."""
    previous: set[str] = set()
    for percent in range(0, 101, 5):
        on_new = {k for k in KEYS if reads_from_new(k, percent)}
        assert previous <= on_new
        previous = on_new
    assert (set(), set(KEYS)) == (
        {k for k in KEYS if reads_from_new(k, 0)},
        {k for k in KEYS if reads_from_new(k, 100)},
    )


def test_share_follows_the_percent() -> None:
    """About percent% of callers read from new."""
    share = sum(reads_from_new(k, 30) for k in KEYS) / len(KEYS)
    assert 0.27 < share < 0.33
