"""Verdicts, and the diff rules that decide them: one verdict per situation."""

from __future__ import annotations

from typing import Any

import pytest

from memshift.compare.compare import NO_PAIR, Observation, differences, judge
from memshift.compare.diff import Difference, DiffOptions, Ranked, diff

OK = Observation("legacy", 200, {"id": 1, "title": "t"})


def _verdict(control: Observation, candidate: Observation, **how: Any) -> str:
    found = differences(control, candidate, [], DiffOptions())
    options = {"noise_paths": set(), "inflight": False} | how
    return judge("r", found, control, candidate, **options).verdict


@pytest.mark.parametrize(
    ("candidate", "how", "verdict"),
    [
        (Observation("new", 200, {"id": 1, "title": "t"}), {}, "matched"),
        (Observation("new", 200, {"id": 1, "title": "x"}), {}, "mismatched"),
        (Observation("new", 200, {"id": 1, "title": "x"}), {"inflight": True}, "inflight"),
        (Observation("new", 200, {"id": 1, "title": "x"}), {"pending": True}, "pending"),
        (Observation("new", None, None, error=NO_PAIR), {}, "pending"),
        (Observation("new", None, None, error="timeout"), {}, "error"),
        (Observation("new", None, None, error="unreachable"), {"pending": True}, "error"),
        (Observation("new", 503, {"error": {}}), {}, "error"),
        (
            Observation("new", 404, {"error": {"code": "not_found"}}),
            {"backfilled": False},
            "pending",
        ),
        (
            Observation("new", 404, {"error": {"code": "not_found"}}),
            {"backfilled": True},
            "mismatched",
        ),
        (
            Observation("new", 200, {"id": 1, "title": "x"}),
            {"noise_paths": {"$.title"}},
            "noise",
        ),
    ],
)
def test_one_verdict_per_situation(
    candidate: Observation, how: dict[str, Any], verdict: str
) -> None:
    assert verdict == _verdict(OK, candidate, **how)


def test_before_a_backfill_records_missing_from_a_list_are_pending_not_changed_ones() -> None:
    control = Observation("legacy", 200, {"items": [{"id": 1}, {"id": 2}]})
    lacking = Observation("new", 200, {"items": [{"id": 1}]})
    changed = Observation("new", 200, {"items": [{"id": 1}, {"id": 2, "x": 1}]})
    assert "pending" == _verdict(control, lacking, backfilled=False)
    assert "mismatched" == _verdict(control, lacking, backfilled=True)
    assert "mismatched" == _verdict(control, changed, backfilled=False)


def test_a_list_without_ids_missing_one_element_is_one_difference() -> None:
    control = [{"tag": t} for t in "abcdef"]
    candidate = [item for item in control if item["tag"] != "b"]
    assert [Difference("$[1]", "missing", {"tag": "b"}, None)] == diff(control, candidate)


def test_ranked_results_compare_ids_and_order_not_scores() -> None:
    rule = DiffOptions(ranked=(Ranked("$.results", top=2),))
    control = {
        "results": [{"id": 1, "score": 3.2}, {"id": 2, "score": 1.0}, {"id": 9, "score": 0.1}]
    }
    rescored = {
        "results": [{"id": 1, "score": 0.7}, {"id": 2, "score": 0.2}, {"id": 5, "score": 0.1}]
    }
    reordered = {"results": [{"id": 2, "score": 3.2}, {"id": 1, "score": 1.0}]}
    assert [] == diff(control, rescored, rule)  # beyond the top 2, and scores aside
    assert [Difference("$.results", "ranking", [1, 2], [2, 1])] == diff(control, reordered, rule)
    strict = DiffOptions(ranked=(Ranked("$.results", top=2, tolerance=0.1),))
    assert ["$.results[0].score", "$.results[1].score"] == [
        d.path for d in diff(control, rescored, strict)
    ]
