"""The shadow helper process: shadow reads at idle CPU priority, and the wire to it.

A shadow read costs about as much CPU as the client's read itself: a second store
read, ids translated both ways, two documents normalized and diffed. Run on the
proxy's event loop, that work delays the next client request. The proxy hands it to
this process (``proxy/shadowhelper.py`` is the proxy's end), which asks the kernel for
idle priority (``SCHED_IDLE``, else nice 19): on a spare core it runs alongside the
proxy, and on a busy one it gets only the time the proxy leaves. The latencies it
reports leave out its waits for a CPU (``links/clock.py``): they are the stores', as
comparable with the proxy's own as the rollback rules need.

This end needs the stores (``links/stores.py``), the id map and translator, and the
comparison (``shadow/reads.py``): nothing of the proxy. It sends back what each read
found (``Shadowed``) and each exchange it had with a store; the proxy judges them.

The two ends talk over a socket pair in length-prefixed pickle frames: both ends are
this program, started by it, and nothing else can reach the socket. Messages go in
batches (``Batch``): a message between two processes costs more than a small read's
own bookkeeping, so one wake-up carries many. The helper exits when the proxy closes
its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import pickle
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import structlog

from memshift import logs
from memshift.config.settings import RouteSpec, Settings, StoreName
from memshift.database import Database
from memshift.links import clock
from memshift.links.stores import Exchange, StoreLinks
from memshift.runtime import run_async, settle_heap
from memshift.scheduler import Scheduler
from memshift.shadow.idmap import IdMap
from memshift.shadow.reads import ReadCopy, observe
from memshift.shadow.routes import RouteMatch
from memshift.shadow.translate import Translator

log = structlog.get_logger("memshift.shadow_helper")

CLOSE_WAIT_S = 2.0
SYNC_EVERY_S = 1.0
BATCH_EVERY_S, BATCH_SIZE = 0.02, 64
# One exchange with a store (``links.stores.Exchange``) as a plain tuple: pickled
# several times faster, and a message per read is paid on the proxy's event loop.
Sent = tuple[StoreName, str, str, int | None, float, bool, int]
# Which read a store exchange belongs to: each read runs in a task of its own.
_JOB: contextvars.ContextVar[int | None] = contextvars.ContextVar("helper_job", default=None)


def write_frame(writer: asyncio.StreamWriter, message: tuple[Any, ...]) -> None:
    """Send one message to the other end."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(len(data).to_bytes(4, "big") + data)


