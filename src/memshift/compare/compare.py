"""Compare two observations of one read: status and body, after normalization.

Scientist's model: an ``Observation`` of each store and a ``Comparison`` frozen once
made. Control is always the legacy store's answer, candidate the new store's, with
the candidate's ids already translated to legacy's.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from memshift.compare.diff import Difference, DiffOptions, diff, generic
from memshift.compare.normalize import Rule, apply

Verdict = Literal["matched", "mismatched", "inflight", "noise"]


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


def judge(
    route: str,
    found: Sequence[Difference],
    control: Observation,
    candidate: Observation,
    *,
    noise_paths: set[str],
    inflight: bool,
) -> Comparison:
    """Return the verdict on differences ``found`` between two observations of one read."""
    noise = tuple(d for d in found if generic(d.path) in noise_paths)
    real = tuple(d for d in found if generic(d.path) not in noise_paths)
    verdict: Verdict
    if not found:
        verdict = "matched"
    elif inflight:
        verdict = "inflight"
    elif real:
        verdict = "mismatched"
    else:
        verdict = "noise"
    return Comparison(route, verdict, real, noise, control, candidate)
