"""The shadow helper: a child process that does shadow reads at idle CPU priority.

A shadow read costs about as much CPU as the client's read itself: a second store
read, ids translated both ways, two documents normalized and diffed. Run on the
proxy's event loop, that work delays the next client request. The helper takes it to
a process of its own that asks the kernel for idle priority (``SCHED_IDLE``, else
nice 19): on a spare core it runs alongside the proxy, and on a busy one it gets only
the time the proxy leaves. When it falls behind, the proxy's bound (``[compare]
workers`` + ``queue`` reads in hand) drops and counts further shadow reads: the
client's latency never pays for them.

The proxy keeps everything a verdict needs that only it knows: which writes are
pending (the fence), the noise learned so far, the report and the health windows.
The helper sends back what it found (``Shadowed``) and each exchange it had with a
store, and the proxy settles them as it settles its own. New id pairs are passed on
as the proxy makes them, so the helper never waits for the state db to have them.

The two ends talk over a socket pair in length-prefixed pickle frames: both ends are
this program, started by it, and nothing else can reach the socket. The helper exits
when the proxy closes its end; the proxy starts a new one if the helper dies, and the
reads it had in hand are counted as compare errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from memshift import logs
from memshift.config.settings import RouteSpec, Settings, StoreName
from memshift.database import Database
from memshift.errors import UpstreamError
from memshift.mcp import protocol
from memshift.proxy.shadowread import ReadCopy, Shadowed, observe, settle
from memshift.proxy.stores import Stores
from memshift.runtime import run_async, settle_heap
from memshift.scheduler import Scheduler
from memshift.shadow.idmap import IdMap
from memshift.shadow.routes import RouteMatch
from memshift.shadow.translate import Translator
from memshift.upstream import OutboundRequest, UpstreamResponse

if TYPE_CHECKING:
    from memshift.proxy.core import ProxyCore

log = structlog.get_logger("memshift.shadow_helper")

RESTART_MIN_S, RESTART_MAX_S = 1.0, 30.0
CLOSE_WAIT_S = 2.0
SYNC_EVERY_S = 1.0
# Reads go out, and answers come back, in batches: a message between two processes
# costs more than a small read's own bookkeeping (pickling, a system call, waking the
# other process), so one wake-up carries many reads.
BATCH_EVERY_S, BATCH_SIZE = 0.02, 64
# One exchange with a store: store, route, purpose, status (None: unanswered),
# seconds, whether it timed out. The proxy records it as ``ProxyCore.note`` does.
Sent = tuple[StoreName, str, str, int | None, float, bool]


def _write(writer: asyncio.StreamWriter, message: tuple[Any, ...]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(len(data).to_bytes(4, "big") + data)


async def _read(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message; None once the other end closed."""
    try:
        size = int.from_bytes(await reader.readexactly(4), "big")
        message: tuple[Any, ...] = pickle.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return message


class _Batch:
    """Messages for the other end, sent together every ``BATCH_EVERY_S`` or ``BATCH_SIZE``."""

    def __init__(self, kind: str, writer: Callable[[], asyncio.StreamWriter | None]) -> None:
        self.kind = kind
        self.writer = writer
        self.items: list[tuple[Any, ...]] = []

    def add(self, item: tuple[Any, ...]) -> None:
        self.items.append(item)
        if len(self.items) >= BATCH_SIZE:
            self.flush()
        elif len(self.items) == 1:
            asyncio.get_running_loop().call_later(BATCH_EVERY_S, self.flush)

    def flush(self) -> None:
        """Send what was gathered; with the other end gone, it is dropped."""
        writer = self.writer()
        if self.items and writer is not None and not writer.is_closing():
            _write(writer, (self.kind, self.items))
        self.items = []


