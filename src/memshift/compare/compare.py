"""Compare two observations of one read: status and body, after normalization.

Scientist's model: an ``Observation`` of each store and a ``Comparison`` frozen once
made. Control is always the legacy store's answer, candidate the new store's, with
the candidate's ids already translated to legacy's.

Every comparison ends as one verdict an operator can act on:

- ``matched``: no difference, once normalized;
- ``mismatched``: a real difference: the only verdict the mismatch rate counts;
- ``pending``: the record is not on the other store yet (no id pair, a write to it
  waiting in the backlog, or, before the first complete backfill, records the other
  store simply lacks): how much is left to copy, not a difference;
- ``inflight``: a write to the record was on its way while it was read;
- ``noise``: only paths known to differ between two reads of one store;
- ``error``: the other store failed (timeout, unreachable, 5xx): its health counts it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from memshift.compare.diff import Difference, DiffOptions, diff, generic
from memshift.compare.normalize import Rule, apply

Verdict = Literal["matched", "mismatched", "pending", "inflight", "noise", "error"]
VERDICTS: tuple[Verdict, ...] = ("matched", "mismatched", "pending", "inflight", "noise", "error")
JUDGED: frozenset[str] = frozenset({"matched", "mismatched", "noise"})  # what rates count

# Why one store gave no answer to compare, as ``Observation.error`` says it.
NO_PAIR = "the record has no pair in this store"
UNPAIRED_ANSWER = "answer names records legacy does not have"
NOT_THERE_YET = frozenset({NO_PAIR, UNPAIRED_ANSWER})


@dataclass(frozen=True)
class Observation:
    """One store's answer to a read (or why there was none) and how long it took."""

    store: str
    status: int | None
    body: Any
    error: str | None = None
    duration_s: float = 0.0


@dataclass(frozen=True)
class Comparison:
    """The verdict on one read compared across the stores."""

    route: str
    verdict: Verdict
    differences: tuple[Difference, ...]
    noise: tuple[Difference, ...]
    control: Observation
    candidate: Observation


def _status(o: Observation) -> Any:
    return o.error if o.error else o.status


def differences(
    control: Observation, candidate: Observation, rules: Sequence[Rule], options: DiffOptions
) -> list[Difference]:
    """Return how ``candidate`` differs from ``control``: status first, then body."""
    out = []
    if _status(control) != _status(candidate):
        out.append(Difference("$status", "changed", _status(control), _status(candidate)))
    if control.error or candidate.error:
        return out
    left = apply(rules, _copy(control.body))
    right = apply(rules, _copy(candidate.body))
    if _identical(left, right):  # most reads: no walk of the documents needed
        return out
    return out + diff(left, right, options)


def _identical(left: Any, right: Any) -> bool:
    """Whether two normalized documents are the same JSON, key order and types included.

    Then ``diff`` would find nothing; comparing their encodings is many times faster.
    """
    try:
        return orjson.dumps(left) == orjson.dumps(right)
    except orjson.JSONEncodeError:
        return False


def _copy(body: Any) -> Any:
    """A copy of a parsed answer for normalization to change, made by orjson.

    A body is what JSON parsing gave (or a string): a round trip through orjson
    copies it exactly, several times faster than ``copy.deepcopy``.
    """
    if isinstance(body, dict | list):
        try:
            return orjson.loads(orjson.dumps(body))
        except orjson.JSONEncodeError:  # not plain JSON after all
            return copy.deepcopy(body)
    return body


def _failed(o: Observation, other: Observation) -> bool:
    """Whether ``o`` is a store's failure rather than an answer to compare."""
    if o.error is not None:
        return o.error not in NOT_THERE_YET
    return o.status is not None and o.status >= 500 and (other.status or 0) < 500


def _lacking(found: Sequence[Difference]) -> bool:
    """Whether the candidate only lacks what the control has: a 404 where the control
    found the record, or records missing from a list."""
    if any(d.path == "$status" and d.candidate == 404 and d.control == 200 for d in found):
        return True
    return bool(found) and all(d.kind == "missing" for d in found)


def judge(
    route: str,
    found: Sequence[Difference],
    control: Observation,
    candidate: Observation,
    *,
    noise_paths: set[str],
    inflight: bool,
    pending: bool = False,
    backfilled: bool = True,
) -> Comparison:
    """Return the verdict on differences ``found`` between two observations of one read.

    ``pending``: the record is known not to be on the other store yet (a write to it
    waits in the backlog, or the answer names records with no pair). ``backfilled``:
    a backfill has completed, so what the candidate lacks is no longer expected.
    """
    noise = tuple(d for d in found if generic(d.path) in noise_paths)
    real = tuple(d for d in found if generic(d.path) not in noise_paths)
    verdict: Verdict
    if not found:
        verdict = "matched"
    elif _failed(control, candidate) or _failed(candidate, control):
        verdict = "error"
    elif (
        pending
        or control.error in NOT_THERE_YET
        or candidate.error in NOT_THERE_YET
        or (not backfilled and _lacking(real))
    ):
        verdict = "pending"
    elif inflight:
        verdict = "inflight"
    elif real:
        verdict = "mismatched"
    else:
        verdict = "noise"
    return Comparison(route, verdict, real, noise, control, candidate)
