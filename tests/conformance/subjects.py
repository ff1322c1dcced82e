"""The three pairs of stores the conformance scenarios run against, as real processes.

Each subject starts a legacy and a new store of one kind, says how the proxy reaches
them (its ``[stores.*]`` config), writes through the proxy as that store's clients do,
takes its new store down and up, injects faults in front of it, and compares the two
stores record by record by its own means (files and APIs, never memshift's verify):

- ``Reference``: memshift's own store (REST, users, integer ids, Idempotency-Key), on SQLite.
- ``OfficialServer``: ``@modelcontextprotocol/server-memory`` from the npm registry, as a
  stdio child of the proxy (behind ``tests.doubles.flaky_stdio``), one JSONL file each.
- ``LegacyStyle``: the REST double of ``tests.doubles.legacy_style`` (string ids in nested
  JSON, no users, no keys, ids reused, one JSON file), with its profile.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from memshift.shadow.idmap import IdMap
from memshift.statedb import open_state
from tests.conformance.mcpclient import BareMcp, McpError
from tests.faults import REFUSE, CuttingFront
from tests.processes import StoreProcess, free_port, reap, wait_http
from tests.proxy.conftest import TOKENS, auth
from tests.proxy.test_workload import assert_equal_stores

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ROOT / "tests" / "servers"
OFFICIAL_JS = SERVERS / "node_modules" / "@modelcontextprotocol" / "server-memory" / "dist"
DOUBLES = ROOT / "tests" / "doubles"

TOKENS_TOML = "".join(
    f'[tokens.{t}]\nuser = "{p.user}"\n' + ('role = "admin"\n' if p.admin else "")
    for t, p in TOKENS.items()
)


class ClientFailed(AssertionError):
    """A client saw an error it should not have."""


def third_party_servers() -> Path:
    """The npm packages of ``tests/servers``, installed from the registry when missing."""
    if not (OFFICIAL_JS / "index.js").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: the third-party MCP servers cannot be")
        extra = ["--nodedir=/usr"] if Path("/usr/include/node/common.gypi").exists() else []
        done = subprocess.run(
            [
                npm,
                "ci",
                "--prefix",
                str(SERVERS),
                "--no-audit",
                "--no-fund",
                "--foreground-scripts",
                *extra,
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            pytest.fail(f"npm ci in {SERVERS} failed:\n{done.stderr[-4000:]}")
    return SERVERS / "node_modules"


@dataclass
class Writer:
    """What one client remembers between its writes."""

    number: int
    http: aiohttp.ClientSession
    base: str
    mcp: BareMcp | None = None
    made: list[Any] = field(default_factory=list)
    context: Any = None
    rng: random.Random = field(default_factory=random.Random)


async def retried(action: Callable[[], Awaitable[Any]], flaky: bool) -> Any:
    """Run a client action; while the proxy may be gone (``flaky``), retry what failed
    to connect, as a client does, for up to a minute."""
    if not flaky:
        return await action()
    async with asyncio.timeout(60):
        while True:
            try:
                return await action()
            except (aiohttp.ClientConnectionError, McpError, ClientFailed) as error:
                if isinstance(error, ClientFailed) and "HTTP 5" not in str(error):
                    raise
                await asyncio.sleep(0.2)


def _expect(status: int, wanted: tuple[int, ...], what: str, text: str = "") -> None:
    if status not in wanted:
        raise ClientFailed(f"{what}: HTTP {status} {text[:300]}")


class Subject:
    """A pair of stores of one kind; see the module's docstring."""

    name = ""
    mcp_create: tuple[str, Callable[[str], dict[str, Any]]] | None = None

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def stores_toml(self) -> str:
        raise NotImplementedError

    def client_headers(self, writer: int) -> dict[str, str]:
        return {}

    async def down(self) -> None:
        raise NotImplementedError

    async def up(self) -> None:
        raise NotImplementedError

    def faults(self, error: float, drop: float) -> None:
        """From now on, refuse ``error`` of new's writes and drop ``drop`` after applying."""
        raise NotImplementedError

    async def write(self, w: Writer, step: int, flaky: bool = False) -> None:
        """One write of client ``w`` through the proxy; raise ``ClientFailed`` on an error."""
        raise NotImplementedError

    async def seed(self, w: Writer, count: int) -> list[Any]:
        """Make ``count`` records that several writers will then change; return their ids."""
        raise NotImplementedError

    async def touch(self, w: Writer, record: Any, value: str) -> None:
        """Change ``record`` to carry ``value``."""
        raise NotImplementedError

    async def assert_identical(self, state_url: str) -> None:
        raise NotImplementedError


