"""Nothing lost, for any store: the scenarios, written once, run against each subject.

Every scenario runs the proxy as its own process in front of a pair of real stores
(see ``subjects``), sends real client traffic through it, and ends by comparing the
two stores record by record. Aliased ids of another user's records are proven in
``tests/proxy/test_aliased_ids.py`` (only the reference store has users).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conformance.mcpclient import BareMcp
from tests.conformance.proxyproc import MakeProxyProcess, ProxyProcess
from tests.conformance.subjects import SUBJECTS, ClientFailed, Subject, Writer

MCP_SUBJECTS = ["reference", "mcp-server-memory"]
SHARED_SUBJECTS = ["reference", "legacy-style"]  # a stdio child belongs to one proxy


def _writer(subject: Subject, http: aiohttp.ClientSession, base: str, number: int) -> Writer:
    mcp = BareMcp(http, base + "/mcp", subject.client_headers(number))
    return Writer(number, http, base, mcp=mcp)


async def _write(
    subject: Subject,
    w: Writer,
    steps: int | None,
    *,
    until: asyncio.Event | None = None,
    flaky: bool = False,
    pause: float = 0.03,
) -> list[str]:
    """Write ``steps`` times (or until ``until`` is set); return the errors a client saw."""
    failures = []
    step = 0
    while (steps is None or step < steps) and not (until and until.is_set()):
        try:
            await subject.write(w, step, flaky=flaky)
        except ClientFailed as error:
            failures.append(str(error))
        step += 1
        await asyncio.sleep(pause)
    return failures


async def _writers(subject: Subject, base: str, count: int, **how: Any) -> list[str]:
    async with aiohttp.ClientSession() as http:
        done = await asyncio.gather(
            *(_write(subject, _writer(subject, http, base, n), **how) for n in range(count))
        )
    return [failure for failures in done for failure in failures]


async def _settle(subject: Subject, *proxies: ProxyProcess) -> dict[str, Any]:
    """Wait for every backlog to drain, repair held writes, stop the proxies, compare."""
    async with aiohttp.ClientSession() as http:
        statuses = [await proxy.drained(http) for proxy in proxies]
    if any(status["held_writes"] for status in statuses):
        await proxies[0].repair()
        async with aiohttp.ClientSession() as http:
            assert 0 == (await proxies[0].status(http))["held_writes"]
    for proxy in proxies:
        await proxy.stop()
    await subject.assert_identical(proxies[0].state_url)
    return statuses[0]


def _proxy(subject: Subject, make: MakeProxyProcess, tmp_path: Path, mode: str) -> ProxyProcess:
    return make(subject.stores_toml(), f"sqlite:///{tmp_path}/state.db", mode)


@pytest.mark.slow
async def test_new_store_down_for_10_seconds_under_4_writers(
    subject: Subject, proxy_process: MakeProxyProcess, tmp_path: Path
) -> None:
    """new is gone for 10 s while 4 clients write, and writes go on through replay:
    no client sees an error, and the stores end identical."""
    proxy = _proxy(subject, proxy_process, tmp_path, "async")
    await proxy.start()
    stop = asyncio.Event()
    work = asyncio.ensure_future(_writers(subject, proxy.base, 4, steps=None, until=stop))
    await asyncio.sleep(2)
    await subject.down()
    await asyncio.sleep(10)
    async with aiohttp.ClientSession() as http:
        backlog = (await proxy.status(http))["repair_backlog"]
    await subject.up()
    await asyncio.sleep(4)  # clients write on while the backlog replays
    stop.set()
    failures = await work
    await _settle(subject, proxy)
    assert ([], True) == (failures, backlog > 0)


# A known gap, seen in about half the runs: on a store without keys, writes in flight
# when the proxy dies are held (a create's outcome at the primary cannot be read back
# yet) or their records never paired (a client's retry of a create that was applied),
# and with write_order = "global" everything after them waits for verify --repair.
KILLED_KEYLESS = pytest.mark.xfail(
    strict=False,
    reason="keyless store: writes in flight at SIGKILL can stall global order until repair",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "subject",
    [
        pytest.param(name, marks=KILLED_KEYLESS) if name == "legacy-style" else name
        for name in SUBJECTS
    ],
    indirect=True,
)
async def test_proxy_killed_mid_traffic_and_restarted(
    subject: Subject, proxy_process: MakeProxyProcess, tmp_path: Path
) -> None:
    """SIGKILL the proxy while 4 clients write (they retry what failed to connect):
    after restart and replay the stores are identical, nothing applied twice."""
    proxy = _proxy(subject, proxy_process, tmp_path, "async")
    await proxy.start()
    work = asyncio.ensure_future(_writers(subject, proxy.base, 4, steps=80, flaky=True))
    await asyncio.sleep(1.0)
    assert not work.done(), "the proxy was to be killed during the workload"
    await proxy.kill()
    await asyncio.sleep(0.5)
    await proxy.start()
    failures = await work
    await _settle(subject, proxy)
    assert [] == failures


@pytest.mark.slow
async def test_new_store_failing_and_dropping_answers_after_applying(
    subject: Subject, proxy_process: MakeProxyProcess, tmp_path: Path
) -> None:
    """A fifth of new's writes fail and some are applied, then their answer is lost:
    clients see nothing of it, and the stores end identical."""
    subject.faults(error=0.2, drop=0.05)
    proxy = _proxy(subject, proxy_process, tmp_path, "sync")
    await proxy.start()
    failures = await _writers(subject, proxy.base, 4, steps=25)
    subject.faults(error=0.0, drop=0.0)
    await _settle(subject, proxy)
    assert [] == failures


@pytest.mark.parametrize("subject", MCP_SUBJECTS, indirect=True)
async def test_concurrent_calls_sharing_one_jsonrpc_id(
    subject: Subject, proxy_process: MakeProxyProcess, tmp_path: Path
) -> None:
    """Eight calls at once on one MCP session, all with JSON-RPC id 7: each is answered
    with its own result, none hangs, and the stores end identical."""
    assert subject.mcp_create is not None
    tool, arguments = subject.mcp_create
    proxy = _proxy(subject, proxy_process, tmp_path, "sync")
    await proxy.start()
    tags = [f"same-id-{n}" for n in range(8)]
    async with aiohttp.ClientSession() as http:
        mcp = BareMcp(http, proxy.base + "/mcp", subject.client_headers(0))
        await mcp.open()
        async with asyncio.timeout(60):
            results = await asyncio.gather(*(mcp.call(tool, arguments(t), rpc_id=7) for t in tags))
    for tag, result in zip(tags, results, strict=True):
        text = json.dumps(result)
        assert [tag] == [t for t in tags if f'"{t}"' in text], (tag, result)
    await _settle(subject, proxy)


@pytest.mark.slow
@pytest.mark.parametrize("subject", SHARED_SUBJECTS, indirect=True)
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_two_instances_on_one_postgresql_state_db(
    make_pg_url: Any, subject: Subject, proxy_process: MakeProxyProcess, mode: str
) -> None:
    """Two proxies share a state db; 6 writers change 3 records through both at once:
    each record ends on both stores with the same last write."""
    state = make_pg_url()
    proxies = [proxy_process(subject.stores_toml(), state, mode, name) for name in ("one", "two")]
    for proxy in proxies:
        await proxy.start()
    async with aiohttp.ClientSession() as http:
        records = await subject.seed(Writer(0, http, proxies[0].base), 3)

        async def changes(number: int) -> None:
            for n in range(12):
                base = proxies[(number + n) % 2].base
                record = records[(number + n) % len(records)]
                await subject.touch(Writer(number, http, base), record, f"w{number}-{n}")

        await asyncio.gather(*(changes(number) for number in range(6)))
    await _settle(subject, *proxies)
