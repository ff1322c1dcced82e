"""A small JSONPath subset to name places in JSON documents.

Supported: ``$`` (the root), ``.name``, ``["name"]``, ``[*]`` (every list item),
``[N]`` (one item) and ``..name`` (``name`` at any depth). Settings use it to say where
ids sit in requests and answers (``$.items[*].context_id``) and which fields a compare
ignores (``$..updated_at``). Parsing happens once, when settings load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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
    # The key of a path of one key (``$.id``), the most common kind: read without
    # walking (an id is read at such a path several times per write).
    only_key: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        one = len(self.steps) == 1 and self.steps[0].kind == "key"
        object.__setattr__(self, "only_key", self.steps[0].key if one else None)

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


def _children(value: Any, step: Step, out: list[tuple[Any, Any]]) -> None:
    """Add ``(container, key)`` of each place ``step`` reaches from ``value`` to ``out``."""
    if step.kind == "key":
        if isinstance(value, dict) and step.key in value:
            out.append((value, step.key))
    elif step.kind == "all":
        if isinstance(value, list):
            out += [(value, i) for i in range(len(value))]
    elif step.kind == "index":
        if isinstance(value, list) and step.index < len(value):
            out.append((value, step.index))
    else:
        _deep(value, step.key, out)


def _deep(value: Any, key: str, out: list[tuple[Any, Any]]) -> None:
    # Recursion into containers only, appending to one list: a shadow read walks every
    # answer for ``$..updated_at``, and nested generators cost several times as much.
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                out.append((value, k))
            if isinstance(v, dict | list):
                _deep(v, key, out)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                _deep(item, key, out)


def places(doc: Any, path: Path) -> list[tuple[Any, Any]]:
    """Return ``(container, key)`` for every place ``path`` names in ``doc``."""
    frontier: list[tuple[Any, Any]] = [({"$": doc}, "$")]
    for step in path.steps:
        if step.kind == "key":  # the usual step, without a call per place
            key = step.key
            frontier = [
                (value, key)
                for c, k in frontier
                if isinstance(value := c[k], dict) and key in value
            ]
        else:
            reached: list[tuple[Any, Any]] = []
            for c, k in frontier:
                _children(c[k], step, reached)
            frontier = reached
    return frontier


def values(doc: Any, path: Path) -> list[Any]:
    """Return the values ``path`` names in ``doc``."""
    key = path.only_key
    if key is not None:
        return [doc[key]] if isinstance(doc, dict) and key in doc else []
    return [container[key] for container, key in places(doc, path)]


def document_of(body: bytes | None) -> Any:
    """The JSON document in ``body``; None when it is empty or not JSON.

    Bodies come from stores and clients: not every one of them is JSON.
    """
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
