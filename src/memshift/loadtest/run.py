"""The load generator: workers drawing operations from the mix until time is up."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from memshift import __version__
from memshift.errors import MemshiftError
from memshift.jsonpath import document_of
from memshift.loadtest.content import Corpus
from memshift.loadtest.mix import DEFAULT_MIX, DEFAULT_SIZES, Weighted, parse_mix, parse_sizes
from memshift.loadtest.stats import OpStats, summarize
from memshift.migrate.progress import Pacer

POOL_MAX = 10_000
TOKEN_ENV = "MEMSHIFT_TOKEN"
PROGRESS_EVERY_S = 1.0


class LoadtestError(MemshiftError):
    """The target cannot be load-tested: unreachable, or it refuses the token."""


@dataclass(frozen=True)
class Options:
    """What to run against ``target``, for how long, how hard."""

    target: str
    token: str
    duration_s: float = 30.0
    concurrency: int = 8
    mix: Weighted[str] = field(default_factory=lambda: parse_mix(DEFAULT_MIX))
    sizes: Weighted[int] = field(default_factory=lambda: parse_sizes(DEFAULT_SIZES))
    rate: float | None = None
    timeout_s: float = 30.0
    seed: int = 1


@dataclass(frozen=True)
class Tick:
    """Where a run stands: sent once a second to the progress callback."""

    elapsed_s: float
    duration_s: float
    requests: int
    errors: int
    recent_rps: float


class LoadTest:
    """A workload against one target; :meth:`run` may be called again to go on."""

    def __init__(self, options: Options, corpus: Corpus | None = None) -> None:
        self.options = options
        self.base = options.target.rstrip("/")
        self.corpus = corpus or Corpus.load()
        self.ids: list[int] = []
        self.created = 0
        self.stats: dict[str, OpStats] = {}
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> LoadTest:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.options.concurrency, force_close=False),
            timeout=aiohttp.ClientTimeout(total=self.options.timeout_s),
            headers={
                "Authorization": f"Bearer {self.options.token}",
                "Content-Type": "application/json",
                "User-Agent": f"memshift-loadtest/{__version__}",
            },
            skip_auto_headers=("Accept-Encoding",),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "use LoadTest as an async context manager"
        return self._http

    async def _call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else orjson.dumps(body)
        async with self.http.request(method, self.base + path, data=data) as resp:
            return resp.status, await resp.read()

    async def _create(self, rnd: random.Random) -> tuple[int, bytes]:
        """Create a memory; keep its id (at most ``POOL_MAX``) to read and update."""
        status, payload = await self._call("POST", "/v1/memories", self._memory(rnd))
        doc = document_of(payload) if status == 201 else None
        new_id = doc.get("id") if isinstance(doc, dict) else None
        if isinstance(new_id, int):
            if len(self.ids) < POOL_MAX:
                self.ids.append(new_id)
            else:
                self.ids[rnd.randrange(POOL_MAX)] = new_id
        return status, payload

    def _memory(self, rnd: random.Random) -> dict[str, Any]:
        self.created += 1
        size = self.options.sizes.draw(rnd)
        return {
            "title": f"loadtest memory {self.created}",
            "content": self.corpus.content(size, rnd),
            "metadata": {"source": "memshift loadtest", "bytes": size},
        }

    async def operation(self, name: str, rnd: random.Random) -> tuple[int, bytes]:
        """Send one request of operation ``name``; return its status and body.

        ``read`` and ``update`` need a created memory: :meth:`seed` first.
        """
        if name == "create":
            return await self._create(rnd)
        if name == "read":
            return await self._call("GET", f"/v1/memories/{rnd.choice(self.ids)}")
        if name == "update":
            size = self.options.sizes.draw(rnd)
            change = {"content": self.corpus.content(size, rnd)}
            return await self._call("PATCH", f"/v1/memories/{rnd.choice(self.ids)}", change)
        term = quote(self.corpus.term(rnd))
        return await self._call("GET", f"/v1/search?q={term}&limit=10")

    async def seed(self, count: int) -> None:
        """Create ``count`` memories to read and update; fail fast on a bad target."""
        rnd = random.Random(self.options.seed)
        for i in range(count):
            try:
                status, payload = await self._create(rnd)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise LoadtestError(
                    f"cannot reach {self.base}: {exc or type(exc).__name__}"
                ) from None
            if status in (401, 403):
                raise LoadtestError(f"{self.base} refused the token (HTTP {status})")
            if status != 201 and i == 0:
                text = payload[:200].decode("utf-8", "replace")
                raise LoadtestError(f"{self.base} refused a create (HTTP {status}): {text}")

    async def run(
        self, duration_s: float | None = None, progress: Callable[[Tick], None] | None = None
    ) -> dict[str, Any]:
        """Run the mix for ``duration_s`` (the options' by default); return the summary."""
        options = self.options
        duration = options.duration_s if duration_s is None else duration_s
        self.stats = {name: OpStats() for name in options.mix.values}
        pacer = Pacer(options.rate)
        started = time.monotonic()
        deadline = started + duration

        async def worker(index: int) -> None:
            rnd = random.Random(options.seed * 7919 + index + self.created)
            while time.monotonic() < deadline:
                await pacer.wait()
                if time.monotonic() >= deadline:
                    return
                name = options.mix.draw(rnd)
                if name in ("read", "update") and not self.ids:
                    name = "create"  # nothing to read yet: make something (and say so)
                stats = self.stats.setdefault(name, OpStats())
                sent = time.perf_counter()
                try:
                    status, _ = await self.operation(name, rnd)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    stats.failed(type(exc).__name__)
                    continue
                if status >= 400:
                    stats.failed(str(status))
                else:
                    stats.ok(time.perf_counter() - sent)

        async def report() -> None:
            last_count, last_at = 0, started
            while True:
                await asyncio.sleep(PROGRESS_EVERY_S)
                now = time.monotonic()
                count = sum(s.count for s in self.stats.values())
                errors = sum(sum(s.errors.values()) for s in self.stats.values())
                assert progress is not None
                progress(
                    Tick(
                        elapsed_s=now - started,
                        duration_s=duration,
                        requests=count,
                        errors=errors,
                        recent_rps=(count - last_count) / max(now - last_at, 1e-6),
                    )
                )
                last_count, last_at = count, now

        async with asyncio.TaskGroup() as group:
            reporter = group.create_task(report()) if progress else None
            await asyncio.gather(*(worker(i) for i in range(options.concurrency)))
            if reporter is not None:
                reporter.cancel()
        elapsed = time.monotonic() - started
        return {
            "target": self.base,
            "duration_s": duration,
            "elapsed_s": round(elapsed, 3),
            "concurrency": options.concurrency,
            "rate_limit": options.rate,
            "mix": options.mix.shares(),
            "sizes": options.sizes.shares(),
            **summarize(self.stats, elapsed),
        }
