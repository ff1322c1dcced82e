"""Loading the proxy's config: defaults, and refusals that name the dotted key."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from memshift.config.load import load_settings, parse_settings
from memshift.errors import ConfigError

BASE: dict[str, Any] = {
    "admin": {"token": "adm-secret"},
    "stores": {
        "legacy": {"url": "http://127.0.0.1:8101", "token": "svc-legacy-secret"},
        "new": {"url": "http://127.0.0.1:8102", "token_env": "NEW_TOKEN"},
    },
}
ENV = {"NEW_TOKEN": "svc-new-secret"}


def with_(path: str, value: Any) -> dict[str, Any]:
    """BASE with one dotted key set (or removed, for ...)."""
    doc = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return doc


def test_defaults_follow_the_contract() -> None:
    """A minimal file gets the documented defaults and the reference store's routes."""
    s = parse_settings(BASE, env=ENV)
    assert ("127.0.0.1", 8100, "127.0.0.1", 8109) == (
        s.proxy.listen.host,
        s.proxy.listen.port,
        s.admin.listen.host,
        s.admin.listen.port,
    )
    assert ("legacy", 0, 100, "sync", "authorization") == (
        s.routing.primary,
        s.routing.read_percent,
        s.routing.shadow_read_percent,
        s.routing.write_mode,
        s.routing.sticky_header,
    )
    assert (30.0, 50, 0.01, 3.0, 0.01) == (
        s.rollback.window_s,
        s.rollback.min_samples,
        s.rollback.max_error_rate,
        s.rollback.max_latency_ratio,
        s.rollback.max_mismatch_rate,
    )
    assert ("svc-legacy-secret", "svc-new-secret") == (
        s.stores["legacy"].token,
        s.stores["new"].token,
    )
    assert "/mcp" == s.mcp.path
    assert "memories.item" in [r.name for r in s.routes]
    assert (True, ()) == (s.compare.helper, s.compare.helper_cpus)
    pinned = parse_settings(with_("compare.helper_cpus", [1, 0, 1]), env=ENV)
    assert (0, 1) == pinned.compare.helper_cpus


def test_secrets_stay_out_of_repr() -> None:
    """Printing settings never shows a token."""
    text = repr(parse_settings(BASE, env=ENV))
    assert not [t for t in ("adm-secret", "svc-legacy-secret", "svc-new-secret") if t in text]


@pytest.mark.parametrize(
    "path,value,key",
    [
        ("routing.read_percent", 101, "routing.read_percent"),
        ("routing.read_percent", "30", "routing.read_percent"),
        ("routing.read_percent", True, "routing.read_percent"),
        ("routing.shadow_read_percent", -1, "routing.shadow_read_percent"),
        ("routing.primary", "old", "routing.primary"),
        ("routing.write_mode", "eventually", "routing.write_mode"),
        ("mirror.workers", 0, "mirror.workers"),
        ("mirror.retry_attempts", "3", "mirror.retry_attempts"),
        ("routing.colour", "red", "routing.colour"),
        ("rollback.max_error_rate", 2, "rollback.max_error_rate"),
        ("proxy.listen", "8100", "proxy.listen"),
        ("proxy.max_body_mib", 0, "proxy.max_body_mib"),
        ("admin.token", ..., "admin.token"),
        ("stores.new", ..., "stores.new.url"),
        ("stores.legacy.url", "ftp://host", "stores.legacy.url"),
        ("stores.legacy.url", "http://host/base", "stores.legacy.url"),
        ("stores.legacy.read_timeout_s", 0, "stores.legacy.read_timeout_s"),
        ("stores.new.token_env", "UNSET_VARIABLE", "stores.new.token_env"),
        ("stores.extra", {"url": "http://x"}, "stores.extra"),
        ("state.url", "mysql://db", "state.url"),
        ("mcp.read_tools", ["create_memory"], "mcp.read_tools"),
        ("compare.helper", "yes", "compare.helper"),
        ("compare.helper_cpus", [-1], "compare.helper_cpus"),
        ("compare.helper_cpus", "0-1", "compare.helper_cpus"),
        ("surprise", {}, "surprise"),
    ],
)
def test_bad_values_name_their_key(path: str, value: Any, key: str) -> None:
    """Each bad value is refused with the dotted key at fault."""
    with pytest.raises(ConfigError) as info:
        parse_settings(with_(path, value), env=ENV)
    assert key == info.value.key


def test_routes_are_validated() -> None:
    """A route with a bad path, JSON path or method names its own key."""
    route = {
        "name": "x",
        "methods": ["GET"],
        "path": "/v1/x/{memory}",
        "response_ids": {"$.id": "memory"},
    }
    assert "x" == parse_settings(with_("routes", [route]), env=ENV).routes[0].name
    for field, value, key in [
        ("path", "v1/x", "routes[0].path"),
        ("methods", ["FETCH"], "routes[0].methods"),
        ("response_ids", {"id": "memory"}, "routes[0].response_ids.id"),
        ("response_ids", {"$.id": "memroy"}, "routes.x.response_ids"),  # no such kind
        ("path", "/v1/x/{thing}", "routes.x.path"),
    ]:
        with pytest.raises(ConfigError) as info:
            parse_settings(with_("routes", [{**route, field: value}]), env=ENV)
        assert key == info.value.key


def test_file_errors_are_clear(tmp_path: Path) -> None:
    """A missing file or broken TOML is refused with the file named."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[routing\nread_percent = 3")
    with pytest.raises(ConfigError, match=r"broken\.toml is not valid TOML"):
        load_settings(broken)


def test_compare_rules_per_route() -> None:
    """[compare.routes.NAME] adds rules for one route; an unknown route is refused."""
    from memshift.shadow.reads import rules_of

    doc = with_(
        "compare",
        {
            "routes": {
                "search": {"unordered": ["$.results"], "tolerance": 0.5, "ignore": ["$.total"]}
            }
        },
    )
    settings = parse_settings(doc, env=ENV).compare
    rules, options = rules_of(settings, "search")
    assert (0.5, frozenset({"$.results"})) == (options.tolerance, options.unordered)
    assert {"results": []} == rules[0]({"results": [], "total": 3, "updated_at": "x"})
    assert 1e-6 == rules_of(settings, "stats")[1].tolerance
    with pytest.raises(ConfigError) as info:
        parse_settings(with_("compare", {"routes": {"nope": {}}}), env=ENV)
    assert "compare.routes.nope" == info.value.key


def test_defaults_are_declared_once() -> None:
    """A file that says nothing gets exactly the defaults its sections declare."""
    from memshift.config import settings as model

    s = parse_settings(BASE, env=ENV)
    assert model.ProxySettings() == s.proxy
    assert model.RoutingSettings() == s.routing
    assert model.RollbackSettings() == s.rollback
    assert model.MirrorSettings() == s.mirror
    # the reference store's profile adds its ranked search rules, nothing else
    assert {"search", "mcp:tools/call search_memories"} == set(s.compare.routes)
    assert replace(model.CompareSettings(), routes=s.compare.routes) == s.compare
    assert model.StateSettings() == s.state
    assert model.McpSettings() == s.mcp
    assert (2.0, 30.0) == (s.stores["new"].connect_timeout_s, s.stores["new"].read_timeout_s)


def test_the_reference_in_the_docs_is_the_declared_one() -> None:
    """docs/config.md lists every setting with the default and help declared for it."""
    from memshift.config.settings import reference_markdown

    text = (Path(__file__).parents[2] / "docs" / "config.md").read_text()
    assert reference_markdown() in text
