"""``memshift serve`` and ``memshift replay``: the proxy's own commands."""

from __future__ import annotations

import asyncio

from memshift.runtime import run_async
from memshift.serving import serve_apps
from memshift.webutil import check_free


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
        await serve_apps(
            apps,
            ready,
            reuse_port=worker is not None,
            header_timeout_s=settings.proxy.header_timeout_s,
        )

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
