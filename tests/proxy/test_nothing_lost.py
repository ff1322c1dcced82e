"""Nothing lost: outages, crashes and flaky answers leave both stores identical.

The stores run as real processes; a test stops and restarts them, or kills the proxy.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from memshift.cli import main
from memshift.proxy.keys import PROXY
from memshift.shadow.idmap import IdMap
from memshift.statedb import open_state
from tests.processes import StoreProcess, free_port, reap, start, stop, wait_http
from tests.proxy.conftest import ADMIN, TOKENS, MakeProxy, auth, echo_server
from tests.proxy.test_workload import assert_equal_stores

TOKENS_TOML = "".join(
    f'[tokens.{t}]\nuser = "{p.user}"\n' + ('role = "admin"\n' if p.admin else "")
    for t, p in TOKENS.items()
)
FAST = {
    "mirror": {
        "retry_attempts": 2,
        "retry_initial_s": 0.02,
        "retry_max_s": 0.1,
        "replay_interval_s": 0.3,
    }
}


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[str, StoreProcess]]:
    """A legacy and a new store, each its own process on SQLite."""
    procs = {
        name: StoreProcess(name, f"sqlite:///{tmp_path}/{name}.db", TOKENS_TOML)
        for name in ("legacy", "new")
    }
    for proc in procs.values():
        proc.start()
    yield procs
    for proc in procs.values():
        proc.stop()


@pytest.fixture
async def sessions(stores: dict[str, StoreProcess]) -> AsyncIterator[dict[str, Any]]:
    """HTTP sessions straight to each store, for comparing them."""
    made = {name: aiohttp.ClientSession(base_url=proc.url) for name, proc in stores.items()}
    yield made
    for session in made.values():
        await session.close()


async def _backlog(admin: Any) -> int:
    doc = await (await admin.get("/status", headers=ADMIN)).json()
    return int(doc["repair_backlog"])


async def _until_drained(core: Any, within: float = 60) -> None:
    async with asyncio.timeout(within):
        while core.writes.jobs.active or (await core.writelog.figures())["backlog"]:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_secondary_down_for_20_seconds(
    stores: dict[str, StoreProcess], sessions: dict[str, Any], make_proxy: MakeProxy
) -> None:
    """A steady workload through a 20 s outage of new: no client error, then equal stores."""
    proxy, admin = await make_proxy(
        stores["legacy"].url, stores["new"].url, write_mode="async", sections=FAST
    )
    core = proxy.server.app[PROXY]
    failures: list[int] = []
    done = asyncio.Event()
    peak = 0

    async def writer(user: str) -> None:
        last: int | None = None
        while not done.is_set():
            resp = await proxy.post(
                "/v1/memories",
                json={"title": user, "content": uuid.uuid4().hex},
                headers=auth(user),
            )
            if resp.status != 201:
                failures.append(resp.status)
            made = await resp.json()
            if last is not None:
                patch = await proxy.patch(
                    f"/v1/memories/{last}", json={"content": "edited"}, headers=auth(user)
                )
                if patch.status != 200:
                    failures.append(patch.status)
            last = made["id"]
            await asyncio.sleep(0.05)

    writers = [asyncio.ensure_future(writer(f"user{i}")) for i in range(3)]
    await asyncio.sleep(2)
    await asyncio.to_thread(stores["new"].stop)
    outage_ends = time.monotonic() + 20
    while time.monotonic() < outage_ends:
        peak = max(peak, await _backlog(admin))
        await asyncio.sleep(1)
    await asyncio.to_thread(stores["new"].start)
    await asyncio.sleep(2)
    done.set()
    await asyncio.gather(*writers)
    await _until_drained(core)
    assert ([], True) == (failures, peak > 20)
    await assert_equal_stores(sessions["legacy"], sessions["new"], core.idmap)


async def test_proxy_killed_mid_workload(
    stores: dict[str, StoreProcess], sessions: dict[str, Any], tmp_path: Path
) -> None:
    """SIGKILL the proxy while clients write; after restart and replay, stores are equal
    and nothing was created twice."""
    port, admin_port = free_port(), free_port()
    config = tmp_path / "proxy.toml"
    config.write_text(
        f'[proxy]\nlisten = "127.0.0.1:{port}"\n[admin]\nlisten = "127.0.0.1:{admin_port}"\n'
        'token = "adm"\n'
        f'[stores.legacy]\nurl = "{stores["legacy"].url}"\ntoken = "tok-svc"\n'
        f'[stores.new]\nurl = "{stores["new"].url}"\ntoken = "tok-svc"\n'
        '[routing]\nwrite_mode = "async"\n'
        "[mirror]\nretry_attempts = 2\nretry_initial_s = 0.02\nreplay_interval_s = 0.3\n"
        f'[state]\nurl = "sqlite:///{tmp_path}/state.db"\n'
    )
    proxy = start(["serve", "--config", str(config)])
    wait_http(f"http://127.0.0.1:{admin_port}/healthz", proxy)
    base = f"http://127.0.0.1:{port}"
    creates = 0

    async def client(user: str, http: aiohttp.ClientSession) -> None:
        nonlocal creates
        for i in range(60):
            await asyncio.sleep(0.03)
            key = uuid.uuid4().hex
            body = {"title": f"{user}-{i}", "content": "x" * random.randint(10, 2000)}
            async with asyncio.timeout(60):
                while True:  # a client that retries with its key until the proxy answers
                    try:
                        async with http.post(
                            f"{base}/v1/memories",
                            json=body,
                            headers={**auth(user), "Idempotency-Key": key},
                        ) as r:
                            if r.status == 201:
                                creates += 1
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)

    async with aiohttp.ClientSession() as http:
        clients = asyncio.gather(*(client(f"user{i}", http) for i in range(4)))
        await asyncio.sleep(1.0)
        proxy.send_signal(signal.SIGKILL)
        reap(proxy)
        await asyncio.sleep(0.5)
        proxy = start(["serve", "--config", str(config)])
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{admin_port}/healthz", proxy)
        assert creates < 240, "the proxy was killed after the workload, not during it"
        await clients
        async with asyncio.timeout(60):
            while True:
                async with http.get(
                    f"http://127.0.0.1:{admin_port}/status", headers={"Authorization": "Bearer adm"}
                ) as r:
                    status = await r.json()
                if not status["repair_backlog"]:
                    break
                await asyncio.sleep(0.2)
    stop(proxy)
    listed = await (
        await sessions["legacy"].get(
            "/v1/memories?limit=1000", headers={"Authorization": "Bearer tok-svc"}
        )
    ).json()
    assert (240, 240) == (creates, len(listed["items"]))
    state = open_state(f"sqlite:///{tmp_path}/state.db")
    try:
        await assert_equal_stores(sessions["legacy"], sessions["new"], IdMap(state))
    finally:
        state.close()


async def test_secondary_failing_a_fifth_of_writes(
    stores: dict[str, StoreProcess],
    sessions: dict[str, Any],
    aiohttp_server: Any,
    make_proxy: MakeProxy,
) -> None:
    """New answers 500 to a random 20% of writes (half of them after applying): equal stores."""
    rnd = random.Random(7)
    forward = aiohttp.ClientSession(base_url=stores["new"].url)

    async def flaky(request: web.Request) -> web.Response:
        body = await request.read()
        roll = rnd.random() if request.method != "GET" else 1.0
        if roll < 0.1:
            return web.json_response({"error": {"code": "boom", "message": "boom"}}, status=500)
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with forward.request(
            request.method, request.path_qs, data=body, headers=headers
        ) as upstream:
            payload = await upstream.read()
            if roll < 0.2:  # applied, but the answer is lost
                return web.json_response({"error": {"code": "boom", "message": "lost"}}, status=502)
            return web.Response(
                status=upstream.status, body=payload, content_type=upstream.content_type
            )

    chaos = await echo_server(aiohttp_server, flaky)
    try:
        proxy, _ = await make_proxy(
            stores["legacy"].url, str(chaos.make_url("")).rstrip("/"), sections=FAST
        )
        core = proxy.server.app[PROXY]
        user = "user1"
        ctx = await (
            await proxy.post("/v1/contexts", json={"name": "c"}, headers=auth(user))
        ).json()
        ids = []
        for i in range(60):
            made = await proxy.post(
                "/v1/memories",
                json={"title": f"m{i}", "content": f"c{i}", "context_id": ctx["id"]},
                headers=auth(user),
            )
            assert 201 == made.status
            ids.append((await made.json())["id"])
        for a, b in itertools.pairwise(ids):
            rel = await proxy.post(
                "/v1/relations",
                json={"name": "n", "source_id": a, "target_id": b},
                headers=auth(user),
            )
            assert 201 == rel.status
        for memory_id in ids[::3]:
            resp = await proxy.patch(
                f"/v1/memories/{memory_id}", json={"content": "changed"}, headers=auth(user)
            )
            assert 200 == resp.status
        for memory_id in ids[1::7]:
            assert (
                204 == (await proxy.delete(f"/v1/memories/{memory_id}", headers=auth(user))).status
            )
        await _until_drained(core)
        await assert_equal_stores(sessions["legacy"], sessions["new"], core.idmap)
    finally:
        await forward.close()


async def test_interleaved_updates_to_one_memory(
    stores: dict[str, StoreProcess], sessions: dict[str, Any], make_proxy: MakeProxy
) -> None:
    """Many concurrent updates of one memory: new ends with legacy's content and version."""
    proxy, _ = await make_proxy(
        stores["legacy"].url, stores["new"].url, write_mode="async", sections=FAST
    )
    core = proxy.server.app[PROXY]
    made = await (
        await proxy.post("/v1/memories", json={"title": "t", "content": "0"}, headers=auth("user1"))
    ).json()
    answers = await asyncio.gather(
        *(
            proxy.patch(
                f"/v1/memories/{made['id']}", json={"content": f"v{i}"}, headers=auth("user1")
            )
            for i in range(40)
        )
    )
    assert {200} == {a.status for a in answers}
    await _until_drained(core)
    legacy = await (
        await sessions["legacy"].get(
            f"/v1/memories/{made['id']}", headers={"Authorization": "Bearer tok-svc"}
        )
    ).json()
    [new_id] = (await core.idmap.translate("memory", [made["id"]], "legacy", "new")).values()
    new = await (
        await sessions["new"].get(
            f"/v1/memories/{new_id}", headers={"Authorization": "Bearer tok-svc"}
        )
    ).json()
    assert (41, legacy["content"]) == (new["version"], new["content"])
    assert 41 == legacy["version"]


