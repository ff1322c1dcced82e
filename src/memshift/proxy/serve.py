"""Run aiohttp applications on their listeners until Ctrl-C or SIGTERM.

A listener that cannot be had (a port in use, an address not on this machine) is one
line naming the setting at fault (``ConfigError``), after the listeners already
started are closed again: nothing is left half-started.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aiohttp import web

from memshift.config.settings import Listen
from memshift.errors import ConfigError
from memshift.runtime import run_async, settle_heap
from memshift.webutil import check_free, listen_problem

App = tuple[web.Application, Listen, str]  # an app, where it listens, the setting saying so


async def serve_apps(
    apps: list[App],
    on_ready: Callable[[], None] | None = None,
    alongside: Sequence[Coroutine[Any, Any, None]] = (),
    *,
    reuse_port: bool = False,
) -> None:
    """Start every app on its listener, wait for a stop signal, then stop them in reverse.

    ``alongside`` runs once every app is listening and is cancelled before they stop.
    """
    runners: list[web.AppRunner] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for app, listen, key in apps:
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            runners.append(runner)
            site = web.TCPSite(
                runner, listen.host, listen.port, reuse_address=True, reuse_port=reuse_port or None
            )
            try:
                await site.start()
            except OSError as exc:
                raise ConfigError(key, listen_problem(exc, listen)) from None
        settle_heap()
        if on_ready:
            on_ready()
        async with asyncio.TaskGroup() as group:
            extra = [group.create_task(work) for work in alongside]
            await stop.wait()
            for task in extra:
                task.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for runner in reversed(runners):
            await runner.cleanup()


def run_proxy(settings_path: str, worker: int | None = None) -> None:
    """``memshift serve``: the proxy and its admin API in front of running stores.

    A ``worker`` of ``serve --workers`` shares both ports with its siblings.
    """
    from memshift.config.load import load_settings
    from memshift.proxy.app import make_apps
    from memshift.proxy.instance import make_proxy

    settings = load_settings(settings_path)
    if worker is None:  # workers share ports their parent checked
        check_free(
            [(settings.proxy.listen, "proxy.listen"), (settings.admin.listen, "admin.listen")]
        )

    def ready() -> None:
        print(
            f"memshift proxy on http://{settings.proxy.listen}, "
            f"admin on http://{settings.admin.listen}"
            + (f" (worker {worker})" if worker is not None else ""),
            flush=True,
        )

    async def main() -> None:
        # Client sessions need a running loop: build everything inside it.
        proxy_app, admin_app = make_apps(make_proxy(settings, worker=worker))
        apps = [
            (proxy_app, settings.proxy.listen, "proxy.listen"),
            (admin_app, settings.admin.listen, "admin.listen"),
        ]
        await serve_apps(apps, ready, reuse_port=worker is not None)

    run_async(main())


def run_replay(settings_path: str) -> int:
    """``memshift replay``: replay the write log now; exit 0 when nothing is left waiting."""
    from memshift.config.load import load_settings
    from memshift.proxy.instance import make_proxy

    settings = load_settings(settings_path)

    async def main() -> int:
        proxy = make_proxy(settings)
        proxy.background.spawn(proxy.commits.flusher(), "write_log", daemon=True)
        try:
            await proxy.peers.beat()  # which instances are alive: their writes are theirs
            if not await proxy.take_replay_lease():
                print("another instance is replaying the write log now; try again later")
                return 1
            waiting = await proxy.replayer.recover()
            print(f"write log: {waiting} write(s) to replay", flush=True)
            while waiting:
                result = await proxy.replayer.run_pass()
                print(
                    f"  replayed {result.replayed}, divergent {result.divergent}, "
                    f"skipped {result.skipped}"
                    + (f", stopped: {result.stopped}" if result.stopped else ""),
                    flush=True,
                )
                if result.stopped or not (result.replayed or result.divergent):
                    break
                waiting = (await proxy.writelog.figures())["backlog"]
            figures = await proxy.writelog.figures()
            print(f"left: {figures['backlog']} waiting, {figures['divergent']} divergent")
            return 0 if not figures["backlog"] else 1
        finally:
            await proxy.close()
            await asyncio.to_thread(proxy.state_db.close)

    return run_async(main())
