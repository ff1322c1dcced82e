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


def test_places_name_containers_to_change_in_place() -> None:
    """Every place is a container and its key: setting through it changes the document."""
    doc = {"items": [{"id": 2}, {"id": 3, "kids": [{"id": 4}]}]}
    for container, key in jsonpath.places(doc, jsonpath.parse("$..id")):
        container[key] *= 10
    assert {"items": [{"id": 20}, {"id": 30, "kids": [{"id": 40}]}]} == doc


@pytest.mark.parametrize("text", ["id", "$.", "$[x]", "$.a b"])
def test_bad_paths_are_refused(text: str) -> None:
    """Paths outside the subset raise ValueError."""
    with pytest.raises(ValueError):
        jsonpath.parse(text)