class HttpFaults:
    """A ``CuttingFront`` before an HTTP store, with rates a scenario sets."""

    def __init__(self, is_write: Callable[[str, str], bool]) -> None:
        self.error = self.drop = 0.0
        self.is_write = is_write
        self.rng = random.Random(7)
        self.front: CuttingFront | None = None

    def rule(self, method: str, path: str) -> Any:
        if not self.is_write(method, path):
            return None
        roll = self.rng.random()
        if roll < self.error:
            return REFUSE
        if roll < self.error + self.drop:
            return self.rng.choice(["before_status_line", "mid_body"])
        return None

    async def start(self, target: str) -> str:
        self.front = CuttingFront(target, self.rule)
        return await self.front.start()

    async def close(self) -> None:
        if self.front is not None:
            await self.front.close()


def _rest_write(method: str, path: str) -> bool:
    return method in ("POST", "PATCH", "DELETE", "PUT")


class _HttpPair(Subject):
    """Two HTTP store processes (``self.stores``, made by ``start``), new's behind a
    front that injects faults."""

    stores: dict[str, Any]

    async def _start_behind_faults(self) -> None:
        for store in self.stores.values():
            await asyncio.to_thread(store.start)
        self.front = HttpFaults(_rest_write)
        self.new_url = await self.front.start(self.stores["new"].url)

    async def close(self) -> None:
        await self.front.close()
        for store in self.stores.values():
            await asyncio.to_thread(store.stop)


class Reference(_HttpPair):
    """memshift's reference store, legacy and new engines, each a process on SQLite."""

    name = "reference"
    mcp_create = ("create_memory", lambda tag: {"title": tag, "content": f"about {tag}"})

    async def start(self) -> None:
        self.stores = {
            name: StoreProcess(name, f"sqlite:///{self.tmp}/{name}.db", TOKENS_TOML)
            for name in ("legacy", "new")
        }
        await self._start_behind_faults()

    def stores_toml(self) -> str:
        return (
            f'[stores.legacy]\nurl = "{self.stores["legacy"].url}"\ntoken = "tok-svc"\n'
            f'[stores.new]\nurl = "{self.new_url}"\ntoken = "tok-svc"\n'
        )

    def client_headers(self, writer: int) -> dict[str, str]:
        return auth(f"user{writer % 12}")

    async def down(self) -> None:
        await asyncio.to_thread(self.stores["new"].stop)

    async def up(self) -> None:
        await asyncio.to_thread(self.stores["new"].start)

    def faults(self, error: float, drop: float) -> None:
        self.front.error, self.front.drop = error, drop

    async def _send(self, w: Writer, method: str, path: str, body: Any, key: str | None) -> Any:
        headers = self.client_headers(w.number) | ({"Idempotency-Key": key} if key else {})
        async with w.http.request(method, w.base + path, json=body, headers=headers) as answer:
            text = await answer.text()
            _expect(answer.status, (200, 201, 204, 404), f"{method} {path}", text)
            return json.loads(text) if text and answer.status != 404 else None

    async def write(self, w: Writer, step: int, flaky: bool = False) -> None:
        if not w.made or step % 4 == 0:
            body = {"title": f"w{w.number}-{step}", "content": uuid.uuid4().hex * 4}
            key = uuid.uuid4().hex
            made = await retried(lambda: self._send(w, "POST", "/v1/memories", body, key), flaky)
            w.made.append(made["id"])
        elif step % 8 == 7 and len(w.made) > 1:
            gone = w.made.pop(0)
            await retried(
                lambda: self._send(w, "DELETE", f"/v1/memories/{gone}", None, None), flaky
            )
        else:
            body = {"content": f"edit {step} {uuid.uuid4().hex}"}
            path = f"/v1/memories/{w.made[-1]}"
            await retried(lambda: self._send(w, "PATCH", path, body, None), flaky)

    async def seed(self, w: Writer, count: int) -> list[Any]:
        made = []
        for n in range(count):
            body = {"title": f"shared-{n}", "content": "x"}
            answer = await self._send(Writer(0, w.http, w.base), "POST", "/v1/memories", body, None)
            made.append(answer["id"])
        return made

    async def touch(self, w: Writer, record: Any, value: str) -> None:
        shared = Writer(0, w.http, w.base)  # one user's records, whoever writes
        await self._send(shared, "PATCH", f"/v1/memories/{record}", {"title": value}, None)

    async def assert_identical(self, state_url: str) -> None:
        state = open_state(state_url)
        try:
            async with (
                aiohttp.ClientSession(base_url=self.stores["legacy"].url) as legacy,
                aiohttp.ClientSession(base_url=self.stores["new"].url) as new,
            ):
                await assert_equal_stores(legacy, new, IdMap(state))
        finally:
            state.close()


