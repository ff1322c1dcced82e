"""Ids as memshift holds them: opaque values, one canonical spelling per kind.

Stores give ids of their own choosing: integers (the reference store), strings (a
uuid, ``"m-17"``), or names a client chose (the official MCP memory server's
entities). Each kind of record has an id form, declared in ``[ids]`` (the reference
store's kinds are integers; any other kind is a string unless declared):

- ``integer``: an integer in JSON, digits in a path or a query. Every spelling of the
  same number is the same id: ``75``, ``"75"`` and ``"0000000000000000075"`` are one
  id, 75. Anything else in that position is not an id of that kind.
- ``string``: a non-empty string, as it is (an integer there is its decimal text).
- ``natural``: a string the client chooses (a name): the same in both stores, so it
  maps to itself and needs no pair.

Values reach the id map and the record keys only in their canonical form, so two
spellings of one id can never name two records, and a spelling that is not an id of
its kind is never taken for one.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Literal

import orjson

Id = int | str
Form = Literal["integer", "string", "natural"]
FORMS: tuple[Form, ...] = ("integer", "string", "natural")
# The reference store's kinds: what a config that says nothing means.
REFERENCE_FORMS: dict[str, Form] = {
    "context": "integer",
    "memory": "integer",
    "relation": "integer",
}
MAX_ID_LENGTH = 512


class IdForms:
    """The id form of every kind, and what follows from it."""

    def __init__(self, forms: Mapping[str, str] | None = None) -> None:
        self.forms: dict[str, Form] = dict(REFERENCE_FORMS)
        for kind, form in (forms or {}).items():
            if form not in FORMS:
                raise ValueError(f"{kind}: not an id form: {form!r}")
            self.forms[kind] = form

    def form(self, kind: str) -> Form:
        """The id form of ``kind`` (``string`` when undeclared)."""
        return self.forms.get(kind, "string")

    def natural(self, kind: str) -> bool:
        """Whether ``kind``'s ids are chosen by the client: the same in both stores."""
        return self.form(kind) == "natural"

    def canonical(self, kind: str, value: object) -> Id | None:
        """The canonical id ``value`` spells for ``kind``; None when it spells none."""
        if self.form(kind) == "integer":
            if type(value) is int:
                return value
            if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and value.isascii():
                digits = value.lstrip("0") or ("0" if value else "")
                if digits.isdigit():
                    return int(digits)
            return None
        if type(value) is int:
            return str(value)
        if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH:
            return value
        return None

    def key(self, kind: str, value: object) -> str | None:
        """The record key (``kind:id``) of ``value``; None when it is not an id."""
        found = self.canonical(kind, value)
        return None if found is None else record_key(kind, found)


def record_key(kind: str, value: Id) -> str:
    """The key a record is known by in the write log, lanes and fences: ``kind:id``."""
    return f"{kind}:{value}"


def encode(value: Id) -> str:
    """An id as the id map keeps it: its JSON text, so that 75 and "75" stay apart."""
    return orjson.dumps(value).decode()


def decode(text: str) -> Id:
    """The id the id map's ``text`` holds."""
    value = orjson.loads(text)
    if not isinstance(value, int | str) or isinstance(value, bool):
        raise ValueError(f"not an id: {text!r}")
    return value


@functools.lru_cache(maxsize=16)
def _forms(items: tuple[tuple[str, str], ...]) -> IdForms:
    return IdForms(dict(items))


def forms_of(declared: Mapping[str, str]) -> IdForms:
    """The id forms of a config's ``[ids]`` (made once per distinct table)."""
    return _forms(tuple(sorted(declared.items())))
