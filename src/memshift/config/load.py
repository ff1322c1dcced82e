"""TOML → validate → ``Settings``. Every refusal names the dotted key and the rule.

Unknown keys are refused too, so that a typo never passes silently as a default.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path as FilePath
from typing import Any
from urllib.parse import urlsplit

from memshift import jsonpath
from memshift.config.addresses import parse_listen
from memshift.config.routes import DEFAULT_ROUTES, DEFAULT_TOOLS
from memshift.config.settings import (
    STORE_NAMES,
    AdminSettings,
    CompareSettings,
    Listen,
    McpSettings,
    MirrorSettings,
    ProxySettings,
    RollbackSettings,
    RouteCompare,
    RouteSpec,
    RoutingSettings,
    Settings,
    StateSettings,
    Step,
    StoreEndpoint,
)
from memshift.config.table import Table
from memshift.database import normalize_url
from memshift.errors import ConfigError

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
_KIND = re.compile(r"[a-z][a-z0-9_]*")
_TEMPLATE_PARAM = re.compile(r"\{([^}]*)\}")


def _listen(table: Table, default: str) -> Listen:
    host, port = parse_listen(table.text("listen", default), table.key("listen"))
    return Listen(host=host, port=port)


def _secret(table: Table, env: Mapping[str, str]) -> str:
    """Read ``token`` or ``token_env`` (the name of an environment variable)."""
    token = table.get("token", str, None, "a string")
    name = table.get("token_env", str, None, "a string")
    if token and name:
        raise ConfigError(table.key("token"), "give token or token_env, not both")
    if name:
        token = env.get(name)
        if not token:
            raise ConfigError(table.key("token_env"), f"environment variable {name} is unset")
    if not token:
        raise ConfigError(table.key("token"), "is required (or token_env)")
    return str(token)


def _store(table: Table, name: Any, env: Mapping[str, str]) -> StoreEndpoint:
    url = table.text("url").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise ConfigError(table.key("url"), "must be http(s)://HOST[:PORT] with no path")
    store = StoreEndpoint(
        name=name,
        url=url,
        token=_secret(table, env),
        connect_timeout_s=table.number("connect_timeout_s", 2.0, 0.01, 600),
        read_timeout_s=table.number("read_timeout_s", 30.0, 0.01, 3600),
    )
    table.done()
    return store


def _kind_map(table: Table, name: str, check_key: Callable[[str], Any]) -> tuple[Any, ...]:
    raw = table.get(name, dict, {}, "a table")
    out = []
    for where, kind in raw.items():
        key = f"{table.key(name)}.{where}"
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise ConfigError(key, "must name an id kind (lower-case word)")
        try:
            out.append((check_key(where), kind))
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from exc
    return tuple(out)


def _paths(table: Table, name: str, default: tuple[str, ...]) -> list[jsonpath.Path]:
    out = []
    for i, text in enumerate(table.strings(name, default)):
        try:
            out.append(jsonpath.parse(text))
        except ValueError as exc:
            raise ConfigError(f"{table.key(name)}[{i}]", str(exc)) from exc
    return out


def _cpus(table: Table, name: str) -> tuple[int, ...]:
    raw = table.get(name, list, [], "a list of CPU numbers")
    if not all(type(c) is int and 0 <= c < 4096 for c in raw):
        raise ConfigError(table.key(name), "must be a list of CPU numbers (0, 1, ...)")
    return tuple(sorted(set(raw)))


def _steps(routing: Table) -> tuple[Step, ...]:
    raw = routing.get("steps", list, [], "an array of tables ([[routing.steps]])")
    steps: list[Step] = []
    for i, item in enumerate(raw):
        table = Table(item, f"routing.steps[{i}]")
        step = Step(
            read_percent=table.integer("read_percent", ..., 1, 100),
            hold_s=table.number("hold_s", ..., 0, 30 * 86400),
        )
        table.done()
        if steps and step.read_percent <= steps[-1].read_percent:
            raise ConfigError(f"routing.steps[{i}].read_percent", "must rise from step to step")
        steps.append(step)
    return tuple(steps)


def _route_compares(table: Table) -> dict[str, RouteCompare]:
    out = {}
    for name in list(table.data):
        sub = table.table(name)
        tolerance = sub.get("tolerance", (int, float), None, "a number")
        out[name] = RouteCompare(
            ignore=tuple(_paths(sub, "ignore", ())),
            unordered=tuple(p.text for p in _paths(sub, "unordered", ())),
            tolerance=None if tolerance is None else float(tolerance),
        )
        sub.done()
    return out


def _route(table: Table) -> RouteSpec:
    path = table.text("path")
    if not path.startswith("/"):
        raise ConfigError(table.key("path"), "must start with /")
    kinds = tuple(_TEMPLATE_PARAM.findall(path))
    if not all(_KIND.fullmatch(k) for k in kinds):
        raise ConfigError(table.key("path"), "{...} segments must name id kinds")
    regex = "".join(
        "([^/]+)" if i % 2 else re.escape(part)
        for i, part in enumerate(_TEMPLATE_PARAM.split(path))
    )
    methods = frozenset(m.upper() for m in table.strings("methods", ("GET",)))
    if not methods <= METHODS:
        raise ConfigError(table.key("methods"), f"must be among {', '.join(sorted(METHODS))}")
    creates = table.get("creates", str, None, "an id kind")
    spec = RouteSpec(
        name=table.text("name"),
        methods=methods,
        path=path,
        pattern=re.compile(regex + r"\Z"),
        path_kinds=kinds,
        creates=creates,
        request_ids=_kind_map(table, "request_ids", jsonpath.parse),
        response_ids=_kind_map(table, "response_ids", jsonpath.parse),
        query_ids=_kind_map(table, "query_ids", str),
        copy_from_answer=table.strings("copy_from_answer", ()),
    )
    table.done()
    return spec


TOOL_ROUTE_PREFIX = "mcp:tools/call "


def _tool(table: Table, name: str) -> RouteSpec:
    if not re.fullmatch(r"[A-Za-z0-9_.\-/]{1,128}", name):
        raise ConfigError(table.prefix, "a tool name is 1..128 letters, digits or _-./")
    record = table.get("record_argument", str, None, "an argument name")
    arguments = _kind_map(table, "id_arguments", str)
    kinds = dict(arguments)
    for argument in kinds:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", argument):
            raise ConfigError(f"{table.key('id_arguments')}.{argument}", "must be an argument name")
    if record is not None and record not in kinds:
        raise ConfigError(table.key("record_argument"), "must be one of id_arguments")
    path = f"/mcp/tools/{name}"
    spec = RouteSpec(
        name=TOOL_ROUTE_PREFIX + name,
        methods=frozenset({"TOOL"}),
        path=path,
        pattern=re.compile(re.escape(path) + r"\Z"),
        path_kinds=(),
        creates=table.get("creates", str, None, "an id kind"),
        request_ids=tuple((jsonpath.parse(f"$.{a}"), k) for a, k in arguments),
        response_ids=_kind_map(table, "result_ids", jsonpath.parse),
        copy_from_answer=table.strings("copy_from_answer", ()),
        record=None if record is None else (jsonpath.parse(f"$.{record}"), kinds[record]),
        tool=name,
    )
    table.done()
    return spec


def _tools(mcp: Table, classified: tuple[str, ...]) -> tuple[RouteSpec, ...]:
    tables = mcp.table("tools")
    raw = tables.data or DEFAULT_TOOLS
    specs = {n: _tool(Table(raw[n], f"mcp.tools.{n}"), n) for n in list(raw)}
    tables.read.update(raw)
    for name in classified:  # a listed tool with no ids still gets a route
        specs.setdefault(name, _tool(Table({}, f"mcp.tools.{name}"), name))
    return tuple(specs.values())


def _routes(raw: Any) -> tuple[RouteSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("routes", "must be a non-empty array of tables ([[routes]])")
    specs = tuple(_route(Table(item, f"routes[{i}]")) for i, item in enumerate(raw))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError("routes", "route names must be unique")
    return specs


def parse_settings(
    doc: dict[str, Any], *, source: str = "", env: Mapping[str, str] | None = None
) -> Settings:
    """Return validated settings from a parsed TOML document; raise ``ConfigError``."""
    env = os.environ if env is None else env
    root = Table(doc, "")
    proxy, admin, stores = root.table("proxy"), root.table("admin"), root.table("stores")
    routing, rollback = root.table("routing"), root.table("rollback")
    state, mcp, mirror = root.table("state"), root.table("mcp"), root.table("mirror")
    compare = root.table("compare")
    root.read.add("routes")
    settings = Settings(
        proxy=ProxySettings(
            listen=_listen(proxy, "127.0.0.1:8100"),
            max_body_bytes=proxy.integer("max_body_mib", 16, 1, 1024) * 1024 * 1024,
        ),
        admin=AdminSettings(listen=_listen(admin, "127.0.0.1:8109"), token=_secret(admin, env)),
        stores={name: _store(stores.table(name), name, env) for name in STORE_NAMES},
        routing=RoutingSettings(
            primary=routing.choice("primary", "legacy", STORE_NAMES),
            read_percent=routing.integer("read_percent", 0, 0, 100),
            shadow_read_percent=routing.integer("shadow_read_percent", 100, 0, 100),
            write_mode=routing.choice("write_mode", "sync", ("sync", "async")),
            sticky_header=routing.text("sticky_header", "authorization").lower(),
            steps=_steps(routing),
        ),
        rollback=RollbackSettings(
            window_s=rollback.number("window_s", 30, 1, 86400),
            min_samples=rollback.integer("min_samples", 50, 1, 10**9),
            max_error_rate=rollback.number("max_error_rate", 0.01, 0, 1),
            max_latency_ratio=rollback.number("max_latency_ratio", 3.0, 1, 1000),
            max_mismatch_rate=rollback.number("max_mismatch_rate", 0.01, 0, 1),
        ),
        mirror=MirrorSettings(
            workers=mirror.integer("workers", 32, 1, 4096),
            queue=mirror.integer("queue", 10_000, 0, 10**7),
            retry_attempts=mirror.integer("retry_attempts", 4, 1, 100),
            retry_initial_s=mirror.number("retry_initial_s", 0.05, 0.001, 60),
            retry_max_s=mirror.number("retry_max_s", 1.0, 0.001, 600),
            backlog_alert=mirror.integer("backlog_alert", 10_000, 1, 10**9),
            replay_interval_s=mirror.number("replay_interval_s", 1.0, 0.05, 3600),
            whoami_path=mirror.text("whoami_path", "/v1/whoami"),
        ),
        compare=CompareSettings(
            # updated_at is each store's own clock; an error's message may name a store's
            # own ids: the code and the status are what must agree.
            ignore=tuple(_paths(compare, "ignore", ("$..updated_at", "$.error.message"))),
            unordered=tuple(p.text for p in _paths(compare, "unordered", ())),
            tolerance=compare.number("tolerance", 1e-6, 0, 1),
            noise_percent=compare.integer("noise_percent", 5, 0, 100),
            workers=compare.integer("workers", 16, 1, 1024),
            queue=compare.integer("queue", 256, 0, 100_000),
            helper=compare.flag("helper", True),
            helper_cpus=_cpus(compare, "helper_cpus"),
            routes=_route_compares(compare.table("routes")),
        ),
        state=StateSettings(url=state.text("url", "sqlite:///memshift-data/state.db")),
        mcp=McpSettings(
            path=mcp.text("path", "/mcp"),
            write_tools=mcp.strings("write_tools", McpSettings.write_tools),
            read_tools=mcp.strings("read_tools", McpSettings.read_tools),
        ),
        routes=_routes(doc.get("routes", DEFAULT_ROUTES)),
        tools=_tools(
            mcp,
            (
                *mcp.strings("write_tools", McpSettings.write_tools),
                *mcp.strings("read_tools", McpSettings.read_tools),
            ),
        ),
        source=source,
    )
    normalize_url(settings.state.url, "state.url")
    if not settings.mcp.path.startswith("/"):
        raise ConfigError("mcp.path", "must start with /")
    known = {r.name for r in (*settings.routes, *settings.tools)}
    unknown = set(settings.compare.routes) - known
    if unknown:
        raise ConfigError(f"compare.routes.{sorted(unknown)[0]}", "names no configured route")
    both = set(settings.mcp.write_tools) & set(settings.mcp.read_tools)
    if both:
        raise ConfigError("mcp.read_tools", f"{sorted(both)[0]} is also a write tool")
    for table in (proxy, admin, stores, routing, rollback, state, mcp, mirror, compare, root):
        table.done()
    return settings


def load_settings(path: str | FilePath, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the config file at ``path``; raise ``ConfigError``."""
    try:
        text = FilePath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{path} is not UTF-8") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from exc
    return parse_settings(doc, source=str(path), env=env)
