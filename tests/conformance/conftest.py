"""Fixtures of the conformance suite: a subject (a pair of stores) per parameter."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conformance.proxyproc import MakeProxyProcess, ProxyProcess
from tests.conformance.subjects import SUBJECTS, Subject
from tests.processes import reap


@pytest.fixture(params=list(SUBJECTS))
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    """Each pair of stores in turn, started; stopped after the test."""
    made = SUBJECTS[request.param](tmp_path)
    await made.start()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def proxy_process(tmp_path: Path) -> Iterator[MakeProxyProcess]:
    """Make ``ProxyProcess``es (arguments after ``tmp``); any left running is killed after."""
    made: list[ProxyProcess] = []

    def make(*args: object, **kwargs: object) -> ProxyProcess:
        proxy = ProxyProcess(tmp_path, *args, **kwargs)  # type: ignore[arg-type]
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        if proxy.proc is not None and proxy.proc.poll() is None:
            proxy.proc.send_signal(signal.SIGKILL)
            reap(proxy.proc)
