"""What the fuzz suites share: their size, a tally of answers, fresh databases."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_ENV, pg_schemas

# Examples per operation and target; the default fits the default run's time.
FUZZ_EXAMPLES = int(os.environ.get("MEMSHIFT_FUZZ_EXAMPLES", "12"))


class Found:
    """A tally of the answers a fuzz run got, by status class."""

    def __init__(self) -> None:
        self.by_class: Counter[str] = Counter()

    def count(self, status: int) -> None:
        self.by_class[f"{status // 100}xx"] += 1

    @property
    def server_errors(self) -> int:
        return self.by_class["5xx"]

    def summary(self) -> str:
        tried = sum(self.by_class.values())
        classes = ", ".join(f"{k} {v}" for k, v in sorted(self.by_class.items()))
        return f"{tried} requests ({classes}), 5xx: {self.server_errors}"


@contextlib.contextmanager
def fresh_database(kind: str, tmp: Path) -> Iterator[Callable[[str], str]]:
    """Make fresh databases of ``kind`` by name: SQLite files, or PostgreSQL schemas
    (dropped afterwards). PostgreSQL without ``MEMSHIFT_TEST_PG_URL`` is a skip."""
    if kind == "sqlite":
        yield lambda name: f"sqlite:///{tmp}/{name}-{uuid.uuid4().hex[:6]}.db"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"set {PG_ENV} to run the PostgreSQL tests")
    with pg_schemas(base, "fuzz") as make:
        yield lambda _name: make()
