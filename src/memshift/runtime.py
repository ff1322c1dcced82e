"""The event loop memshift's commands run on: uvloop where it is installed.

uvloop runs aiohttp's servers and clients markedly faster than the standard loop.
``MEMSHIFT_EVENT_LOOP=asyncio`` keeps the standard one (to compare, or to debug).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOOP_ENV = "MEMSHIFT_EVENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return uvloop's loop factory, or None for the standard loop."""
    if os.environ.get(LOOP_ENV, "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class ServingLoop:
    """The event loop an object serves on, looked up at its first use and kept.

    On this Python, ``asyncio.get_running_loop()`` checks the process id with a
    system call each time; the request path asks for the loop on every request.
    For an object that lives and dies with one loop (a proxy instance's parts).
    """

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new event loop, like :func:`asyncio.run`."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def settle_heap() -> None:
    """Tune the garbage collector for a long-running server, once it has started.

    Everything allocated while starting lives as long as the process: frozen, the
    collector stops walking it. Requests allocate many short-lived objects and
    rarely a cycle, so the youngest generation is collected less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(7000, 20, 20)
