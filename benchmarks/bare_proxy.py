"""A bare aiohttp pass-through proxy: the yardstick memshift's cost is measured against.

    python -m benchmarks.bare_proxy --listen PORT --target URL [--mirror URL]

What any aiohttp proxy must do and nothing more: one keep-alive ``ClientSession``, the
body read once, method, path, query, body and content type passed on, the answer's
status, content type and body passed back. With ``--mirror``, a write (POST, PUT,
PATCH, DELETE) is sent to the mirror after the target answered, and the target's
answer goes to the client: a dual-write proxy without ids, logs or retries.
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web

from memshift.runtime import loop_factory

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
SESSION = web.AppKey("session", aiohttp.ClientSession)


def make_app(target: str, mirror: str | None) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)

    async def session(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[SESSION].close()

    async def send(base: str, request: web.Request, body: bytes) -> tuple[int, str, bytes]:
        headers = {
            k: v for k, v in request.headers.items() if k in ("Authorization", "Content-Type")
        }
        async with app[SESSION].request(
            request.method, base + request.rel_url.raw_path_qs, data=body, headers=headers
        ) as resp:
            return resp.status, resp.content_type, await resp.read()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        status, content_type, payload = await send(target, request, body)
        if mirror and request.method in WRITES and status < 300:
            await send(mirror, request, body)
        return web.Response(status=status, body=payload, content_type=content_type)

    app.cleanup_ctx.append(session)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--mirror")
    args = parser.parse_args()
    factory = loop_factory()  # the same event loop memshift runs on
    web.run_app(
        make_app(args.target, args.mirror),
        host="127.0.0.1",
        port=args.listen,
        access_log=None,
        print=None,
        loop=factory() if factory else None,
    )


if __name__ == "__main__":
    main()
