"""Real network faults in front of a real store: answers cut short after the store applied them.

``CuttingFront`` is a TCP server on port 0 that passes each HTTP request on to a store
and its answer back, byte for byte, except the answers its ``cut`` rule picks: those
it breaks off (before the status line, in the headers, or in the body) and then
drops the connection, after the store has applied the request; or that it refuses
with a 503 without passing them on (``REFUSE``), or that it loses: the connection
drops and the store never sees them (``LOSE``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, Literal

import aiohttp

Cut = Literal["before_status_line", "mid_headers", "mid_body"]
CUTS: tuple[Cut, ...] = ("before_status_line", "mid_headers", "mid_body")
REFUSE: Final = "refuse"  # answered 503 at once, never passed on: a store that failed
LOSE: Final = "lose"  # the connection dropped, the request never passed on
Rule = Callable[[str, str], Cut | Literal["refuse", "lose"] | None]


class CuttingFront:
    """A TCP server passing requests to ``target`` and cutting the answers ``rule`` picks."""

    def __init__(self, target: str, rule: Rule) -> None:
        self.target = target.rstrip("/")
        self.rule = rule
        self.cut: list[tuple[str, str, Cut]] = []  # what was cut: method, path, how
        self.port = 0
        self._servers: list[asyncio.Server] = []  # every one started, stopped ones too
        self._transports: set[asyncio.BaseTransport] = set()  # every connection accepted
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        """Start listening; return the front's base URL."""
        self._session = aiohttp.ClientSession(auto_decompress=False)
        await self.listen()
        return f"http://127.0.0.1:{self.port}"

    async def listen(self) -> None:
        """Accept connections (again) on the front's port (a free one at first)."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._protocol, "127.0.0.1", self.port)
        self._servers.append(server)
        self.port = server.sockets[0].getsockname()[1]

    def stop_listening(self) -> None:
        """Refuse new connections; those accepted go on."""
        for server in self._servers:
            server.close()

    def _protocol(self) -> asyncio.StreamReaderProtocol:
        """A connection's protocol, the front keeping its transport: a connection whose
        handler never ran (the test ended first) is closed by ``close`` all the same."""
        front = self

        class Kept(asyncio.StreamReaderProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                front._transports.add(transport)
                super().connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                front._transports.discard(self._transport)
                super().connection_lost(exc)

        return Kept(asyncio.StreamReader(), self._serve)

    async def close(self) -> None:
        self.stop_listening()
        for server in self._servers:
            await server.wait_closed()
        for transport in list(self._transports):
            transport.close()
        self._transports.clear()
        if self._session is not None:
            await self._session.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = [tuple(x.split(":", 1)) for x in lines[1:] if ":" in x]
                fields = {k.strip(): v.strip() for k, v in headers}
                length = int(
                    next((v for k, v in fields.items() if k.lower() == "content-length"), 0)
                )
                body = await reader.readexactly(length)
                how = self.rule(method, path)
                if how == REFUSE:
                    refused = b'{"error": {"code": "unavailable", "message": "fault"}}'
                    writer.write(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(refused)}\r\n\r\n".encode()
                        + refused
                    )
                    await writer.drain()
                    continue
                if how == LOSE:
                    self.cut.append((method, path, "before_status_line"))
                    return
                try:
                    answer = await self._forward(method, path, fields, body)
                except aiohttp.ClientError:
                    return  # the store is down: so is the front, for this connection
                if how is None:
                    writer.write(answer)
                    await writer.drain()
                    continue
                self.cut.append((method, path, how))
                head_end = answer.index(b"\r\n\r\n") + 4
                prefix = {
                    "before_status_line": b"",
                    "mid_headers": answer[: head_end // 2],
                    "mid_body": answer[: head_end + max(1, (len(answer) - head_end) // 2)],
                }[how]
                writer.write(prefix)
                await writer.drain()
                return
        except asyncio.CancelledError:
            return  # the test is over: its loop cancels the connections left open
        finally:
            writer.close()

    async def _forward(self, method: str, path: str, fields: dict[str, str], body: bytes) -> bytes:
        assert self._session is not None
        sent = {k: v for k, v in fields.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(
            method, self.target + path, headers=sent, data=body, allow_redirects=False
        ) as answer:
            content = await answer.read()
            kept = [
                (k, v)
                for k, v in answer.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            ]
        head = f"HTTP/1.1 {answer.status} {answer.reason}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in kept)
        head += f"Content-Length: {len(content)}\r\n\r\n"
        return head.encode("latin-1") + content


def full_backlog() -> tuple[object, str]:
    """A listening socket whose accept queue is full: connecting to it times out.

    Returns the sockets to keep open (close them at the end) and the URL.
    """
    import socket

    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    filler = socket.create_connection(full.getsockname())
    port = full.getsockname()[1]
    return (full, filler), f"http://127.0.0.1:{port}"
