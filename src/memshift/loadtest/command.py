"""``memshift loadtest`` as a command: progress on stderr, the report on stdout."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import orjson
import structlog

from memshift.loadtest.run import LoadTest, Options, Tick
from memshift.loadtest.stats import table
from memshift.runtime import run_async

log = structlog.get_logger("memshift.loadtest")

LOG_EVERY_S = 5.0


class ProgressLine:
    """A live line on a terminal; a log event every few seconds elsewhere."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._logged = time.monotonic()

    def __call__(self, tick: Tick) -> None:
        if self.tty:
            self.stream.write(
                f"\r\x1b[2K{tick.elapsed_s:5.0f}/{tick.duration_s:.0f} s  "
                f"{tick.requests} requests  {tick.recent_rps:.0f} req/s  errors {tick.errors}"
            )
            self.stream.flush()
        elif time.monotonic() - self._logged >= LOG_EVERY_S:
            self._logged = time.monotonic()
            log.info(
                "loadtest_progress",
                elapsed_s=round(tick.elapsed_s, 1),
                duration_s=tick.duration_s,
                requests=tick.requests,
                errors=tick.errors,
                rps=round(tick.recent_rps, 1),
            )

    def finish(self) -> None:
        """End the live line."""
        if self.tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


def run_command(options: Options, as_json: bool) -> int:
    """Run the load test; print its report; exit 1 if any request failed."""

    async def main() -> dict[str, object]:
        async with LoadTest(options) as test:
            if {"read", "update"} & set(options.mix.values):
                await test.seed(min(max(2 * options.concurrency, 20), 200))
            line = ProgressLine(sys.stderr)
            try:
                return await test.run(progress=line)
            finally:
                line.finish()

    doc = run_async(main())
    if as_json:
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"{doc['target']}: {doc['elapsed_s']:.1f} s, {doc['concurrency']} in flight")
        print(table(doc))
    total = doc["total"]
    assert isinstance(total, dict)
    return 1 if total["errors"] else 0
