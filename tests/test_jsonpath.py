"""The JSONPath subset used for ids and ignored fields."""

from __future__ import annotations

import pytest

from memshift import jsonpath

DOC = {
    "id": 1,
    "items": [{"id": 2, "tags": {"updated_at": "t"}}, {"id": 3}],
    "meta": {"updated_at": "u", "x-y": 5},
}


@pytest.mark.parametrize(
    "path,expected",
    [
        ("$.id", [1]),
        ("$.items[*].id", [2, 3]),
        ("$.items[1].id", [3]),
        ("$.items[5].id", []),
        ("$..updated_at", ["t", "u"]),
        ('$.meta["x-y"]', [5]),
        ("$.missing.id", []),
    ],
)
def test_values(path: str, expected: list[object]) -> None:
    """Each supported step finds what it names, and nothing where nothing is."""
    assert expected == jsonpath.values(DOC, jsonpath.parse(path))


def test_update_in_place() -> None:
    """update replaces every named value."""
    doc = {"items": [{"id": 2}, {"id": 3}]}
    jsonpath.update(doc, jsonpath.parse("$.items[*].id"), lambda v: v * 10)
    assert {"items": [{"id": 20}, {"id": 30}]} == doc


@pytest.mark.parametrize("text", ["id", "$.", "$[x]", "$.a b"])
def test_bad_paths_are_refused(text: str) -> None:
    """Paths outside the subset raise ValueError."""
    with pytest.raises(ValueError):
        jsonpath.parse(text)
