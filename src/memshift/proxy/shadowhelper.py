"""The proxy's end of the shadow helper: keeps it running, hands it reads, takes its answers.

The helper (``shadow/helper.py``) does shadow reads in a process of its own at idle CPU
priority. This end starts it, sends it the settings, the reads the proxy sampled and
the id pairs it made since (ahead of any read queued after them, so the helper never
waits for the state db to have them), and gives what comes back to its host: each
read's findings to ``judge``, each store exchange to ``observe``, failures to
``failed``. When the helper falls behind, its bound (``[compare] workers`` + ``queue``
reads in hand) refuses further reads, which the host drops and counts.

A helper that dies is started again, with backoff; the reads it had in hand are
counted as compare failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from memshift import logs
from memshift.config.settings import Settings, StoreName
from memshift.control.callers import calling
from memshift.links.stores import Exchange
from memshift.mcp import protocol
from memshift.shadow.helper import Batch, Sent, read_frame, write_frame
from memshift.shadow.idmap import IdMap
from memshift.shadow.reads import ReadCopy, Shadowed

log = structlog.get_logger("memshift.shadow_helper")

RESTART_MIN_S, RESTART_MAX_S = 1.0, 30.0
CLOSE_WAIT_S = 2.0


class Host(Protocol):
    """What the helper's answers go to (the proxy's ``ShadowReads``)."""

    def judge(self, read: ReadCopy, shadowed: Shadowed) -> None: ...

    def observe(self, exchange: Exchange) -> None: ...

    def failed(self, route: str, error: BaseException, count: int = 1) -> None: ...


class ShadowHelper:
    """The proxy's end: keeps the helper running, hands it reads, passes its answers on."""

    def __init__(self, settings: Callable[[], Settings], host: Host, idmap: IdMap) -> None:
        self.settings = settings
        self.host = host
        self.idmap = idmap
        self.restarts = 0
        self.settled = 0  # reads the helper answered
        self.pid: int | None = None
        self.settings_sent = 0  # reloaded settings passed on to the helper
        self.settings_applied = 0  # and taken by it
        self._pending: dict[int, ReadCopy] = {}
        self._ids = itertools.count(1)
        self._pairs_seen = idmap.made  # pairs the helper was told of, or loads itself
        self._conn: asyncio.StreamWriter | None = None  # to the helper, once connected
        self._ready = False  # it has started and takes reads
        self._out = Batch("batch", lambda: self._conn)  # reads and id pairs, in order
        self._closed = False
        self._stopped = asyncio.Event()

    @property
    def running(self) -> bool:
        """Whether the helper is up and takes reads."""
        return self._ready and not self._closed

    @property
    def active(self) -> int:
        """Shadow reads handed to the helper and not judged yet."""
        return len(self._pending)

    def submit(self, read: ReadCopy, served: StoreName, status: int, body: bytes) -> bool:
        """Hand a shadow read to the helper; False when it has enough in hand."""
        compare = self.settings().compare
        if self._conn is None or not self.running:
            return False
        if len(self._pending) >= compare.workers + compare.queue:
            return False
        for pair in self.idmap.fresh(self._pairs_seen):
            self._out.add(("pair", *pair))
        self._pairs_seen = self.idmap.made
        job = next(self._ids)
        spec = read.match.spec
        tool = read.method == protocol.TOOL
        self._out.add(
            ("read", job, spec.name, tool, read.match.params, read.method, read.path_qs,
             read.body, read.headers, served, status, body)
        )  # fmt: skip
        self._pending[job] = read
        return True

    async def reconfigure(self, settings: Settings, changed: frozenset[str]) -> None:
        """Pass a reloaded config on to the helper; it says when it has taken it."""
        if self._conn is not None:
            self.settings_sent += 1
            write_frame(self._conn, ("settings", settings, changed, self.settings_sent))

    async def run(self) -> None:
        """Keep a helper running until ``close``; a helper that dies is started again."""
        wait = RESTART_MIN_S
        try:
            while not self._closed:
                try:
                    ran_for = await self._run_once()
                except Exception as exc:
                    log.error("shadow_helper_failed", exc_info=exc)
                    ran_for = 0.0
                self._lost()
                if self._closed:
                    break
                self.restarts += 1
                wait = RESTART_MIN_S if ran_for > RESTART_MAX_S else min(wait * 2, RESTART_MAX_S)
                log.warning("shadow_helper_restarting", restarts=self.restarts, after_s=wait)
                await asyncio.sleep(wait)
        finally:
            self._stopped.set()

    async def _run_once(self) -> float:
        """Start a helper and pass its answers on until it ends; return how long it ran."""
        loop = asyncio.get_running_loop()
        mine, theirs = socket.socketpair()
        try:
            # Plain subprocess: started in a thread, the event loop never waits on a fork.
            env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
            argv = [sys.executable, "-m", "memshift.shadow.helper", str(theirs.fileno())]
            proc = await asyncio.to_thread(
                subprocess.Popen,
                argv,
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        started = loop.time()
        reader, writer = await asyncio.open_unix_connection(sock=mine)
        level, as_json = logs.configured()
        write_frame(writer, ("hello", self.settings(), level, as_json))
        self._conn, self.pid = writer, proc.pid
        self.settings_applied = self.settings_sent  # it starts with the settings in force
        self._pairs_seen = self.idmap.made  # the helper loads older pairs from the state db
        try:
            if self._closed or await read_frame(reader) != ("ready",):
                return loop.time() - started
            self._ready = True  # it takes reads once it has started
            log.info("shadow_helper_started", pid=proc.pid)
            while (message := await read_frame(reader)) is not None:
                if message[0] == "answers":
                    for answer in message[1]:
                        self._answered(answer)
                elif message[0] == "settings_applied":
                    self.settings_applied = max(self.settings_applied, message[1])
        finally:
            self._conn, self._ready = None, False
            writer.close()
            code = await asyncio.to_thread(_reap, proc)
            if not self._closed:
                log.error("shadow_helper_stopped", pid=proc.pid, exit_code=code)
        return loop.time() - started

    def _answered(self, message: tuple[Any, ...]) -> None:
        kind, job = message[0], message[1]
        read = self._pending.pop(job, None)
        if read is None:
            return
        route = read.match.spec.name
        try:
            if kind == "done":
                sent: list[Sent] = message[3]
                with calling(read.caller):
                    for exchange in sent:
                        self.host.observe(Exchange(*exchange))
                self.host.judge(read, Shadowed.unpacked(message[2]))
                self.settled += 1
            else:
                self.host.failed(route, RuntimeError(message[2]))
        except Exception as exc:
            self.host.failed(route, exc)

    def _lost(self) -> None:
        """The helper is gone: the reads it had in hand are counted as compare failures."""
        if self._pending:
            self.host.failed("shadow-helper", RuntimeError("helper stopped"), len(self._pending))
        self._pending.clear()
        self._out.items = []

    async def close(self) -> None:
        """Let reads in hand finish for a while, then stop the helper."""
        self._closed = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_S):
                while self._pending and self._conn is not None:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        if self._conn is not None:
            self._conn.close()  # the helper exits when its end is closed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self._stopped.wait()


def _reap(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
