"""A bounded scheduler for background work: the one place that creates tasks.

At most ``limit`` jobs run at once and ``pending_limit`` more may wait; beyond that a
job is dropped and counted, never queued without bound. The scheduler keeps a reference
to every task (so none is collected mid-flight), sends every failure to one handler,
and on ``close`` gives running jobs ``close_timeout`` seconds before cancelling them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

ErrorHandler = Callable[[str, BaseException], None]


class Scheduler:
    """Runs coroutines in the background within fixed bounds."""

    def __init__(
        self,
        *,
        name: str,
        limit: int,
        pending_limit: int,
        close_timeout: float,
        on_error: ErrorHandler,
    ) -> None:
        self.name = name
        self.limit = limit
        self.pending_limit = pending_limit
        self.close_timeout = close_timeout
        self.on_error = on_error
        self.dropped = 0
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._daemons: set[asyncio.Task[None]] = set()
        self._jobs: dict[asyncio.Task[None], Coroutine[Any, Any, None]] = {}
        self._closed = False

    @property
    def full(self) -> bool:
        """Whether a new job would be dropped now."""
        return self._closed or len(self._tasks) >= self.limit + self.pending_limit

    @property
    def active(self) -> int:
        """Jobs running or waiting to run."""
        return len(self._tasks)

    def spawn(self, job: Coroutine[Any, Any, None], label: str, *, daemon: bool = False) -> bool:
        """Start ``job`` unless full or closed; return whether it was accepted.

        A ``daemon`` job (a loop that runs for the life of the process) takes no slot
        and is cancelled at once on ``close``.
        """
        if self._closed or (not daemon and len(self._tasks) >= self.limit + self.pending_limit):
            self.dropped += 1
            job.close()
            return False
        runner = self._guard(job, label) if daemon else self._run(job, label)
        task = asyncio.create_task(runner, name=f"{self.name}:{label}")  # noqa: TID251
        group = self._daemons if daemon else self._tasks
        group.add(task)
        self._jobs[task] = job
        task.add_done_callback(group.discard)
        task.add_done_callback(self._forget)
        return True

    def _forget(self, task: asyncio.Task[None]) -> None:
        job = self._jobs.pop(task, None)
        if job is not None:
            job.close()  # a no-op once it ran; stops a job cancelled before it started

    async def _guard(self, job: Coroutine[Any, Any, None], label: str) -> None:
        try:
            await job
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.on_error(label, exc)

    async def _run(self, job: Coroutine[Any, Any, None], label: str) -> None:
        try:
            async with self._slots:
                await job
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.on_error(label, exc)

    async def close(self) -> None:
        """Refuse new jobs, cancel daemons, let jobs finish for a while, cancel the rest."""
        self._closed = True
        pending = set(self._daemons)
        if self._tasks:
            _done, late = await asyncio.wait(set(self._tasks), timeout=self.close_timeout)
            pending |= late
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
