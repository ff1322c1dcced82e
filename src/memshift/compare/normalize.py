"""Normalization before a diff: an ordered list of small rules, one signature each.

A rule takes a parsed JSON document and returns it normalized (it may change it in
place). Settings build the list: fields to ignore by path (``$..updated_at``), and the
store's ids already translated by the proxy before the documents get here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from memshift import jsonpath

Rule = Callable[[Any], Any]
SECRET_FIELDS = frozenset({"token", "authorization", "password", "secret", "api_key"})
MAX_SAMPLE_CHARS = 200


def ignore(paths: Sequence[jsonpath.Path]) -> Rule:
    """Return a rule that removes the values at ``paths``."""

    def rule(doc: Any) -> Any:
        for path in paths:
            for container, key in reversed(jsonpath.places(doc, path)):
                if isinstance(container, dict):
                    container.pop(key, None)
        return doc

    return rule


def apply(rules: Sequence[Rule], doc: Any) -> Any:
    """Run ``rules`` over ``doc`` in order."""
    for rule in rules:
        doc = rule(doc)
    return doc


def redact(value: Any) -> Any:
    """Return ``value`` fit for a report: secrets masked, long text cut."""
    if isinstance(value, dict):
        return {k: "***" if k.lower() in SECRET_FIELDS else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value[:20]] + (["…"] if len(value) > 20 else [])
    if isinstance(value, str) and len(value) > MAX_SAMPLE_CHARS:
        return value[:MAX_SAMPLE_CHARS] + f"… ({len(value)} characters)"
    return value
