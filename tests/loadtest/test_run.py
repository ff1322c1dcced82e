"""The load generator against real stores on real ports, and against a failing peer."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web

from memshift import logs
from memshift.cli import main
from memshift.loadtest.content import Corpus
from memshift.loadtest.mix import parse_mix, parse_sizes
from memshift.loadtest.run import LoadTest, LoadtestError, Options, Tick
from memshift.store.app import make_app
from memshift.store.settings import StoreSettings
from memshift.store.tokens import Principal

TOKENS = {"tok-load": Principal("load")}
SMALL = parse_sizes("100,1k,10k")


async def store_url(aiohttp_server: Any, tmp_path: Any, engine: str = "new") -> str:
    app = make_app(StoreSettings(engine=engine, db_url=f"sqlite:///{tmp_path}/{engine}.db"), TOKENS)  # type: ignore[arg-type]
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def count_memories(url: str) -> int:
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/v1/stats", headers={"Authorization": "Bearer tok-load"}) as resp,
    ):
        return int((await resp.json())["memories"])


async def test_a_run_sends_every_operation_of_the_mix_and_reports_it(
    aiohttp_server: Any, tmp_path: Any
) -> None:
    url = await store_url(aiohttp_server, tmp_path)
    ticks: list[Tick] = []
    options = Options(target=url, token="tok-load", duration_s=1.5, concurrency=4, sizes=SMALL)
    async with LoadTest(options) as test:
        await test.seed(10)
        doc = await test.run(progress=ticks.append)
    ops = doc["operations"]
    assert {"create", "read", "search", "update"} == set(ops)
    for name, summary in ops.items():
        assert summary["count"] > 0, name
        assert 0 == summary["errors"], summary["error_kinds"]
        assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert doc["total"]["count"] == sum(s["count"] for s in ops.values())
    assert ops["read"]["count"] > ops["update"]["count"]  # 60% against 5%
    # Every create landed, seeds included: the store holds what the report counts.
    assert 10 + ops["create"]["count"] == await count_memories(url)
    assert ticks and ticks[-1].requests <= doc["total"]["count"]
    assert {"100": 33.33, "1000": 33.33, "10000": 33.33} == doc["sizes"]


async def test_contents_are_real_text_of_the_drawn_sizes() -> None:
    corpus = Corpus.load()
    import random

    rnd = random.Random(4)
    texts = [corpus.content(100_000, rnd) for _ in range(3)]
    assert all(100_000 == len(t) for t in texts)
    assert len(set(texts)) == 3
    assert len(set(texts[0].split())) > 1000  # prose and code, not a handful of words
    assert corpus.term(rnd).isalpha()


async def test_failures_are_counted_by_kind_not_timed(aiohttp_server: Any) -> None:
    """A peer that fails searches with 503 and drops reads: each failure has its kind."""
    created = 0

    async def create(request: web.Request) -> web.Response:
        nonlocal created
        created += 1
        await request.read()
        return web.json_response({"id": created}, status=201)

    async def search(request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "busy"}}, status=503)

    async def read(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()  # the connection drops mid-request
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/memories", create)
    app.router.add_get("/v1/search", search)
    app.router.add_get("/v1/memories/{id}", read)
    server = await aiohttp_server(app)
    options = Options(
        target=str(server.make_url("")),
        token="t",
        duration_s=0.5,
        concurrency=2,
        mix=parse_mix("create=1,search=1,read=1"),
        sizes=SMALL,
    )
    async with LoadTest(options) as test:
        doc = await test.run()
    ops = doc["operations"]
    assert 0 == ops["create"]["errors"]
    # Every search failed; most with the peer's 503, a few on a connection a read dropped.
    assert ops["search"]["count"] == ops["search"]["errors"]
    assert ops["search"]["error_kinds"]["503"] > ops["search"]["errors"] / 2
    assert set(ops["search"]["error_kinds"]) <= {"503", "ServerDisconnectedError"}
    assert None is ops["search"]["p50_ms"]
    assert ops["read"]["errors"] == ops["read"]["count"] > 0
    assert {"ServerDisconnectedError"} == set(ops["read"]["error_kinds"])


async def test_a_wrong_token_or_no_target_fails_at_once(
    aiohttp_server: Any, tmp_path: Any, unused_tcp_port: int
) -> None:
    url = await store_url(aiohttp_server, tmp_path)
    async with LoadTest(Options(target=url, token="nope", sizes=SMALL)) as test:
        with pytest.raises(LoadtestError, match=r"refused the token \(HTTP 401\)"):
            await test.seed(5)
    dead = f"http://127.0.0.1:{unused_tcp_port}"
    async with LoadTest(Options(target=dead, token="x", sizes=SMALL)) as test:
        with pytest.raises(LoadtestError, match="cannot reach"):
            await test.seed(5)


async def test_a_rate_limit_holds_the_pace(aiohttp_server: Any, tmp_path: Any) -> None:
    url = await store_url(aiohttp_server, tmp_path, "legacy")
    options = Options(
        target=url, token="tok-load", duration_s=1.0, concurrency=4, rate=20, sizes=SMALL
    )
    async with LoadTest(options) as test:
        doc = await test.run()
    # Paced at 20/s, starts stop at the deadline: at most 21 in one second, whatever
    # the machine's speed (unpaced, a store answers hundreds).
    assert 0 < doc["total"]["count"] <= 21


async def test_the_command_prints_json_and_exits_0_when_nothing_failed(
    aiohttp_server: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(level="warning", json=True)  # stdout holds the report alone
    url = await store_url(aiohttp_server, tmp_path)
    argv = [
        "--log-level", "warning", "loadtest", "--target", url, "--token", "tok-load",
        "--duration", "1", "--concurrency", "2", "--sizes", "100,1k", "--json",
    ]  # fmt: skip
    status = await asyncio.to_thread(main, argv)
    out = capsys.readouterr().out
    assert 0 == status, out
    doc = orjson.loads(out)
    assert url == doc["target"]
    assert doc["total"]["count"] > 0
    assert 0 == doc["total"]["errors"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--target", "ftp://x", "--token", "t"], "--target: not an http(s) URL"),
        (["--target", "http://127.0.0.1:9"], "--token: a bearer token is needed"),
        (["--target", "http://127.0.0.1:9", "--token", "t", "--mix", "nap=1"], "--mix"),
        (["--target", "http://127.0.0.1:9", "--token", "t", "--sizes", "x"], "--sizes"),
    ],
)
def test_bad_arguments_exit_2_with_the_argument_named(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEMSHIFT_TOKEN", raising=False)
    assert 2 == main(["loadtest", *args])
    assert says in capsys.readouterr().err


def test_an_unreachable_target_exits_1(
    capsys: pytest.CaptureFixture[str], unused_tcp_port: int
) -> None:
    argv = ["loadtest", "--target", f"http://127.0.0.1:{unused_tcp_port}", "--token", "t"]
    assert 1 == main(argv)
    assert "cannot reach" in capsys.readouterr().err
