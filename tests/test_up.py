"""``memshift up`` as a newcomer runs it: a real process, on real ports."""

from __future__ import annotations

import json
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def _free_base() -> int:
    """A port N with N, N+1, N+2 and N+9 all free."""
    for _ in range(200):
        base = random.randint(20000, 60000)
        try:
            for offset in (0, 1, 2, 9):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port range")


def _start(data: Path, base: int, *extra: str) -> tuple[subprocess.Popen[str], str]:
    argv = ["up", "--data-dir", str(data), "--port-base", str(base), *extra]
    proc = subprocess.Popen(
        [sys.executable, "-m", "memshift", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Ctrl-C" in line:
            return proc, "".join(lines)
    proc.kill()
    raise AssertionError("memshift up did not start: " + "".join(lines))


def _call(url: str, token: str, body: Any = None) -> Any:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read()), dict(resp.headers)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert 0 == proc.returncode, err
    return err


def test_up_runs_the_migration_and_keeps_its_data(tmp_path: Path) -> None:
    """up prints URLs and tokens, serves through the proxy, stops on SIGTERM, and restarts."""
    data, base = tmp_path / "data", _free_base()
    proc, banner = _start(data, base)
    try:
        user = re.search(r"user token: (\S+)", banner)
        admin = re.search(r"admin token: (\S+)", banner)
        assert user and admin, banner
        made, headers = _call(
            f"http://127.0.0.1:{base}/v1/memories",
            user[1],
            {"title": "first", "content": "kept across restarts"},
        )
        assert "legacy" == headers["X-Memshift-Served-By"]
        status, _ = _call(f"http://127.0.0.1:{base + 9}/status", admin[1])
        assert ("legacy", 0) == (status["primary"], status["repair_backlog"])
    finally:
        err = _stop(proc)
    assert user[1] not in err and admin[1] not in err  # tokens never reach the logs
    assert 0o600 == (data / "tokens.toml").stat().st_mode & 0o777
    proc, banner_again = _start(data, base)
    try:
        assert admin[1] in banner_again
        got, _ = _call(f"http://127.0.0.1:{base}/v1/memories/{made['id']}", user[1])
        assert "kept across restarts" == got["content"]
        copy, _ = _call(f"http://127.0.0.1:{base + 2}/v1/memories", user[1])
        assert ["first"] == [m["title"] for m in copy["items"]]
    finally:
        _stop(proc)


def test_demo_traffic_moves_the_report_and_the_metrics(tmp_path: Path) -> None:
    """With --demo-traffic, a newcomer sees comparisons and requests without sending any."""
    base = _free_base()
    proc, banner = _start(tmp_path / "data", base, "--demo-traffic")
    try:
        admin = re.search(r"admin token: (\S+)", banner)
        assert admin and "Demo traffic" in banner, banner
        deadline = time.monotonic() + 30
        compared = 0
        while time.monotonic() < deadline and compared < 5:
            time.sleep(0.5)
            report, _ = _call(f"http://127.0.0.1:{base + 9}/report", admin[1])
            compared = report["totals"]["compared"]
        assert compared >= 5, report
        req = urllib.request.Request(
            f"http://127.0.0.1:{base + 9}/metrics",
            headers={"Authorization": f"Bearer {admin[1]}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            metrics = resp.read().decode()
        served = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("memshift_client_requests_total{")
        ]
        assert sum(served) >= 10, metrics[:2000]
    finally:
        err = _stop(proc)
    assert "Traceback" not in err
