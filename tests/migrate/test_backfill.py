"""``memshift backfill``: old records copied exactly once, safely while traffic flows."""

from __future__ import annotations

import asyncio
import io
import random
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from memshift import logs
from memshift.cli import main
from memshift.config.load import load_settings
from memshift.errors import IntegrityError
from memshift.migrate.backfill import CHECKPOINT, REPORT, Backfill, Options
from memshift.migrate.verify import summary, verify
from memshift.statedb import load_doc, open_state
from tests.migrate.conftest import Seeded, seed_store
from tests.proxy.conftest import SERVICE, USERS, MakeForwarder, MakeStack, Stack, auth
from tests.proxy.test_workload import TOLERANT, drained, user_session

FAST_REPLAY = {"mirror": {"replay_interval_s": 0.2}, **TOLERANT}
CREATES = ("/v1/memories", "/v1/bulk/import/memory")
Sections = dict[str, dict[str, Any]]


async def backfill(config: Path, **options: Any) -> dict[str, Any]:
    """Run a backfill in this process, as ``memshift backfill`` does."""
    settings = load_settings(config)
    state = open_state(settings.state.url)
    try:
        return await Backfill(settings, state, Options(**options), io.StringIO()).run()
    finally:
        state.close()


async def verified(config: Path) -> dict[str, Any]:
    """Return verify's document for the stores of ``config``."""
    settings = load_settings(config)
    state = open_state(settings.state.url)
    try:
        results, _ = await verify(settings, state, "legacy")
    finally:
        state.close()
    return summary(results, "legacy")


async def count(client: TestClient[Any, Any], path: str) -> int:
    """Count the records of a list endpoint, walking every page."""
    total, cursor = 0, ""
    while True:
        page = await (await client.get(f"{path}?limit=500&cursor={cursor}", headers=SERVICE)).json()
        total += len(page["items"])
        if not page["next_cursor"]:
            return total
        cursor = page["next_cursor"]


async def old_records_session(
    proxy: TestClient[Any, Any], user: str, seeded: Seeded, rnd: random.Random, writes: int
) -> None:
    """Change records that predate the proxy, through it, while backfill copies them."""
    me = auth(user)
    memories = list(seeded.memories[user])
    contexts = seeded.contexts[user]
    for _ in range(writes):
        op = rnd.random()
        if op < 0.45:
            target = rnd.choice(memories)
            body = {"title": f"changed {rnd.random()}", "content": f"changed by {user}"}
            resp = await proxy.patch(f"/v1/memories/{target}", json=body, headers=me)
        elif op < 0.65:
            body = {"title": "new in old", "content": "fresh", "context_id": rnd.choice(contexts)}
            resp = await proxy.post("/v1/memories", json=body, headers=me)
        elif op < 0.8:
            source, target = rnd.sample(memories, 2)
            body = {"name": "later", "source_id": source, "target_id": target}
            resp = await proxy.post("/v1/relations", json=body, headers=me)
        elif op < 0.9:
            gone = memories.pop(rnd.randrange(len(memories)))
            resp = await proxy.delete(f"/v1/memories/{gone}", headers=me)
        else:
            target = rnd.choice(contexts)
            body = {"description": f"now {rnd.random()}"}
            resp = await proxy.patch(f"/v1/contexts/{target}", json=body, headers=me)
        assert resp.status in (200, 201, 204), await resp.text()
        await asyncio.sleep(rnd.random() * 0.02)


@pytest.mark.slow
async def test_backfill_during_live_traffic_leaves_stores_equal(
    make_stack: MakeStack, copy_path: Sections
) -> None:
    """5,000 old records are copied while clients change old and new ones through the proxy."""
    stack = await make_stack(seed=0, sections={**FAST_REPLAY, **copy_path})
    seeded = seed_store(stack.legacy, contexts=200, memories=3000, relations=1800)
    assert 5000 == seeded.total
    traffic = [
        *(
            old_records_session(stack.proxy, u, seeded, random.Random(i), 40)
            for i, u in enumerate(USERS[:4])
        ),
        *(user_session(stack.proxy, u, random.Random(i)) for i, u in enumerate(USERS[4:8])),
    ]
    report, *_ = await asyncio.gather(backfill(stack.config, batch=200, settle_s=60), *traffic)
    assert report["complete"], orjson.dumps(
        {k: v for k, v in report.items() if k != "kinds"} | report["kinds"]
    ).decode()
    kinds = report["kinds"]
    assert seeded.total <= sum(k["seen"] for k in kinds.values())
    assert 0.8 * seeded.total <= sum(k["copied"] for k in kinds.values())
    await drained(stack)
    doc = await verified(stack.config)
    assert doc["equal"], orjson.dumps(doc["kinds"]).decode()[:3000]
    for path in ("/v1/contexts", "/v1/memories"):  # nothing was created twice
        assert await count(stack.legacy, path) == await count(stack.new, path)


