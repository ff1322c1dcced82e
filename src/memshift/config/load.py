"""TOML → validate → ``Settings``. Every refusal names the dotted key and the rule.

Each section is read from its declaration in ``settings.py`` (``read_section``): the
type, the default and the bounds of every setting come from there, so a default lives
in one place. Settings of a shape of their own (listen addresses, secrets, JSON paths,
the ramp schedule) have a reader each (``READERS``). Unknown keys are refused too, so
that a typo never passes silently as a default.
"""

from __future__ import annotations

import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, fields
from pathlib import Path as FilePath
from typing import Any, Literal, TypeVar, get_args, get_origin
from urllib.parse import urlsplit

from memshift import jsonpath, profiles
from memshift.config.addresses import parse_listen
from memshift.config.settings import (
    STORE_NAMES,
    AdminSettings,
    CompareSettings,
    Listen,
    McpSettings,
    MirrorSettings,
    ProxySettings,
    RecordRecipe,
    RollbackSettings,
    RouteCompare,
    RouteSpec,
    RoutingSettings,
    Settings,
    StateSettings,
    Step,
    StoreCall,
    StoreEndpoint,
)
from memshift.config.table import Table
from memshift.database import normalize_url
from memshift.errors import ConfigError
from memshift.ids import FORMS, IdForms

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
_KIND = re.compile(r"[a-z][a-z0-9_]*")
_TEMPLATE_PARAM = re.compile(r"\{([^}]*)\}")
T = TypeVar("T")
Env = Mapping[str, str]
Reader = Callable[[Table, str, Any, Env], Any]


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return ...  # required


def read_section(table: Table, cls: type[T], env: Env, **given: Any) -> T:
    """Read one section into ``cls`` from its declared settings; refuse unknown keys."""
    hints = typing.get_type_hints(cls)
    values = dict(given)
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in given:
            continue
        meta = f.metadata
        key = meta.get("key") or f.name
        reader = meta.get("read")
        default = _default(f)
        if reader:
            values[f.name] = READERS[reader](table, key, default, env)
        else:
            values[f.name] = _typed(table, key, hints[f.name], default, meta)
    table.done()
    return cls(**values)


def _typed(table: Table, key: str, kind: Any, default: Any, meta: Mapping[str, Any]) -> Any:
    """A plain setting, read by its declared type and bounds."""
    low: Any = meta.get("low")
    high: Any = meta.get("high")
    scale: int = meta.get("scale", 1)
    if get_origin(kind) is Literal or meta.get("choices"):
        return table.choice(key, default, meta.get("choices") or get_args(kind))
    if kind is bool:
        return table.flag(key, default)
    if kind is int:
        file_default = default if default is ... else default // scale
        return table.integer(key, file_default, int(low), int(high)) * scale
    if kind is float:
        return table.number(key, default, low, high)
    if kind == float | None:
        value = table.get(key, (int, float), None, "a number")
        if value is not None and not low <= value <= high:
            raise ConfigError(table.key(key), f"must be {low:g}..{high:g}")
        return None if value is None else float(value)
    if kind is str:
        return table.text(key, default)
    if kind == tuple[str, ...]:
        return table.strings(key, default)
    raise TypeError(f"no reader for {key}: {kind}")


def _listen(table: Table, key: str, default: Listen, _env: Env) -> Listen:
    host, port = parse_listen(table.text(key, str(default)), table.key(key))
    return Listen(host=host, port=port)


def _secret(table: Table, key: str, default: Any, env: Env) -> str:
    """Read ``token`` or ``token_env`` (the name of an environment variable).

    Required unless it has a default (a store's: some stores take no credentials).
    """
    token = table.get(key, str, None, "a string")
    name = table.get(f"{key}_env", str, None, "a string")
    if token and name:
        raise ConfigError(table.key(key), f"give {key} or {key}_env, not both")
    if name:
        token = env.get(name)
        if not token:
            raise ConfigError(table.key(f"{key}_env"), f"environment variable {name} is unset")
    if not token:
        if default is not ...:
            return str(default)
        raise ConfigError(table.key(key), f"is required (or {key}_env)")
    return str(token)


def _url(table: Table, key: str, default: str, _env: Env) -> str:
    url = table.text(key, default).rstrip("/")
    if not url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise ConfigError(table.key(key), "must be http(s)://HOST[:PORT] with no path")
    return url


