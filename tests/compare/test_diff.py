"""The structural diff names each differing path, its kind and both values."""

from __future__ import annotations

from memshift.compare.diff import Difference, DiffOptions, diff, generic


def test_kinds_of_difference() -> None:
    """Changed, type, missing and extra are told apart, with paths into lists."""
    control = {"a": 1, "b": "x", "items": [{"t": "one"}, {"t": "two"}], "gone": True}
    candidate = {"a": 1, "b": 2, "items": [{"t": "one"}, {"t": "TWO"}], "new": None}
    assert [
        Difference("$.b", "type", "x", 2),
        Difference("$.items[1].t", "changed", "two", "TWO"),
        Difference("$.gone", "missing", True, None),
        Difference("$.new", "extra", None, None),
    ] == diff(control, candidate)


def test_lists_of_other_length_and_order() -> None:
    """A longer or shorter list names the items; the same items reordered is one order."""
    assert [Difference("$[2]", "extra", None, 3)] == diff([1, 2], [1, 2, 3])
    assert [Difference("$[1]", "missing", 2, None)] == diff([1, 2], [1])
    assert [Difference("$", "order")] == diff([1, 2, 3], [3, 1, 2])


def test_unordered_lists_and_tolerance() -> None:
    """Lists named unordered compare as multisets; numbers within tolerance are equal."""
    options = DiffOptions(tolerance=1e-6, unordered=frozenset({"$.tags"}))
    assert [] == diff(
        {"tags": ["a", "b"], "s": 0.1234567}, {"tags": ["b", "a"], "s": 0.1234568}, options
    )
    assert [Difference("$.s", "changed", 0.1, 0.2)] == diff({"s": 0.1}, {"s": 0.2}, options)
    assert [Difference("$", "type", 1, True)] == diff(1, True)


def test_generic_paths() -> None:
    """Indexes become [*] so that counts group by field."""
    assert "$.items[*].x[*]" == generic("$.items[12].x[0]")


def test_records_align_by_id() -> None:
    """A record that moved is one order difference plus its own changes, not a cascade."""
    control = [{"id": 1, "t": "a"}, {"id": 2, "t": "b"}, {"id": 3, "t": "c"}]
    candidate = [{"id": 2, "t": "b"}, {"id": 1, "t": "A"}, {"id": 4, "t": "d"}]
    assert [
        Difference("$", "order"),
        Difference("$[0].t", "changed", "a", "A"),
        Difference("$[2]", "missing", {"id": 3, "t": "c"}, None),
        Difference("$[2]", "extra", None, {"id": 4, "t": "d"}),
    ] == diff(control, candidate)