async def read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message; None once the other end closed."""
    try:
        size = int.from_bytes(await reader.readexactly(4), "big")
        message: tuple[Any, ...] = pickle.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return message


class Batch:
    """Messages for the other end, sent together every ``BATCH_EVERY_S`` or ``BATCH_SIZE``."""

    def __init__(self, kind: str, writer: Callable[[], asyncio.StreamWriter | None]) -> None:
        self.kind = kind
        self.writer = writer
        self.items: list[tuple[Any, ...]] = []

    def add(self, item: tuple[Any, ...]) -> None:
        """Queue ``item``; send the batch when it is full or a moment has passed."""
        self.items.append(item)
        if len(self.items) >= BATCH_SIZE:
            self.flush()
        elif len(self.items) == 1:
            asyncio.get_running_loop().call_later(BATCH_EVERY_S, self.flush)

    def flush(self) -> None:
        """Send what was gathered; with the other end gone, it is dropped."""
        writer = self.writer()
        if self.items and writer is not None and not writer.is_closing():
            write_frame(writer, (self.kind, self.items))
        self.items = []


class _Helper:
    """What a shadow read needs: the stores, the id map, the compare settings."""

    def __init__(self, settings: Settings, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._answers = Batch("answers", lambda: writer)
        self.db = Database(settings.state.url, readers=2, key="state.url")
        self.idmap = IdMap(self.db)
        self.translator = Translator(self.idmap, lambda: self.settings.forms)
        self.jobs = Scheduler(
            name="shadow-helper",
            limit=settings.compare.workers,
            pending_limit=settings.compare.queue,
            close_timeout=CLOSE_WAIT_S,
            on_error=lambda label, exc: log.error("helper_job_failed", job=label, exc_info=exc),
        )
        self._use(settings)
        self._sent: dict[int, list[Sent]] = {}
        self.stores = StoreLinks(
            lambda: self.settings,
            lambda job, label: self.jobs.spawn(job, label, daemon=True),
            self._observed,
        )
        self.jobs.spawn(self._sync(), "id-map-sync", daemon=True)

    def _use(self, settings: Settings) -> None:
        self.settings = settings
        self.specs = {
            **{(False, s.name): s for s in settings.routes},
            **{(True, s.name): s for s in settings.tools},
        }

    def _observed(self, exchange: Exchange) -> None:
        job = _JOB.get()
        if job is not None:
            self._sent.setdefault(job, []).append(tuple(exchange))  # type: ignore[arg-type]

    async def _sync(self) -> None:
        while True:
            await asyncio.sleep(SYNC_EVERY_S)
            try:
                await self.idmap.sync()
            except Exception as exc:  # the state db may be briefly unreachable
                log.warning("id_map_sync_failed", error=repr(exc))

    def handle(self, message: tuple[Any, ...]) -> None:
        """Act on one message from the proxy."""
        kind = message[0]
        if kind == "batch":
            for item in message[1]:
                if item[0] == "pair":
                    self.idmap.remember(*item[1:])
                elif not self.jobs.spawn(self._shadow(*item[1:]), item[2]):
                    self._answers.add(("failed", item[1], "the helper's queue was full"))
        elif kind == "settings":
            self._use(message[1])
            self.stores.follow(message[1], message[2])
            write_frame(self._writer, ("settings_applied", message[3]))

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
        _JOB.set(job)
        try:
            spec: RouteSpec | None = self.specs.get((tool, route))
            if spec is None:
                raise LookupError(f"no configured route {route!r}")
            read = ReadCopy(
                RouteMatch(spec, params), method, path_qs, body, headers, None, (0, False)
            )
            found = await observe(
                self.translator,
                self.stores.send,
                self.settings.compare,
                read,
                served,
                status,
                answer,
            )
        except Exception as exc:
            self._sent.pop(job, None)
            self._answers.add(("failed", job, repr(exc)))
            return
        self._answers.add(("done", job, found.packed(), self._sent.pop(job, [])))

    async def close(self) -> None:
        """Finish the reads in hand for a while; send what they found; release everything."""
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
    hello = await read_frame(reader)
    if hello is None or hello[0] != "hello":
        return
    _, settings, level, as_json = hello
    logs.configure(level=level, json=as_json)
    # At idle priority this process waits for a CPU whenever the proxy is busy: not the
    # stores' time, so not in the latencies it reports (``links/clock.py``).
    if not clock.exclude_cpu_wait():
        log.warning("helper_cpu_wait_counted", why="the kernel's scheduler statistics are off")
    if settings.compare.helper_cpus:
        try:
            os.sched_setaffinity(0, settings.compare.helper_cpus)
        except (AttributeError, OSError) as exc:
            log.warning("helper_cpus_not_set", cpus=settings.compare.helper_cpus, error=str(exc))
    helper = _Helper(settings, writer)
    settle_heap()
    write_frame(writer, ("ready",))
    try:
        while (message := await read_frame(reader)) is not None:
            helper.handle(message)
    finally:
        await helper.close()


def main(argv: list[str]) -> None:
    """The helper process: ``python -m memshift.shadow.helper FD``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the proxy, which stops us
    _idle_priority()  # first, so that every thread started later inherits it
    run_async(_serve(int(argv[1])))


if __name__ == "__main__":
    main(sys.argv)
