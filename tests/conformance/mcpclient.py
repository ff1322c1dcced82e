"""A bare MCP client over Streamable HTTP, for scenarios the official client will not play.

It sends what a test tells it to, ids included (two calls may share one), and opens a
new session when the proxy no longer knows its own (after a restart, say).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import aiohttp

VERSION = "2025-06-18"


class McpError(Exception):
    """A call that did not succeed: a JSON-RPC error, a tool error, or an HTTP status."""


class BareMcp:
    """One MCP session with the proxy at ``url``; ``headers`` go with every request."""

    def __init__(self, http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
        self.http, self.url, self.headers = http, url, headers
        self.session: str | None = None
        self._ids = itertools.count(1)

    async def open(self) -> None:
        """Initialize a session (again, if the proxy forgot the last one)."""
        self.session = None
        params = {
            "protocolVersion": VERSION,
            "capabilities": {},
            "clientInfo": {"name": "memshift-tests", "version": "0"},
        }
        await self.send("initialize", params, next(self._ids))
        await self.send("notifications/initialized", {}, None)

    async def send(self, method: str, params: dict[str, Any], rpc_id: Any) -> Any:
        """Send one message (a notification when ``rpc_id`` is None); return its reply."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if rpc_id is not None:
            message["id"] = rpc_id
        headers = {
            **self.headers,
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "MCP-Protocol-Version": VERSION,
        }
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        async with self.http.post(self.url, json=message, headers=headers) as answer:
            if answer.status >= 400:
                raise McpError(f"{method}: HTTP {answer.status}: {await answer.text()}")
            self.session = answer.headers.get("Mcp-Session-Id", self.session)
            if rpc_id is None:
                return None
            reply = await _reply(answer)
        if reply.get("id") != rpc_id:
            raise McpError(f"{method}: a reply to id {reply.get('id')!r}, not {rpc_id!r}")
        if "error" in reply:
            raise McpError(f"{method}: {reply['error']}")
        return reply["result"]

    async def call(self, tool: str, arguments: dict[str, Any], rpc_id: Any = None) -> Any:
        """Call ``tool``; return its structured content, else its text parsed as JSON."""
        if self.session is None:
            await self.open()
        result = await self.send(
            "tools/call",
            {"name": tool, "arguments": arguments},
            next(self._ids) if rpc_id is None else rpc_id,
        )
        if result.get("isError"):
            raise McpError(f"{tool}: {result}")
        if "structuredContent" in result:
            return result["structuredContent"]
        texts = [c.get("text", "") for c in result.get("content", []) if c.get("type") == "text"]
        try:
            return json.loads("".join(texts))
        except ValueError:
            return "".join(texts)


async def _reply(answer: aiohttp.ClientResponse) -> dict[str, Any]:
    """The JSON-RPC reply in a JSON body or, for a stream, its first reply event."""
    if answer.content_type != "text/event-stream":
        reply: dict[str, Any] = await answer.json()
        return reply
    data: list[str] = []
    async for raw in answer.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif not line and data:
            event = json.loads("\n".join(data))
            data = []
            if "id" in event and ("result" in event or "error" in event):
                return dict(event)
    raise McpError("the stream ended with no reply")
