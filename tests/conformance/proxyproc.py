"""The proxy as the conformance scenarios run it: ``memshift serve``, a process of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.conformance.subjects import ROOT
from tests.processes import errors, free_port, reap, wait_http

ADMIN_TOKEN = "adm-conformance"
FAST_MIRROR = (
    "[mirror]\nretry_attempts = 2\nretry_initial_s = 0.02\nretry_max_s = 0.1\n"
    "replay_interval_s = 0.3\n"
)


class ProxyProcess:
    """``memshift serve --config`` in front of a subject's stores, killed and started at will."""

    def __init__(
        self, tmp: Path, stores_toml: str, state_url: str, write_mode: str, name: str = "proxy"
    ) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.state_url = state_url
        self.config = tmp / f"{name}.toml"
        self.config.write_text(
            f'[proxy]\nlisten = "127.0.0.1:{self.port}"\n'
            f'[admin]\nlisten = "127.0.0.1:{self.admin_port}"\ntoken = "{ADMIN_TOKEN}"\n'
            f'[routing]\nwrite_mode = "{write_mode}"\n'
            f"{FAST_MIRROR}"
            f'[state]\nurl = "{state_url}"\n'
            f"{stores_toml}"
        )
        self.proc: subprocess.Popen[str] | None = None

    def _memshift(self, *args: str) -> subprocess.Popen[str]:
        err = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 (reap closes it)
        proc = subprocess.Popen(
            [sys.executable, "-m", "memshift", *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
        proc.err_file = err  # type: ignore[attr-defined]
        return proc

    async def start(self) -> None:
        level = os.environ.get("MEMSHIFT_TEST_PROXY_LOG", "warning")
        self.proc = self._memshift("--log-level", level, "serve", "--config", str(self.config))
        await asyncio.to_thread(wait_http, self.admin + "/healthz", self.proc, 60)
        await asyncio.to_thread(wait_http, self.base + "/healthz", self.proc, 60)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(reap, self.proc)
        self.proc = None

    async def stop(self) -> str:
        if self.proc is None:
            return ""
        self.proc.send_signal(signal.SIGTERM)
        text = await asyncio.to_thread(reap, self.proc)
        code, self.proc = self.proc.returncode, None
        assert 0 == code, text
        return text

    def log(self) -> str:
        return errors(self.proc) if self.proc is not None else ""

    async def status(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with http.get(self.admin + "/status", headers=headers) as answer:
            doc: dict[str, Any] = await answer.json()
            return doc

    async def drained(self, http: aiohttp.ClientSession, within: float = 60) -> dict[str, Any]:
        """Wait until nothing waits for replay; return the status then."""
        status: dict[str, Any] = {}
        try:
            async with asyncio.timeout(within):
                while (status := await self.status(http))["repair_backlog"]:  # noqa: ASYNC110
                    await asyncio.sleep(0.3)
        except TimeoutError:
            raise AssertionError(
                f"the backlog did not drain: {status}\n{self.log()[-4000:]}"
            ) from None
        return status

    async def repair(self) -> str:
        """``memshift verify --repair`` (run by this proxy); return its output."""
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "memshift", "verify", "--config", str(self.config), "--repair"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=None,
        )
        assert done.returncode in (0, 1), done.stderr
        return done.stdout + done.stderr


MakeProxyProcess = Callable[..., ProxyProcess]
