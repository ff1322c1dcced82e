"""``memshift serve`` as operators run it: real store processes, a real proxy process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.processes import call, free_port, start, stop, wait_http

TOKENS = '[tokens.tok-user]\nuser = "u"\n[tokens.tok-svc]\nuser = "memshift"\nrole = "admin"\n'


@contextmanager
def running_stack(
    tmp_path: Path, *serve_args: str
) -> Iterator[tuple[dict[str, int], subprocess.Popen[str]]]:
    """Two store processes and ``memshift serve SERVE_ARGS`` before them; yield the ports."""
    ports = {name: free_port() for name in ("legacy", "new", "proxy", "admin")}
    stores = {
        name: start(
            [
                "store",
                "--engine",
                name,
                "--db",
                f"sqlite:///{tmp_path}/{name}.db",
                "--listen",
                f"127.0.0.1:{ports[name]}",
            ],
            {"MEMSHIFT_TOKENS": TOKENS},
        )
        for name in ("legacy", "new")
    }
    config = tmp_path / "memshift.toml"
    config.write_text(
        f'[proxy]\nlisten = "127.0.0.1:{ports["proxy"]}"\n'
        f'[admin]\nlisten = "127.0.0.1:{ports["admin"]}"\ntoken_env = "ADMIN"\n'
        f'[stores.legacy]\nurl = "http://127.0.0.1:{ports["legacy"]}"\ntoken = "tok-svc"\n'
        f'[stores.new]\nurl = "http://127.0.0.1:{ports["new"]}"\ntoken = "tok-svc"\n'
        f'[state]\nurl = "sqlite:///{tmp_path}/state.db"\n'
    )
    proxy = start(["serve", "--config", str(config), *serve_args], {"ADMIN": "adm-secret"})
    err = ""
    try:
        for name, proc in stores.items():
            wait_http(f"http://127.0.0.1:{ports[name]}/healthz", proc)
        wait_http(f"http://127.0.0.1:{ports['admin']}/healthz", proxy)
        wait_http(f"http://127.0.0.1:{ports['proxy']}/healthz", proxy)
        yield ports, proxy
    finally:
        err = stop(proxy)
        for proc in stores.values():
            stop(proc)
        assert "adm-secret" not in err
        assert "Traceback" not in err, err


def test_serve_mirrors_through_a_real_process(tmp_path: Path) -> None:
    """serve proxies to running stores, mirrors a create, and exits 0 on SIGTERM."""
    with running_stack(tmp_path) as (ports, _):
        made, headers = call(
            f"http://127.0.0.1:{ports['proxy']}/v1/memories",
            "tok-user",
            {"title": "via serve", "content": "mirrored"},
        )
        assert "legacy" == headers["X-Memshift-Served-By"]
        copy, _ = call(f"http://127.0.0.1:{ports['new']}/v1/memories", "tok-svc")
        assert [("via serve", made["created_at"])] == [
            (m["title"], m["created_at"]) for m in copy["items"]
        ]
        status, _ = call(f"http://127.0.0.1:{ports['admin']}/status", "adm-secret")
        assert 0 == status["repair_backlog"]


def _workers_of(pid: int) -> list[int]:
    """The worker processes of a supervisor (not its multiprocessing helpers)."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _client_requests(admin_port: int) -> float:
    req = urllib.request.Request(
        f"http://127.0.0.1:{admin_port}/metrics", headers={"Authorization": "Bearer adm-secret"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("memshift_client_requests_total{")
    )


def test_serve_with_workers_shares_the_port_the_state_and_the_metrics(tmp_path: Path) -> None:
    """Two workers on one port: every write mirrored, metrics summed, a dead one replaced."""
    with running_stack(tmp_path, "--workers", "2") as (ports, serving):
        workers = _workers_of(serving.pid)
        assert 2 == len(workers)
        proxy = f"http://127.0.0.1:{ports['proxy']}"
        made = [
            call(f"{proxy}/v1/memories", "tok-user", {"title": f"w{i}", "content": "x"})[0]
            for i in range(30)
        ]  # each on a new connection, which the kernel spreads over the workers
        for memory in made:  # any worker translates any id: the id map is shared
            got, _ = call(f"{proxy}/v1/memories/{memory['id']}", "tok-user")
            assert memory["title"] == got["title"]
        copy, _ = call(f"http://127.0.0.1:{ports['new']}/v1/memories?limit=100", "tok-svc")
        assert sorted(m["title"] for m in made) == sorted(m["title"] for m in copy["items"])
        # Both workers served: each saved the report of the reads it compared.
        deadline = time.monotonic() + 15
        instances: set[str] = set()
        while time.monotonic() < deadline and len(instances) < 2:
            time.sleep(0.3)
            with sqlite3.connect(tmp_path / "state.db") as db:
                instances = {row[0] for row in db.execute("SELECT instance FROM reports")}
        assert {"worker0", "worker1"} == {i.rsplit("/", 1)[1] for i in instances}
        # Whichever worker answers /metrics counts both workers' requests: 60 and the
        # health check the stack waited on.
        assert {61.0} == {_client_requests(ports["admin"]) for _ in range(6)}
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = _workers_of(serving.pid)
            if len(now) == 2 and workers[0] not in now:
                break
            time.sleep(0.2)
        assert 2 == len(now) and workers[0] not in now
        wait_http(f"{proxy}/healthz", serving)
        got, _ = call(f"{proxy}/v1/memories/{made[0]['id']}", "tok-user")
        assert "w0" == got["title"]


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    """A config error stops serve with exit 2 and the key at fault."""
    config = tmp_path / "bad.toml"
    config.write_text(
        '[admin]\ntoken = "a"\n[stores.legacy]\nurl = "http://127.0.0.1:1"\ntoken = "t"\n'
        '[stores.new]\nurl = "http://127.0.0.1:2"\ntoken = "t"\n[routing]\nread_percent = 300\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "memshift", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (2, "memshift: error: routing.read_percent: must be 0..100\n") == (
        done.returncode,
        done.stderr,
    )
