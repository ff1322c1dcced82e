"""Fixtures shared by every test: PostgreSQL schemas and the strict-skip rule.

PostgreSQL tests read ``MEMSHIFT_TEST_PG_URL`` and get a schema of their own, dropped
afterwards. Under ``MEMSHIFT_REQUIRE_PG=1`` (as in CI) a skipped test is a failure.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest
import structlog
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from memshift.database import normalize_url

PG_ENV = "MEMSHIFT_TEST_PG_URL"
REQUIRE_PG_ENV = "MEMSHIFT_REQUIRE_PG"


_configure = structlog.configure


def _configure_uncached(**settings: Any) -> None:
    """``structlog.configure`` without logger caching, in tests only.

    The CLI caches each logger on first use (it is faster); a logger cached while one
    test had configured structlog would keep that set-up for every later test, and
    ``capture_logs`` would no longer see its events.
    """
    _configure(**{**settings, "cache_logger_on_first_use": False})


structlog.configure = _configure_uncached


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Undo any logging set-up a test made (the CLI configures it globally)."""
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h).__name__ == "_FromLogging"]:
        root.removeHandler(handler)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(REQUIRE_PG_ENV) == "1" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped while {REQUIRE_PG_ENV}=1: {report.longrepr}"


@pytest.fixture
def make_pg_url() -> Iterator[Callable[[], str]]:
    """Factory of PostgreSQL URLs, each on a fresh schema dropped after the test.

    Name it before the fixtures that start what uses its schemas (proxies, stacks):
    fixtures are torn down in reverse, so the schema then outlives its users."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"set {PG_ENV} to run the PostgreSQL tests")
    with pg_schemas(base, "t") as make:
        yield make


@contextlib.contextmanager
def pg_schemas(base: str, prefix: str) -> Iterator[Callable[[], str]]:
    """Make URLs of ``base`` whose search_path is a fresh schema; drop them at the end."""
    admin = create_engine(normalize_url(base))
    schemas: list[str] = []

    def make() -> str:
        schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        url = make_url(normalize_url(base)).update_query_dict(
            {"options": f"-csearch_path={schema}"}
        )
        return url.render_as_string(hide_password=False)

    try:
        yield make
    finally:
        with admin.begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_url(make_pg_url: Callable[[], str]) -> str:
    """A PostgreSQL URL whose search_path is a fresh schema."""
    return make_pg_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return str(request.getfixturevalue("pg_url"))
