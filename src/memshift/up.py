"""``memshift up``: the whole migration on one machine, with nothing to set up.

A ``legacy`` and a ``new`` store on SQLite under the data dir, and the proxy with its
admin API in front of them, in one process. The first run creates, in the data dir,
a tokens file (a demo user and memshift's service token), a config file and the
databases; later runs reuse them, so data and settings survive restarts. The config
file is watched like any other: edits apply within two seconds.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from aiohttp import web

from memshift.config.load import load_settings
from memshift.config.settings import Listen, Settings
from memshift.errors import ConfigError
from memshift.loadtest.demo import demo_traffic as demo_traffic_to
from memshift.proxy.app import make_apps
from memshift.proxy.instance import make_proxy
from memshift.runtime import run_async
from memshift.serving import serve_apps
from memshift.store.app import make_app
from memshift.store.settings import StoreSettings
from memshift.store.tokens import Principal, load_tokens
from memshift.webutil import check_free

DEMO_USER = "demo"
SERVICE_USER = "memshift"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _config_text(data_dir: Path, port_base: int, service_token: str) -> str:
    stores = "".join(
        f'\n[stores.{name}]\nurl = "http://127.0.0.1:{port_base + offset}"\n'
        f'token = "{service_token}"\n'
        for name, offset in (("legacy", 1), ("new", 2))
    )
    return (
        "# Written by `memshift up`; edit freely: changes apply within 2 seconds.\n"
        f'[proxy]\nlisten = "127.0.0.1:{port_base}"\n\n'
        f'[admin]\nlisten = "127.0.0.1:{port_base + 9}"\n'
        f'token = "adm-{secrets.token_hex(20)}"\n{stores}\n'
        '[routing]\nprimary = "legacy"\nread_percent = 0\nshadow_read_percent = 100\n'
        'write_mode = "sync"\n\n'
        f'[state]\nurl = "sqlite:///{data_dir.resolve() / "state.db"}"\n'
    )


def prepare_data_dir(data_dir: Path, port_base: int) -> tuple[Path, Path]:
    """Create the data dir's tokens and config files if missing; return their paths."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tokens, config = data_dir / "tokens.toml", data_dir / "memshift.toml"
    if not tokens.exists():
        demo, service = secrets.token_hex(8), secrets.token_hex(20)
        _write_private(
            tokens,
            f'[tokens.tok-{DEMO_USER}-{demo}]\nuser = "{DEMO_USER}"\n\n'
            f'[tokens.svc-{service}]\nuser = "{SERVICE_USER}"\nrole = "admin"\n',
        )
    if not config.exists():
        service = next(t for t, p in load_tokens(str(tokens)).items() if p.admin)
        _write_private(config, _config_text(data_dir, port_base, service))
    return tokens, config


def _store_listen(settings: Settings, name: str) -> Listen:
    url = settings.stores[name].url  # type: ignore[index]
    host, _, port = url.split("://", 1)[1].rpartition(":")
    return Listen(host=host, port=int(port))


OFFSETS = {"proxy.listen": 0, "stores.legacy.url": 1, "stores.new.url": 2, "admin.listen": 9}
DEFAULT_PORT_BASE = 8100


def _ports(base: int) -> list[tuple[Listen, str]]:
    return [(Listen(host="127.0.0.1", port=base + off), key) for key, off in OFFSETS.items()]


def _move_ports(config: Path, old: int, new: int) -> None:
    """Move the ports of the config ``memshift up`` wrote from base ``old`` to ``new``."""
    text = config.read_text(encoding="utf-8")
    for off in OFFSETS.values():  # through placeholders: old and new ranges may overlap
        text = text.replace(f'127.0.0.1:{old + off}"', f'127.0.0.1:@{off}@"')
    for off in OFFSETS.values():
        text = text.replace(f'127.0.0.1:@{off}@"', f'127.0.0.1:{new + off}"')
    _write_private(config, text)


def _listens(settings: Settings) -> list[tuple[Listen, str]]:
    return [
        (settings.proxy.listen, "proxy.listen"),
        (_store_listen(settings, "legacy"), "stores.legacy.url"),
        (_store_listen(settings, "new"), "stores.new.url"),
        (settings.admin.listen, "admin.listen"),
    ]


