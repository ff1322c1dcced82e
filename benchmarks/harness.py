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
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from memshift.loadtest.content import real_text
from memshift.loadtest.stats import percentile

RESULTS = Path(__file__).parent / "results"
TOKENS = '[tokens.tok-bench]\nuser = "bench"\n[tokens.tok-ops]\nuser = "ops"\nrole = "admin"\n'
USER = {"Authorization": "Bearer tok-bench"}
ADMIN = {"Authorization": "Bearer tok-ops"}


def corpus(limit_bytes: int = 24_000_000) -> str:
    """Return real text: license texts, then standard-library sources, in a fixed order."""
    return real_text(limit_bytes)


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


def pinned(cpus: str | None, argv: list[str]) -> list[str]:
    """``argv`` run on the CPUs ``cpus`` (``"1"``, ``"0,1"``) with taskset; as is for None."""
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def memshift(
    args: list[str], env: dict[str, str] | None = None, cpus: str | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m memshift --log-level warning ARGS`` quietly (on ``cpus``)."""
    return subprocess.Popen(
        pinned(cpus, [sys.executable, "-m", "memshift", "--log-level", "warning", *args]),
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
read_percent = {read_percent}
shadow_read_percent = {shadow}
write_mode = "{write_mode}"
[rollback]
max_latency_ratio = 1000.0
max_mismatch_rate = 1.0
[state]
url = "sqlite:///{state}"
[compare]
helper = {helper}
helper_cpus = [{helper_cpus}]
"""


@contextlib.contextmanager
def proxy_process(
    legacy: str,
    new: str,
    write_mode: str = "sync",
    shadow: int = 0,
    cpus: str | None = None,
    read_percent: int = 0,
    serve_args: tuple[str, ...] = (),
    helper: bool = True,
    helper_cpus: str = "",
) -> Iterator[str]:
    """Run ``memshift serve`` in front of two stores (on ``cpus``); yield its URL.

    ``helper``: shadow reads in the helper process (on ``helper_cpus``, "0,1" say;
    by default the proxy's own) or, False, in the proxy's own process.
    """
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
                read_percent=read_percent,
                helper="true" if helper else "false",
                helper_cpus=helper_cpus,
            )
        )
        proc = memshift(["serve", "--config", str(config), *serve_args], cpus=cpus)
        url = f"http://127.0.0.1:{port}"
        SERVERS[url], ADMIN_URLS[url] = proc.pid, f"http://127.0.0.1:{admin}"
        try:
            wait_healthy(f"http://127.0.0.1:{admin}/healthz", proc, "proxy")
            yield url
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


_MEMORY = (
    '"title": "a memory", "content": "{content}", "context_id": null, "owner": "bench", '
    '"access_level": "private", "metadata": {{}}, "version": 1, '
    '"created_at": "2026-01-01T00:00:00.000000Z", "updated_at": "2026-01-01T00:00:00.000000Z"'
)
STATIC_SERVER = """
  server {{
    listen 127.0.0.1:{port};
    default_type application/json;
    location = /v1/whoami {{ return 200 '{{"user": "bench", "role": "user"}}'; }}
    location = /v1/memories {{
      return 201 '{{"id": ${{id_time}}${{connection3}}${{request3}}, {memory}}}';
    }}
    location ~ ^/v1/memories/(\\d+)$ {{ return 200 '{{"id": $1, {memory}}}'; }}
    location / {{ return 200 '{{"status": "ok"}}'; }}
  }}
"""
STATIC_CONFIG = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  # A create answers a fresh id that grows, as a store's own ids do: "1", the time in
  # milliseconds (its last 9 digits: they wrap every 11 days), then the connection's
  # number and the request's number on it, three digits each (their last three). 16
  # digits, unique while no connection carries 1,000 requests in one millisecond and
  # no two connections numbered 1,000 apart are open at once.
  map $msec $id_time {{ "~(?<s>[0-9]{{6}})[.](?<ms>[0-9]{{3}})$" "1$s$ms"; }}
  map $connection $connection3 {{
    "~(?<n>[0-9]{{3}})$" $n; "~^(?<n>[0-9]{{2}})$" 0$n; default 00$connection;
  }}
  map $connection_requests $request3 {{
    "~(?<n>[0-9]{{3}})$" $n; "~^(?<n>[0-9]{{2}})$" 0$n; default 00$connection_requests;
  }}
  client_body_temp_path {tmp}/body;
  client_max_body_size 16m;
  keepalive_requests 99999;
{servers}
}}
"""


@contextlib.contextmanager
def static_backends(count: int, cpus: str | None = None) -> Iterator[list[str]]:
    """Run nginx (one worker) answering fixed memory-service JSON on ``count`` ports.

    A fast, constant backend, so that what a benchmark measures is the proxy in front.
    """
    nginx = "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("this benchmark needs nginx: apt-get install nginx-light")
    memory = _MEMORY.format(content="x" * 400)
    with tempfile.TemporaryDirectory(prefix="memshift-nginx-") as tmp:
        ports = [free_port() for _ in range(count)]
        servers = "".join(STATIC_SERVER.format(port=p, memory=memory) for p in ports)
        config = Path(tmp) / "nginx.conf"
        config.write_text(STATIC_CONFIG.format(tmp=tmp, servers=servers))
        proc = subprocess.Popen(
            pinned(cpus, [nginx, "-c", str(config), "-e", f"{tmp}/error.log"]),
            stdout=subprocess.DEVNULL,
        )
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        try:
            for url in urls:
                wait_healthy(url + "/healthz", proc, "nginx")
            yield urls
        finally:
            proc.send_signal(signal.SIGQUIT)
            proc.wait(timeout=30)


SERVERS: dict[str, int] = {}  # URL of a proxy started here: its process id
ADMIN_URLS: dict[str, str] = {}  # URL of a proxy started here: its admin API


def compare_totals(url: str) -> dict[str, Any]:
    """The comparison report's totals of the proxy serving ``url`` (compared, dropped...)."""
    request = urllib.request.Request(
        ADMIN_URLS[url] + "/report", headers={"Authorization": "Bearer bench-admin"}
    )
    with urllib.request.urlopen(request) as resp:
        totals: dict[str, Any] = orjson.loads(resp.read())["totals"]
    return totals


