"""Helpers for tests that run memshift as real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
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
    """Start ``python -m memshift ARGS``."""
    return subprocess.Popen(
        [sys.executable, "-m", "memshift", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


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
            assert proc.poll() is None, proc.communicate()[1]
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
    _out, err = proc.communicate(timeout=30)
    assert 0 == proc.returncode, err
    return err
