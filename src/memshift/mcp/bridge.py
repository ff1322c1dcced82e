"""An MCP client on stdin/stdout, carried to memshift's own endpoint over Streamable HTTP.

``memshift stdio`` makes memshift one command in a desktop client's MCP settings. The
client writes newline-delimited JSON-RPC on memshift's stdin and reads it on stdout;
``StdioBridge`` carries each message to the proxy's MCP endpoint (on a loopback port
of its own) in one session, and every message that comes back (a JSON answer, each
event of a stream, and the events of the standalone GET stream the server may send
on) to stdout, one line each. stdout carries JSON-RPC and nothing else: memshift logs
to stderr.

- ``initialize`` is carried first and alone; the session id and protocol version the
  proxy answers go with every later message. Other messages go concurrently, as a
  client over HTTP would send them, and their answers are written as they come.
- A session the proxy no longer knows (404: it idled out, or the proxy was restarted
  without its state) is opened again with the client's own ``initialize`` and the
  message sent again: the client never notices.
- A line that is not JSON gets a JSON-RPC parse error (-32700); a request the proxy
  answers with an HTTP error that is not JSON-RPC gets a JSON-RPC error with the
  proxy's message; nothing from outside ever ends the bridge but the end of stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import structlog

from memshift.mcp import protocol
from memshift.mcp.sse import SseSplitter

log = structlog.get_logger("memshift.stdio")

LINE_LIMIT = 64 * 1024 * 1024
Write = Callable[[bytes], Awaitable[None]]


def _error(rpc_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": message}}


class StdioBridge:
    """One client's JSON-RPC lines, carried to ``url`` in one MCP session (see the module)."""

    def __init__(self, url: str, headers: dict[str, str], write: Write) -> None:
        self.url = url
        self.headers = headers
        self.write = write
        self.session: str | None = None
        self.version: str | None = None
        self._initialize: bytes | None = None  # the client's own, to open a session again
        self._reopen = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()
        self._listening: asyncio.Task[None] | None = None

    async def run(self, lines: asyncio.StreamReader) -> None:
        """Carry every line of ``lines`` until it ends, then wait for the answers owed."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            self.http = http
            while True:
                try:
                    line = await lines.readline()
                except ValueError:  # longer than LINE_LIMIT: skip to its end
                    await self.emit(_error(None, -32600, "message too large"))
                    continue
                if not line:
                    break
                if line.strip():
                    await self._take(line.strip())
            if self._pending:
                await asyncio.wait(self._pending)
            if self._listening is not None:
                self._listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._listening
            await self._close_session()

    async def emit(self, message: Any) -> None:
        await self.write(orjson.dumps(message) + b"\n")

    async def _take(self, line: bytes) -> None:
        msg = protocol.loads(line)
        if not isinstance(msg, dict):
            await self.emit(_error(None, -32700, "parse error: a line is one JSON-RPC message"))
            return
        if msg.get("method") == "initialize":
            self._initialize = line
            await self._send(line, msg)  # alone: the session starts with its answer
            return
        task = asyncio.ensure_future(self._send(line, msg))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _headers(self) -> dict[str, str]:
        headers = {
            **self.headers,
            "Accept": protocol.ACCEPT,
            "Content-Type": "application/json",
        }
        if self.session:
            headers[protocol.SESSION_HEADER] = self.session
        if self.version:
            headers[protocol.VERSION_HEADER] = self.version
        return headers

    async def _send(self, line: bytes, msg: dict[str, Any], again: bool = True) -> None:
        rpc_id = msg.get("id")
        try:
            async with self.http.post(self.url, data=line, headers=self._headers()) as answer:
                if answer.status == 404 and self.session and again and self._initialize:
                    stale = self.session
                    await answer.read()
                    await self._reopen_session(stale)
                    await self._send(line, msg, again=False)
                    return
                await self._relay(answer, msg, rpc_id)
        except aiohttp.ClientError as exc:
            log.warning("stdio_bridge_failed", error=str(exc) or type(exc).__name__)
            if rpc_id is not None and "method" in msg:
                await self.emit(_error(rpc_id, -32603, "memshift could not reach its proxy"))

    async def _relay(
        self, answer: aiohttp.ClientResponse, msg: dict[str, Any], rpc_id: Any
    ) -> None:
        if msg.get("method") == "initialize" and answer.status < 300:
            self.session = answer.headers.get(protocol.SESSION_HEADER, self.session)
        if answer.content_type == "text/event-stream":
            splitter = SseSplitter()
            async for chunk in answer.content.iter_any():
                for event in splitter.feed(chunk):
                    await self._event(event.message())
            return
        body = await answer.read()
        reply = protocol.loads(body)
        if isinstance(reply, dict | list) and reply:
            await self._event(reply)
        elif answer.status >= 400 and rpc_id is not None and "method" in msg:
            await self.emit(_error(rpc_id, -32603, f"memshift answered HTTP {answer.status}"))

    async def _event(self, message: Any) -> None:
        if message is None:
            return  # a keep-alive comment
        if isinstance(message, dict) and isinstance(message.get("result"), dict):
            version = message["result"].get("protocolVersion")
            if isinstance(version, str) and self._initialize is not None and not self.version:
                self.version = version
                self._listen()
        await self.emit(message)

    def _listen(self) -> None:
        """Open the standalone GET stream once a session exists (server messages)."""
        if self.session and self._listening is None:
            self._listening = asyncio.ensure_future(self._standalone())

    async def _standalone(self) -> None:
        wait = 1.0
        while True:
            headers = self._headers() | {"Accept": "text/event-stream"}
            try:
                async with self.http.get(self.url, headers=headers) as answer:
                    if answer.status in (404, 405) or answer.content_type != "text/event-stream":
                        return  # the server sends nothing of its own
                    splitter = SseSplitter()
                    async for chunk in answer.content.iter_any():
                        for event in splitter.feed(chunk):
                            await self._event(event.message())
                    wait = 1.0
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(wait)
            wait = min(wait * 2, 30.0)

    async def _reopen_session(self, stale: str) -> None:
        """Open a session again with the client's own ``initialize`` (its answer is not
        the client's: it has one)."""
        async with self._reopen:
            if self.session != stale:
                return  # another message opened it already
            self.session = None
            assert self._initialize is not None
            headers = self._headers()
            async with self.http.post(self.url, data=self._initialize, headers=headers) as answer:
                await answer.read()
                self.session = answer.headers.get(protocol.SESSION_HEADER)
            if self.session:
                initialized = orjson.dumps(protocol.INITIALIZED)
                async with self.http.post(self.url, data=initialized, headers=self._headers()):
                    pass
            log.info("stdio_session_reopened")

    async def _close_session(self) -> None:
        if not self.session:
            return
        with contextlib.suppress(aiohttp.ClientError):
            async with self.http.delete(self.url, headers=self._headers()):
                pass
