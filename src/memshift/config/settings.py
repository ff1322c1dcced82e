"""The settings model of the proxy: frozen, keyword-only dataclasses.

``load.py`` builds a ``Settings`` from TOML and validates every value; nothing else
creates one from outside input. Secrets (store and admin tokens) are excluded from
``repr``, so printing or logging settings never shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from memshift.jsonpath import Path

StoreName = Literal["legacy", "new"]
STORE_NAMES: tuple[StoreName, ...] = ("legacy", "new")
WriteMode = Literal["sync", "async"]


def other(store: StoreName) -> StoreName:
    """Return the other store's name."""
    return "new" if store == "legacy" else "legacy"


@dataclass(frozen=True, kw_only=True)
class Listen:
    """A ``HOST:PORT`` to serve on."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class ProxySettings:
    """``[proxy]``: where clients connect, and how large a body may be."""

    listen: Listen
    max_body_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class AdminSettings:
    """``[admin]``: the operators' API and its bearer token."""

    listen: Listen
    token: str = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class StoreEndpoint:
    """``[stores.NAME]``: a store's base URL, its service (admin) token and timeouts."""

    name: StoreName
    url: str
    token: str = field(repr=False)
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 30.0


@dataclass(frozen=True, kw_only=True)
class Step:
    """``[[routing.steps]]``: a read percent, and how long it must be healthy to move on."""

    read_percent: int
    hold_s: float


@dataclass(frozen=True, kw_only=True)
class RoutingSettings:
    """``[routing]``: the operator's control values, as the file gives them."""

    primary: StoreName = "legacy"
    read_percent: int = 0
    shadow_read_percent: int = 100
    write_mode: WriteMode = "sync"
    sticky_header: str = "authorization"
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RollbackSettings:
    """``[rollback]``: when the new store is judged unhealthy."""

    window_s: float = 30.0
    min_samples: int = 50
    max_error_rate: float = 0.01
    max_latency_ratio: float = 3.0
    max_mismatch_rate: float = 0.01


@dataclass(frozen=True, kw_only=True)
class MirrorSettings:
    """``[mirror]``: how writes reach the secondary, and when to shout about a backlog."""

    workers: int = 32
    queue: int = 10_000
    retry_attempts: int = 4
    retry_initial_s: float = 0.05
    retry_max_s: float = 1.0
    backlog_alert: int = 10_000
    replay_interval_s: float = 1.0
    whoami_path: str = "/v1/whoami"


@dataclass(frozen=True, kw_only=True)
class RouteCompare:
    """``[compare.routes.NAME]``: rules added for one route (ignored paths, unordered lists)."""

    ignore: tuple[Path, ...] = ()
    unordered: tuple[str, ...] = ()
    tolerance: float | None = None


@dataclass(frozen=True, kw_only=True)
class CompareSettings:
    """``[compare]``: how shadow reads are normalized and compared, within what bounds."""

    ignore: tuple[Path, ...] = ()
    unordered: tuple[str, ...] = ()
    tolerance: float = 1e-6
    noise_percent: int = 5
    workers: int = 16
    queue: int = 256
    helper: bool = True  # shadow reads run in a helper process at idle CPU priority
    helper_cpus: tuple[int, ...] = ()  # the CPUs it may use; () = the proxy's own
    routes: dict[str, RouteCompare] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class StateSettings:
    """``[state]``: the database shared by every proxy instance."""

    url: str = "sqlite:///memshift-data/state.db"


@dataclass(frozen=True, kw_only=True)
class McpSettings:
    """``[mcp]``: the MCP endpoint and which tools write or read."""

    path: str = "/mcp"
    write_tools: tuple[str, ...] = (
        "create_memory",
        "update_memory",
        "delete_memory",
        "create_context",
        "create_relation",
    )
    read_tools: tuple[str, ...] = (
        "get_memory",
        "search_memories",
        "list_memories",
        "get_memory_relations",
    )


@dataclass(frozen=True, kw_only=True)
class RouteSpec:
    """``[[routes]]``: one REST route of the stores and where its ids sit.

    An MCP tool is a route too (``tool`` set, method ``TOOL``): its JSON paths are
    within the tool's arguments and result document, and ``record`` is the argument
    naming the record it changes.

    ``path`` is a template whose ``{kind}`` segments are ids of that kind; ``creates``
    names the kind whose new id the answer's ``$.id`` holds; the ``*_ids`` pairs map
    JSON paths (or query parameters) to the kind of id found there; a mirrored create
    copies the ``copy_from_answer`` fields of the primary's answer (owner, timestamps)
    into its body, so that the secondary's record is an exact copy.
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
    source: str = ""

    def tool(self, name: str) -> RouteSpec | None:
        """Return the route of MCP tool ``name``, if it is a configured one."""
        for spec in self.tools:
            if spec.tool == name:
                return spec
        return None