def _family(pid: int) -> list[int]:
    """``pid`` and its descendants: the children of any of its threads, and theirs."""
    out = [pid]
    with contextlib.suppress(OSError):  # gone meanwhile
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            for child in children.read_text().split():
                out += _family(int(child))
    return out


def cpu_seconds(url: str) -> float:
    """CPU time (user + system) the process serving ``url`` and its descendants used so far.

    Steadier than throughput on a shared machine: what the proxy spends per request,
    its workers and shadow helpers included.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in _family(SERVERS[url]):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _loadtest_argv(
    target: str, mix: str, concurrency: int, duration: float, sizes: str = "1000"
) -> list[str]:
    return [
        sys.executable, "-m", "memshift", "--log-level", "warning", "loadtest",
        "--target", target, "--token", "tok-bench", "--mix", mix, "--sizes", sizes,
        "--concurrency", str(concurrency), "--duration", str(duration),
    ]  # fmt: skip


def loadtest(
    target: str,
    mix: str,
    concurrency: int,
    duration: float,
    cpus: str | None = None,
    sizes: str = "1000",
) -> dict[str, Any]:
    """Run ``memshift loadtest`` (on ``cpus``) and return its JSON report."""
    argv = [*_loadtest_argv(target, mix, concurrency, duration, sizes), "--json"]
    done = subprocess.run(pinned(cpus, argv), capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"loadtest against {target} failed ({done.returncode}): "
            f"{done.stderr.decode()[-2000:]}{done.stdout.decode()[-3000:]}"
        )
    doc: dict[str, Any] = orjson.loads(done.stdout)
    return doc


def measured_load(
    target: str, mix: str, concurrency: int, duration: float, cpus: str | None = None
) -> dict[str, Any]:
    """:func:`loadtest`'s totals, with the proxy's CPU microseconds per request if known."""
    before = cpu_seconds(target) if target in SERVERS else None
    total: dict[str, Any] = loadtest(target, mix, concurrency, duration, cpus)["total"]
    if before is not None:
        spent = cpu_seconds(target) - before
        total["proxy_cpu_us"] = round(spent / max(total["count"], 1) * 1e6, 1)
    return total


def _idle_priority() -> None:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


@contextlib.contextmanager
def idle_process(cpus: str, argv: list[str], settle_s: float = 0.0) -> Iterator[None]:
    """Run ``argv`` on ``cpus`` at idle CPU priority (it takes only time nothing else
    wants), as the shadow helper runs; give it ``settle_s`` to start."""
    proc = subprocess.Popen(
        pinned(cpus, argv),
        preexec_fn=_idle_priority,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(settle_s)
        yield
    finally:
        proc.kill()
        proc.wait()


def cpu_kept_awake(cpus: str) -> contextlib.AbstractContextManager[None]:
    """Keep ``cpus`` busy with a loop at idle priority, which yields to any other work.

    On this virtual machine a CPU with nothing to run sleeps, and waking it for the next
    request costs latency: with the CPU kept busy, a proxy answers one request in flight
    about a fifth sooner. A shadow helper working beside the proxy keeps its CPU awake
    the same way, which a comparison at one request in flight must tell from its cost.
    """
    return idle_process(cpus, [sys.executable, "-c", "while True: pass"])


def second_reader(cpus: str, target: str, rate: float) -> contextlib.AbstractContextManager[None]:
    """A plain reader of ``target`` at ``rate`` reads/s, at idle priority on ``cpus``:
    the second read of a shadow read, with nothing of memshift in it."""
    argv = [*_loadtest_argv(target, "read=100", 1, 3600), "--rate", f"{rate:.0f}"]
    return idle_process(cpus, argv, settle_s=1.0)


@contextlib.contextmanager
def bare_proxy(target: str, mirror: str | None = None, cpus: str | None = None) -> Iterator[str]:
    """Run ``benchmarks/bare_proxy.py`` in front of ``target``; yield its URL."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "benchmarks.bare_proxy",
        "--listen",
        str(port),
        "--target",
        target,
    ]
    proc = subprocess.Popen(
        pinned(cpus, argv + (["--mirror", mirror] if mirror else [])),
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    SERVERS[url] = proc.pid
    try:
        wait_healthy(url + "/healthz", proc, "bare proxy")
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
