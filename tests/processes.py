"""Helpers for tests that run memshift as real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any


def free_port() -> int:
    """Return a TCP port that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m memshift ARGS``; its stderr goes to a file (``errors(proc)``).

    A file, not a pipe: a long-running process whose pipe nobody reads would block once
    the pipe is full.
    """
    err = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 (closed by reap)
    proc = subprocess.Popen(
        [sys.executable, "-m", "memshift", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=err,
        text=True,
    )
    proc.err_file = err  # type: ignore[attr-defined]
    return proc


def errors(proc: subprocess.Popen[str]) -> str:
    """Return what ``proc`` wrote to stderr so far."""
    err = proc.err_file  # type: ignore[attr-defined]
    err.flush()
    err.seek(0)
    return str(err.read())


def reap(proc: subprocess.Popen[str]) -> str:
    """Wait for ``proc`` to end, close its log file, and return its stderr."""
    proc.wait(timeout=30)
    text = errors(proc)
    proc.err_file.close()  # type: ignore[attr-defined]
    return text


def wait_http(url: str, proc: subprocess.Popen[str], within: float = 30) -> None:
    """Wait until ``url`` answers (any status); fail if ``proc`` exits first."""
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            assert proc.poll() is None, errors(proc)
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.1)


def call(url: str, token: str, body: Any = None) -> tuple[Any, dict[str, str]]:
    """Send JSON (POST when ``body``) with a bearer token; return the JSON and headers."""
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read()), dict(resp.headers)


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM ``proc``, assert it exits 0, return its stderr."""
    proc.send_signal(signal.SIGTERM)
    err = reap(proc)
    assert 0 == proc.returncode, err
    return err


class StoreProcess:
    """A reference store run as its own process, that a test can stop and start again."""

    def __init__(self, engine: str, db_url: str, tokens_toml: str) -> None:
        self.engine, self.db_url, self.tokens = engine, db_url, tokens_toml
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start (or start again, on the same port and database) and wait until it answers."""
        self.proc = start(
            [
                "--log-level",
                "warning",
                "store",
                "--engine",
                self.engine,
                "--db",
                self.db_url,
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            {"MEMSHIFT_TOKENS": self.tokens},
        )
        wait_http(self.url + "/healthz", self.proc)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGTERM by default) and wait for it."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            reap(self.proc)
        self.proc = None
