"""``memshift serve`` as operators run it: real store processes, a real proxy process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.processes import call, free_port, start, stop, wait_http

TOKENS = '[tokens.tok-user]\nuser = "u"\n[tokens.tok-svc]\nuser = "memshift"\nrole = "admin"\n'


def test_serve_mirrors_through_a_real_process(tmp_path: Path) -> None:
    """serve proxies to running stores, mirrors a create, and exits 0 on SIGTERM."""
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
    proxy = start(["serve", "--config", str(config)], {"ADMIN": "adm-secret"})
    try:
        for name, proc in stores.items():
            wait_http(f"http://127.0.0.1:{ports[name]}/healthz", proc)
        wait_http(f"http://127.0.0.1:{ports['admin']}/healthz", proxy)
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
    finally:
        err = stop(proxy)
        for proc in stores.values():
            stop(proc)
    assert "adm-secret" not in err


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
