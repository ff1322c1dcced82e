"""The operation mix and content sizes of a load test, parsed from their flags."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Generic, TypeVar

from memshift.errors import ConfigError

OPERATIONS = ("create", "read", "search", "update")
DEFAULT_MIX = "create=20,read=60,search=15,update=5"
# Most memories are short; a few are whole documents.
DEFAULT_SIZES = "100=40,1000=30,10000=20,50000=7,100000=3"
MAX_SIZE = 16_000_000

T = TypeVar("T", str, int)


@dataclass(frozen=True)
class Weighted(Generic[T]):
    """Values drawn at random in proportion to their weights."""

    values: tuple[T, ...]
    weights: tuple[float, ...]

    def shares(self) -> dict[str, float]:
        """Each value's share of the draws, in percent."""
        total = sum(self.weights)
        return {
            str(v): round(100 * w / total, 2)
            for v, w in zip(self.values, self.weights, strict=True)
        }

    def draw(self, rnd: random.Random) -> T:
        """Return one value, drawn with ``rnd``."""
        return rnd.choices(self.values, weights=self.weights)[0]


def _pairs(text: str, flag: str) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ConfigError(flag, f"empty item in {text!r}")
        name, sep, weight = item.partition("=")
        if not sep:
            out.append((name.strip(), 1.0))
            continue
        try:
            value = float(weight)
        except ValueError:
            raise ConfigError(
                flag, f"weight of {name.strip()!r} is not a number: {weight!r}"
            ) from None
        if not 0 <= value < float("inf"):
            raise ConfigError(flag, f"weight of {name.strip()!r} must be 0 or more")
        out.append((name.strip(), value))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ConfigError(flag, f"an item is given twice in {text!r}")
    if not any(w > 0 for _, w in out):
        raise ConfigError(flag, "at least one weight must be above 0")
    return out


def parse_mix(text: str) -> Weighted[str]:
    """Parse ``create=20,read=60,...``; operations left out are not run."""
    pairs = _pairs(text, "--mix")
    for name, _ in pairs:
        if name not in OPERATIONS:
            raise ConfigError(
                "--mix", f"unknown operation {name!r} (known: {', '.join(OPERATIONS)})"
            )
    return Weighted(tuple(n for n, _ in pairs), tuple(w for _, w in pairs))


def _size(text: str) -> int:
    lowered = text.lower().removesuffix("b")
    scale = 1
    if lowered.endswith("k"):
        lowered, scale = lowered[:-1], 1000
    elif lowered.endswith("m"):
        lowered, scale = lowered[:-1], 1_000_000
    try:
        size = int(lowered) * scale
    except ValueError:
        raise ConfigError("--sizes", f"not a size in bytes: {text!r}") from None
    if not 1 <= size <= MAX_SIZE:
        raise ConfigError("--sizes", f"sizes must be 1..{MAX_SIZE} bytes, not {text!r}")
    return size


def parse_sizes(text: str) -> Weighted[int]:
    """Parse ``100,1000,10k`` (equal shares) or ``100=40,1000=30`` (weighted)."""
    pairs = [(_size(name), weight) for name, weight in _pairs(text, "--sizes")]
    if len({s for s, _ in pairs}) != len(pairs):
        raise ConfigError("--sizes", f"a size is given twice in {text!r}")
    return Weighted(tuple(s for s, _ in pairs), tuple(w for _, w in pairs))
