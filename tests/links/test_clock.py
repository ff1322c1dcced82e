"""The clock store exchanges are timed on: a thread's waits for a CPU left out, where asked."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memshift.links import clock

# A child on one CPU, beside a busy loop on the same CPU: it waits for the CPU about
# half the time it runs. It times the same work on both clocks.
CHILD = """
import json, time
from memshift.links import clock
assert clock.exclude_cpu_wait()
raw, adjusted = time.perf_counter(), clock.now()
x = 0
for _ in range(3_000_000):
    x += 1
print(json.dumps([time.perf_counter() - raw, clock.now() - adjusted]))
"""


@pytest.mark.skipif(not Path(clock.SCHEDSTAT).exists(), reason="needs Linux's schedstat")
def test_the_time_a_thread_waits_for_a_cpu_is_left_out() -> None:
    """Work timed while a busy loop shares the CPU: the clock leaves out the time the
    thread waited for it (the kernel's count), so it reads less than the plain one."""
    hog = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", "while True: pass"])
    try:
        done = subprocess.run(
            ["taskset", "-c", "0", sys.executable, "-c", CHILD],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
    finally:
        hog.kill()
        hog.wait()
    raw, adjusted = json.loads(done.stdout)
    assert 0 < adjusted < raw * 0.9  # the loop took about half the CPU: far more than 10%


def test_the_wait_is_read_from_the_schedulers_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``now()`` is the counter less the second field of the statistics, in nanoseconds;
    without them it stays the plain counter."""
    monkeypatch.setattr(clock, "now", clock.now)  # undone after the test
    stats = tmp_path / "schedstat"
    assert not clock.exclude_cpu_wait(str(tmp_path / "missing"))
    assert clock.now is time.perf_counter
    stats.write_text("1000 0 5\n")
    assert clock.exclude_cpu_wait(str(stats))
    before, plain_before = clock.now(), time.perf_counter()
    stats.write_text("1000 2500000000 6\n")  # 2.5 s waited for a CPU since
    after, plain_after = clock.now(), time.perf_counter()
    left_out = (plain_after - plain_before) - (after - before)
    assert left_out == pytest.approx(2.5, abs=0.01)