async def test_an_intent_left_by_a_crash_is_sent_again_once_then_mirrored(
    stores: dict[str, StoreProcess], sessions: dict[str, Any], make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """A proxy died after the primary applied two updates, before it mirrored them: the
    write log holds only their intents. The next proxy sends each to the primary again
    under its key, which applies it once and answers as before, then mirrors it; the one
    whose record has no copy in new yet waits in the backlog with that answer."""
    state_url = f"sqlite:///{tmp_path}/crashed.db"
    first, _ = await make_proxy(stores["legacy"].url, stores["new"].url, state_url=state_url)
    log = first.server.app[PROXY].writelog
    mirrored = await first.post(
        "/v1/memories", json={"title": "t", "content": "one"}, headers=auth("user1")
    )
    only_legacy = await sessions["legacy"].post(
        "/v1/memories", json={"title": "t", "content": "one"}, headers=auth("user1")
    )
    paths = [f"/v1/memories/{(await r.json())['id']}" for r in (mirrored, only_legacy)]
    body = b'{"content": "two"}'
    for n, path in enumerate(paths):
        await log.intent(
            idem_key=f"crash-{n}",
            user="user1",
            route="memories.item",
            method="PATCH",
            path=path,
            body=body,
            keys=(f"memory:{path.rsplit('/', 1)[1]}",),
            depends=(),
            primary="legacy",
        )
        applied = await sessions["legacy"].patch(
            path,
            data=body,
            headers={
                **auth("user1"),
                "Idempotency-Key": f"crash-{n}",
                "Content-Type": "application/json",
            },
        )
        assert 200 == applied.status

    second, _ = await make_proxy(
        stores["legacy"].url, stores["new"].url, state_url=state_url, sections=FAST
    )
    core = second.server.app[PROXY]
    async with asyncio.timeout(30):
        while len(left := await core.writelog.unfinished()) != 1 or left[0].state != "backlog":  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    assert paths[1] == left[0].path
    assert b'"content":"two"' in (left[0].primary_body or b"")
    legacy = await (await sessions["legacy"].get(paths[0], headers=auth("user1"))).json()
    new_id = (await core.idmap.translate("memory", [legacy["id"]], "legacy", "new"))[legacy["id"]]
    new = await (await sessions["new"].get(f"/v1/memories/{new_id}", headers=auth("user1"))).json()
    assert (2, "two") == (legacy["version"], legacy["content"])  # applied once
    assert (2, "two") == (new["version"], new["content"])


async def test_memshift_replay_drains_the_backlog(
    stores: dict[str, StoreProcess], sessions: dict[str, Any], make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """Writes taken while new was down are applied by `memshift replay`, which exits 0."""
    slow_replay = {"mirror": {**FAST["mirror"], "replay_interval_s": 3600}}
    proxy, admin = await make_proxy(stores["legacy"].url, stores["new"].url, sections=slow_replay)
    core = proxy.server.app[PROXY]
    await asyncio.to_thread(stores["new"].stop)
    for i in range(5):
        resp = await proxy.post(
            "/v1/memories", json={"title": f"t{i}", "content": "c"}, headers=auth("user1")
        )
        assert 201 == resp.status
    assert 5 == await _backlog(admin)
    await asyncio.to_thread(stores["new"].start)
    code = await asyncio.to_thread(main, ["replay", "--config", str(tmp_path / "memshift.toml")])
    assert (0, 0) == (code, await _backlog(admin))
    await assert_equal_stores(sessions["legacy"], sessions["new"], core.idmap)


async def test_a_full_mirror_queue_spills_to_the_backlog(
    stores: dict[str, StoreProcess], sessions: dict[str, Any], make_proxy: MakeProxy
) -> None:
    """With one worker and no queue, a burst of async writes spills to the durable
    backlog and is replayed: nothing is dropped."""
    tight = {"mirror": {**FAST["mirror"], "workers": 1, "queue": 0}}
    proxy, admin = await make_proxy(
        stores["legacy"].url, stores["new"].url, write_mode="async", sections=tight
    )
    core = proxy.server.app[PROXY]
    answers = await asyncio.gather(
        *(
            proxy.post(
                "/v1/memories", json={"title": f"t{i}", "content": "c"}, headers=auth("user1")
            )
            for i in range(30)
        )
    )
    assert {201} == {a.status for a in answers}
    metrics = await (await admin.get("/metrics", headers=ADMIN)).text()
    assert 'reason="queue_full"' in metrics
    await _until_drained(core)
    await assert_equal_stores(sessions["legacy"], sessions["new"], core.idmap)
