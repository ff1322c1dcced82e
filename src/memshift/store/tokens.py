"""Bearer tokens of a store: a TOML table mapping each token to a user and a role."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from memshift.errors import ConfigError

TOKENS_ENV = "MEMSHIFT_TOKENS"
ROLES = ("user", "admin")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user a token maps to, and whether that user is an admin.

    ``acting``: an admin's token acting as this user (``X-Act-As``).
    """

    user: str
    admin: bool = False
    acting: bool = False

    @property
    def provenance(self) -> bool:
        """May set ``owner``, ``version`` and the timestamps: an admin, or an admin
        acting as a user, so that a copy is exact."""
        return self.admin or self.acting


def parse_tokens(text: str, source: str) -> dict[str, Principal]:
    """Parse a tokens document; raise ``ConfigError`` naming the bad key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{source} is not valid TOML: {exc}") from exc
    table = doc.get("tokens")
    if not isinstance(table, dict) or not table:
        raise ConfigError("tokens", f"{source} must hold a non-empty [tokens] table")
    out: dict[str, Principal] = {}
    for token, entry in table.items():
        key = f"tokens.{token}"
        if not isinstance(entry, dict):
            raise ConfigError(key, "must be a table with user and optional role")
        unknown = set(entry) - {"user", "role"}
        if unknown:
            raise ConfigError(f"{key}.{sorted(unknown)[0]}", "is not a known key")
        user, role = entry.get("user"), entry.get("role", "user")
        if not isinstance(user, str) or not user:
            raise ConfigError(f"{key}.user", "must be a non-empty string")
        if role not in ROLES:
            raise ConfigError(f"{key}.role", "must be 'user' or 'admin'")
        out[token] = Principal(user=user, admin=role == "admin")
    return out


def load_tokens(path: str | None) -> dict[str, Principal]:
    """Load tokens from ``path``, else ``MEMSHIFT_TOKENS``; raise ``ConfigError`` if neither."""
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("tokens", f"cannot read {path}: {exc.strerror}") from exc
        return parse_tokens(text, path)
    inline = os.environ.get(TOKENS_ENV)
    if inline:
        return parse_tokens(inline, TOKENS_ENV)
    raise ConfigError("tokens", f"no tokens: pass --tokens FILE or set {TOKENS_ENV}")
