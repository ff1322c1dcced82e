"""Run one reference store process until Ctrl-C or SIGTERM."""

from __future__ import annotations

import structlog

from memshift.config.settings import Listen
from memshift.runtime import run_async
from memshift.serving import serve_apps
from memshift.store.app import make_app
from memshift.store.settings import StoreSettings
from memshift.store.tokens import Principal
from memshift.webutil import check_free

log = structlog.get_logger("memshift.store")


def run_store(settings: StoreSettings, tokens: dict[str, Principal], host: str, port: int) -> None:
    """Serve the store on ``host:port``; return after a clean shutdown."""
    listen = Listen(host=host, port=port)
    check_free([(listen, "--listen")])

    def ready() -> None:
        log.info("store_listening", engine=settings.engine, url=f"http://{host}:{port}")

    async def main() -> None:
        app = make_app(settings, tokens)
        await serve_apps(
            [(app, listen, "--listen")], ready, header_timeout_s=settings.header_timeout_s
        )

    run_async(main())
