"""The reference store's REST API fuzzed from its own OpenAPI description.

schemathesis generates requests from ``/openapi.json``, valid and invalid
(``GenerationMode`` positive and negative), and sends them to real processes: each
engine of the store directly, and the proxy in front of both, on SQLite and on
PostgreSQL. Every answer must be below 500, JSON (an error one included) and of the
shape the description gives; after the run through the proxy, the backlog drains and
``memshift verify`` finds both stores identical.

Size: ``MEMSHIFT_FUZZ_EXAMPLES`` examples per operation and target (default 12 in the
default run: about 19 operations x 6 targets). A longer run, for an operator:
``MEMSHIFT_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest tests/fuzz -p no:randomly``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from memshift.store.openapi import document
from tests.conformance.proxyproc import ProxyProcess
from tests.conformance.subjects import ROOT
from tests.fuzz.targets import FUZZ_EXAMPLES, Found
from tests.proxy.conftest import auth

pytestmark = pytest.mark.slow  # run by .ci/run after the default run
SCHEMA = schemathesis.openapi.from_dict(document())
SCHEMA.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=FUZZ_EXAMPLES
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
USER = auth("user1")
FOUND = Found()


def _fuzzed(case: schemathesis.Case, base_url: str) -> None:
    response = case.call(base_url=base_url, headers=USER, timeout=30)
    FOUND.count(response.status_code)
    case.validate_response(response, checks=CHECKS)


@SCHEMA.parametrize()
@settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_each_engine_directly(case: schemathesis.Case, direct: str) -> None:
    """No 5xx, every answer JSON and of its described shape, straight from a store."""
    _fuzzed(case, direct)


@SCHEMA.parametrize()
@settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_through_the_proxy(case: schemathesis.Case, proxied: ProxyProcess) -> None:
    """The same, through the proxy mirroring every write to both stores."""
    _fuzzed(case, proxied.base)


def test_after_the_fuzz_both_stores_are_identical(proxied: ProxyProcess) -> None:
    """Once the backlog drains, ``memshift verify`` finds nothing different (exit 0)."""

    async def drain() -> None:
        async with aiohttp.ClientSession() as http:
            status = await proxied.drained(http)
            assert 0 == status["divergent"], status

    asyncio.run(drain())
    done = subprocess.run(
        [sys.executable, "-m", "memshift", "verify", "--config", str(proxied.config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    print(f"fuzz: {FOUND.summary()}")  # the figures the README quotes
    assert 0 == FOUND.server_errors


def test_every_served_route_is_described(tmp_path: Path) -> None:
    """The description names every route the store serves, and nothing it does not."""
    from aiohttp import web

    from memshift.store.app import make_app
    from memshift.store.settings import StoreSettings
    from tests.store.conftest import TOKENS

    app = make_app(StoreSettings(engine="new", db_url=f"sqlite:///{tmp_path}/s.db"), TOKENS)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and isinstance(route.resource, web.PlainResource | web.DynamicResource)
        and not route.resource.canonical.startswith("/mcp")
    }
    described = {(method, path) for path, item in document()["paths"].items() for method in item}
    assert served == described