def _lower(table: Table, key: str, default: str, _env: Env) -> str:
    return table.text(key, default).lower()


def _absolute_path(table: Table, key: str, default: str, _env: Env) -> str:
    path = table.text(key, default)
    if not path.startswith("/"):
        raise ConfigError(table.key(key), "must start with /")
    return path


def _prefix(table: Table, key: str, default: str, _env: Env) -> str:
    """A path prefix, or "" for none."""
    path = table.text(key, default).rstrip("/")
    if path and (not path.startswith("/") or "?" in path or not path.isprintable()):
        raise ConfigError(table.key(key), 'must be a path starting with / (or "" for none)')
    return path


def _database(table: Table, key: str, default: str, _env: Env) -> str:
    url = table.text(key, default)
    normalize_url(url, table.key(key))
    return url


def _paths(table: Table, key: str, default: tuple[jsonpath.Path, ...], _env: Env) -> Any:
    out = []
    for i, text in enumerate(table.strings(key, tuple(p.text for p in default))):
        try:
            out.append(jsonpath.parse(text))
        except ValueError as exc:
            raise ConfigError(f"{table.key(key)}[{i}]", str(exc)) from exc
    return tuple(out)


def _path_texts(table: Table, key: str, default: tuple[str, ...], env: Env) -> Any:
    parsed = _paths(table, key, tuple(jsonpath.parse(t) for t in default), env)
    return tuple(p.text for p in parsed)


def _path_or_paths(table: Table, key: str, default: tuple[str, ...], env: Env) -> Any:
    """A JSON path, or a list of them (``ranked = "$.results"``)."""
    if isinstance(table.data.get(key), str):
        table.data[key] = [table.data[key]]
    return _path_texts(table, key, default, env)


def _cpus(table: Table, key: str, _default: Any, _env: Env) -> tuple[int, ...]:
    raw = table.get(key, list, [], "a list of CPU numbers")
    if not all(type(c) is int and 0 <= c < 4096 for c in raw):
        raise ConfigError(table.key(key), "must be a list of CPU numbers (0, 1, ...)")
    return tuple(sorted(set(raw)))


def _steps(routing: Table, key: str, _default: Any, env: Env) -> tuple[Step, ...]:
    raw = routing.get(key, list, [], "an array of tables ([[routing.steps]])")
    steps: list[Step] = []
    for i, item in enumerate(raw):
        step = read_section(Table(item, f"routing.{key}[{i}]"), Step, env)
        if steps and step.read_percent <= steps[-1].read_percent:
            raise ConfigError(f"routing.{key}[{i}].read_percent", "must rise from step to step")
        steps.append(step)
    return tuple(steps)


def _route_compares(table: Table, key: str, _default: Any, env: Env) -> dict[str, RouteCompare]:
    routes = table.table(key)
    out = {name: read_section(routes.table(name), RouteCompare, env) for name in list(routes.data)}
    routes.done()
    return out


def _identity(table: Table, key: str, default: str, _env: Env) -> str:
    """``identity``: "whoami", "none", or ``{ header = "NAME" }`` (kept as ``header:NAME``)."""
    value = table.get(key, (str, dict), default, 'a string or { header = "NAME" }')
    if isinstance(value, dict):
        header = value.get("header")
        if set(value) != {"header"} or not isinstance(header, str):
            raise ConfigError(table.key(key), 'must be { header = "NAME" }')
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", header):
            raise ConfigError(f"{table.key(key)}.header", "must be a header name")
        return f"header:{header}"
    if value not in ("whoami", "none"):
        raise ConfigError(table.key(key), 'must be "whoami", "none" or { header = "NAME" }')
    return str(value)


def _command(table: Table, key: str, default: tuple[str, ...], _env: Env) -> tuple[str, ...]:
    value = table.get(key, list, list(default), "a list of strings")
    if not all(isinstance(v, str) and v for v in value):
        raise ConfigError(table.key(key), "must be a list of non-empty strings (the program first)")
    return tuple(value)


def _env(table: Table, key: str, default: dict[str, str], _env: Env) -> dict[str, str]:
    value = table.get(key, dict, dict(default), "a table of strings")
    for name, text in value.items():
        if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{table.key(key)}.{name}", 'must be NAME = "text"')
    return dict(value)


