"""The ``memshift store`` command as operators run it: a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

TOKENS = '[tokens.tok-ops]\nuser = "ops"\nrole = "admin"\n'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_store_process_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    """A store process answers /healthz and the API, and exits 0 on SIGTERM."""
    port = _free_port()
    env = {**os.environ, "MEMSHIFT_TOKENS": TOKENS}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "memshift",
            "store",
            "--engine",
            "new",
            "--db",
            f"sqlite:///{tmp_path}/s.db",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as resp:
                    assert 200 == resp.status
                    break
            except OSError:
                assert time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.1)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/stats", headers={"Authorization": "Bearer tok-ops"}
        )
        with urllib.request.urlopen(req) as resp:
            assert b'"memories":0' in resp.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    assert 0 == proc.returncode, err
    assert b"tok-ops" not in err


def run_memshift(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m memshift ARGS`` to completion and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "memshift", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_store_without_tokens_refuses_to_start(tmp_path: Path) -> None:
    """Without --tokens or MEMSHIFT_TOKENS the store exits 2 with a clear message."""
    env = {k: v for k, v in os.environ.items() if k != "MEMSHIFT_TOKENS"}
    done = run_memshift(
        [
            "store",
            "--engine",
            "legacy",
            "--db",
            f"sqlite:///{tmp_path}/s.db",
            "--listen",
            "127.0.0.1:0",
        ],
        env,
    )
    assert (2, True) == (done.returncode, "MEMSHIFT_TOKENS" in done.stderr)


def test_store_with_a_bad_listen_address_refuses(tmp_path: Path) -> None:
    """A malformed --listen is refused naming the flag, exit 2."""
    done = run_memshift(
        [
            "store",
            "--engine",
            "legacy",
            "--db",
            f"sqlite:///{tmp_path}/s.db",
            "--listen",
            "localhost",
        ],
        {**os.environ, "MEMSHIFT_TOKENS": TOKENS},
    )
    assert (2, True) == (done.returncode, "--listen" in done.stderr)


@pytest.mark.parametrize("damage", ["not-a-database", "truncated"])
def test_store_on_a_damaged_database_is_one_line_and_exit_2(tmp_path: Path, damage: str) -> None:
    """A file that is not a database (or no longer one): one line naming --db, exit 2."""
    db = tmp_path / "s.db"
    if damage == "not-a-database":
        db.write_bytes(os.urandom(8192))
    else:
        db.write_bytes(b"SQLite format 3\x00" + b"\x10\x00" + os.urandom(50))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run_memshift(
        ["store", "--engine", "new", "--db", f"sqlite:///{db}", "--listen", f"127.0.0.1:{port}"],
        {**os.environ, "MEMSHIFT_TOKENS": TOKENS},
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert 2 == done.returncode, done.stderr
    assert [line for line in lines if line.startswith("memshift: error: --db: ")] == lines[-1:]
    assert "Traceback" not in done.stderr
