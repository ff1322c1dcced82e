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


@pytest.mark.parametrize("doc", [DOC, [DOC], None, 5, "id", {"id": None}, {"x-y": 0}])
@pytest.mark.parametrize("path", ["$.id", '$["x-y"]', "$.missing"])
def test_a_path_of_one_key_reads_what_walking_it_finds(doc: object, path: str) -> None:
    """A one-key path is read straight from the document: the same values, in every
    kind of document, as walking its places."""
    parsed = jsonpath.parse(path)
    assert parsed.only_key is not None
    walked = [container[key] for container, key in jsonpath.places(doc, parsed)]
    assert walked == jsonpath.values(doc, parsed)


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
