"""Comparisons and the report: verdicts, noise, samples, merging."""

from __future__ import annotations

from typing import Any

from memshift import jsonpath
from memshift.compare.compare import Comparison, Observation, differences
from memshift.compare.compare import judge as verdict_of
from memshift.compare.diff import DiffOptions
from memshift.compare.normalize import ignore, redact
from memshift.compare.report import Report

RULES = [ignore([jsonpath.parse("$..updated_at")])]


def compare(route: str, control: Observation, candidate: Observation, **how: Any) -> Comparison:
    """Diff two observations and judge them, as a shadow read does."""
    found = differences(control, candidate, how.pop("rules"), how.pop("options"))
    return verdict_of(route, found, control, candidate, **how)


def obs(store: str, body: object, status: int = 200) -> Observation:
    return Observation(store, status, body)


def judge(
    a: object,
    b: object,
    *,
    noise: set[str] | None = None,
    inflight: bool = False,
    sa: int = 200,
    sb: int = 200,
) -> str:
    return compare(
        "r",
        obs("legacy", a, sa),
        obs("new", b, sb),
        rules=RULES,
        options=DiffOptions(),
        noise_paths=noise or set(),
        inflight=inflight,
    ).verdict


def test_verdicts() -> None:
    """Ignored fields match; other differences mismatch; noise and in-flight are their own."""
    assert "matched" == judge({"id": 1, "updated_at": "a"}, {"id": 1, "updated_at": "b"})
    assert "mismatched" == judge({"content": "a"}, {"content": "b"})
    assert "noise" == judge({"score": 1}, {"score": 2}, noise={"$.score"})
    assert "inflight" == judge({"content": "a"}, {"content": "b"}, inflight=True)
    assert "mismatched" == judge({"id": 1}, {"error": {}}, sb=404)


def test_only_what_differs_as_json_is_a_difference() -> None:
    """True and 1 are equal to Python but not the same JSON, nor is a list in another
    order; key order is no difference, and numbers within the tolerance match."""
    assert "mismatched" == judge({"flag": True}, {"flag": 1})
    assert "mismatched" == judge({"tags": [1, "a"]}, {"tags": ["a", 1]})
    assert "matched" == judge({"a": 1, "b": [2, 3]}, {"b": [2, 3], "a": 1})
    assert "matched" == judge({"n": 1}, {"n": 1.0})
    assert "matched" == judge({"score": 0.5}, {"score": 0.5 + 1e-12})


def test_normalization_leaves_the_observations_as_they_were() -> None:
    """The comparison normalizes copies: the answers it keeps (for samples) are whole."""
    control = {"id": 1, "updated_at": "a", "tags": [{"n": 1.5, "updated_at": "x"}]}
    candidate = {"id": 2, "updated_at": "b", "tags": [{"n": 1.5, "updated_at": "y"}]}
    kept = (repr(control), repr(candidate))
    made = compare(
        "r",
        obs("legacy", control),
        obs("new", candidate),
        rules=RULES,
        options=DiffOptions(),
        noise_paths=set(),
        inflight=False,
    )
    assert ["$.id"] == [d.path for d in made.differences]
    assert kept == (repr(made.control.body), repr(made.candidate.body))


def test_report_counts_and_samples() -> None:
    """The report counts per route, names top fields, and keeps non-matching samples."""
    report = Report()
    for body in ({"content": "a"}, {"content": "b"}):
        report.record(
            compare(
                "memories.item",
                obs("legacy", {"content": "a"}),
                obs("new", body),
                rules=RULES,
                options=DiffOptions(),
                noise_paths=set(),
                inflight=False,
            ),
            now=120.0,
        )
    doc = report.document()
    [route] = doc["routes"]
    assert (2, 1, 1, 0.5, [{"path": "$.content", "count": 1}]) == (
        route["compared"],
        route["matched"],
        route["mismatched"],
        route["mismatch_rate"],
        route["fields"],
    )
    assert [("$.content", "a", "b")] == [
        (d["path"], d["control"], d["candidate"]) for d in doc["samples"][0]["differences"]
    ]
    assert [{"at": 120, "compared": 2, "mismatched": 1}] == doc["series"]


def test_reports_merge_and_restore() -> None:
    """A saved report absorbed into another adds up."""
    one, two = Report(), Report()
    c = compare(
        "search",
        obs("legacy", [1]),
        obs("new", [2]),
        rules=[],
        options=DiffOptions(),
        noise_paths=set(),
        inflight=False,
    )
    one.record(c)
    two.record(c)
    one.learn_noise("search", {"$[*]"})
    merged = Report()
    merged.absorb(one.state())
    merged.absorb(two.state())
    doc = merged.document()
    assert (2, 2, ["$[*]"]) == (
        doc["totals"]["compared"],
        doc["totals"]["mismatched"],
        doc["routes"][0]["noise_paths"],
    )


def test_samples_are_redacted() -> None:
    """Secrets are masked and long text is cut in report samples."""
    assert {"token": "***", "text": "x" * 200 + "… (500 characters)"} == redact(
        {"token": "s3cret", "text": "x" * 500}
    )
