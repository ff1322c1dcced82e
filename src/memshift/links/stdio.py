"""A store that is an MCP server on stdin/stdout: memshift starts it and speaks JSON-RPC to it.

Most MCP memory servers run as a child of their client, speaking newline-delimited
JSON-RPC on stdin and stdout (the official ``@modelcontextprotocol/server-memory`` has
no other transport). ``StdioStore`` runs such a server from ``[stores.NAME] command``
(with ``env`` and ``cwd``), initializes it once (any protocol version it answers with,
2024-11-05 to the newest), and multiplexes every request on that one session with ids
of its own, so concurrent requests never meet.

To the rest of memshift it looks like a store reached over Streamable HTTP: a POST of
a JSON-RPC message to the MCP path gets the store's response as a JSON answer, an
``initialize`` gets the child's (it is initialized once, by memshift), and a
notification goes to the child and gets 202. So the proxy's MCP codec, memshift's own
tool calls and migration all work on it unchanged. A store without an HTTP API answers
anything else with ``NotSent``.

Failures map to the same taxonomy as HTTP's: while the child is not running, requests
are ``NotSent`` (their writes wait in the backlog); a request in flight when it exits,
or unanswered for ``read_timeout_s``, is ``OutcomeUnknown``. A child that exits is
started again, with backoff (1 s, doubling to 30 s). Its stderr goes to memshift's log,
one event per line. On Linux the child is killed when memshift dies, however it dies:
a store that outlived a killed proxy would go on applying the writes left in its pipe
to the very file the restarted proxy's child rewrites. Quirks of real servers are
tolerated: a line that is not JSON (a server logging to stdout) is logged and skipped,
an answer to no request of ours (an error reply to a notification, an id of
``"unknown"``) is dropped, a request from the server is answered (``ping``) or refused
(-32601).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import orjson
import structlog

from memshift import logs
from memshift.config.settings import StoreEndpoint, StoreName
from memshift.errors import NotSent, OutcomeUnknown, UpstreamError
from memshift.links import clock
from memshift.links.wire import OutboundRequest, StreamedResponse, UpstreamResponse
from memshift.mcp import protocol

log = structlog.get_logger("memshift.links")

RESTART_MIN_S, RESTART_MAX_S = 1.0, 30.0
LINE_LIMIT = 64 * 1024 * 1024  # the longest message a child may write
STOP_WITHIN_S = 5.0
_JSON = (("Content-Type", "application/json"),)
Spawn = Callable[[Coroutine[Any, Any, None], str], object]
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child killed when its parent dies (Linux), or None.

    The C function is looked up here, before the fork: between fork and exec the child
    only calls it.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    return arm


DIE_WITH_PARENT = _die_with_parent()


class StdioStore:
    """One store run as a child process, reached through one MCP session on its stdio."""

    def __init__(self, endpoint: StoreEndpoint, mcp_path: Callable[[], str], spawn: Spawn) -> None:
        self.name: StoreName = endpoint.name
        self.endpoint = endpoint
        self.mcp_path = mcp_path
        self._spawn = spawn
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._up = asyncio.Event()  # running and initialized
        self._init: dict[str, Any] | None = None  # the child's answer to our initialize
        self._started = False
        self._closed = False
        self.restarts = 0

    # The HTTP-shaped face (see the module).

    async def request(self, request: OutboundRequest) -> UpstreamResponse:
        """Answer a request as a store over Streamable HTTP would; raise ``UpstreamError``."""
        started = clock.now()
        path = "/" + request.path_qs.lstrip("/").partition("?")[0]
        if path != self.mcp_path():
            raise NotSent(self.name, f"{path}: a stdio store serves only MCP")
        if request.method == "DELETE":
            return UpstreamResponse(200, (), b"", 0.0)
        if request.method != "POST":
            return UpstreamResponse(405, _JSON, b"", 0.0)
        msg = protocol.loads(request.body)
        if not isinstance(msg, dict) or "method" not in msg:
            return UpstreamResponse(400, _JSON, b"", 0.0)
        if "id" not in msg:  # a notification
            if msg.get("method") != "notifications/initialized":  # ours was sent already
                await self.notify(msg)
            return UpstreamResponse(202, (), b"", clock.now() - started)
        if msg.get("method") == "initialize":  # memshift initialized it already
            result = {**(await self._initialized())}
            params = msg.get("params")
            asked = params.get("protocolVersion") if isinstance(params, dict) else None
            if asked in protocol.HANDSHAKE_VERSIONS:  # the caller's own, which memshift relays
                result["protocolVersion"] = asked
            reply = {"jsonrpc": "2.0", "id": msg["id"], "result": result}
        else:
            reply = await self.call(msg)
        return UpstreamResponse(200, _JSON, orjson.dumps(reply), clock.now() - started)

    @asynccontextmanager
    async def stream(self, request: OutboundRequest) -> AsyncIterator[StreamedResponse]:
        """``request``, its whole answer given as a stream of one chunk."""
        answer = await self.request(request)

        async def chunks() -> AsyncIterator[bytes]:
            if answer.body:
                yield answer.body

        yield StreamedResponse(answer.status, answer.headers, chunks(), answer.elapsed_s)

    # The JSON-RPC session.

    async def call(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send a request; return the child's response with ``msg``'s own id."""
        await self._initialized()
        own = next(self._ids)
        reply = await self._exchange({**msg, "id": own}, own)
        return {**reply, "id": msg["id"]}

    async def notify(self, msg: dict[str, Any]) -> None:
        """Send a notification (nothing comes back)."""
        await self._initialized()
        self._write(msg)

    async def _initialized(self) -> dict[str, Any]:
        """The child's initialize result; start it first if needed; raise ``NotSent``."""
        if not self._started:
            self._started = True
            self._spawn(self._supervise(), f"stdio-{self.name}")
        if not self._up.is_set():
            try:
                async with asyncio.timeout(self.endpoint.connect_timeout_s):
                    await self._up.wait()
            except TimeoutError:
                raise NotSent(self.name, "the server is not running", timeout=True) from None
        assert self._init is not None
        return self._init

    def _write(self, msg: dict[str, Any]) -> None:
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            raise NotSent(self.name, "the server is not running")
        process.stdin.write(orjson.dumps(msg) + b"\n")

    async def _exchange(self, msg: dict[str, Any], own: int) -> dict[str, Any]:
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[own] = waiter
        try:
            self._write(msg)
            async with asyncio.timeout(self.endpoint.read_timeout_s):
                return await waiter
        except TimeoutError:
            raise OutcomeUnknown(self.name, "timed out", timeout=True) from None
        finally:
            self._waiting.pop(own, None)

    # The child process.

    async def _supervise(self) -> None:
        """Run the child; start it again with backoff when it exits, until ``close``."""
        logs.unbound()  # started by whichever request came first: not that request's
        wait = RESTART_MIN_S
        while not self._closed:
            ran_for = 0.0
            try:
                ran_for = await self._run_once()
            except (OSError, ValueError) as exc:
                log.error("stdio_store_failed", store=self.name, error=str(exc))
            except UpstreamError as exc:
                log.error("stdio_store_failed", store=self.name, error=exc.message)
            if self._closed:
                return
            self.restarts += 1
            wait = RESTART_MIN_S if ran_for > RESTART_MAX_S else min(wait * 2, RESTART_MAX_S)
            log.warning("stdio_store_restarting", store=self.name, after_s=wait)
            await asyncio.sleep(wait)

    async def _run_once(self) -> float:
        started = time.monotonic()
        env = {**os.environ, **self.endpoint.env}
        self._process = process = await asyncio.create_subprocess_exec(
            *self.endpoint.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=self.endpoint.cwd or None,
            limit=LINE_LIMIT,
            start_new_session=True,  # Ctrl-C reaches memshift, which stops it
            preexec_fn=DIE_WITH_PARENT,  # only calls prctl: safe between fork and exec
        )
        log.info("stdio_store_started", store=self.name, pid=process.pid)
        readers = [
            asyncio.ensure_future(self._read_stdout(process)),
            asyncio.ensure_future(self._read_stderr(process)),
        ]
        try:
            self._init = await self._handshake()
            self._up.set()
            log.info(
                "stdio_store_ready",
                store=self.name,
                version=self._init.get("protocolVersion"),
                server=self._init.get("serverInfo"),
            )
            code = await process.wait()
            if not self._closed:
                log.error("stdio_store_exited", store=self.name, exit_code=code)
        finally:
            self._up.clear()
            self._process = None
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(OutcomeUnknown(self.name, "the server exited"))
                    waiter.exception()
            await _stop(process)
            for task in readers:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return time.monotonic() - started

    async def _handshake(self) -> dict[str, Any]:
        """``initialize`` the child and tell it it is initialized; return its result."""
        own = next(self._ids)
        init = protocol.initialize_request(str(own))
        reply = await self._exchange({**init, "id": own}, own)
        result = reply.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("protocolVersion"), str):
            raise NotSent(self.name, f"the server refused to initialize: {reply.get('error')}")
        self._write(protocol.INITIALIZED)
        return result

    async def _read_stdout(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            msg = protocol.loads(line.strip())
            if not isinstance(msg, dict):
                if line.strip():
                    log.warning("stdio_store_noise", store=self.name, line=_shown(line))
                continue
            if protocol.is_response(msg):
                waiter = self._waiting.get(msg.get("id"))  # type: ignore[arg-type]
                if waiter is not None and not waiter.done():
                    waiter.set_result(msg)
                else:  # an answer to no request of ours ("unknown", a notification's)
                    log.warning("stdio_store_stray_reply", store=self.name, id=msg.get("id"))
            elif protocol.is_request(msg):
                self._answer_server(msg)

    def _answer_server(self, msg: dict[str, Any]) -> None:
        """The server asks something of its client: a ping is answered, nothing else."""
        if msg.get("method") == "ping":
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": msg["id"], "result": {}}
        else:
            error = {"code": -32601, "message": "memshift answers no requests"}
            reply = {"jsonrpc": "2.0", "id": msg["id"], "error": error}
        with contextlib.suppress(NotSent):
            self._write(reply)

    async def _read_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            if line.strip():
                log.info("stdio_store_stderr", store=self.name, line=_shown(line))

    async def close(self) -> None:
        """Stop the child for good."""
        self._closed = True
        process = self._process
        if process is not None:
            await _stop(process)


def _shown(line: bytes) -> str:
    text = line.decode("utf-8", "replace").rstrip()
    return text if len(text) <= 2000 else text[:2000] + "…"


async def _stop(process: asyncio.subprocess.Process) -> None:
    """End the child: close its stdin (most servers exit then), TERM, then KILL."""
    if process.returncode is not None:
        return
    if process.stdin is not None:
        process.stdin.close()
    for signal_it in (None, process.terminate, process.kill):
        if signal_it is not None:
            with contextlib.suppress(ProcessLookupError):
                signal_it()
        try:
            async with asyncio.timeout(STOP_WITHIN_S / 2):
                await process.wait()
            return
        except TimeoutError:
            continue
