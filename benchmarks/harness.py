"""Shared parts of the benchmarks: a real-text corpus, store processes, and reporting.

The corpus is real prose and code (Debian's license texts and the Python standard
library's own sources), because text generated from a small vocabulary compresses far
better than what users store and would flatter the new engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

RESULTS = Path(__file__).parent / "results"
TOKENS = '[tokens.tok-bench]\nuser = "bench"\n[tokens.tok-ops]\nuser = "ops"\nrole = "admin"\n'
USER = {"Authorization": "Bearer tok-bench"}
ADMIN = {"Authorization": "Bearer tok-ops"}


def corpus(limit_bytes: int = 24_000_000) -> str:
    """Return real text: license texts, then standard-library sources, in a fixed order."""
    parts: list[str] = []
    size = 0
    licenses = sorted(Path("/usr/share/common-licenses").glob("*"))
    stdlib = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    for path in [*licenses, *stdlib]:
        if not path.is_file() or "test" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        parts.append(text)
        size += len(text)
        if size >= limit_bytes:
            break
    return "\n".join(parts)


def slices(text: str, count: int, low: int, high: int, seed: int = 7) -> list[str]:
    """Return ``count`` slices of ``text`` of ``low..high`` characters at random offsets."""
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        size = rnd.randint(low, high)
        start = rnd.randint(0, len(text) - size - 1)
        out.append(text[start : start + size])
    return out


def free_port() -> int:
    """Return a TCP port that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class StoreProcess:
    """A ``memshift store`` process started for a benchmark."""

    proc: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status(self, field: str) -> int:
        """Return a ``/proc/PID/status`` size field (VmRSS, VmHWM) in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def reset_peak(self) -> None:
        """Reset the process's peak RSS (VmHWM) to its current RSS."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")


def memshift(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m memshift --log-level warning ARGS`` quietly."""
    return subprocess.Popen(
        [sys.executable, "-m", "memshift", "--log-level", "warning", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
    )


def wait_healthy(url: str, proc: subprocess.Popen[Any], what: str, within: float = 60) -> None:
    """Wait until ``url`` answers; raise if ``proc`` exits or ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url):
                return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.1)


@contextlib.contextmanager
def store_process(engine: str, db_url: str | None = None) -> Iterator[StoreProcess]:
    """Run a store on a free port (SQLite in a temporary directory unless ``db_url``)."""
    with tempfile.TemporaryDirectory(prefix="memshift-bench-") as tmp:
        port = free_port()
        url = db_url or f"sqlite:///{tmp}/{engine}.db"
        proc = memshift(
            ["store", "--engine", engine, "--db", url, "--listen", f"127.0.0.1:{port}"],
            {"MEMSHIFT_TOKENS": TOKENS},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base + "/healthz", proc, f"{engine} store")
            yield StoreProcess(proc, base)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def percentile(values: list[float], pct: float) -> float:
    """Return the ``pct`` percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def machine() -> dict[str, Any]:
    """Describe the machine the numbers come from."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def report(name: str, headers: list[str], rows: list[list[Any]], data: dict[str, Any]) -> None:
    """Print a table and write ``benchmarks/results/NAME.json``."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    for line in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(line, widths, strict=True)))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_bytes(orjson.dumps({"machine": machine(), **data}, option=orjson.OPT_INDENT_2))
    print(f"\nwritten: {out}")


async def create_memories(url: str, texts: list[str], concurrency: int = 8) -> list[int]:
    """Create one memory per text through the API; return their ids in order."""
    ids = [0] * len(texts)
    async with aiohttp.ClientSession(headers=USER) as http:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            body = {"title": f"doc {i}", "content": texts[i]}
            async with sem, http.post(f"{url}/v1/memories", json=body) as resp:
                assert resp.status == 201, await resp.text()
                ids[i] = (await resp.json())["id"]

        await asyncio.gather(*(one(i) for i in range(len(texts))))
    return ids


async def drive(n: int, concurrency: int, op: Callable[[int], Awaitable[None]]) -> dict[str, float]:
    """Run ``op(i)`` for i in 0..n-1 with ``concurrency`` in flight; return rate and latency."""
    latencies: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            started = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "rps": n / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


PROXY_CONFIG = """
[proxy]
listen = "127.0.0.1:{proxy}"
[admin]
listen = "127.0.0.1:{admin}"
token = "bench-admin"
[stores.legacy]
url = "{legacy}"
token = "tok-ops"
[stores.new]
url = "{new}"
token = "tok-ops"
[routing]
read_percent = 0
shadow_read_percent = {shadow}
write_mode = "{write_mode}"
[state]
url = "sqlite:///{state}"
"""


@contextlib.contextmanager
def proxy_process(
    legacy: str, new: str, write_mode: str = "sync", shadow: int = 0
) -> Iterator[str]:
    """Run ``memshift serve`` in front of two stores; yield its URL."""
    with tempfile.TemporaryDirectory(prefix="memshift-proxy-") as tmp:
        port, admin = free_port(), free_port()
        config = Path(tmp) / "memshift.toml"
        config.write_text(
            PROXY_CONFIG.format(
                proxy=port,
                admin=admin,
                legacy=legacy,
                new=new,
                state=f"{tmp}/state.db",
                write_mode=write_mode,
                shadow=shadow,
            )
        )
        proc = memshift(["serve", "--config", str(config)])
        try:
            wait_healthy(f"http://127.0.0.1:{admin}/healthz", proc, "proxy")
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