def _list_keys(table: Table, key: str, _default: Any, _env: Env) -> Any:
    """``{ "$.entities" = ["name"] }``: lists of records and the fields that match them."""
    raw = table.get(key, dict, {}, 'a table: { "$.list" = ["field", ...] }')
    out = []
    for path, names in raw.items():
        where = f"{table.key(key)}.{path}"
        try:
            text = jsonpath.parse(path).text
        except ValueError as exc:
            raise ConfigError(where, str(exc)) from exc
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and n for n in names)
        ):
            raise ConfigError(where, "must be a list of field names")
        out.append((text, tuple(names)))
    return tuple(out)


READERS: dict[str, Reader] = {
    "command": _command,
    "list_keys": _list_keys,
    "env": _env,
    "identity": _identity,
    "listen": _listen,
    "secret": _secret,
    "url": _url,
    "lower": _lower,
    "path": _absolute_path,
    "prefix": _prefix,
    "database": _database,
    "paths": _paths,
    "path_texts": _path_texts,
    "path_or_paths": _path_or_paths,
    "cpus": _cpus,
    "steps": _steps,
    "route_compares": _route_compares,
}


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
    spec = RouteSpec(
        name=table.text("name"),
        methods=methods,
        path=path,
        pattern=re.compile(regex + r"\Z"),
        path_kinds=kinds,
        request_ids=_kind_map(table, "request_ids", jsonpath.parse),
        response_ids=_kind_map(table, "response_ids", jsonpath.parse),
        query_ids=_kind_map(table, "query_ids", str),
        copy_from_answer=table.strings("copy_from_answer", ()),
        **_creates_and_records(table),
    )
    table.done()
    return spec


def _creates_and_records(table: Table) -> dict[str, Any]:
    """``creates``, ``created_id``, ``records`` and ``idempotency`` of a route or a tool."""
    creates = table.get("creates", str, None, "an id kind")
    if creates is not None and not _KIND.fullmatch(creates):
        raise ConfigError(table.key("creates"), "must name an id kind (lower-case word)")
    created = table.get("created_id", str, None, "a JSON path")
    if created is not None and creates is None:
        raise ConfigError(table.key("created_id"), "needs creates (the kind of the new ids)")
    try:
        created_id = jsonpath.parse(created or "$.id")
    except ValueError as exc:
        raise ConfigError(table.key("created_id"), str(exc)) from exc
    idempotency = None
    if "idempotency" in table.data:
        idempotency = table.choice("idempotency", "key", ("key", "none", "repeatable"))
    return {
        "creates": creates,
        "created_id": created_id,
        "records": _kind_map(table, "records", jsonpath.parse),
        "idempotency": idempotency,
    }


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
        request_ids=(
            *((jsonpath.parse(f"$.{a}"), k) for a, k in arguments),
            *_kind_map(table, "request_ids", jsonpath.parse),
        ),
        response_ids=_kind_map(table, "result_ids", jsonpath.parse),
        copy_from_answer=table.strings("copy_from_answer", ()),
        record=None if record is None else (jsonpath.parse(f"$.{record}"), kinds[record]),
        tool=name,
        **_creates_and_records(table),
    )
    table.done()
    return spec


def _tools(mcp: Table, classified: tuple[str, ...]) -> tuple[RouteSpec, ...]:
    tables = mcp.table("tools")
    raw = tables.data
    specs = {n: _tool(Table(raw[n], f"mcp.tools.{n}"), n) for n in list(raw)}
    tables.read.update(raw)
    for name in classified:  # a listed tool with no ids still gets a route
        specs.setdefault(name, _tool(Table({}, f"mcp.tools.{name}"), name))
    return tuple(specs.values())


def _routes(raw: Any) -> tuple[RouteSpec, ...]:
    if not isinstance(raw, list):
        raise ConfigError("routes", "must be an array of tables ([[routes]]), or []")
    specs = tuple(_route(Table(item, f"routes[{i}]")) for i, item in enumerate(raw))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError("routes", "route names must be unique")
    return specs


