"""Ids: one canonical spelling per kind, and no spelling taken for an id it is not."""

from __future__ import annotations

import pytest

from memshift.ids import IdForms

FORMS = IdForms({"entity": "natural", "note": "string"})


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        (75, 75),
        ("75", 75),
        ("0000000000000000075", 75),  # 19 digits: past a 64-bit integer, still 75
        ("0", 0),
        ("", None),
        ("7a", None),
        ("-3", None),
        ("٣", None),  # a digit, but not an ASCII one
        (True, None),
        (7.0, None),
        (None, None),
        ("1" * 600, None),  # longer than any id
    ],
)
def test_integer_ids_have_one_spelling(value: object, canonical: object) -> None:
    assert canonical == FORMS.canonical("memory", value)


@pytest.mark.parametrize(
    ("kind", "value", "canonical"),
    [
        ("note", "m-3", "m-3"),
        ("note", 3, "3"),  # an integer where a string id sits is its decimal text
        ("note", "", None),
        ("note", ["m-3"], None),
        ("entity", "Alice Smith", "Alice Smith"),
        ("undeclared", "x-1", "x-1"),  # any kind not declared is a string
    ],
)
def test_string_and_natural_ids_are_taken_as_they_are(
    kind: str, value: object, canonical: object
) -> None:
    assert canonical == FORMS.canonical(kind, value)


def test_record_keys_are_the_same_for_every_spelling() -> None:
    assert FORMS.key("memory", "0075") == FORMS.key("memory", 75) == "memory:75"
    assert FORMS.key("memory", "x") is None
    assert (True, False) == (FORMS.natural("entity"), FORMS.natural("note"))


def test_an_unknown_form_is_refused() -> None:
    with pytest.raises(ValueError, match="not an id form"):
        IdForms({"memory": "uuid"})
