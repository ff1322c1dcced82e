"""A small JSONPath subset to name places in JSON documents.

Supported: ``$`` (the root), ``.name``, ``["name"]``, ``[*]`` (every list item),
``[N]`` (one item) and ``..name`` (``name`` at any depth). Settings use it to say where
ids sit in requests and answers (``$.items[*].context_id``) and which fields a compare
ignores (``$..updated_at``). Parsing happens once, when settings load.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

_STEP = re.compile(
    r"""\.\.(?P<deep>[A-Za-z_][\w-]*)|\.(?P<name>[A-Za-z_][\w-]*)|\[(?:(?P<star>\*)|(?P<index>\d+)|"(?P<quoted>[^"]+)")\]"""
)


@dataclass(frozen=True)
class Step:
    """One step of a path: a key, every item (``*``), an index, or a key at any depth."""

    kind: str  # "key" | "all" | "index" | "deep"
    key: str = ""
    index: int = 0


@dataclass(frozen=True)
class Path:
    """A parsed path; ``text`` is how it was written."""

    text: str
    steps: tuple[Step, ...]

    def __str__(self) -> str:
        return self.text


def parse(text: str) -> Path:
    """Parse ``text``; raise ``ValueError`` if it is not a path of the supported subset."""
    if not text.startswith("$"):
        raise ValueError(f"a path starts with $: {text!r}")
    steps: list[Step] = []
    at = 1
    while at < len(text):
        match = _STEP.match(text, at)
        if match is None:
            raise ValueError(f"cannot read {text!r} at character {at}")
        if match["deep"]:
            steps.append(Step("deep", key=match["deep"]))
        elif match["name"] or match["quoted"]:
            steps.append(Step("key", key=match["name"] or match["quoted"]))
        elif match["star"]:
            steps.append(Step("all"))
        else:
            steps.append(Step("index", index=int(match["index"])))
        at = match.end()
    return Path(text, tuple(steps))


def _children(value: Any, step: Step) -> Iterator[tuple[Any, Any]]:
    """Yield ``(container, key)`` of each place ``step`` reaches from ``value``."""
    if step.kind == "key" and isinstance(value, dict) and step.key in value:
        yield value, step.key
    elif step.kind == "all" and isinstance(value, list):
        yield from ((value, i) for i in range(len(value)))
    elif step.kind == "index" and isinstance(value, list) and step.index < len(value):
        yield value, step.index
    elif step.kind == "deep":
        yield from _deep(value, step.key)


def _deep(value: Any, key: str) -> Iterator[tuple[Any, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                yield value, k
            yield from _deep(v, key)
    elif isinstance(value, list):
        for item in value:
            yield from _deep(item, key)


def places(doc: Any, path: Path) -> list[tuple[Any, Any]]:
    """Return ``(container, key)`` for every place ``path`` names in ``doc``."""
    frontier: list[tuple[Any, Any]] = [({"$": doc}, "$")]
    for step in path.steps:
        if step.kind == "key":  # the usual step, without a generator per place
            key = step.key
            frontier = [
                (value, key)
                for c, k in frontier
                if isinstance(value := c[k], dict) and key in value
            ]
        else:
            frontier = [pair for c, k in frontier for pair in _children(c[k], step)]
    return frontier


def values(doc: Any, path: Path) -> list[Any]:
    """Return the values ``path`` names in ``doc``."""
    return [container[key] for container, key in places(doc, path)]


def update(doc: Any, path: Path, fn: Callable[[Any], Any]) -> None:
    """Replace, in place, every value ``path`` names in ``doc`` with ``fn(value)``."""
    for container, key in places(doc, path):
        container[key] = fn(container[key])


def document_of(body: bytes | None) -> Any:
    """The JSON document in ``body``; None when it is empty or not JSON.

    Bodies come from stores and clients: not every one of them is JSON.
    """
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
