"""The proxy's two aiohttp applications (client side and admin) over one proxy instance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from memshift.proxy.admin import make_admin_app
from memshift.proxy.handler import handler_for
from memshift.proxy.instance import Proxy
from memshift.proxy.keys import PROXY
from memshift.serving import DIRECT


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    proxy = app[PROXY]
    await proxy.start()
    yield
    await proxy.close()
    await asyncio.to_thread(proxy.state_db.close)


def make_apps(proxy: Proxy) -> tuple[web.Application, web.Application]:
    """Return the client-side app and the admin app; the client side owns the lifecycle."""
    app = web.Application(client_max_size=proxy.holder.current.proxy.max_body_bytes)
    app[PROXY] = proxy
    app.cleanup_ctx.append(_lifecycle)
    handle = handler_for(proxy)
    app[DIRECT] = handle  # served without the router (``serving``); test clients use it
    # Every path, a newline in it (%0A) included: "." alone stops at one.
    app.router.add_route("*", r"/{tail:[\s\S]*}", handle)
    return app, make_admin_app(proxy)
