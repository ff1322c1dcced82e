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
        self._closed = False

    @property
    def active(self) -> int:
        """Jobs running or waiting to run."""
        return len(self._tasks)

    def spawn(self, job: Coroutine[Any, Any, None], label: str) -> bool:
        """Start ``job`` unless full or closed; return whether it was accepted."""
        if self._closed or len(self._tasks) >= self.limit + self.pending_limit:
            self.dropped += 1
            job.close()
            return False
        task = asyncio.create_task(self._run(job, label), name=f"{self.name}:{label}")  # noqa: TID251
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, job: Coroutine[Any, Any, None], label: str) -> None:
        try:
            async with self._slots:
                await job
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.on_error(label, exc)

    async def close(self) -> None:
        """Refuse new jobs, let running ones finish for a while, then cancel the rest."""
        self._closed = True
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=self.close_timeout)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
