"""Builds the proxy's two applications (client side and admin) over one core."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web

from memshift.compare import store as report_store
from memshift.config.settings import Settings, StoreName
from memshift.config.watch import watch
from memshift.proxy.admin import make_admin_app
from memshift.proxy.core import ProxyCore
from memshift.proxy.handler import CORE, handle
from memshift.proxy.shadowhelper import ShadowHelper
from memshift.statedb import open_state
from memshift.upstream import Upstream

log = structlog.get_logger("memshift.proxy")

REFRESH_EVERY_S = 1.0
CHECKPOINT_EVERY_S = 1.0


async def _refresh_loop(core: ProxyCore) -> None:
    """Adopt control changes other instances made, and pairs a repair replaced, within a second."""
    while True:
        await asyncio.sleep(REFRESH_EVERY_S)
        try:
            await core.plane.refresh()
            if await core.idmap.sync():
                log.info("id_map_reloaded", reason="pairs replaced by a repair")
        except Exception as exc:  # the state db may be briefly unreachable
            core.background_failed("control_refresh", exc)


async def _checkpoints(core: ProxyCore) -> None:
    """Checkpoint the state db off the event loop, which commits the write log itself."""
    while True:
        await asyncio.sleep(CHECKPOINT_EVERY_S)
        try:
            await core.state_db.checkpoint()
        except Exception as exc:  # busy or briefly unreachable: the next one catches up
            core.background_failed("state_checkpoint", exc)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    core = app[CORE]
    settings = core.holder.current
    await core.plane.start(settings.routing)
    core.background.spawn(core.log.flusher(), "write-log", daemon=True)
    if settings.compare.helper:
        core.shadow_helper = ShadowHelper(core)
        core.background.spawn(core.shadow_helper.run(), "shadow-helper", daemon=True)
    mine = (await report_store.saved(core.state_db)).get(core.instance)
    if mine:
        core.report.absorb(mine)  # the report survives a restart
    core.background.spawn(core.report_loop(), "report", daemon=True)
    await core.replayer.recover()
    core.background.spawn(core.replay_loop(), "replay", daemon=True)
    core.background.spawn(_refresh_loop(core), "control-refresh", daemon=True)
    core.background.spawn(_checkpoints(core), "state-checkpoint", daemon=True)
    core.background.spawn(core.watchdog(), "watchdog", daemon=True)
    if settings.source:
        core.background.spawn(
            watch(core.holder, Path(settings.source)), "config-watch", daemon=True
        )
    log.info(
        "proxy_ready",
        listen=str(settings.proxy.listen),
        epoch=core.plane.state.epoch,
        primary=core.plane.state.primary,
        read_percent=core.plane.state.read_percent,
    )
    yield
    await core.close()
    await asyncio.to_thread(core.state_db.close)


def make_core(
    settings: Settings,
    upstreams: dict[StoreName, Upstream] | None = None,
    worker: int | None = None,
) -> ProxyCore:
    """Return the core of a proxy instance for ``settings`` (opens the state db)."""
    return ProxyCore(settings, open_state(settings.state.url), upstreams, worker)


def make_apps(core: ProxyCore) -> tuple[web.Application, web.Application]:
    """Return the client-side proxy app and the admin app; the proxy app owns the lifecycle."""
    app = web.Application(client_max_size=core.holder.current.proxy.max_body_bytes)
    app[CORE] = core
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app, make_admin_app(core)
