"""Which records a write changes (or a read reads), and which it refers to.

A record is known by its key, ``kind:id``, with the id in its canonical spelling
(``ids.py``). A route or tool says where they are:

- ``records``: JSON paths to the records it changes, several allowed
  (``{"$.entities[*].name" = "entity"}``);
- without ``records``, the last ``{kind}`` segment of a REST path, or a tool's
  ``record_argument``;
- every other id in the path, the query or the body is a record it refers to.

A write whose records cannot be told (none declared, or a declared place holding no
id) is keyless: it is ordered behind everything before it and ahead of everything
after it (``lanes.py``). A create's own records are known once the primary answered:
the ids at its ``created_id`` (``created``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memshift import jsonpath
from memshift.config.settings import RouteSpec, StoreName
from memshift.ids import Id, IdForms, record_key
from memshift.shadow.routes import RouteMatch

GLOBAL = "*"  # the key of every write to a store taking one write at a time


@dataclass(frozen=True)
class Records:
    """The records one request changes (``own``) and those it refers to."""

    own: tuple[tuple[str, Id], ...] = ()
    depends: tuple[str, ...] = ()
    unknown: bool = False  # a declared place held something that is no id
    creates: bool = False  # it makes its records: they are known once it is answered
    # The keys of the records it changes, sorted (none when they are not known).
    keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = () if self.unknown else tuple(sorted({record_key(k, v) for k, v in self.own}))
        object.__setattr__(self, "keys", keys)  # once: the write path asks several times

    @property
    def keyless(self) -> bool:
        """Whether the records it changes cannot be told: it may change any."""
        return not self.keys and not self.creates

    def with_created(self, created: tuple[tuple[str, Id], ...]) -> Records:
        """These records and those a create made."""
        return Records((*self.own, *created), self.depends, self.unknown, self.creates)


def _found(
    doc: Any, where: tuple[tuple[jsonpath.Path, str], ...], forms: IdForms
) -> tuple[list[tuple[str, Id]], bool]:
    out, unknown = [], False
    for path, kind in where:
        for value in jsonpath.values(doc, path):
            if value is None:
                continue
            canonical = forms.canonical(kind, value)
            if canonical is None:
                unknown = True
            else:
                out.append((kind, canonical))
    return out, unknown


def records_of(match: RouteMatch, body_doc: Any, forms: IdForms) -> Records:
    """The records a request changes or reads, and those it refers to (client-side ids)."""
    spec = match.spec
    unknown = False
    path_ids: list[tuple[str, Id]] = []
    for kind, segment in zip(spec.path_kinds, match.params, strict=True):
        value = forms.canonical(kind, segment)
        if value is None:
            unknown = True
        else:
            path_ids.append((kind, value))
    doc = body_doc if isinstance(body_doc, dict | list) else None
    own: list[tuple[str, Id]] = []
    if spec.records:
        own, bad = _found(doc, spec.records, forms)
        unknown |= bad
        refers = path_ids
    else:
        own, refers = path_ids[-1:], path_ids[:-1]
        if spec.record is not None:
            named, bad = _found(doc, (spec.record,), forms)
            unknown |= bad
            if named:
                own = named
    found, bad = _found(doc, spec.request_ids, forms)
    unknown |= bad
    keys = {record_key(k, v) for k, v in own}
    depends = {record_key(k, v) for k, v in (*refers, *found)} - keys
    creates = spec.creates is not None and not spec.records
    return Records(tuple(dict.fromkeys(own)), tuple(sorted(depends)), unknown, creates)


def created(
    spec: RouteSpec, store: StoreName, answer_doc: Any, forms: IdForms
) -> tuple[tuple[str, Id], ...]:
    """The records a create made, by the ids in ``store``'s answer at ``created_id``.

    Only legacy's ids are client-side ids: a create answered by new names its records
    once their pairs exist.
    """
    kind = spec.creates
    if kind is None or forms.natural(kind) or store != "legacy":
        return ()
    found, _ = _found(answer_doc, ((spec.created_id, kind),), forms)
    return tuple(found)


def created_ids(spec: RouteSpec, answer_doc: Any) -> list[Any]:
    """The raw ids at a create's ``created_id`` in one store's answer, in order."""
    return jsonpath.values(answer_doc, spec.created_id) if spec.creates else []
