"""``[mcp]``: tool lists and where each tool's ids are."""

from __future__ import annotations

from typing import Any

import pytest

from memshift.config.load import parse_settings
from memshift.errors import ConfigError

BASE: dict[str, Any] = {
    "admin": {"token": "x"},
    "stores": {
        "legacy": {"url": "http://127.0.0.1:1", "token": "a"},
        "new": {"url": "http://127.0.0.1:2", "token": "b"},
    },
}


def test_defaults_cover_the_reference_tools() -> None:
    settings = parse_settings(BASE)
    update = settings.tool("update_memory")
    assert update is not None and update.name == "mcp:tools/call update_memory"
    assert update.record is not None and update.record[0].text == "$.memory_id"
    assert {p.text for p, _ in update.request_ids} == {"$.memory_id", "$.context_id"}
    assert settings.tool("create_relation").creates == "relation"  # type: ignore[union-attr]
    assert settings.tool("nothing") is None


def test_a_listed_tool_without_a_table_gets_a_route() -> None:
    mcp = {"write_tools": [], "read_tools": ["get_memory", "peek"], "tools": {"get_memory": {}}}
    doc = {**BASE, "mcp": mcp}
    settings = parse_settings(doc)
    assert [t.tool for t in settings.tools] == ["get_memory", "peek"]  # the table replaces


@pytest.mark.parametrize(
    ("mcp", "key"),
    [
        (
            {"tools": {"get_memory": {"record_argument": "nope"}}},
            "mcp.tools.get_memory.record_argument",
        ),
        ({"tools": {"x y": {}}}, "mcp.tools.x y"),
        ({"tools": {"t": {"id_arguments": {"a-b": "memory"}}}}, "mcp.tools.t.id_arguments.a-b"),
        ({"tools": {"t": {"bogus": 1}}}, "mcp.tools.t.bogus"),
        ({"write_tools": ["a"], "read_tools": ["a"]}, "mcp.read_tools"),
        ({"path": "mcp"}, "mcp.path"),
    ],
)
def test_bad_tool_tables_name_the_key(mcp: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({**BASE, "mcp": mcp})
    assert caught.value.key == key
