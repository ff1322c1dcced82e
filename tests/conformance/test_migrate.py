"""backfill, verify and repair of real MCP memory servers, while clients write through memshift.

For the official server and for mcp-memory-keeper (both from the npm registry, both
stdio children of the proxy): the legacy server holds data from before memshift; a
backfill copies it into the empty new server while writers go on; verify then finds
the two equal; a record taken from the new server behind memshift's back makes verify
fail naming it, and ``verify --repair`` makes them equal again.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conformance.mcpclient import BareMcp
from tests.conformance.proxyproc import MakeProxyProcess, ProxyProcess
from tests.conformance.subjects import ROOT, third_party_servers

KEEPER = "mcp-memory-keeper"
OFFICIAL = "mcp-server-memory"


class Server:
    """Two copies of one real server's storage, and how to read one, seed it and damage it."""

    def __init__(self, kind: str, tmp: Path) -> None:
        modules = third_party_servers()
        self.kind, self.tmp = kind, tmp
        if kind == OFFICIAL:
            self.index = modules / "@modelcontextprotocol" / "server-memory" / "dist" / "index.js"
            self.places = {name: tmp / f"{name}.jsonl" for name in ("legacy", "new")}
        else:
            self.index = modules / "mcp-memory-keeper" / "dist" / "index.js"
            self.places = {name: tmp / f"{name}-data" for name in ("legacy", "new")}
            for place in self.places.values():
                place.mkdir()

    def env(self, name: str) -> dict[str, str]:
        place = str(self.places[name])
        if self.kind == OFFICIAL:
            return {"MEMORY_FILE_PATH": place}
        return {"DATA_DIR": place, "HOME": str(self.tmp)}

    def stores_toml(self) -> str:
        out = ""
        for name in ("legacy", "new"):
            env = ", ".join(f"{k} = {json.dumps(v)}" for k, v in self.env(name).items())
            out += (
                f"[stores.{name}]\ncommand = {json.dumps(['node', str(self.index)])}\n"
                f'profile = "{self.kind}"\nenv = {{ {env} }}\n'
            )
        return out

    def seed(self, count: int) -> None:
        """Give the legacy server data of its own, before memshift (a session of its own)."""
        calls = []
        for n in range(count):
            if self.kind == OFFICIAL:
                entity = {"name": f"old-{n}", "entityType": "note", "observations": [f"seen {n}"]}
                calls.append(("create_entities", {"entities": [entity]}))
                if n:
                    relation = {"from": f"old-{n}", "to": f"old-{n - 1}", "relationType": "after"}
                    calls.append(("create_relations", {"relations": [relation]}))
            else:
                item = {"key": f"old-{n}", "value": f"kept {n}", "category": "note"}
                calls.append(("context_save", item))
        _talk(["node", str(self.index)], self.env("legacy"), calls)

    def records(self, name: str) -> dict[str, Any]:
        """One store's records, read from its storage: key → what matters of it."""
        if self.kind == OFFICIAL:
            found: dict[str, Any] = {}
            for line in filter(None, self.places[name].read_text().splitlines()):
                item = json.loads(line)
                if item["type"] == "entity":
                    found[item["name"]] = sorted(item["observations"])
                else:
                    found[f"{item['from']}->{item['to']}"] = item["relationType"]
            return found
        with sqlite3.connect(self.places[name] / "context.db") as db:
            rows = db.execute("SELECT key, value, category, priority, channel FROM context_items")
            return {row[0]: row[1:] for row in rows}

    def damage_new(self) -> str:
        """Take something from the new store behind memshift's back; return what names it."""
        if self.kind == OFFICIAL:
            path = self.places["new"]
            lines = [json.loads(x) for x in path.read_text().splitlines() if x]
            for item in lines:
                if item.get("name") == "old-3":
                    item["observations"] = []
            path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
            return "old-3"
        with sqlite3.connect(self.places["new"] / "context.db") as db:
            db.execute("DELETE FROM context_items WHERE key = 'old-3'")
        return "old-3"

    async def write(self, mcp: BareMcp, writer: int, step: int) -> None:
        name = f"live-{writer}-{step}"
        if self.kind == OFFICIAL:
            entity = {"name": name, "entityType": "note", "observations": [f"{name} said"]}
            await mcp.call("create_entities", {"entities": [entity]})
            adding = [{"entityName": "old-1", "contents": [f"touched by {name}"]}]
            await mcp.call("add_observations", {"observations": adding})
        else:
            await mcp.call("context_save", {"key": name, "value": "v", "category": "task"})
            updates = [{"key": "old-1", "value": f"touched by {name}"}]
            await mcp.call("context_batch_update", {"updates": updates})


def _talk(command: list[str], env: dict[str, str], calls: list[tuple[str, Any]]) -> None:
    """Run a stdio MCP server just long enough to make ``calls`` on it."""
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "seed", "version": "0"},
        },
    }
    lines = [init, {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    lines += [
        {
            "jsonrpc": "2.0",
            "id": n + 1,
            "method": "tools/call",
            "params": {"name": t, "arguments": a},
        }
        for n, (t, a) in enumerate(calls)
    ]
    with subprocess.Popen(
        command,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        for msg in lines:
            proc.stdin.write(json.dumps(msg) + "\n")
            proc.stdin.flush()
            if "id" in msg:
                while json.loads(proc.stdout.readline()).get("id") != msg["id"]:
                    pass
        proc.stdin.close()
        proc.wait(timeout=30)


def _memshift(proxy: ProxyProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memshift", *args, "--config", str(proxy.config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # two real servers, a backfill under writes, verify and repair each
@pytest.mark.parametrize("kind", [OFFICIAL, KEEPER])
async def test_backfill_under_writes_then_verify_and_repair(
    kind: str, tmp_path: Path, proxy_process: MakeProxyProcess
) -> None:
    server = Server(kind, tmp_path)
    server.seed(40)
    proxy = proxy_process(server.stores_toml(), f"sqlite:///{tmp_path}/state.db", "sync")
    await proxy.start()
    stop = asyncio.Event()

    async def writer(number: int) -> int:
        async with aiohttp.ClientSession() as http:
            mcp = BareMcp(http, proxy.base + "/mcp", {})
            step = 0
            while not stop.is_set():
                await server.write(mcp, number, step)
                step += 1
                await asyncio.sleep(0.05)
            return step

    writers = [asyncio.ensure_future(writer(n)) for n in range(2)]
    await asyncio.sleep(0.5)
    backfill = await asyncio.to_thread(_memshift, proxy, "backfill")
    stop.set()
    written = await asyncio.gather(*writers)
    assert 0 == backfill.returncode, backfill.stdout + backfill.stderr
    assert all(written), "the writers wrote while the backfill ran"
    async with aiohttp.ClientSession() as http:
        await proxy.drained(http)

    verified = await asyncio.to_thread(_memshift, proxy, "verify")
    assert 0 == verified.returncode, verified.stdout + verified.stderr
    assert server.records("legacy") == server.records("new")
    assert len(server.records("new")) >= 40

    named = server.damage_new()
    broken = await asyncio.to_thread(_memshift, proxy, "verify")
    assert 1 == broken.returncode, broken.stdout + broken.stderr
    assert named in broken.stdout
    repaired = await asyncio.to_thread(_memshift, proxy, "verify", "--repair")
    assert 0 == repaired.returncode, repaired.stdout + repaired.stderr
    again = await asyncio.to_thread(_memshift, proxy, "verify")
    assert 0 == again.returncode, again.stdout
    await proxy.stop()
    assert server.records("legacy") == server.records("new")