async def test_backlog_writes_of_an_old_record_are_taken_over(
    make_stack: MakeStack, copy_path: Sections
) -> None:
    """A change to a record new lacks waits in the backlog; its copy holds it, so it is not
    applied twice, and later changes are mirrored as usual."""
    stack = await make_stack(seed=0, sections={**FAST_REPLAY, **copy_path})
    seeded = seed_store(stack.legacy, contexts=1, memories=2, relations=0, owners=1)
    old = seeded.memories[USERS[0]][0]
    me = auth(USERS[0])
    resp = await stack.proxy.patch(f"/v1/memories/{old}", json={"title": "v2"}, headers=me)
    assert 200 == resp.status
    assert 1 == (await stack.core.writelog.figures())["backlog"]  # waiting for a pair
    report = await backfill(stack.config)
    assert (1, True) == (report["kinds"]["memory"]["writes_taken_over"], report["complete"])
    assert report["bulk"] is not bool(copy_path)
    await drained(stack)  # replay forgets the write backfill took over
    pair = (await stack.core.idmap.translate("memory", [old], "legacy", "new"))[old]
    copy = await (await stack.new.get(f"/v1/memories/{pair}", headers=SERVICE)).json()
    assert ("v2", 2) == (copy["title"], copy["version"])
    resp = await stack.proxy.patch(f"/v1/memories/{old}", json={"title": "v3"}, headers=me)
    await drained(stack)
    copy = await (await stack.new.get(f"/v1/memories/{pair}", headers=SERVICE)).json()
    assert ("v3", 3) == (copy["title"], copy["version"])
    assert (await verified(stack.config))["equal"]


async def _saved(config: Path, name: str) -> Any:
    settings = load_settings(config)
    state = open_state(settings.state.url)
    try:
        return state.read_sync(lambda conn: load_doc(conn, name))
    finally:
        state.close()


async def _checkpoint_copied(config: Path) -> int:
    doc = await _saved(config, CHECKPOINT)
    return 0 if doc is None else sum(c["copied"] for c in doc["counts"].values())


async def test_backfill_killed_midway_resumes_without_duplicates(
    make_stack: MakeStack, copy_path: Sections
) -> None:
    """A backfill process killed with SIGKILL goes on from its checkpoint with --resume."""
    stack = await make_stack(seed=0, sections=copy_path)
    seed_store(stack.legacy, contexts=20, memories=500, relations=80)
    command = [sys.executable, "-m", "memshift", "--log-level", "warning", "backfill"]
    args = ["--config", str(stack.config), "--batch", "20", "--rate", "150"]
    process = await asyncio.create_subprocess_exec(*command, *args)
    try:
        async with asyncio.timeout(60):
            while await _checkpoint_copied(stack.config) < 150:
                assert process.returncode is None, "backfill ended before it was killed"
                await asyncio.sleep(0.1)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    assert 500 > await count(stack.new, "/v1/memories")  # killed before it was done
    resumed = await asyncio.create_subprocess_exec(*command, *args[:4], "--resume")
    assert 0 == await resumed.wait()
    report = await _saved(stack.config, REPORT)
    assert 500 == report["kinds"]["memory"]["seen"]  # went on from the checkpoint
    assert (await verified(stack.config))["equal"]
    assert 500 == await count(stack.new, "/v1/memories")
    assert 20 == await count(stack.new, "/v1/contexts")


async def test_a_copy_that_reads_back_wrong_stops_the_backfill(
    make_stack: MakeStack, make_forwarder: MakeForwarder, tmp_path: Path, copy_path: Sections
) -> None:
    """A new store that keeps something else than it was sent fails the integrity check."""
    stack = await make_stack(seed=0, sections=copy_path)
    seed_store(stack.legacy, contexts=2, memories=30, relations=0)
    new_url = str(stack.new.make_url("")).rstrip("/")

    async def corrupt(request: web.Request) -> web.StreamResponse | None:
        if request.method != "POST" or request.path not in CREATES:
            return None
        doc = await request.json()
        for record in [r["record"] for r in doc["records"]] if "records" in doc else [doc]:
            record["title"] = "something else"
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        async with stack.new.session.post(new_url + request.path, json=doc, headers=headers) as r:
            return web.json_response(await r.json(), status=r.status)

    forwarder = await make_forwarder(new_url, corrupt)
    config = tmp_path / "corrupt.toml"
    config.write_text(stack.config.read_text().replace(new_url, forwarder))
    with pytest.raises(IntegrityError) as raised:
        await backfill(config, batch=10, check_every=1)
    assert "$.title differs in new" in raised.value.problems[0]


async def test_backfill_command_prints_a_summary(
    make_stack: MakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """``memshift backfill --json`` reports per kind and exits 0 when complete."""
    logs.configure(level="warning", json=True)
    stack = await make_stack(seed=0)
    seed_store(stack.legacy, contexts=3, memories=12, relations=4)
    await _run_cli(stack, capsys, [])
    code, out = await _run_cli(stack, capsys, ["--json"])
    doc = orjson.loads(out)
    assert (0, True) == (code, doc["complete"])
    assert {"context": 3, "memory": 12, "relation": 4} == {
        k: v["present"] for k, v in doc["kinds"].items()
    }
    code, out = await _run_cli(stack, capsys, ["--batch", "0"])
    assert 2 == code


async def _run_cli(
    stack: Stack, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> tuple[int, str]:
    capsys.readouterr()
    argv = ["backfill", "--config", str(stack.config), *extra]
    try:
        code = await asyncio.to_thread(main, argv)
    except SystemExit as exc:  # argparse refuses a bad flag
        code = int(exc.code or 0)
    return code, capsys.readouterr().out