def parse_stores(stores: Table, env: Env) -> dict[Any, StoreEndpoint]:
    """``[stores.legacy]`` and ``[stores.new]``."""
    out = {
        name: read_section(stores.table(name), StoreEndpoint, env, name=name)
        for name in STORE_NAMES
    }
    stores.done()
    for name, store in out.items():
        if bool(store.url) == bool(store.command):
            raise ConfigError(
                f"stores.{name}.url",
                "give url (a store over HTTP) or command (an MCP server on stdio), one of them",
            )
        if (store.env or store.cwd) and not store.command:
            raise ConfigError(f"stores.{name}.env", "env and cwd go with command")
        if store.command and store.identity == "whoami":
            raise ConfigError(
                f"stores.{name}.identity",
                'a stdio server has one client, memshift: say identity = "none"',
            )
        if store.identity == "whoami" and not store.token:
            raise ConfigError(
                f"stores.{name}.token",
                'is required with identity = "whoami": an admin token of that store,'
                " to write as each user",
            )
    if (out["legacy"].identity == "none") != (out["new"].identity == "none"):
        raise ConfigError(
            "stores.new.identity",
            "a store without users and a store with users cannot hold the same records:"
            ' both must say identity = "none", or neither',
        )
    return out


def parse_mcp(mcp: Table, env: Env) -> tuple[McpSettings, tuple[RouteSpec, ...]]:
    """``[mcp]`` and its tool tables (``[mcp.tools.NAME]``)."""
    mcp.read.add("tools")
    settings = read_section(mcp, McpSettings, env)
    both = set(settings.write_tools) & set(settings.read_tools)
    if both:
        raise ConfigError("mcp.read_tools", f"{sorted(both)[0]} is also a write tool")
    return settings, _tools(mcp, (*settings.write_tools, *settings.read_tools))


def _id_forms(table: Table) -> dict[str, str]:
    """``[ids]``: each kind's id form (``integer``, ``string`` or ``natural``)."""
    out = {}
    for kind in list(table.data):
        if not _KIND.fullmatch(kind):
            raise ConfigError(table.key(kind), "must name an id kind (lower-case word)")
        out[kind] = table.choice(kind, "string", FORMS)
    table.done()
    return out


def _check_ids(settings: Settings) -> None:
    """Refuse what cannot work: an id of a kind no ``[ids]`` declares (a typo would
    never be translated), and a create of a natural kind (its ids are the client's own,
    in the request) that says where the store put new ids."""
    forms = IdForms(settings.ids)
    known = sorted(forms.forms)
    for spec in (*settings.routes, *settings.tools):
        where = f"mcp.tools.{spec.tool}" if spec.tool else f"routes.{spec.name}"
        named = [
            ("path", spec.path_kinds),
            ("creates", (spec.creates,) if spec.creates else ()),
            *(
                (field, tuple(kind for _, kind in pairs))
                for field, pairs in (
                    ("request_ids", spec.request_ids),
                    ("response_ids", spec.response_ids),
                    ("query_ids", spec.query_ids),
                    ("records", spec.records),
                )
            ),
        ]
        for field, kinds in named:
            for kind in kinds:
                if kind not in forms.forms:
                    raise ConfigError(
                        f"{where}.{field}",
                        f"{kind!r} is no kind of id: declare it in [ids] (known: "
                        f"{', '.join(known)})",
                    )
        if spec.creates and forms.natural(spec.creates) and spec.created_id.text != "$.id":
            raise ConfigError(
                f"{where}.created_id", f"{spec.creates} ids are chosen by the client (natural)"
            )


_CALL_KEYS = {
    "tool",
    "route",
    "method",
    "arguments",
    "body",
    "query",
    "path",
    "items",
    "drop",
    "page",
}


def _store_call(table: Table, name: str, what: str) -> StoreCall | None:
    """One call of a record recipe (``export``, ``create``...): a tool or a route."""
    raw = table.get(name, dict, None, "a table: { tool = ... } or { route = ... }")
    if raw is None:
        return None
    key = table.key(name)
    unknown = set(raw) - _CALL_KEYS
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}", "is not a known setting")
    if ("tool" in raw) == ("route" in raw):
        raise ConfigError(key, "names a tool or a route, one of them")
    call = Table(raw, key)
    items = call.get("items", str, None, "a JSON path")
    page = call.get("page", dict, {}, "a table")
    if items is None and what == "export":
        raise ConfigError(f"{key}.items", "is required: where the records sit in the answer")
    try:
        return StoreCall(
            tool=call.get("tool", str, None, "a tool's name"),
            route=call.get("route", str, None, "a route's name"),
            method=call.choice("method", "GET" if what == "export" else "POST", tuple(METHODS)),
            arguments=raw.get("arguments", raw.get("body")),
            query=call.get("query", dict, {}, "a table"),
            path=call.get("path", dict, {}, "a table"),
            items=jsonpath.parse(items) if items else None,
            drop=tuple(jsonpath.parse(p) for p in call.strings("drop", ())),
            page={str(k): str(v) for k, v in page.items()},
        )
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from exc


