"""``memshift stdio`` in front of two official MCP memory servers, driven by the official
MCP client as a desktop client drives it: one command, JSON-RPC on stdin and stdout."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mcp.client.stdio import StdioServerParameters
from sqlalchemy import create_engine, text

from mcp import Client
from tests.conformance.subjects import ROOT, OfficialServer
from tests.processes import free_port

ADMIN_TOKEN = "adm-stdio"


@pytest.fixture
async def official(tmp_path: Path) -> OfficialServer:
    subject = OfficialServer(tmp_path)
    await subject.start()
    return subject


def _config(subject: OfficialServer, tmp_path: Path, admin_port: int, extra: str = "") -> Path:
    path = tmp_path / "memshift.toml"
    path.write_text(
        f'[admin]\nlisten = "127.0.0.1:{admin_port}"\ntoken = "{ADMIN_TOKEN}"\n'
        f'[state]\nurl = "sqlite:///{tmp_path}/state.db"\n'
        "[mirror]\nretry_attempts = 2\nretry_initial_s = 0.02\nreplay_interval_s = 0.3\n"
        f"{extra}{subject.stores_toml()}"
    )
    return path


@asynccontextmanager
async def _memshift_stdio(config: Path) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "memshift", "--log-level", "warning", "stdio", "--config", str(config)],
        cwd=str(ROOT),
    )
    async with Client(params, mode="legacy", read_timeout_seconds=30) as client:
        yield client


async def _call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result
    text = result.content[0].text  # type: ignore[union-attr]
    try:
        return json.loads(text)
    except ValueError:
        return text  # "Observations deleted successfully"


async def _admin(port: int, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as answer,
    ):
        return await answer.json()


async def _drained(port: int) -> None:
    async with asyncio.timeout(60):
        while (await _admin(port, "/status"))["repair_backlog"]:  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def _graph_work(client: Client, prefix: str, rounds: int = 1) -> None:
    """Entities made, observed, related, and parts of it taken back."""
    for n in range(rounds):
        names = [f"{prefix}{n}-{i}" for i in range(3)]
        entities = [
            {"name": x, "entityType": "person", "observations": [f"{x} exists"]} for x in names
        ]
        await _call(client, "create_entities", entities=entities)
        await _call(
            client,
            "add_observations",
            observations=[{"entityName": names[0], "contents": ["likes tea", "reads"]}],
        )
        await _call(
            client,
            "delete_observations",
            deletions=[{"entityName": names[0], "observations": ["reads"]}],
        )
        relations = [
            {"from": names[0], "to": names[1], "relationType": "knows"},
            {"from": names[1], "to": names[2], "relationType": "knows"},
        ]
        await _call(client, "create_relations", relations=relations)
        await _call(client, "delete_relations", relations=relations[1:])
        await _call(client, "delete_entities", entityNames=[names[2]])


async def test_a_desktop_client_through_memshift_stdio_changes_both_graphs(
    official: OfficialServer, tmp_path: Path
) -> None:
    admin = free_port()
    async with _memshift_stdio(_config(official, tmp_path, admin)) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"create_entities", "read_graph", "delete_relations"} <= tools
        await _graph_work(client, "a", rounds=2)
        graph = await _call(client, "read_graph")
        await _drained(admin)
    entities, relations = official.graph("legacy")
    assert (4, 2) == (len(entities), len(relations))
    assert ["a0-0 exists", "likes tea"] == entities["a0-0"][1]
    assert {e["name"] for e in graph["entities"]} == set(entities)
    await official.assert_identical("")


@pytest.mark.slow
async def test_the_new_server_down_for_10_seconds_with_writes_going_on(
    official: OfficialServer, tmp_path: Path
) -> None:
    """Its child killed and kept from starting for 10 s: after replay the same graph,
    nothing applied twice."""
    admin = free_port()
    async with _memshift_stdio(_config(official, tmp_path, admin)) as client:
        await _graph_work(client, "before")
        await official.down()
        for n in range(10):
            await _graph_work(client, f"down{n}-")
            await asyncio.sleep(1)
        assert (await _admin(admin, "/status"))["repair_backlog"] > 0
        await official.up()
        await _graph_work(client, "after")
        await _drained(admin)
    await official.assert_identical("")
    entities, _ = official.graph("new")
    assert all(len(set(obs)) == len(obs) for _, obs in entities.values())


async def test_an_entity_changed_on_new_shows_in_the_report_by_name_and_field(
    official: OfficialServer, tmp_path: Path
) -> None:
    admin = free_port()
    config = _config(official, tmp_path, admin, "[routing]\nshadow_read_percent = 100\n")
    async with _memshift_stdio(config) as client:
        await _graph_work(client, "r")
        await _drained(admin)
        new_file = official.files["new"]
        lines = [json.loads(x) for x in new_file.read_text().splitlines() if x]
        for item in lines:
            if item.get("name") == "r0-0":
                item["observations"].append("changed behind memshift's back")
        new_file.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
        await _call(client, "open_nodes", names=["r0-0", "r0-1"])
        await _call(client, "read_graph")
        async with asyncio.timeout(20):
            while True:
                report = await _admin(admin, "/report")
                routes = {r["route"]: r for r in report["routes"]}
                if all(
                    routes.get(f"mcp:tools/call {t}", {}).get("mismatched")
                    for t in ("open_nodes", "read_graph")
                ):
                    break
                await asyncio.sleep(0.2)
    paths = {d["path"] for s in report["samples"] for d in s["differences"]}
    assert any(p.startswith('$.entities[name="r0-0"].observations') for p in paths), paths


def test_stdout_carries_json_rpc_only_and_a_bad_line_gets_a_parse_error(
    official: OfficialServer, tmp_path: Path
) -> None:
    """Raw lines in, raw lines out: every line out is one JSON-RPC message."""
    config = _config(official, tmp_path, free_port())
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    lines = [
        json.dumps(init),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        "this is not json",
        json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "memshift", "stdio", "--config", str(config)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert 0 == done.returncode, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(m.get("jsonrpc") == "2.0" for m in out)
    by_id = {m.get("id"): m for m in out}
    assert "2025-06-18" == by_id[1]["result"]["protocolVersion"]
    assert -32700 == by_id[None]["error"]["code"]
    assert "create_entities" in {t["name"] for t in by_id[2]["result"]["tools"]}


async def test_a_write_new_refuses_is_kept_with_the_servers_words(
    official: OfficialServer, tmp_path: Path
) -> None:
    """The official server refuses in plain text ("Entity with name … not found"): the
    divergent write keeps that text, so an operator sees why."""
    admin = free_port()
    async with _memshift_stdio(_config(official, tmp_path, admin)) as client:
        entity = {"name": "gone-on-new", "entityType": "thing", "observations": []}
        await _call(client, "create_entities", entities=[entity])
        await _drained(admin)
        official.files["new"].write_text("")  # the entity is gone from new
        adding = [{"entityName": "gone-on-new", "contents": ["more"]}]
        await _call(client, "add_observations", observations=adding)
        async with asyncio.timeout(20):
            while not (await _admin(admin, "/status"))["divergent"]:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    state = create_engine(f"sqlite:///{tmp_path}/state.db")
    with state.connect() as conn:
        kept = conn.execute(text("SELECT secondary_body FROM writes WHERE state = 'divergent'"))
        bodies = [json.loads(row[0]) for row in kept]
    state.dispose()
    assert [
        {"error": {"code": "tool_error", "message": "Entity with name gone-on-new not found"}}
    ] == bodies
