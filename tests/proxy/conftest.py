"""A whole migration in one test: two real stores on port 0 and the proxy before them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from memshift.config.load import parse_settings
from memshift.proxy.app import make_apps
from memshift.proxy.instance import Proxy
from memshift.proxy.instance import make_proxy as new_proxy
from memshift.proxy.keys import PROXY
from memshift.store.app import make_app
from memshift.store.settings import StoreSettings
from memshift.store.tokens import Principal

USERS = [f"user{i}" for i in range(12)]
TOKENS = {f"tok-{u}": Principal(u) for u in USERS} | {
    "tok-svc": Principal("memshift", admin=True),
    "tok-seed": Principal("seed"),
}
ADMIN_TOKEN = "adm-test-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVICE = {"Authorization": "Bearer tok-svc"}


def auth(user: str) -> dict[str, str]:
    """Headers of one of the test users."""
    return {"Authorization": f"Bearer tok-{user}"}


@dataclass
class Stack:
    """Two stores, the proxy and its admin API, each with a client."""

    legacy: TestClient[Any, Any]
    new: TestClient[Any, Any]
    proxy: TestClient[Any, Any]
    admin: TestClient[Any, Any]
    config: Path

    @property
    def core(self) -> Proxy:
        return self.proxy.server.app[PROXY]


MakeStack = Callable[..., Awaitable[Stack]]


def proxy_doc(legacy_url: str, new_url: str, state_url: str, **routing: Any) -> dict[str, Any]:
    """A config document for a proxy in front of two stores."""
    return {
        "proxy": {"listen": "127.0.0.1:0"},
        "admin": {"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
        "stores": {
            "legacy": {"url": legacy_url, "token": "tok-svc", "read_timeout_s": 5},
            "new": {"url": new_url, "token": "tok-svc", "read_timeout_s": 5},
        },
        "routing": routing,
        "state": {"url": state_url},
        # In process, unless a test asks for the helper (test_compare runs both ways).
        "compare": {"helper": False},
    }


def toml_of(doc: dict[str, Any]) -> str:
    """Render a two-level config document as TOML."""
    lines: list[str] = []
    for section, table in doc.items():
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
        for name, sub in table.items():
            if isinstance(sub, dict):
                lines.append(f"[{section}.{name}]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in sub.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def seed_new_store(client: TestClient[Any, Any], count: int) -> None:
    """Put records in the new store first, so that its ids differ from legacy's."""
    for i in range(count):
        await client.post(
            "/v1/contexts", json={"name": f"seed{i}"}, headers={"Authorization": "Bearer tok-seed"}
        )
        await client.post(
            "/v1/memories",
            json={"title": f"seed {i}", "content": "seed"},
            headers={"Authorization": "Bearer tok-seed"},
        )


MakeProxy = Callable[..., Awaitable[tuple[TestClient[Any, Any], TestClient[Any, Any]]]]


@pytest.fixture
def make_proxy(aiohttp_client: Any, tmp_path: Path) -> MakeProxy:
    """Start a proxy and its admin API in front of two store URLs."""

    made = itertools.count()

    async def make(
        legacy_url: str,
        new_url: str,
        *,
        state_url: str | None = None,
        sections: dict[str, dict[str, Any]] | None = None,
        **routing: Any,
    ) -> tuple[TestClient[Any, Any], TestClient[Any, Any]]:
        n = next(made)
        name = "" if n == 0 else f"-{n}"  # each proxy its own config and state db
        doc = proxy_doc(
            legacy_url, new_url, state_url or f"sqlite:///{tmp_path}/state{name}.db", **routing
        )
        for section, values in (sections or {}).items():
            for key, value in values.items():
                if isinstance(value, dict):
                    doc[section].setdefault(key, {}).update(value)
                else:
                    doc.setdefault(section, {})[key] = value
        config = tmp_path / f"memshift{name}.toml"
        config.write_text(toml_of(doc))
        proxy_app, admin_app = make_apps(new_proxy(parse_settings(doc, source=str(config))))
        return await aiohttp_client(proxy_app), await aiohttp_client(admin_app)

    return make


@pytest.fixture
def make_stack(aiohttp_client: Any, make_proxy: MakeProxy, tmp_path: Path) -> MakeStack:
    """Start two stores (new one seeded), then the proxy; all on real ports."""

    async def make(
        *,
        seed: int = 3,
        state_url: str | None = None,
        sections: dict[str, dict[str, Any]] | None = None,
        store_options: dict[str, Any] | None = None,
        **routing: Any,
    ) -> Stack:
        clients = {}
        for name in ("legacy", "new"):
            settings = StoreSettings(
                engine=name,  # type: ignore[arg-type]
                db_url=f"sqlite:///{tmp_path}/{name}.db",
                **(store_options or {}),
            )
            app = make_app(settings, TOKENS)
            clients[name] = await aiohttp_client(app)
        await seed_new_store(clients["new"], seed)
        proxy, admin = await make_proxy(
            str(clients["legacy"].make_url("")).rstrip("/"),
            str(clients["new"].make_url("")).rstrip("/"),
            state_url=state_url,
            sections=sections,
            **routing,
        )
        return Stack(clients["legacy"], clients["new"], proxy, admin, tmp_path / "memshift.toml")

    return make


async def echo_server(
    aiohttp_server: Any, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> TestServer:
    """A real HTTP server on port 0 answering every path with ``handler``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server: TestServer = await aiohttp_server(app)
    return server


Behaviour = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
MakeForwarder = Callable[[str, Behaviour], Awaitable[str]]


@pytest.fixture
async def make_forwarder(aiohttp_server: Any) -> AsyncIterator[MakeForwarder]:
    """A real server in front of a store: ``behave`` may answer (a fault) or let it through."""
    session = aiohttp.ClientSession()

    async def make(target: str, behave: Behaviour) -> str:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            faulted = await behave(request)
            if faulted is not None:
                return faulted
            headers = {
                k: v
                for k, v in request.headers.items()
                if k.lower() not in ("host", "content-length")
            }
            async with session.request(
                request.method, target + request.path_qs, data=body, headers=headers
            ) as r:
                kept = {
                    k: v
                    for k, v in r.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
                }
                return web.Response(status=r.status, body=await r.read(), headers=kept)

        server = await echo_server(aiohttp_server, handle)
        return str(server.make_url("")).rstrip("/")

    yield make
    await session.close()


@pytest.fixture(params=[False, True], ids=["in_process", "helper"])
def helper(request: pytest.FixtureRequest) -> bool:
    """Shadow reads in the proxy's own process, and in the shadow helper process."""
    return bool(request.param)


async def helper_up(core: Any, helper: bool) -> None:
    """With the helper asked for, wait until it takes reads (till then the proxy does them)."""
    async with asyncio.timeout(30):
        while helper and not (core.shadows.helper and core.shadows.helper.running):  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def helper_did(core: Any, helper: bool, reads: int | None = None) -> None:
    """Shadow reads went where the test asked: with the helper, all ``reads`` of them."""
    if not helper:
        assert core.shadows.helper is None
    elif reads is None:
        assert core.shadows.helper.settled > 0
    else:
        assert reads == core.shadows.helper.settled
