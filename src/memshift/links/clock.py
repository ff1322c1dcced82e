"""The clock a store's answer time is read on: a process's waits for a CPU left out, where asked.

``now()`` is the monotonic performance counter, unless ``exclude_cpu_wait()`` was
called: then it stops while the calling thread waits on the CPU's run queue (Linux's
scheduler statistics: ``/proc/thread-self/schedstat``, its second field). The shadow
helper asks for it. It runs at idle CPU priority, so on a busy CPU it waits for the
CPU, for a second and more; that wait is memshift's, not the new store's, and left
in it made the helper's latencies of new look many times legacy's (which the proxy
times at normal priority), enough to trip the latency rule and fail back.

Only the thread that called ``exclude_cpu_wait`` may read the clock then: the time
left out is that thread's (the helper's event loop).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

SCHEDSTAT = "/proc/thread-self/schedstat"

now: Callable[[], float] = time.perf_counter


def exclude_cpu_wait(path: str = SCHEDSTAT) -> bool:
    """From now on, leave this thread's waits for a CPU out of ``now()``; say whether
    the kernel tells them (False: ``now()`` stays the plain counter)."""
    global now
    try:
        fd = os.open(path, os.O_RDONLY)
        _waited_s(fd)
    except (OSError, ValueError, IndexError):
        return False

    def without_cpu_wait() -> float:
        return time.perf_counter() - _waited_s(fd)

    now = without_cpu_wait
    return True


def _waited_s(fd: int) -> float:
    """Seconds this thread spent runnable and waiting for a CPU, so far."""
    return int(os.pread(fd, 128, 0).split()[1]) / 1e9
