"""The fuzz suites' targets: stores and the proxy as processes, on each database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.proxyproc import ProxyProcess
from tests.conformance.subjects import TOKENS_TOML
from tests.fuzz.targets import fresh_database
from tests.processes import StoreProcess


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A kind of database, and a way to make fresh ones of it."""
    with fresh_database(request.param, tmp_path_factory.mktemp("fuzz")) as make:
        yield make


@pytest.fixture(scope="module", params=["legacy", "new"])
def direct(request: pytest.FixtureRequest, database: Any) -> Iterator[str]:
    """A store of each engine, as a process of its own, fuzzed directly."""
    store = StoreProcess(request.param, database("store"), TOKENS_TOML)
    store.start()
    try:
        yield store.url
    finally:
        store.stop()


@pytest.fixture(scope="module")
def proxied(database: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """``memshift serve`` in front of a legacy and a new store, each a process."""
    stores = {name: StoreProcess(name, database(name), TOKENS_TOML) for name in ("legacy", "new")}
    for store in stores.values():
        store.start()
    toml = "".join(
        f'[stores.{name}]\nurl = "{store.url}"\ntoken = "tok-svc"\n'
        for name, store in stores.items()
    )
    proxy = ProxyProcess(tmp_path_factory.mktemp("proxy"), toml, database("state"), "sync")
    asyncio.run(proxy.start())
    try:
        yield proxy
    finally:
        asyncio.run(proxy.stop())
        for store in stores.values():
            store.stop()