class ShadowHelper:
    """The proxy's end: keeps the helper running, hands it reads, settles its answers."""

    def __init__(self, core: ProxyCore) -> None:
        self.core = core
        self.restarts = 0
        self.settled = 0  # reads the helper answered
        self.pid: int | None = None
        self._pending: dict[int, ReadCopy] = {}
        self._ids = itertools.count(1)
        self._conn: asyncio.StreamWriter | None = None  # to the helper, once connected
        self._ready = False  # it has started and takes reads
        self._out = _Batch("batch", lambda: self._conn)  # reads and id pairs, in order
        self._closed = False
        self._stopped = asyncio.Event()
        core.idmap.paired = self.pair
        core.holder.listeners.append(self._reconfigure)

    @property
    def running(self) -> bool:
        """Whether the helper is up and takes reads."""
        return self._ready and not self._closed

    @property
    def active(self) -> int:
        """Shadow reads handed to the helper and not settled yet."""
        return len(self._pending)

    def submit(self, read: ReadCopy, served: StoreName, status: int, body: bytes) -> bool:
        """Hand a shadow read to the helper; False (drop it) when it has enough in hand."""
        compare = self.core.holder.current.compare
        if self._conn is None or not self.running:
            return False
        if len(self._pending) >= compare.workers + compare.queue:
            return False
        job = next(self._ids)
        spec = read.match.spec
        tool = read.method == protocol.TOOL
        self._out.add(
            ("read", job, spec.name, tool, read.match.params, read.method, read.path_qs,
             read.body, read.headers, served, status, body)
        )  # fmt: skip
        self._pending[job] = read
        return True

    def pair(self, kind: str, legacy_id: int, new_id: int) -> None:
        """Pass a new id pair on, ahead of any read queued after it."""
        if self._conn is not None:
            self._out.add(("pair", kind, legacy_id, new_id))

    async def _reconfigure(self, settings: Settings, changed: frozenset[str]) -> None:
        if self._conn is not None:
            _write(self._conn, ("settings", settings, changed))

    async def run(self) -> None:
        """Keep a helper running until ``close``; a helper that dies is started again."""
        wait = RESTART_MIN_S
        try:
            while not self._closed:
                try:
                    ran_for = await self._run_once()
                except Exception as exc:
                    self.core.background_failed("shadow_helper", exc)
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
        """Start a helper and settle its answers until it ends; return how long it ran."""
        loop = asyncio.get_running_loop()
        mine, theirs = socket.socketpair()
        try:
            # Plain subprocess: started in a thread, the event loop never waits on a fork.
            env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
            argv = [sys.executable, "-m", "memshift.proxy.shadowhelper", str(theirs.fileno())]
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
        _write(writer, ("hello", self.core.holder.current, level, as_json))
        self._conn, self.pid = writer, proc.pid
        try:
            if self._closed or await _read(reader) != ("ready",):
                return loop.time() - started
            self._ready = True  # it takes reads once it has started
            log.info("shadow_helper_started", pid=proc.pid)
            while (message := await _read(reader)) is not None:
                self._settle(message)
        finally:
            self._conn, self._ready = None, False
            writer.close()
            code = await asyncio.to_thread(_reap, proc)
            if not self._closed:
                log.error("shadow_helper_stopped", pid=proc.pid, exit_code=code)
        return loop.time() - started

    def _settle(self, message: tuple[Any, ...]) -> None:
        if message[0] == "answers":
            for answer in message[1]:
                self._settle_one(answer)

    def _settle_one(self, message: tuple[Any, ...]) -> None:
        kind, job = message[0], message[1]
        read = self._pending.pop(job, None)
        if read is None:
            return
        route = read.match.spec.name
        try:
            if kind == "done":
                shadowed = Shadowed.unpacked(message[2])
                sent: list[Sent] = message[3]
                for exchange in sent:
                    self.core.note(*exchange)
                settle(self.core, read, shadowed)
                self.settled += 1
            else:
                self.core.compare_failed(route, RuntimeError(message[2]))
        except Exception as exc:
            self.core.compare_failed(route, exc)

    def _lost(self) -> None:
        """The helper is gone: the reads it had in hand are counted as compare errors."""
        if self._pending:
            self.core.report.errors += len(self._pending)
            log.error("shadow_reads_lost", reads=len(self._pending), reason="helper stopped")
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


# The helper's end.


