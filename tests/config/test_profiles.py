"""Store profiles: shipped ones listed, one applied under a config, errors in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from memshift.cli import main
from memshift.config.load import load_settings

OFFICIAL = """
[stores.legacy]
command = ["node", "server.js"]
env = { MEMORY_FILE_PATH = "/tmp/old.jsonl" }
profile = "mcp-server-memory"
[stores.new]
command = ["node", "server.js"]
env = { MEMORY_FILE_PATH = "/tmp/new.jsonl" }
profile = "mcp-server-memory"
"""


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "memshift.toml"
    path.write_text('[admin]\ntoken = "adm"\n' + text)
    return path


def test_the_shipped_profiles_are_listed_a_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["profiles"])
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert {"memshift-reference", "mcp-server-memory"} <= set(names)
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # each with its summary


def test_a_profile_is_applied_and_the_config_overrides_one_rule(tmp_path: Path) -> None:
    """The official server's profile gives the store facts, tools and recipes; the
    config overrides one fact and adds one compare rule, and the rest stays."""
    overrides = '[compare.routes."mcp:tools/call read_graph"]\nunordered = ["$.relations"]\n'
    text = OFFICIAL.replace(
        'profile = "mcp-server-memory"\n[stores.new]',
        'profile = "mcp-server-memory"\nwrite_order = "record"\n[stores.new]',
    )
    settings = load_settings(_config(tmp_path, text + overrides))
    legacy, new = settings.stores["legacy"], settings.stores["new"]
    assert ("record", "global") == (legacy.write_order, new.write_order)
    assert ("none", "none") == (legacy.identity, new.identity)
    assert "create_entities" in settings.mcp.write_tools
    assert [] == list(settings.routes)  # the profile has no REST routes
    assert ["entity", "relation"] == [r.kind for r in settings.records]
    rule = settings.compare.routes["mcp:tools/call read_graph"]
    assert ("$.relations",) == rule.unordered


def test_a_config_can_empty_the_profiles_routes(tmp_path: Path) -> None:
    """``routes = []`` replaces the reference profile's routes whole: none are left."""
    path = tmp_path / "memshift.toml"
    path.write_text(
        'routes = []\n[admin]\ntoken = "adm"\n'
        '[stores.legacy]\nurl = "http://127.0.0.1:1"\ntoken = "t"\n'
        '[stores.new]\nurl = "http://127.0.0.1:2"\ntoken = "t"\n'
    )
    assert () == tuple(load_settings(path).routes)


@pytest.mark.parametrize(
    ("profile", "file_text", "key"),
    [
        ("no-such-store", None, "stores.legacy.profile"),
        ("mine.toml", "[store\nidentity = 1", "stores.legacy.profile"),
        ("mine.toml", '[store]\ncolour = "blue"\n', "stores.legacy.profile (mine.toml).store"),
        ("mine.toml", '[store]\nidentity = "none"\n[ids]\nmemory = "uuid"\n', "ids.memory"),
    ],
)
def test_a_bad_profile_is_one_line_naming_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    profile: str,
    file_text: str | None,
    key: str,
) -> None:
    if file_text is not None:
        (tmp_path / profile).write_text(file_text)
    path = _config(tmp_path, OFFICIAL.replace("mcp-server-memory", profile))
    assert 2 == main(["verify", "--config", str(path)])
    err = capsys.readouterr().err
    assert 1 == len(err.strip().splitlines()), err
    assert err.startswith(f"memshift: error: {key}:"), err


def test_a_config_can_empty_the_profiles_tools(tmp_path: Path) -> None:
    """An empty ``[mcp.tools]`` replaces the profile's tool tables whole: none are left."""
    path = tmp_path / "memshift.toml"
    path.write_text(
        '[admin]\ntoken = "adm"\n[mcp]\nwrite_tools = []\nread_tools = []\n[mcp.tools]\n'
        '[stores.legacy]\nurl = "http://127.0.0.1:1"\ntoken = "t"\n'
        '[stores.new]\nurl = "http://127.0.0.1:2"\ntoken = "t"\n'
    )
    settings = load_settings(path)
    assert ((), ()) == (tuple(settings.tools), settings.mcp.write_tools)
