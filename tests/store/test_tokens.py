"""Tokens files: parsed into principals, or refused with the key that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from memshift.errors import ConfigError
from memshift.store.tokens import Principal, load_tokens, parse_tokens


def test_tokens_map_to_users_and_roles() -> None:
    """Each token maps to its user; role admin makes an admin."""
    text = '[tokens.a]\nuser = "alice"\n[tokens.o]\nuser = "ops"\nrole = "admin"\n'
    assert {"a": Principal("alice"), "o": Principal("ops", admin=True)} == parse_tokens(text, "t")


@pytest.mark.parametrize(
    "text,key",
    [
        ("[tokens]\n", "tokens"),
        ('[tokens.a]\nrole = "admin"\n', "tokens.a.user"),
        ('[tokens.a]\nuser = "x"\nrole = "root"\n', "tokens.a.role"),
        ('[tokens.a]\nuser = "x"\ncolour = 1\n', "tokens.a.colour"),
        ("tokens = 3\n", "tokens"),
    ],
)
def test_bad_tokens_name_the_key(text: str, key: str) -> None:
    """A bad tokens document is refused with the dotted key at fault."""
    with pytest.raises(ConfigError) as info:
        parse_tokens(text, "t")
    assert key == info.value.key


def test_tokens_come_from_file_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file wins; without one MEMSHIFT_TOKENS is read; without both loading fails."""
    monkeypatch.setenv("MEMSHIFT_TOKENS", '[tokens.env]\nuser = "e"\n')
    path = tmp_path / "t.toml"
    path.write_text('[tokens.file]\nuser = "f"\n')
    assert ["file"] == list(load_tokens(str(path)))
    assert ["env"] == list(load_tokens(None))
    monkeypatch.delenv("MEMSHIFT_TOKENS")
    with pytest.raises(ConfigError, match="MEMSHIFT_TOKENS"):
        load_tokens(None)
    with pytest.raises(ConfigError, match="cannot read"):
        load_tokens(str(tmp_path / "missing.toml"))