class ServiceProcess:
    """A test double run as a process on a fixed port, stopped and started again."""

    def __init__(self, args: list[str], health: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [a.replace("{port}", str(self.port)) for a in args]
        self.health = health
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        err = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 (reap closes it)
        self.proc = subprocess.Popen(
            [sys.executable, *self.args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
        self.proc.err_file = err  # type: ignore[attr-defined]
        wait_http(self.url + self.health, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            reap(self.proc)
        self.proc = None


class LegacyStyle(_HttpPair):
    """The legacy-style REST double, twice, with the operator's profile of it."""

    name = "legacy-style"

    async def start(self) -> None:
        self.files = {name: self.tmp / f"{name}.json" for name in ("legacy", "new")}
        self.stores = {
            name: ServiceProcess(
                [
                    "-m",
                    "tests.doubles.legacy_style",
                    "--listen",
                    "127.0.0.1:{port}",
                    "--file",
                    str(path),
                ],
                "/contexts",
            )
            for name, path in self.files.items()
        }
        await self._start_behind_faults()

    def stores_toml(self) -> str:
        profile = DOUBLES / "legacy-style.toml"
        return (
            f'[stores.legacy]\nurl = "{self.stores["legacy"].url}"\nprofile = "{profile}"\n'
            f'[stores.new]\nurl = "{self.new_url}"\nprofile = "{profile}"\n'
        )

    async def down(self) -> None:
        await asyncio.to_thread(self.stores["new"].stop)

    async def up(self) -> None:
        await asyncio.to_thread(self.stores["new"].start)

    def faults(self, error: float, drop: float) -> None:
        self.front.error, self.front.drop = error, drop

    async def _send(self, w: Writer, method: str, path: str, body: Any) -> Any:
        async with w.http.request(method, w.base + path, json=body) as answer:
            text = await answer.text()
            _expect(answer.status, (200, 201, 204), f"{method} {path}", text)
            return json.loads(text) if text else None

    async def write(self, w: Writer, step: int, flaky: bool = False) -> None:
        if w.context is None:
            made = await retried(
                lambda: self._send(w, "POST", "/contexts", {"name": f"w{w.number}"}), flaky
            )
            w.context = made["context"]["context_id"]
        if not w.made or step % 4 == 0:
            body = {
                "title": f"w{w.number}-{step}",
                "content": uuid.uuid4().hex,
                "context_id": w.context,
            }
            made = await retried(lambda: self._send(w, "POST", "/memories", body), flaky)
            w.made.append(made["memory"]["memory_id"])
        elif step % 8 == 7 and len(w.made) > 1:
            gone = w.made.pop(0)  # its id is given to the next create, on both stores
            await retried(lambda: self._send(w, "DELETE", f"/memories/{gone}", None), flaky)
        else:
            body = {"content": f"edit {step} {uuid.uuid4().hex}"}
            path = f"/memories/{w.made[-1]}"
            await retried(lambda: self._send(w, "PATCH", path, body), flaky)

    async def seed(self, w: Writer, count: int) -> list[Any]:
        made = []
        for n in range(count):
            body = {"title": f"shared-{n}", "content": "x"}
            made.append((await self._send(w, "POST", "/memories", body))["memory"]["memory_id"])
        return made

    async def touch(self, w: Writer, record: Any, value: str) -> None:
        await self._send(w, "PATCH", f"/memories/{record}", {"title": value})

    def _records(self, name: str) -> Counter[tuple[str, ...]]:
        """Every record of one store's file, its ids replaced by what they name."""
        doc = json.loads(self.files[name].read_text())
        contexts = {cid: c["name"] for cid, c in doc["contexts"].items()}
        found: Counter[tuple[str, ...]] = Counter(("context", n) for n in contexts.values())
        for memory in doc["memories"].values():
            context = contexts.get(memory.get("context_id") or "", "")
            found[("memory", memory["title"], memory["content"], context)] += 1
        return found

    async def assert_identical(self, state_url: str) -> None:
        legacy, new = self._records("legacy"), self._records("new")
        assert (legacy - new, new - legacy) == (Counter(), Counter())


class OfficialServer(Subject):
    """``@modelcontextprotocol/server-memory``, legacy and new, stdio children of the proxy."""

    name = "mcp-server-memory"
    mcp_create = (
        "create_entities",
        lambda tag: {"entities": [{"name": tag, "entityType": "note", "observations": [tag]}]},
    )

    async def start(self) -> None:
        modules = third_party_servers()
        self.index = modules / "@modelcontextprotocol" / "server-memory" / "dist" / "index.js"
        self.files = {name: self.tmp / f"{name}.jsonl" for name in ("legacy", "new")}
        self.state = {name: self.tmp / f"{name}-state" for name in ("legacy", "new")}
        for path in self.state.values():
            path.mkdir()

    async def close(self) -> None:
        return None

    def stores_toml(self) -> str:
        out = ""
        for name in ("legacy", "new"):
            command = [
                sys.executable,
                "-m",
                "tests.doubles.flaky_stdio",
                str(self.state[name]),
                "node",
                str(self.index),
            ]
            out += (
                f"[stores.{name}]\ncommand = {json.dumps(command)}\ncwd = {json.dumps(str(ROOT))}\n"
                f'profile = "mcp-server-memory"\n'
                f"env = {{ MEMORY_FILE_PATH = {json.dumps(str(self.files[name]))} }}\n"
            )
        return out

    async def down(self) -> None:
        (self.state["new"] / "down").touch()

    async def up(self) -> None:
        (self.state["new"] / "down").unlink()

    def faults(self, error: float, drop: float) -> None:
        faults = {"error": error, "crash_after_apply": drop}
        (self.state["new"] / "faults.json").write_text(json.dumps(faults))

    async def _call(self, w: Writer, tool: str, arguments: dict[str, Any], flaky: bool) -> Any:
        assert w.mcp is not None
        mcp = w.mcp

        async def once() -> Any:
            try:
                return await mcp.call(tool, arguments)
            except McpError as error:
                if "HTTP 404" in str(error) or "HTTP 400" in str(error):  # the session is gone
                    mcp.session = None
                if not flaky:
                    raise ClientFailed(str(error)) from error
                raise

        return await retried(once, flaky)

    async def write(self, w: Writer, step: int, flaky: bool = False) -> None:
        name = f"w{w.number}-{step}"
        last = w.made[-1] if w.made else None
        if last is None or step % 5 == 0:
            entity = {"name": name, "entityType": "note", "observations": [f"first {name}"]}
            await self._call(w, "create_entities", {"entities": [entity]}, flaky)
            w.made.append(name)
        elif step % 5 == 1:
            adding = [{"entityName": last, "contents": [f"seen {step}", f"noted {step}"]}]
            await self._call(w, "add_observations", {"observations": adding}, flaky)
        elif step % 5 == 2 and len(w.made) > 1:
            relation = {"from": last, "to": w.made[-2], "relationType": "follows"}
            await self._call(w, "create_relations", {"relations": [relation]}, flaky)
        elif step % 5 == 3:
            deletion = [{"entityName": last, "observations": [f"first {last}"]}]
            await self._call(w, "delete_observations", {"deletions": deletion}, flaky)
        elif step % 10 == 9 and len(w.made) > 2:
            gone = w.made.pop(0)
            await self._call(w, "delete_entities", {"entityNames": [gone]}, flaky)
        else:
            adding = [{"entityName": last, "contents": [f"later {step}"]}]
            await self._call(w, "add_observations", {"observations": adding}, flaky)

    def graph(self, name: str) -> tuple[dict[str, Any], set[tuple[str, str, str]]]:
        """One store's graph, read from its JSONL file: entities by name, relations."""
        entities: dict[str, Any] = {}
        relations: set[tuple[str, str, str]] = set()
        path = self.files[name]
        lines = path.read_text().splitlines() if path.exists() else []
        for line in filter(None, lines):
            item = json.loads(line)
            if item["type"] == "entity":
                entities[item["name"]] = (item["entityType"], sorted(item["observations"]))
            else:
                relations.add((item["from"], item["to"], item["relationType"]))
        return entities, relations

    async def assert_identical(self, state_url: str) -> None:
        assert self.graph("legacy") == self.graph("new")


SUBJECTS: dict[str, type[Subject]] = {s.name: s for s in (Reference, OfficialServer, LegacyStyle)}
