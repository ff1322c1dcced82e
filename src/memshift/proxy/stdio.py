"""``memshift stdio``: the proxy as an MCP server on stdin/stdout, for desktop clients.

A desktop AI client runs its MCP servers as commands and speaks JSON-RPC on their
stdin and stdout. ``memshift stdio --config FILE`` is such a command: it runs the
whole proxy as ``serve`` does (write log, mirroring, shadow compare, failback, and the
admin API and report on ``[admin] listen``), with its client-facing endpoint on a
loopback port of its own, and carries the client's messages to it (``mcp/bridge.py``).

stdout is the client's: it carries JSON-RPC and nothing else. File descriptor 1 is
pointed at stderr before anything starts, so no print of memshift, of a library or of
a child process can reach the client; the bridge writes to a copy of the original.
Logs go to stderr. The bridge ends, and memshift with it, when stdin ends (the client
closed it) or on SIGTERM or Ctrl-C.

A store with users needs to know the client: ``MEMSHIFT_STDIO_TOKEN`` (or the variable
``--token-env`` names) is sent as the client's bearer token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

import structlog
from aiohttp import web

from memshift.config.settings import Listen
from memshift.mcp.bridge import LINE_LIMIT, StdioBridge
from memshift.runtime import run_async, settle_heap
from memshift.serving import start_app
from memshift.webutil import check_free

log = structlog.get_logger("memshift.stdio")
TOKEN_ENV = "MEMSHIFT_STDIO_TOKEN"


def _take_stdout() -> int:
    """A private copy of stdout for JSON-RPC; fd 1 (and ``sys.stdout``) become stderr."""
    sys.stdout.flush()
    private = os.dup(1)
    os.dup2(2, 1)
    return private


async def _start(
    app: web.Application, listen: Listen, timeout_s: float
) -> tuple[web.AppRunner, int]:
    runner = await start_app(app, listen, "admin.listen", timeout_s)
    return runner, int(runner.addresses[0][1])


def run_stdio(settings_path: str, token_env: str = TOKEN_ENV) -> int:
    """Run the proxy behind a stdio bridge until stdin ends; return the exit status."""
    from memshift.config.load import load_settings
    from memshift.proxy.app import make_apps
    from memshift.proxy.instance import make_proxy

    settings = load_settings(settings_path)
    check_free([(settings.admin.listen, "admin.listen")])
    token = os.environ.get(token_env, "")
    out = _take_stdout()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        proxy_app, admin_app = make_apps(make_proxy(settings))
        runners: list[web.AppRunner] = []
        try:
            admin: Listen = settings.admin.listen
            timeout_s = settings.proxy.header_timeout_s
            runners.append((await _start(admin_app, admin, timeout_s))[0])
            runner, port = await _start(proxy_app, Listen(host="127.0.0.1", port=0), timeout_s)
            runners.append(runner)
            settle_heap()
            reader = asyncio.StreamReader(limit=LINE_LIMIT)
            await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
            )
            transport, stream = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, os.fdopen(out, "wb", buffering=0)
            )
            writer = asyncio.StreamWriter(transport, stream, None, loop)

            async def write(data: bytes) -> None:
                writer.write(data)
                await writer.drain()

            headers = {"Authorization": f"Bearer {token}"} if token else {}
            bridge = StdioBridge(f"http://127.0.0.1:{port}{settings.mcp.path}", headers, write)
            log.info("stdio_ready", admin=str(admin), endpoint=f"127.0.0.1:{port}")
            carrying = asyncio.ensure_future(bridge.run(reader))
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, carrying.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await carrying
            return 0
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            for runner in reversed(runners):
                await runner.cleanup()

    return run_async(main())
