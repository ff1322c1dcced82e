"""Structural diff of two JSON documents: each differing path, its kind, both values.

Kinds: ``changed`` (same type, other value), ``type`` (other JSON type), ``missing``
(in control, not in candidate), ``extra`` (in candidate only), ``order`` (a list with
the same items in another order). Numbers compare within ``tolerance``; lists named
unordered compare as multisets.

Lists of records are matched record by record, never by position: by their ``id``, or
by the fields ``keys`` names for that list (``{"$.entities": ("name",)}``), and then a
record's path names it: ``$.entities[name="Alice"].observations``. Lists without
identities are aligned on their equal items, so one missing item is one difference.
Ordered results (``ranked``) compare the identities of the top results and their order
(one ``ranking`` difference), then each result with its score aside.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

_VALUE = r'(?:"(?:[^"\\]|\\.)*"|[^,\]"]*)'
_INDEX = re.compile(rf"\[(?:\d+|\w+={_VALUE}(?:,\w+={_VALUE})*)\]")


def generic(path: str) -> str:
    """Return ``path`` with list places as ``[*]`` (``$.items[3].id`` → ``$.items[*].id``,
    ``$.entities[name="A"].type`` → ``$.entities[*].type``)."""
    return _INDEX.sub("[*]", path)


@dataclass(frozen=True)
class Difference:
    """One place where the candidate differs from the control."""

    path: str
    kind: str
    control: Any = None
    candidate: Any = None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True)
class Ranked:
    """Ordered results (a search): the first ``top`` are compared by identity and rank;
    each result's ``score`` only within ``tolerance`` (relative), or not at all (None).

    Two stores rank the same records in the same order with other scores whenever
    their corpora differ (another user's records, records not backfilled yet): that
    is no difference to the caller.
    """

    path: str
    top: int = 10
    score: str = "score"
    tolerance: float | None = None


@dataclass(frozen=True)
class DiffOptions:
    """How values are compared: number tolerance and lists compared as multisets."""

    tolerance: float = 1e-9
    unordered: frozenset[str] = frozenset()
    keys: tuple[tuple[str, tuple[str, ...]], ...] = ()  # list path → fields matching records
    ranked: tuple[Ranked, ...] = ()  # ordered results: compared by identity and rank

    def ranking(self, path: str) -> Ranked | None:
        """The ``ranked`` rule of the list at ``path``, if it has one."""
        found = generic(path)
        return next((r for r in self.ranked if r.path == found), None)

    def key_fields(self, path: str) -> tuple[str, ...]:
        """The fields that match the records of the list at ``path`` (none: by ``id``)."""
        found = generic(path)
        return next((fields for at, fields in self.keys if at == found), ())


def diff(
    control: Any, candidate: Any, options: DiffOptions = DiffOptions(), path: str = "$"
) -> list[Difference]:
    """Return every difference of ``candidate`` from ``control``, in document order."""
    kc, kd = _kind(control), _kind(candidate)
    if kc != kd:
        return [Difference(path, "type", control, candidate)]
    if kc == "object":
        return _objects(control, candidate, options, path)
    if kc == "array":
        return _arrays(control, candidate, options, path)
    if kc == "number" and math.isclose(
        control, candidate, rel_tol=options.tolerance, abs_tol=options.tolerance
    ):
        return []
    return [] if control == candidate else [Difference(path, "changed", control, candidate)]


def _objects(
    control: dict[str, Any], candidate: dict[str, Any], options: DiffOptions, path: str
) -> list[Difference]:
    out: list[Difference] = []
    for key, value in control.items():
        where = f"{path}.{key}"
        if key not in candidate:
            out.append(Difference(where, "missing", value, None))
        else:
            out += diff(value, candidate[key], options, where)
    out += [
        Difference(f"{path}.{k}", "extra", None, v)
        for k, v in candidate.items()
        if k not in control
    ]
    return out


def _ids(items: list[Any], fields: tuple[str, ...] = ()) -> list[Any] | None:
    """Return the items' identities (their ``id``, or the tuple of ``fields``) when every
    item is an object with a distinct one."""
    if fields:
        ids: list[Any] = [
            tuple(item.get(f) for f in fields) if isinstance(item, dict) else None for item in items
        ]
    else:
        ids = [item.get("id") if isinstance(item, dict) else None for item in items]
    if None in ids or len(set(map(repr, ids))) != len(ids):
        return None
    return ids


def _named(fields: tuple[str, ...], identity: Any) -> str:
    """A keyed record's place in a path: ``[name="Alice"]``."""
    values = (orjson.dumps(v).decode() for v in identity)
    return "[" + ",".join(f"{f}={v}" for f, v in zip(fields, values, strict=True)) + "]"


def _records(
    control: list[Any],
    candidate: list[Any],
    options: DiffOptions,
    path: str,
    ids: tuple[list[Any], list[Any]],
    fields: tuple[str, ...] = (),
) -> list[Difference]:
    """Compare lists of records by identity: a moved record is one order difference, not
    many; a keyed record's path names it."""
    left, right = ids

    def at(n: int, ident: Any) -> str:
        return path + (_named(fields, ident) if fields else f"[{n}]")

    where = {repr(i): n for n, i in enumerate(right)}
    out: list[Difference] = []
    for n, (ident, item) in enumerate(zip(left, control, strict=True)):
        if repr(ident) in where:
            out += diff(item, candidate[where[repr(ident)]], options, at(n, ident))
        else:
            out.append(Difference(at(n, ident), "missing", item, None))
    known = {repr(i) for i in left}
    out += [
        Difference(at(n, ident), "extra", None, item)
        for n, (ident, item) in enumerate(zip(right, candidate, strict=True))
        if repr(ident) not in known
    ]
    common = [repr(i) for i in left if repr(i) in where]
    moved = common != [repr(i) for i in right if repr(i) in known]
    if moved and generic(path) not in options.unordered:
        out.insert(0, Difference(path, "order", None, None))
    return out


def _ranked(
    control: list[Any], candidate: list[Any], options: DiffOptions, path: str, rule: Ranked
) -> list[Difference]:
    """Compare the top results by identity and rank, then each result, its score aside."""
    left, right = control[: rule.top], candidate[: rule.top]
    fields = options.key_fields(path)
    left_ids, right_ids = _ids(left, fields), _ids(right, fields)
    if left_ids is None or right_ids is None:
        return _aligned(left, right, options, path)
    if left_ids != right_ids:
        shown = (list(map(_shown_id, left_ids)), list(map(_shown_id, right_ids)))
        return [Difference(path, "ranking", *shown)]
    out: list[Difference] = []
    for n, (a, b) in enumerate(zip(left, right, strict=True)):
        if isinstance(a, dict) and isinstance(b, dict) and rule.score in a:
            sa, sb = a.get(rule.score), b.get(rule.score)
            a = {k: v for k, v in a.items() if k != rule.score}
            b = {k: v for k, v in b.items() if k != rule.score}
            if rule.tolerance is not None and not _close(sa, sb, rule.tolerance):
                out.append(Difference(f"{path}[{n}].{rule.score}", "changed", sa, sb))
        out += diff(a, b, options, f"{path}[{n}]")
    return out


def _shown_id(identity: Any) -> Any:
    return identity[0] if isinstance(identity, tuple) and len(identity) == 1 else identity


def _close(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=tolerance, abs_tol=1e-12)
    return bool(a == b)


def _arrays(
    control: list[Any], candidate: list[Any], options: DiffOptions, path: str
) -> list[Difference]:
    ranked = options.ranking(path)
    if ranked is not None:
        return _ranked(control, candidate, options, path, ranked)
    fields = options.key_fields(path)
    left_ids, right_ids = _ids(control, fields), _ids(candidate, fields)
    if left_ids is not None and right_ids is not None and (control or candidate):
        return _records(control, candidate, options, path, (left_ids, right_ids), fields)
    if generic(path) in options.unordered:
        control = sorted(control, key=_canonical)
        candidate = sorted(candidate, key=_canonical)
    elif (
        len(control) == len(candidate)
        and control != candidate
        and sorted(map(_canonical, control)) == sorted(map(_canonical, candidate))
    ):
        return [Difference(path, "order", None, None)]
    return _aligned(control, candidate, options, path)


def _aligned(
    control: list[Any], candidate: list[Any], options: DiffOptions, path: str
) -> list[Difference]:
    """Compare lists without identities by aligning equal items (a longest common
    subsequence): one missing item is one ``missing``, not a cascade of ``changed``."""
    matcher = difflib.SequenceMatcher(
        None, [_canonical(v) for v in control], [_canonical(v) for v in candidate], autojunk=False
    )
    out: list[Difference] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        paired = min(i2 - i1, j2 - j1)
        for k in range(paired):  # replaced in place: compared field by field
            out += diff(control[i1 + k], candidate[j1 + k], options, f"{path}[{i1 + k}]")
        out += [
            Difference(f"{path}[{i}]", "missing", control[i], None) for i in range(i1 + paired, i2)
        ]
        out += [
            Difference(f"{path}[{j}]", "extra", None, candidate[j]) for j in range(j1 + paired, j2)
        ]
    return out