def _settings(data_dir: Path, port_base: int | None, config: Path | None) -> tuple[Path, Path]:
    """The tokens and config files to run with, made or moved as ``port_base`` says;
    raise ``ConfigError`` (with nothing made) when a port is taken."""
    generated = data_dir / "memshift.toml"
    if config is not None:
        if port_base is not None:
            raise ConfigError(
                "--port-base", f"with --config, the ports are {config}'s own: edit them there"
            )
        return prepare_data_dir(data_dir, DEFAULT_PORT_BASE)[0], config
    if not generated.exists():
        base = port_base or DEFAULT_PORT_BASE
        try:
            check_free(_ports(base))
        except ConfigError as exc:
            raise ConfigError(
                "--port-base", f"{exc.message} (choose another --port-base)"
            ) from None
        return prepare_data_dir(data_dir, base)
    current = load_settings(generated).proxy.listen.port
    if port_base is not None and port_base != current:
        check_free(_ports(port_base))
        _move_ports(generated, current, port_base)
    return prepare_data_dir(data_dir, current)


def run_up(
    data_dir: Path, port_base: int | None, config: Path | None, demo_traffic: bool = False
) -> None:
    """Run both stores and the proxy until Ctrl-C or SIGTERM.

    ``port_base`` (None: 8100 for a new data dir, else the ports it has) moves the ports
    of the config ``up`` wrote; a port in use stops it before anything is made.
    """
    tokens_path, config_path = _settings(data_dir, port_base, config)
    settings = load_settings(config_path)
    check_free(_listens(settings))
    tokens = load_tokens(str(tokens_path))
    for store in settings.stores.values():  # the proxy's service tokens act as admins
        tokens.setdefault(store.token, Principal(SERVICE_USER, admin=True))
    user = next((t for t, p in tokens.items() if p.user == DEMO_USER), None)
    root = data_dir.resolve()

    def ready() -> None:
        print(
            f"memshift up: a migration from legacy to new is running (data in {data_dir})\n"
            f"  proxy   http://{settings.proxy.listen}    user token: {user}\n"
            f"  MCP     http://{settings.proxy.listen}{settings.mcp.path}  (Streamable HTTP)\n"
            f"  admin   http://{settings.admin.listen}    admin token: {settings.admin.token}\n"
            f"  legacy  {settings.stores['legacy'].url}\n"
            f"  new     {settings.stores['new'].url}\n"
            f"  config  {config_path} (edits apply within 2 seconds)\n"
            f"  console http://{settings.admin.listen}/console (sign in with the admin token)\n"
            f"Try:  curl -H 'Authorization: Bearer {user}' http://{settings.proxy.listen}/v1/stats\n"
            "For the admin commands (memshift status, ramp, report...), paste:\n"
            f"  export MEMSHIFT_ADMIN_URL=http://{settings.admin.listen}\n"
            f"  export MEMSHIFT_ADMIN_TOKEN={settings.admin.token}\n"
            + (
                "Demo traffic: a gentle load test runs through the proxy "
                f"(report: http://{settings.admin.listen}/report.html).\n"
                if demo_traffic
                else ""
            )
            + "Ctrl-C stops everything.",
            flush=True,
        )

    async def main() -> None:
        apps: list[tuple[web.Application, Listen, str]] = [
            (
                make_app(
                    StoreSettings(engine=name, db_url=f"sqlite:///{root}/{name}.db"),
                    tokens,
                ),
                _store_listen(settings, name),
                f"stores.{name}.url",
            )
            for name in ("legacy", "new")
        ]
        proxy_app, admin_app = make_apps(make_proxy(settings))
        apps += [
            (proxy_app, settings.proxy.listen, "proxy.listen"),
            (admin_app, settings.admin.listen, "admin.listen"),
        ]
        alongside = []
        if demo_traffic and user:
            alongside.append(demo_traffic_to(f"http://{settings.proxy.listen}", user))
        await serve_apps(apps, ready, alongside)

    run_async(main())
