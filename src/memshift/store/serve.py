"""Run one reference store process until Ctrl-C or SIGTERM."""

from __future__ import annotations

import structlog
from aiohttp import web

from memshift.config.settings import Listen
from memshift.runtime import loop_factory
from memshift.store.app import make_app
from memshift.store.settings import StoreSettings
from memshift.store.tokens import Principal
from memshift.webutil import check_free

log = structlog.get_logger("memshift.store")


def run_store(settings: StoreSettings, tokens: dict[str, Principal], host: str, port: int) -> None:
    """Serve the store on ``host:port``; return after a clean shutdown."""
    check_free([(Listen(host=host, port=port), "--listen")])
    app = make_app(settings, tokens)
    log.info("store_listening", engine=settings.engine, url=f"http://{host}:{port}")
    factory = loop_factory()
    loop = factory() if factory else None
    web.run_app(app, host=host, port=port, print=None, access_log=None, loop=loop)