def _records(table: Table) -> tuple[RecordRecipe, ...]:
    """``[records.KIND]``: how verify, backfill and repair read and write each kind."""
    out = []
    for kind in list(table.data):
        sub = table.table(kind)
        if not _KIND.fullmatch(kind):
            raise ConfigError(sub.prefix, "must name an id kind (lower-case word)")
        key = sub.get("key", (str, list), ..., "a JSON path, or a list of them")
        keys = [key] if isinstance(key, str) else key
        export = _store_call(sub, "export", "export")
        if export is None:
            raise ConfigError(sub.key("export"), "is required: how to read every record")
        try:
            recipe = RecordRecipe(
                kind=kind,
                key=tuple(jsonpath.parse(k) for k in keys),
                refs=_kind_map(sub, "refs", jsonpath.parse),
                export=export,
                create=_store_call(sub, "create", "create"),
                delete=_store_call(sub, "delete", "delete"),
                update=_store_call(sub, "update", "update"),
                ignore=tuple(_paths(sub, "ignore", (), {})),
                unordered=_path_texts(sub, "unordered", (), {}),
            )
        except ValueError as exc:
            raise ConfigError(sub.key("key"), str(exc)) from exc
        sub.done()
        out.append(recipe)
    table.done()
    return tuple(out)


def _check_records(settings: Settings) -> None:
    """A recipe's kinds must be declared, and its routes and tools ones the config knows."""
    routes = {r.name for r in settings.routes}
    tools = {t.tool for t in settings.tools}
    forms = IdForms(settings.ids).forms
    for recipe in settings.records:
        for kind in (recipe.kind, *(kind for _, kind in recipe.refs)):
            if kind not in forms:
                where = "" if kind == recipe.kind else ".refs"
                raise ConfigError(
                    f"records.{recipe.kind}{where}",
                    f"{kind!r} is no kind of id: declare it in [ids]",
                )
        for name in ("export", "create", "delete", "update"):
            call: StoreCall | None = getattr(recipe, name)
            where = f"records.{recipe.kind}.{name}"
            if call is not None and call.route and call.route not in routes:
                raise ConfigError(f"{where}.route", f"no [[routes]] is named {call.route!r}")
            if call is not None and call.tool and call.tool not in tools:
                raise ConfigError(f"{where}.tool", f"no [mcp.tools] table names {call.tool!r}")


def parse_settings(
    doc: dict[str, Any], *, source: str = "", env: Mapping[str, str] | None = None
) -> Settings:
    """Return validated settings from a parsed TOML document; raise ``ConfigError``."""
    env = os.environ if env is None else env
    doc = profiles.apply(doc, FilePath(source).parent if source else None)
    root = Table(doc, "")
    root.read.add("routes")
    mcp, tools = parse_mcp(root.table("mcp"), env)
    ids = root.table("ids")
    settings = Settings(
        proxy=read_section(root.table("proxy"), ProxySettings, env),
        admin=read_section(root.table("admin"), AdminSettings, env),
        stores=parse_stores(root.table("stores"), env),
        routing=read_section(root.table("routing"), RoutingSettings, env),
        rollback=read_section(root.table("rollback"), RollbackSettings, env),
        mirror=read_section(root.table("mirror"), MirrorSettings, env),
        compare=read_section(root.table("compare"), CompareSettings, env),
        state=read_section(root.table("state"), StateSettings, env),
        mcp=mcp,
        routes=_routes(doc.get("routes", [])),
        tools=tools,
        ids=_id_forms(ids),
        records=_records(root.table("records")),
        source=source,
    )
    _check_ids(settings)
    _check_records(settings)
    known = {r.name for r in (*settings.routes, *settings.tools)}
    unknown = set(settings.compare.routes) - known
    if unknown:
        raise ConfigError(f"compare.routes.{sorted(unknown)[0]}", "names no configured route")
    root.done()
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
