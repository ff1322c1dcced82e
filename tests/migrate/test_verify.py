"""``memshift verify``: equal stores pass; each missing, extra or different record is named."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest

from memshift import logs
from memshift.cli import main
from memshift.migrate.verify import Marks
from memshift.store.api import STATE
from memshift.store.call import Call
from memshift.store.contexts import create_context
from memshift.store.memories import create_memory, delete_memory, update_memory
from memshift.store.relations import delete_relation
from memshift.store.tokens import Principal
from memshift.timestamps import parse_ts
from tests.proxy.conftest import SERVICE, USERS, MakeStack, auth
from tests.proxy.test_workload import TOLERANT, drained, user_session

ADMIN = Principal("ops", admin=True)
Sections = dict[str, dict[str, Any]]


async def _verify(config: Any, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, Any]:
    capsys.readouterr()  # what the stack logged before: not verify's output
    argv = ["verify", "--config", str(config), "--json", *extra]
    code = await asyncio.to_thread(main, argv)
    return code, orjson.loads(capsys.readouterr().out)


async def test_verify_names_each_difference(
    make_stack: MakeStack, capsys: pytest.CaptureFixture[str], copy_path: Sections
) -> None:
    """After a workload the stores verify equal; changes made behind the proxy are named,
    a change of only a reference too (its digest is the same: the ids are compared)."""
    logs.configure(level="warning", json=True)  # stdout is for verify's document only
    stack = await make_stack(seed=0, sections=copy_path)
    await asyncio.gather(
        *(user_session(stack.proxy, u, random.Random(i)) for i, u in enumerate(USERS[:3]))
    )
    await drained(stack)
    code, doc = await _verify(stack.config, capsys)
    assert (0, True) == (code, doc["equal"])
    assert doc["kinds"]["memory"]["checked"] >= 15
    listed = await (
        await stack.legacy.get(
            "/v1/memories?limit=1000", headers={"Authorization": "Bearer tok-svc"}
        )
    ).json()
    first, second = listed["items"][0]["id"], listed["items"][1]["id"]
    third = next(m["id"] for m in listed["items"][2:] if m["context_id"] is not None)
    pairs = await stack.core.idmap.translate("memory", [first, second, third], "legacy", "new")
    store = stack.new.server.app[STATE]
    call = Call(ADMIN, store.content)
    store.db.write_sync(lambda conn: delete_memory(conn, call, pairs[first]))
    store.db.write_sync(lambda conn: update_memory(conn, call, pairs[second], {"title": "x"}))
    copy = await (await stack.new.get(f"/v1/memories/{pairs[third]}", headers=SERVICE)).json()
    same = {"version": copy["version"], "updated_at": parse_ts(copy["updated_at"])}
    store.db.write_sync(
        lambda conn: update_memory(conn, call, pairs[third], {"context_id": None, **same})
    )
    store.db.write_sync(
        lambda conn: create_memory(conn, call, {"title": "stray", "content": "only in new"})
    )
    # A copy whose original is gone is extra too, though the id map still pairs it.
    fourth = next(m["id"] for m in listed["items"] if m["id"] not in (first, second, third))
    source = stack.legacy.server.app[STATE]
    source.db.write_sync(lambda conn: delete_memory(conn, Call(ADMIN, source.content), fourth))
    code, doc = await _verify(stack.config, capsys)
    memory = doc["kinds"]["memory"]
    assert (1, False, 1, 2, 2) == (
        code,
        doc["equal"],
        memory["missing"],
        memory["extra"],
        memory["differing"],
    )
    problems = {(s["problem"], s.get("id")) for s in memory["samples"]}
    assert {("missing", first), ("differing", second), ("differing", third)} <= problems
    paths = {
        s["id"]: {d["path"] for d in s["differences"]}
        for s in memory["samples"]
        if s["problem"] == "differing"
    }
    assert {"$.title", "$.version"} <= paths[second]
    assert {"$.context_id"} == paths[third]


async def test_verify_repair_makes_the_secondary_match(
    make_stack: MakeStack, capsys: pytest.CaptureFixture[str], copy_path: Sections
) -> None:
    """Missing, extra and differing records of each kind are fixed; verify then exits 0."""
    logs.configure(level="warning", json=True)
    sections = {**TOLERANT, **copy_path}
    stack = await make_stack(seed=0, read_percent=100, sections=sections)  # reads stay on new
    await asyncio.gather(
        *(user_session(stack.proxy, u, random.Random(i)) for i, u in enumerate(USERS[:2]))
    )
    await drained(stack)
    legacy = await (await stack.legacy.get("/v1/memories?limit=1000", headers=SERVICE)).json()
    lost, changed = legacy["items"][0]["id"], legacy["items"][1]["id"]
    owner = legacy["items"][0]["owner"]
    pairs = await stack.core.idmap.translate("memory", [lost, changed], "legacy", "new")
    rels = await (await stack.new.get("/v1/memories?limit=1000", headers=SERVICE)).json()
    found = []
    for memory in rels["items"]:
        path = f"/v1/memories/{memory['id']}/relations"
        found += (await (await stack.new.get(path, headers=SERVICE)).json())["items"]
    relation = found[0]
    store = stack.new.server.app[STATE]
    call = Call(ADMIN, store.content)

    def tamper(conn: Any) -> None:
        delete_relation(conn, call, relation["id"])
        delete_memory(conn, call, pairs[lost])
        update_memory(conn, call, pairs[changed], {"title": "x", "metadata": {"k": 1}})
        create_memory(conn, call, {"title": "stray", "content": "only in new"})
        ctx = create_context(conn, call, {"name": "stray context"})
        create_memory(conn, call, {"title": "in stray", "content": "c", "context_id": ctx["id"]})

    store.db.write_sync(tamper)
    code, doc = await _verify(stack.config, capsys)
    assert (1, 1, 1, 2, 1, 1) == (
        code,
        doc["kinds"]["memory"]["missing"],
        doc["kinds"]["memory"]["differing"],
        doc["kinds"]["memory"]["extra"],
        doc["kinds"]["context"]["extra"],
        doc["kinds"]["relation"]["missing"] + doc["kinds"]["relation"]["differing"],
    )
    code, doc = await _verify(stack.config, capsys, "--repair")
    assert (0, True) == (code, doc["equal"]), doc
    repaired = doc["repaired"]
    assert (2, 1, 3, []) == (
        repaired["created"],
        repaired["updated"],
        repaired["deleted"],
        repaired["not_repaired"],
    )
    code, doc = await _verify(stack.config, capsys)
    assert (0, True) == (code, doc["equal"])
    async with asyncio.timeout(5):  # proxies reload pairs a repair replaced
        while True:
            resp = await stack.proxy.get(f"/v1/memories/{lost}", headers=auth(owner))
            if resp.status == 200 and resp.headers["X-Memshift-Served-By"] == "new":
                break
            await asyncio.sleep(0.1)


def test_marks_keep_small_ids_as_bits_and_others_as_well() -> None:
    marks = Marks()
    for record_id in (0, 7, 8, 100_000, Marks.BITS, -1, "key:a"):
        marks.add(record_id)
    for record_id in (0, 7, 8, 100_000, Marks.BITS, -1, "key:a"):
        assert record_id in marks
    for record_id in (1, 9, 99_999, 100_001, 5_000_000, Marks.BITS + 1, "key:b", True):
        assert record_id not in marks
    assert len(marks.bits) < 100_000  # a bit each, not a byte
