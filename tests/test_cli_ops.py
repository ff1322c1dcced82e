"""The commands as an operator meets them: ports in use, moved ports, pasted variables, progress."""

from __future__ import annotations

import os
import pty
import re
import select
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

from tests.processes import StoreProcess, free_port
from tests.proxy.conftest import TOKENS
from tests.test_up import _free_base, _start, _stop

TOKENS_TOML = "".join(
    f'[tokens.{t}]\nuser = "{p.user}"\n' + ('role = "admin"\n' if p.admin else "")
    for t, p in TOKENS.items()
)


def _memshift(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memshift", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_a_port_in_use_is_one_line_exit_2_and_nothing_made(tmp_path: Path) -> None:
    base = _free_base()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 9))
        taken.listen()
        up = _memshift("up", "--data-dir", str(tmp_path / "data"), "--port-base", str(base))
        config = tmp_path / "serve.toml"
        config.write_text(
            f'[proxy]\nlisten = "127.0.0.1:{free_port()}"\n'
            f'[admin]\nlisten = "127.0.0.1:{base + 9}"\ntoken = "adm"\n'
            '[stores.legacy]\nurl = "http://127.0.0.1:1"\ntoken = "t"\n'
            '[stores.new]\nurl = "http://127.0.0.1:2"\ntoken = "t"\n'
            f'[state]\nurl = "sqlite:///{tmp_path}/state.db"\n'
        )
        serve = _memshift("--log-level", "info", "serve", "--config", str(config))
    assert (2, False) == (up.returncode, (tmp_path / "data").exists()), up.stderr
    assert [
        f"memshift: error: --port-base: cannot listen on 127.0.0.1:{base + 9}: "
        "address already in use (choose another --port-base)"
    ] == up.stderr.splitlines()
    assert 2 == serve.returncode
    assert [
        f"memshift: error: admin.listen: cannot listen on 127.0.0.1:{base + 9}: "
        "address already in use"
    ] == serve.stderr.splitlines()
    assert not (tmp_path / "state.db").exists()


def test_up_moves_its_ports_and_the_commands_follow_the_pasted_variables(tmp_path: Path) -> None:
    data, first, second = tmp_path / "data", _free_base(), _free_base()
    proc, _ = _start(data, first)
    _stop(proc)
    proc, banner = _start(data, second)  # the same data dir, on other ports
    try:
        pasted = dict(re.findall(r"export (MEMSHIFT_ADMIN_\w+)=(\S+)", banner))
        assert f"http://127.0.0.1:{second + 9}" == pasted["MEMSHIFT_ADMIN_URL"]
        status = _memshift("status", env=pasted)
        assert 0 == status.returncode, status.stderr
        assert "primary       legacy" in status.stdout
    finally:
        _stop(proc)
    dead = f"http://127.0.0.1:{free_port()}"
    lost = _memshift("status", env={**pasted, "MEMSHIFT_ADMIN_URL": dead})
    assert 1 == lost.returncode
    [line] = lost.stderr.splitlines()
    assert dead in line and "--admin URL or MEMSHIFT_ADMIN_URL" in line
    helped = _memshift("up", "--help").stdout
    assert "(default: memshift-data)" in helped


def test_verify_draws_its_progress_on_a_terminal(tmp_path: Path) -> None:
    """Under a pseudo-terminal verify shows records checked, their rate and the time left."""
    stores = {
        name: StoreProcess(name, f"sqlite:///{tmp_path}/{name}.db", TOKENS_TOML)
        for name in ("legacy", "new")
    }
    for store in stores.values():
        store.start()
    try:
        for n in range(300):
            request = urllib.request.Request(
                stores["legacy"].url + "/v1/memories",
                data=orjson.dumps({"title": f"m{n}", "content": "x"}),
                headers={"Authorization": "Bearer tok-user1", "Content-Type": "application/json"},
            )
            urllib.request.urlopen(request, timeout=10).close()
        config = tmp_path / "memshift.toml"
        config.write_text(
            '[admin]\ntoken = "adm"\n'
            f'[stores.legacy]\nurl = "{stores["legacy"].url}"\ntoken = "tok-svc"\n'
            f'[stores.new]\nurl = "{stores["new"].url}"\ntoken = "tok-svc"\n'
            f'[state]\nurl = "sqlite:///{tmp_path}/state.db"\n'
        )
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "memshift", "verify", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
        )
        os.close(follower)
        seen = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
        os.close(leader)
    finally:
        for store in stores.values():
            store.stop()
    text = seen.decode(errors="replace")
    assert 1 == proc.returncode  # every record is missing on new
    assert re.search(r"verify: \d+/300 \(\d+%\) \w+, \d+/s, ETA", text), text
