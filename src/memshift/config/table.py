"""A TOML table being read: typed getters whose refusals name the dotted key."""

from __future__ import annotations

from typing import Any, TypeVar

from memshift.errors import ConfigError

T = TypeVar("T")


class Table:
    """A TOML table being read: typed getters that name the dotted key on refusal."""

    def __init__(self, data: Any, prefix: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(prefix, "must be a table")
        self.data: dict[str, Any] = data
        self.prefix = prefix
        self.read: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(self, name: str, kind: type[T] | tuple[type, ...], default: Any, what: str) -> Any:
        self.read.add(name)
        if name not in self.data:
            if default is ...:
                raise ConfigError(self.key(name), "is required")
            return default
        value = self.data[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ConfigError(self.key(name), f"must be {what}")
        return value

    def text(self, name: str, default: Any = ...) -> str:
        return str(self.get(name, str, default, "a string"))

    def flag(self, name: str, default: bool) -> bool:
        return bool(self.get(name, bool, default, "true or false"))

    def number(self, name: str, default: Any, low: float, high: float) -> float:
        value = self.get(name, (int, float), default, "a number")
        if not low <= value <= high:
            raise ConfigError(self.key(name), f"must be {low:g}..{high:g}")
        return float(value)

    def integer(self, name: str, default: Any, low: int, high: int) -> int:
        value = self.get(name, int, default, "an integer")
        if not low <= value <= high:
            raise ConfigError(self.key(name), f"must be {low}..{high}")
        return int(value)

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> Any:
        value = self.text(name, default)
        if value not in options:
            raise ConfigError(self.key(name), f"must be one of {', '.join(options)}")
        return value

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(name, list, list(default), "a list of strings")
        if not all(isinstance(v, str) and v for v in value):
            raise ConfigError(self.key(name), "must be a list of non-empty strings")
        return tuple(value)

    def table(self, name: str) -> Table:
        self.read.add(name)
        return Table(self.data.get(name, {}), self.key(name))

    def done(self) -> None:
        """Refuse any key that was never read."""
        for name in self.data:
            if name not in self.read:
                raise ConfigError(self.key(name), "is not a known setting")