class _Helper:
    """What a shadow read needs of a proxy: stores, the id map, the compare settings."""

    def __init__(self, settings: Settings, writer: asyncio.StreamWriter) -> None:
        self._answers = _Batch("answers", lambda: writer)
        self._answer = self._answers.add
        self.db = Database(settings.state.url, readers=2, key="state.url")
        self.idmap = IdMap(self.db)
        self.translator = Translator(self.idmap)
        self.jobs = Scheduler(
            name="shadow-helper",
            limit=settings.compare.workers,
            pending_limit=settings.compare.queue,
            close_timeout=CLOSE_WAIT_S,
            on_error=lambda label, exc: log.error("helper_job_failed", job=label, error=repr(exc)),
        )
        self._use(settings)
        self.stores = Stores(
            lambda: self.settings, lambda job, label: self.jobs.spawn(job, label, daemon=True)
        )
        self.jobs.spawn(self._sync(), "id-map-sync", daemon=True)

    def _use(self, settings: Settings) -> None:
        self.settings = settings
        self.specs = {
            **{(False, s.name): s for s in settings.routes},
            **{(True, s.name): s for s in settings.tools},
        }

    async def _sync(self) -> None:
        while True:
            await asyncio.sleep(SYNC_EVERY_S)
            try:
                await self.idmap.sync()
            except Exception as exc:  # the state db may be briefly unreachable
                log.warning("id_map_sync_failed", error=repr(exc))

    def handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "batch":
            for item in message[1]:
                if item[0] == "pair":
                    self.idmap.remember(*item[1:])
                elif not self.jobs.spawn(self._shadow(*item[1:]), item[2]):
                    self._answer(("failed", item[1], "the helper's queue was full"))
        elif kind == "settings":
            self._use(message[1])
            self.stores.follow(message[1], message[2])

    async def _shadow(
        self,
        job: int,
        route: str,
        tool: bool,
        params: tuple[str, ...],
        method: str,
        path_qs: str,
        body: bytes,
        headers: tuple[tuple[str, str], ...],
        served: StoreName,
        status: int,
        answer: bytes,
    ) -> None:
        sent: list[Sent] = []

        async def send(
            store: StoreName, request: OutboundRequest, route: str, purpose: str
        ) -> UpstreamResponse:
            try:
                got = await self.stores.send(store, request)
            except UpstreamError as exc:
                sent.append((store, route, purpose, None, 0.0, exc.timeout))
                raise
            sent.append((store, route, purpose, got.status, got.elapsed_s, False))
            return got

        try:
            spec: RouteSpec | None = self.specs.get((tool, route))
            if spec is None:
                raise LookupError(f"no configured route {route!r}")
            read = ReadCopy(
                RouteMatch(spec, params), method, path_qs, body, headers, None, (0, False)
            )
            found = await observe(
                self.translator, send, self.settings.compare, read, served, status, answer
            )
        except Exception as exc:
            self._answer(("failed", job, repr(exc)))
            return
        self._answer(("done", job, found.packed(), sent))

    async def close(self) -> None:
        await self.jobs.close()
        self._answers.flush()
        await self.stores.close()
        await asyncio.to_thread(self.db.close)


def _idle_priority() -> None:
    """Ask the kernel to run this process only when the CPU has nothing else to do."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)


async def _serve(fd: int) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    hello = await _read(reader)
    if hello is None or hello[0] != "hello":
        return
    _, settings, level, as_json = hello
    logs.configure(level=level, json=as_json)
    if settings.compare.helper_cpus:
        try:
            os.sched_setaffinity(0, settings.compare.helper_cpus)
        except (AttributeError, OSError) as exc:
            log.warning("helper_cpus_not_set", cpus=settings.compare.helper_cpus, error=str(exc))
    helper = _Helper(settings, writer)
    settle_heap()
    _write(writer, ("ready",))
    try:
        while (message := await _read(reader)) is not None:
            helper.handle(message)
    finally:
        await helper.close()


def main(argv: list[str]) -> None:
    """The helper process: ``python -m memshift.proxy.shadowhelper FD``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the proxy, which stops us
    _idle_priority()  # first, so that every thread started later inherits it
    run_async(_serve(int(argv[1])))


if __name__ == "__main__":
    main(sys.argv)
