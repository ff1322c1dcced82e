"""Fixtures for store tests: real store apps on port 0, over both engines and databases."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from memshift.store.app import make_app
from memshift.store.settings import StoreSettings
from memshift.store.tokens import Principal

TOKENS = {
    "tok-alice": Principal("alice"),
    "tok-bob": Principal("bob"),
    "tok-ops": Principal("ops", admin=True),
}
ALICE = {"Authorization": "Bearer tok-alice"}
BOB = {"Authorization": "Bearer tok-bob"}
OPS = {"Authorization": "Bearer tok-ops"}

MakeStore = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def make_store(aiohttp_client: Any) -> MakeStore:
    """Start a store app on a real port; the client is closed after the test."""

    async def make(engine: str, db_url: str, **settings: Any) -> TestClient[Any, Any]:
        app = make_app(StoreSettings(engine=engine, db_url=db_url, **settings), TOKENS)  # type: ignore[arg-type]
        client: TestClient[Any, Any] = await aiohttp_client(app)
        return client

    return make


@pytest.fixture(params=["legacy", "new"])
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine in turn."""
    return str(request.param)


@pytest.fixture
async def store(make_store: MakeStore, engine: str, db_url: str) -> TestClient[Any, Any]:
    """A store of each engine on each database."""
    return await make_store(engine, db_url)


async def post(
    client: TestClient[Any, Any],
    path: str,
    body: Any,
    headers: dict[str, str] = ALICE,
    status: int = 201,
) -> Any:
    """POST JSON (streamed, so large bodies are fine), assert the status, return the answer."""
    resp = await client.post(
        path,
        data=io.BytesIO(orjson.dumps(body)),
        headers={**headers, "Content-Type": "application/json"},
    )
    payload = await resp.json()
    assert status == resp.status, payload
    return payload


async def get(
    client: TestClient[Any, Any], path: str, headers: dict[str, str] = ALICE, status: int = 200
) -> Any:
    """GET, assert the status, return the JSON answer."""
    resp = await client.get(path, headers=headers)
    payload = await resp.json()
    assert status == resp.status, payload
    return payload
