"""The ``memshift`` command.

Each sub-command parses its arguments here and hands over to the package that does the
work. Errors in what the user gave (flags, files, URLs) end with a one-line message and
exit status 2; a failed check exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from memshift import __version__, logs
from memshift.config.addresses import parse_listen
from memshift.errors import ConfigError, IntegrityError, MemshiftError
from memshift.store.settings import ENGINES, MIB, StoreSettings

Command = Callable[[argparse.Namespace], int]


def _cmd_store(args: argparse.Namespace) -> int:
    from memshift.store.serve import run_store
    from memshift.store.tokens import load_tokens

    missing = [f"--{n}" for n in ("engine", "db", "listen") if not getattr(args, n)]
    if missing:
        raise ConfigError("store", f"running a store needs {', '.join(missing)}")
    host, port = parse_listen(args.listen, "--listen")
    settings = StoreSettings(
        engine=args.engine,
        db_url=args.db,
        zstd_level=args.zstd_level,
        max_body_bytes=args.max_body_mib * MIB,
        mcp_hosts=(*StoreSettings.mcp_hosts, f"{host}:*", f"{host}:{port}"),
    )
    run_store(settings, load_tokens(args.tokens), host, port)
    return 0


def _cmd_store_check(args: argparse.Namespace) -> int:
    from memshift.database import Database
    from memshift.store.check import check_store

    db = Database(args.db, readers=1)
    try:
        engine, problems = check_store(db)
    finally:
        db.close()
    if args.json:
        print(orjson.dumps({"engine": engine, "ok": not problems, "problems": problems}).decode())
    else:
        for problem in problems:
            print(problem)
        print(
            f"{engine or 'empty'} store: {'ok' if not problems else f'{len(problems)} problem(s)'}"
        )
    return 1 if problems else 0


def _cmd_store_backup(args: argparse.Namespace) -> int:
    from memshift.store.backup import backup_sqlite

    size = backup_sqlite(args.db, Path(args.out))
    print(f"backup written to {args.out} ({size} bytes)")
    return 0


def _store_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store = sub.add_parser("store", help="run or maintain a reference memory store")
    store.set_defaults(func=_cmd_store)
    store.add_argument("--engine", choices=ENGINES, help="storage engine")
    store.add_argument("--db", help="SQLAlchemy URL: sqlite:///path or postgresql://...")
    store.add_argument("--listen", help="HOST:PORT to serve on")
    store.add_argument("--tokens", help="tokens file (TOML); default: $MEMSHIFT_TOKENS")
    store.add_argument("--zstd-level", type=int, default=3, choices=range(1, 23), metavar="1..22")
    store.add_argument("--max-body-mib", type=int, default=16, help="request body limit")
    actions = store.add_subparsers(dest="store_action", metavar="{check,backup}")
    check = actions.add_parser("check", help="verify stored content, chunks and references")
    check.add_argument("--db", required=True, help="SQLAlchemy URL of the store")
    check.add_argument("--json", action="store_true", help="print a JSON document")
    check.set_defaults(func=_cmd_store_check)
    backup = actions.add_parser("backup", help="consistent copy of a SQLite store while it serves")
    backup.add_argument("--db", required=True, help="sqlite:///path of the store")
    backup.add_argument("--out", required=True, help="file to write the copy to")
    backup.set_defaults(func=_cmd_store_backup)


def _cmd_serve(args: argparse.Namespace) -> int:
    from memshift.proxy.serve import run_proxy

    if args.workers > 1:
        from memshift.proxy.workers import run_workers

        log_options = {"level": args.log_level, "json": True if args.log_json else None}
        return run_workers(args.config, args.workers, log_options)
    run_proxy(args.config)
    return 0


def _cmd_stdio(args: argparse.Namespace) -> int:
    from memshift.proxy.stdio import run_stdio

    return run_stdio(args.config, args.token_env)


def _cmd_replay(args: argparse.Namespace) -> int:
    from memshift.proxy.serve import run_replay

    return run_replay(args.config)


def _cmd_verify(args: argparse.Namespace) -> int:
    from memshift.migrate.run import run_verify

    return run_verify(args.config, args.repair, args.json)


def _cmd_backfill(args: argparse.Namespace) -> int:
    from memshift.migrate.backfill import Options
    from memshift.migrate.run import run_backfill

    options = Options(
        batch=args.batch, resume=args.resume, rate=args.rate, check_every=args.check_every
    )
    return run_backfill(args.config, options, args.json)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    return parse


def _cmd_loadtest(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from memshift.loadtest.command import run_command
    from memshift.loadtest.mix import parse_mix, parse_sizes
    from memshift.loadtest.run import TOKEN_ENV, Options

    target = urlsplit(args.target)
    if target.scheme not in ("http", "https") or not target.hostname:
        raise ConfigError("--target", f"not an http(s) URL: {args.target!r}")
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        raise ConfigError("--token", f"a bearer token is needed (or set ${TOKEN_ENV})")
    options = Options(
        target=args.target,
        token=token,
        duration_s=args.duration,
        concurrency=args.concurrency,
        mix=parse_mix(args.mix),
        sizes=parse_sizes(args.sizes),
        rate=args.rate,
        timeout_s=args.timeout,
        seed=args.seed,
    )
    return run_command(options, args.json)


def _loadtest_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from memshift.loadtest.mix import DEFAULT_MIX, DEFAULT_SIZES

    load = sub.add_parser(
        "loadtest", help="drive a memory-service workload at a store or the proxy"
    )
    load.add_argument("--target", required=True, help="base URL: the proxy or a store")
    load.add_argument("--token", help="a user's bearer token (default: $MEMSHIFT_TOKEN)")
    load.add_argument("--duration", type=_positive(float), default=30.0, help="seconds")
    load.add_argument("--concurrency", type=_positive(int), default=8, help="requests in flight")
    load.add_argument(
        "--mix", default=DEFAULT_MIX, help=f"operation weights (default {DEFAULT_MIX})"
    )
    load.add_argument(
        "--sizes",
        default=DEFAULT_SIZES,
        help=f"content sizes in bytes, optionally weighted (default {DEFAULT_SIZES})",
    )
    load.add_argument("--rate", type=_positive(float), help="at most this many requests a second")
    load.add_argument("--timeout", type=_positive(float), default=30.0, help="seconds per request")
    load.add_argument("--seed", type=int, default=1, help="random seed (same seed, same requests)")
    load.add_argument("--json", action="store_true", help="print the report as JSON")
    load.set_defaults(func=_cmd_loadtest)


def _cmd_up(args: argparse.Namespace) -> int:
    from memshift.up import run_up

    if args.port_base is not None and not 1 <= args.port_base <= 65535 - 9:
        raise ConfigError("--port-base", "must leave room for N..N+9 below 65536")
    config = Path(args.config) if args.config else None
    run_up(Path(args.data_dir), args.port_base, config, args.demo_traffic)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from memshift.adminclient import admin_token, admin_url, call, status_text

    doc = call(admin_url(args.admin), admin_token(args.token), "GET", "/status")
    if args.json:
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(status_text(doc))
    changes = call(admin_url(args.admin), admin_token(args.token), "GET", "/audit?limit=5")["items"]
    if changes:
        print("\nlast changes")
        for item in changes:
            print(
                f"  epoch {item['epoch']:<5} {item['source']:<8} "
                f"{orjson.dumps(item['change']).decode()}  {item['reason'] or ''}"
            )
    return 0


def _cmd_ramp(args: argparse.Namespace) -> int:
    from memshift.adminclient import admin_token, admin_url, call, status_text

    if not 0 <= args.percent <= 100:
        raise ConfigError("PERCENT", "must be 0..100")
    body: dict[str, object] = {"read_percent": args.percent}
    if args.reason:
        body["reason"] = args.reason
    print(status_text(call(admin_url(args.admin), admin_token(args.token), "POST", "/ramp", body)))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from memshift.adminclient import admin_token, admin_url, call, report_text

    if args.reset:
        body = {"reason": args.reason} if args.reason else {}
        doc = call(admin_url(args.admin), admin_token(args.token), "POST", "/report/reset", body)
    else:
        doc = call(admin_url(args.admin), admin_token(args.token), "GET", "/report")
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() if args.json else report_text(doc))
    return 0


def _control(path: str) -> Command:
    def run(args: argparse.Namespace) -> int:
        from memshift.adminclient import admin_token, admin_url, call, status_text

        body: dict[str, object] = {"reason": args.reason} if args.reason else {}
        if getattr(args, "force", False):
            body["force"] = True
        print(status_text(call(admin_url(args.admin), admin_token(args.token), "POST", path, body)))
        return 0

    return run


def _admin_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from memshift.adminclient import DEFAULT_ADMIN, TOKEN_ENV, URL_ENV

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument(
            "--admin", help=f"admin API base URL (default: ${URL_ENV}, else {DEFAULT_ADMIN})"
        )
        parser.add_argument("--token", help=f"admin token (default: ${TOKEN_ENV})")
        return parser

    status = add("status", "show the migration's state and each store's health")
    status.add_argument("--json", action="store_true", help="print the raw JSON document")
    status.set_defaults(func=_cmd_status)
    for name, help_text in (
        ("failback", "send every read back to legacy and latch"),
        ("rearm", "lift the failback latch"),
        ("promote", "make the new store primary (refused while unsafe, unless --force)"),
    ):
        control = add(name, help_text)
        control.add_argument("--reason", help="why, for the audit log")
        if name == "promote":
            control.add_argument(
                "--force", action="store_true", help="promote although it is unsafe (audited)"
            )
        control.set_defaults(func=_control(f"/{name}"))
    report = add("report", "show the consistency report of shadow reads")
    report.add_argument("--json", action="store_true", help="print the raw JSON document")
    report.add_argument(
        "--reset", action="store_true", help="start a new report window first (audited)"
    )
    report.add_argument("--reason", help="why the report is reset, for the audit log")
    report.set_defaults(func=_cmd_report)
    ramp = add("ramp", "set the share of reads served by the new store")
    ramp.add_argument("percent", type=int, metavar="PERCENT", help="0..100")
    ramp.add_argument("--reason", help="why, for the audit log")
    ramp.set_defaults(func=_cmd_ramp)


def _proxy_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the proxy in front of running stores")
    serve.add_argument("--config", required=True, help="the proxy's TOML config file")
    serve.add_argument(
        "--workers",
        type=_positive(int),
        default=1,
        help="processes sharing the port and the state db (default 1)",
    )
    serve.set_defaults(func=_cmd_serve)

    stdio = sub.add_parser(
        "stdio",
        help="run the proxy as an MCP server on stdin/stdout (one command for a desktop client)",
    )
    stdio.add_argument("--config", required=True, help="the proxy's TOML config file")
    stdio.add_argument(
        "--token-env",
        default="MEMSHIFT_STDIO_TOKEN",
        help="the variable holding the client's bearer token, for stores with users",
    )
    stdio.set_defaults(func=_cmd_stdio)
    replay = sub.add_parser("replay", help="replay the write log to the secondary now")
    replay.add_argument("--config", required=True, help="the proxy's TOML config file")
    replay.set_defaults(func=_cmd_replay)
    _migrate_parsers(sub)
    profiles = sub.add_parser("profiles", help="list the store profiles memshift ships")
    profiles.set_defaults(func=_cmd_profiles)
    up = sub.add_parser("up", help="run legacy, new and the proxy on this machine")
    up.add_argument("--config", help="a config file (default: one made in the data dir)")
    up.add_argument("--data-dir", default="memshift-data", help="where data and settings live")
    up.add_argument(
        "--port-base",
        type=int,
        help="ports N (proxy), N+1 and N+2 (stores), N+9 (admin); default 8100 for a new "
        "data dir, else the ports it has (given, they are moved)",
    )
    up.add_argument(
        "--demo-traffic", action="store_true", help="send a gentle load test through the proxy"
    )
    up.set_defaults(func=_cmd_up)


def _cmd_profiles(_args: argparse.Namespace) -> int:
    from memshift import profiles

    found = profiles.shipped()
    width = max(len(name) for name, _ in found)
    for name, summary in found:
        print(f"{name:<{width}}  {summary}")
    return 0


def _migrate_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fill = sub.add_parser("backfill", help="copy to the new store the records it lacks")
    fill.add_argument("--config", type=Path, required=True, help="the proxy's TOML config file")
    fill.add_argument("--batch", type=_positive(int), default=500, help="records per batch")
    fill.add_argument("--resume", action="store_true", help="go on from the last checkpoint")
    fill.add_argument("--rate", type=_positive(float), help="at most this many copies a second")
    fill.add_argument(
        "--check-every", type=_positive(int), default=10, help="read copies back every N batches"
    )
    fill.add_argument("--json", action="store_true", help="print the report as JSON")
    fill.set_defaults(func=_cmd_backfill)
    check = sub.add_parser("verify", help="compare both stores record by record")
    check.add_argument("--config", type=Path, required=True, help="the proxy's TOML config file")
    check.add_argument("--repair", action="store_true", help="fix the secondary, then verify")
    check.add_argument("--json", action="store_true", help="print a JSON document")
    check.set_defaults(func=_cmd_verify)


class _Help(argparse.HelpFormatter):
    """``--help`` with each option's default, where it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or action.option_strings == []
        ):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Every parser and sub-parser of ``memshift`` shows defaults in its help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``memshift`` command."""
    parser = _Parser(prog="memshift", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"memshift {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument("--log-json", action="store_true", help="JSON log lines on a terminal too")
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(  # type: ignore[assignment]
        dest="command", metavar="COMMAND", required=True
    )
    _proxy_parsers(sub)
    _admin_parsers(sub)
    _store_parser(sub)
    _loadtest_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``memshift`` command; return its exit status."""
    args = build_parser().parse_args(argv)
    logs.configure(level=args.log_level, json=True if args.log_json else None)
    command: Command = args.func
    try:
        return command(args)
    except ConfigError as exc:
        print(f"memshift: error: {exc}", file=sys.stderr)
        return 2
    except IntegrityError as exc:
        print(f"memshift: {exc}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except MemshiftError as exc:
        print(f"memshift: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``memshift status | head``): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
