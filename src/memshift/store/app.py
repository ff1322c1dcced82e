"""Builds a store's aiohttp application for one engine and one database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from sqlalchemy.exc import DBAPIError

from memshift.database import Database
from memshift.errors import ConfigError
from memshift.store import mcp, openapi, routes, schema, search
from memshift.store.api import STATE, StoreState, auth_middleware, errors_middleware
from memshift.store.content import BlobContent, ContentStore, PlainContent
from memshift.store.settings import StoreSettings
from memshift.store.tokens import Principal

log = structlog.get_logger("memshift.store")


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    try:
        indexed = await asyncio.to_thread(
            prepare_store, state.db, state.settings.engine, state.content
        )
    except DBAPIError as exc:  # not a database, damaged, unreachable: one line, exit 2
        await asyncio.to_thread(state.db.close)
        why = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise ConfigError("--db", f"the store's database cannot be used: {why}") from None
    if indexed:
        log.info("search_index_built", memories=indexed)
    log.info(
        "store_ready",
        engine=state.settings.engine,
        database=state.db.engine.url.get_backend_name(),
    )
    yield
    await asyncio.to_thread(state.db.close)


def prepare_store(db: Database, engine: str, content: ContentStore) -> int:
    """Make ``db`` ready to serve as an ``engine`` store: its tables, its claim, its
    search index; return how many memories were indexed (a store made before it)."""
    schema.prepare(db, engine)
    return search.prepare(db, content)


def content_store(settings: StoreSettings) -> ContentStore:
    """Return the content store of the configured engine."""
    if settings.engine == "legacy":
        return PlainContent()
    return BlobContent(
        level=settings.zstd_level,
        compress_min_bytes=settings.compress_min_bytes,
        chunk_bytes=settings.chunk_bytes,
    )


def make_app(settings: StoreSettings, tokens: dict[str, Principal]) -> web.Application:
    """Return the store application; the database is prepared when the app starts."""
    if not tokens:
        raise ConfigError("tokens", "a store needs at least one token")
    app = web.Application(
        client_max_size=settings.body_limit(acting=True),  # a client's: api.body_of
        middlewares=[errors_middleware, auth_middleware],
    )
    db = Database(settings.db_url, readers=settings.readers, group_writes=True)
    admins = frozenset(p.user for p in tokens.values() if p.admin)
    app[STATE] = StoreState(settings, tokens, db, content_store(settings), admins=admins)
    app.cleanup_ctx.append(_lifecycle)
    routes.setup(app)
    openapi.setup(app)
    mcp.setup(app, settings.mcp_hosts)
    return app
