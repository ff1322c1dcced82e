"""The settings model of the proxy: every setting declared once, with its type, default and help.

Each ``[section]`` of the config file is a frozen, keyword-only dataclass; each of its
settings is a field declared with ``setting(...)``: its default, one line of help, and
the bounds or choices the loader enforces. The loader (``load.py``) reads a section
from these declarations alone, so a default lives in one place, and ``reference()``
lists every setting for people. Secrets (store and admin tokens) are excluded from
``repr``, so printing or logging settings never shows them.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, cast

from memshift.ids import IdForms, forms_of
from memshift.jsonpath import Path, parse
from memshift.limits import BODY_TIMEOUT_S, DEEPEST, HEADER_TIMEOUT_S, MAX_JSON_DEPTH

StoreName = Literal["legacy", "new"]
STORE_NAMES: tuple[StoreName, ...] = ("legacy", "new")
WriteMode = Literal["sync", "async"]


def other(store: StoreName) -> StoreName:
    """Return the other store's name."""
    return "new" if store == "legacy" else "legacy"


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
    key: str | None = None,
    scale: int = 1,
    secret: bool = False,
    read: str | None = None,
) -> Any:
    """Declare one setting of a section.

    ``low``/``high`` bound a number, ``choices`` a string; ``key`` is its name in the
    file when that differs from the field's (with ``scale``: the file's unit, times
    ``scale``, is the field's); ``read`` names a reader for values of a shape of their
    own (``load.READERS``); ``secret`` keeps it out of ``repr``.
    """
    meta = {
        "help": help,
        "low": low,
        "high": high,
        "choices": choices,
        "key": key,
        "scale": scale,
        "read": read,
    }
    if isinstance(default, dict):
        frozen = dict(default)
        return field(default_factory=lambda: dict(frozen), metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


def defaults_of(*texts: str) -> tuple[Path, ...]:
    """Parsed JSON paths, for a default."""
    return tuple(parse(t) for t in texts)


@dataclass(frozen=True, kw_only=True)
class Listen:
    """A ``HOST:PORT`` to serve on."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class ProxySettings:
    """``[proxy]``: where clients connect, and what a request may be (``limits.py``)."""

    listen: Listen = setting(
        Listen(host="127.0.0.1", port=8100), "HOST:PORT the proxy serves clients on", read="listen"
    )
    max_body_bytes: int = setting(
        16 * 1024 * 1024,
        "the largest request body accepted, in MiB",
        low=1,
        high=1024,
        key="max_body_mib",
        scale=1024 * 1024,
    )
    max_json_depth: int = setting(
        MAX_JSON_DEPTH,
        "the deepest a request's JSON may nest (the stores' default is the same)",
        low=2,
        high=DEEPEST,
    )
    header_timeout_s: float = setting(
        HEADER_TIMEOUT_S,
        "seconds a client may take to send a request's headers (read at start)",
        low=0.5,
        high=600,
    )
    body_timeout_s: float = setting(
        BODY_TIMEOUT_S,
        "seconds a request's body may pause between two pieces before it is refused (408)",
        low=0.5,
        high=3600,
    )


@dataclass(frozen=True, kw_only=True)
class AdminSettings:
    """``[admin]``: the operators' API and its bearer token."""

    listen: Listen = setting(
        Listen(host="127.0.0.1", port=8109), "HOST:PORT of the admin API", read="listen"
    )
    token: str = setting(
        help="the admin API's bearer token (or token_env: the variable holding it)",
        secret=True,
        read="secret",
    )


@dataclass(frozen=True, kw_only=True)
class StoreEndpoint:
    """``[stores.NAME]``: a store's base URL, its service (admin) token and timeouts."""

    name: StoreName = setting(read="name")
    url: str = setting("", "http(s)://HOST[:PORT] of the store, no path", read="url")
    command: tuple[str, ...] = setting(
        (), "or: the command that runs it as an MCP server on stdin/stdout", read="command"
    )
    env: dict[str, str] = setting({}, "with command: variables set for it", read="env")
    cwd: str = setting("", "with command: the folder it runs in")
    profile: str = setting(
        "memshift-reference",
        "the kind of store: a shipped profile's name (memshift profiles) or a profile file",
    )
    token: str = setting(
        "",
        "an admin-role token of that store (or token_env); needed with identity = whoami",
        secret=True,
        read="secret",
    )
    connect_timeout_s: float = setting(
        2.0, "seconds to connect; a write not connected in time was not sent", low=0.01, high=600
    )
    read_timeout_s: float = setting(
        30.0,
        "the longest silence of a store that owes an answer, in seconds",
        low=0.01,
        high=3600,
    )
    identity: str = setting(
        "whoami",
        'who a write is for: "whoami" (asked of the store), "none" (a store without'
        ' users), or { header = "X-User" } (a header the client sends)',
        read="identity",
    )
    write_order: Literal["record", "global"] = setting(
        "record",
        "record: writes to one record in the primary's order; global: every write"
        " one at a time in the primary's order (one-file stores, ids in creation order)",
        choices=("record", "global"),
    )
    idempotency: Literal["key", "none"] = setting(
        "key",
        "key: the store applies a repeated Idempotency-Key once; none: it does not, so"
        " a write whose outcome is unknown is never sent twice",
        choices=("key", "none"),
    )
    bulk: str = setting(
        "",
        "the path under which the store exports and imports records in bulk"
        ' (memshift-reference: "/v1/bulk"); backfill and verify use it when both stores'
        ' have it; "": one record per request',
    )


@dataclass(frozen=True, kw_only=True)
class Step:
    """``[[routing.steps]]``: a read percent, and how long it must be healthy to move on."""

    read_percent: int = setting(help="the read percent of this step", low=1, high=100)
    hold_s: float = setting(
        help="seconds of healthy verdicts before the next step", low=0, high=30 * 86400
    )


@dataclass(frozen=True, kw_only=True)
class RoutingSettings:
    """``[routing]``: the operator's control values, as the file gives them."""

    primary: StoreName = setting(
        "legacy", "the store whose answers clients get", choices=STORE_NAMES
    )
    read_percent: int = setting(0, "share of callers whose reads new serves", low=0, high=100)
    shadow_read_percent: int = setting(
        100, "share of reads also sent to the other store and compared", low=0, high=100
    )
    write_mode: WriteMode = setting(
        "sync",
        "sync: answer after both writes; async: after the primary's",
        choices=("sync", "async"),
    )
    sticky_header: str = setting(
        "authorization", "the header whose value keeps a caller on one store", read="lower"
    )
    steps: tuple[Step, ...] = setting((), "the ramp schedule ([[routing.steps]])", read="steps")


@dataclass(frozen=True, kw_only=True)
class RollbackSettings:
    """``[rollback]``: when the new store is judged unhealthy."""

    window_s: float = setting(30.0, "seconds judged", low=1, high=86400)
    min_samples: int = setting(
        50, "fewer samples than this is inconclusive, never healthy", low=1, high=10**9
    )
    max_error_rate: float = setting(0.01, "new's errors / requests", low=0, high=1)
    max_latency_ratio: float = setting(3.0, "p99(new) / p99(legacy)", low=1, high=1000)
    max_mismatch_rate: float = setting(0.01, "mismatched / compared reads", low=0, high=1)
    min_callers: int = setting(
        3,
        "a rule trips only on errors, slow classes or mismatches of this many callers"
        " (or of every caller, when fewer are active)",
        low=1,
        high=16,
    )


@dataclass(frozen=True, kw_only=True)
class MirrorSettings:
    """``[mirror]``: how writes reach the secondary, and when to shout about a backlog."""

    workers: int = setting(32, "mirrored writes in flight in async mode", low=1, high=4096)
    queue: int = setting(
        10_000,
        "async writes waiting for a worker before spilling to the backlog",
        low=0,
        high=10**7,
    )
    retry_attempts: int = setting(4, "attempts per mirrored write", low=1, high=100)
    retry_initial_s: float = setting(0.05, "first backoff, in seconds", low=0.001, high=60)
    retry_max_s: float = setting(1.0, "longest backoff, in seconds", low=0.001, high=600)
    backlog_alert: int = setting(
        10_000, "a backlog this long is logged and flagged", low=1, high=10**9
    )
    replay_interval_s: float = setting(
        1.0, "seconds between replays of the backlog", low=0.05, high=3600
    )
    whoami_path: str = setting("/v1/whoami", "the primary's path that names a caller's user")
    unidentified: Literal["refuse", "pass"] = setting(
        "refuse",
        "a write whose user cannot be told: refuse it, or pass it to the primary alone"
        " (logged, counted and shown in /status)",
        choices=("refuse", "pass"),
    )


@dataclass(frozen=True, kw_only=True)
class RouteCompare:
    """``[compare.routes.NAME]``: rules added for one route (ignored paths, unordered lists,
    lists of records matched by key)."""

    ignore: tuple[Path, ...] = setting((), "JSON paths ignored on this route", read="paths")
    unordered: tuple[str, ...] = setting(
        (), "lists compared as multisets on this route", read="path_texts"
    )
    tolerance: float | None = setting(
        None, "relative and absolute number tolerance on this route", low=0, high=1
    )
    keys: tuple[tuple[str, tuple[str, ...]], ...] = setting(
        (),
        'lists of records matched by these fields, not by position: { "$.entities" = ["name"] }',
        read="list_keys",
    )
    ranked: tuple[str, ...] = setting(
        (),
        "ordered results (a search): compared by the ids of the top ones and their order",
        read="path_or_paths",
    )
    ranked_top: int = setting(10, "how many of the ranked results are compared", low=1, high=1000)
    score_tolerance: float | None = setting(
        None,
        "ranked results' scores compared within this relative tolerance (unset: not compared)",
        low=0,
        high=1000,
    )


@dataclass(frozen=True, kw_only=True)
class CompareSettings:
    """``[compare]``: how shadow reads are normalized and compared, within what bounds."""

    # updated_at is each store's own clock; an error's message may name a store's own
    # ids: the code and the status are what must agree.
    ignore: tuple[Path, ...] = setting(
        defaults_of("$..updated_at", "$.error.message"),
        "JSON paths ignored on every route",
        read="paths",
    )
    unordered: tuple[str, ...] = setting(
        (), "lists compared as multisets on every route", read="path_texts"
    )
    tolerance: float = setting(1e-6, "number tolerance", low=0, high=1)
    noise_percent: int = setting(
        5, "share of shadow reads that read the served store twice to learn noise", low=0, high=100
    )
    workers: int = setting(16, "shadow reads in flight", low=1, high=1024)
    queue: int = setting(256, "shadow reads waiting; past it they are dropped", low=0, high=100_000)
    helper: bool = setting(True, "shadow reads run in a helper process at idle CPU priority")
    helper_cpus: tuple[int, ...] = setting(
        (), "the CPUs the helper may use ([] = the proxy's)", read="cpus"
    )
    routes: dict[str, RouteCompare] = setting(
        {}, "rules per route ([compare.routes.NAME])", read="route_compares"
    )


@dataclass(frozen=True, kw_only=True)
class StateSettings:
    """``[state]``: the database shared by every proxy instance."""

    url: str = setting(
        "sqlite:///memshift-data/state.db",
        "SQLAlchemy URL: sqlite:///path, or postgresql://... shared by all instances",
        read="database",
    )


@dataclass(frozen=True, kw_only=True)
class McpSettings:
    """``[mcp]``: the MCP endpoint and which tools write or read."""

    path: str = setting("/mcp", "the MCP endpoint's path", read="path")
    write_tools: tuple[str, ...] = setting(
        (
            "create_memory",
            "update_memory",
            "delete_memory",
            "create_context",
            "create_relation",
        ),
        "tools mirrored as writes",
    )
    read_tools: tuple[str, ...] = setting(
        ("get_memory", "search_memories", "list_memories", "get_memory_relations"),
        "tools ramped and compared as reads",
    )
    stream_idle_s: float = setting(
        3600.0,
        "a client's standalone GET stream may carry nothing this long (not read_timeout_s)",
        low=1,
        high=86400,
    )
    keepalive_s: float = setting(
        15.0,
        "a comment sent on a quiet GET stream this often, so nothing between cuts it",
        low=1,
        high=3600,
    )


@dataclass(frozen=True, kw_only=True)
class RouteSpec:
    """``[[routes]]``: one REST route of the stores and where its ids sit.

    An MCP tool is a route too (``tool`` set, method ``TOOL``): its JSON paths are
    within the tool's arguments and result document, and ``record`` is the argument
    naming the record it changes.

    ``path`` is a template whose ``{kind}`` segments are ids of that kind; ``creates``
    names the kind whose new ids the answer holds at ``created_id`` (``$.id`` unless
    said); the ``*_ids`` pairs map JSON paths (or query parameters) to the kind of id
    found there; ``records`` names the records a write changes (by default, the last
    ``{kind}`` of the path, or a tool's ``record``); ``idempotency`` overrides the
    store's for this route (``repeatable``: applying it twice does what once does, as a
    delete, or a create of a name that is skipped when it exists); a mirrored create
    copies the
    ``copy_from_answer`` fields of the primary's answer (owner, timestamps) into its
    body, so that the secondary's record is an exact copy.
    """

    name: str
    methods: frozenset[str]
    path: str
    pattern: re.Pattern[str] = field(compare=False)
    path_kinds: tuple[str, ...]
    creates: str | None = None
    request_ids: tuple[tuple[Path, str], ...] = ()
    response_ids: tuple[tuple[Path, str], ...] = ()
    query_ids: tuple[tuple[str, str], ...] = ()
    copy_from_answer: tuple[str, ...] = ()
    record: tuple[Path, str] | None = None
    tool: str | None = None
    created_id: Path = field(default_factory=lambda: parse("$.id"))
    records: tuple[tuple[Path, str], ...] = ()
    idempotency: str | None = None  # key | none | repeatable: overrides the store's

    def keyed(self, store: StoreEndpoint) -> bool:
        """Whether ``store`` takes this write with an ``Idempotency-Key``."""
        return (self.idempotency or store.idempotency) == "key"

    def repeatable(self, store: StoreEndpoint) -> bool:
        """Whether this write may be sent to ``store`` again when its outcome is unknown:
        under a key it honours, or because applying it twice does what once does."""
        return (self.idempotency or store.idempotency) in ("key", "repeatable")


@dataclass(frozen=True, kw_only=True)
class StoreCall:
    """One call a record recipe makes: a tool with arguments, or a route with a body.

    Strings in ``arguments``, ``body``, ``query`` and ``path`` that start with ``$`` are
    JSON paths into the record the call is about (``"$"`` is the record itself).
    """

    tool: str | None = None
    route: str | None = None
    method: str = "GET"
    arguments: Any = None  # a tool's arguments, or a route's JSON body
    query: dict[str, Any] = field(default_factory=dict)
    path: dict[str, Any] = field(default_factory=dict)  # the route's {kind} segments
    items: Path | None = None  # where the records sit in the answer (export, get)
    drop: tuple[Path, ...] = ()  # fields of the record left out of "$" (its own id)
    page: dict[str, str] = field(default_factory=dict)  # offset|cursor, next, limit, size


@dataclass(frozen=True, kw_only=True)
class RecordRecipe:
    """``[records.KIND]``: how to read every record of a kind from a store, and write one.

    ``key`` locates a record's identity within it: a name the client chose (the same in
    both stores), or, for a kind whose ids the store gives, its id (paired through the
    id map). ``refs`` are other records' ids within it. ``export`` reads them all; the
    rest write one: ``create``, ``delete``, ``update`` (each optional: what a store
    cannot do, a repair says it cannot).
    """

    kind: str
    key: tuple[Path, ...]
    refs: tuple[tuple[Path, str], ...] = ()
    export: StoreCall
    create: StoreCall | None = None
    delete: StoreCall | None = None
    update: StoreCall | None = None
    ignore: tuple[Path, ...] = ()
    unordered: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a proxy instance runs with; ``source`` is the file it came from."""

    proxy: ProxySettings
    admin: AdminSettings
    stores: dict[StoreName, StoreEndpoint]
    routing: RoutingSettings
    rollback: RollbackSettings
    mirror: MirrorSettings
    compare: CompareSettings
    state: StateSettings
    mcp: McpSettings
    routes: tuple[RouteSpec, ...]
    tools: tuple[RouteSpec, ...] = ()
    ids: dict[str, str] = field(default_factory=dict)  # [ids]: kind → id form
    records: tuple[RecordRecipe, ...] = ()  # [records.KIND], in the order they are copied
    source: str = ""

    def __post_init__(self) -> None:
        # Made once here, not a field: every request asks for them.
        object.__setattr__(self, "_forms", forms_of(self.ids))

    @property
    def forms(self) -> IdForms:
        """The id form of every kind, as ``[ids]`` declares them (``ids.py``)."""
        return cast(IdForms, self.__dict__["_forms"])

    def one_at_a_time(self, primary: StoreName) -> bool:
        """Whether writes go one at a time in the primary's order: either store says
        ``write_order = "global"`` (a one-file store, or ids given in creation order)."""
        return "global" in (
            self.stores[primary].write_order,
            self.stores[other(primary)].write_order,
        )

    def tool(self, name: str) -> RouteSpec | None:
        """Return the route of MCP tool ``name``, if it is a configured one."""
        for spec in self.tools:
            if spec.tool == name:
                return spec
        return None


SECTIONS: dict[str, type[Any]] = {
    "proxy": ProxySettings,
    "admin": AdminSettings,
    "stores.NAME": StoreEndpoint,
    "routing": RoutingSettings,
    "routing.steps[]": Step,
    "rollback": RollbackSettings,
    "mirror": MirrorSettings,
    "compare": CompareSettings,
    "compare.routes.NAME": RouteCompare,
    "state": StateSettings,
    "mcp": McpSettings,
}


def reference() -> list[tuple[str, str, str]]:
    """Every declared setting: its dotted key, its default, its help."""
    out = []
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            meta = f.metadata
            if "help" not in meta or not meta["help"]:
                continue
            key = meta["key"] or f.name
            if f.default is not MISSING:
                default: Any = f.default
            elif f.default_factory is not MISSING:
                default = f.default_factory()
            else:
                default = "required"
            if meta["scale"] != 1 and isinstance(default, int):
                default //= meta["scale"]
            shown = _shown(default)
            out.append((f"{section}.{key}", shown, str(meta["help"])))
    return out


def _shown(value: Any) -> str:
    if isinstance(value, Listen):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, Path):
        return f'"{value.text}"'
    if isinstance(value, str):
        return f'"{value}"' if value != "required" else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "unset"
    if value == {}:
        return "{}"
    return str(value)


def reference_markdown() -> str:
    """The settings reference as a Markdown table (``docs/config.md`` holds it)."""
    rows = ["| setting | default | what it is |", "|---|---|---|"]
    rows += [f"| `{key}` | `{default}` | {help_} |" for key, default, help_ in reference()]
    return "\n".join(rows) + "\n"
