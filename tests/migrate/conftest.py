"""Migration tests run against the same real stacks as the proxy tests."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Connection

from memshift.store.api import STATE
from memshift.store.call import Call
from memshift.store.contexts import create_context
from memshift.store.memories import create_memory
from memshift.store.relations import create_relation
from memshift.store.tokens import Principal
from tests.proxy.conftest import USERS, make_forwarder, make_proxy, make_stack  # noqa: F401

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()  # noqa: SIM905


@dataclass
class Seeded:
    """What was put straight into a store, by owner."""

    contexts: dict[str, list[int]] = field(default_factory=dict)
    memories: dict[str, list[int]] = field(default_factory=dict)
    relations: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (
            sum(map(len, self.contexts.values()))
            + sum(map(len, self.memories.values()))
            + len(self.relations)
        )


def _text(rnd: random.Random) -> str:
    """Mostly small content, some of tens of KiB (compressed and chunked by new)."""
    size = rnd.choice([60, 300, 1_500, 4_000]) if rnd.random() < 0.97 else rnd.randint(20, 100)
    words = size if size > 100 else size * 1024 // 6
    return " ".join(rnd.choice(WORDS) for _ in range(words))


def seed_store(
    client: Any, *, contexts: int, memories: int, relations: int, owners: int = 4, seed: int = 7
) -> Seeded:
    """Write records straight into a store's database, as if from before the proxy."""
    store = client.server.app[STATE]
    rnd = random.Random(seed)
    made = Seeded()
    users = USERS[:owners]

    def write(conn: Connection) -> None:
        for i in range(contexts):
            user = users[i % owners]
            call = Call(Principal(user), store.content)
            found = create_context(conn, call, {"name": f"old {i}", "description": f"d{i}"})
            made.contexts.setdefault(user, []).append(found["id"])
        for i in range(memories):
            user = users[i % owners]
            call = Call(Principal(user), store.content)
            in_context = rnd.random() < 0.7 and made.contexts.get(user)
            data: dict[str, Any] = {
                "title": f"old memory {i}",
                "content": _text(rnd),
                "context_id": rnd.choice(made.contexts[user]) if in_context else None,
                "access_level": rnd.choice(["private", "public"]),
                "metadata": {"n": i, "tags": [rnd.choice(WORDS)]},
            }
            made.memories.setdefault(user, []).append(create_memory(conn, call, data)["id"])
        for i in range(relations):
            user = users[i % owners]
            call = Call(Principal(user), store.content)
            source, target = rnd.sample(made.memories[user], 2)
            data = {"name": "links", "source_id": source, "target_id": target, "strength": 0.5}
            made.relations.append(create_relation(conn, call, data)["id"])

    store.db.write_sync(write)
    return made


@pytest.fixture(params=["bulk", "per_record"])
def copy_path(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    """Config sections for each way migration reads and writes records: the stores'
    bulk export and import (the reference profile's), or one request per record."""
    if request.param == "bulk":
        return {}
    return {"stores": {"legacy": {"bulk": ""}, "new": {"bulk": ""}}}
