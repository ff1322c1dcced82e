"""Store profiles: everything memshift must know about one kind of store, as data.

A profile is a TOML file in the config's own shape: which tools and routes write and
read and where their ids and records sit (``[mcp]``, ``[[routes]]``, ``[ids]``), how
answers compare (``[compare]``), how to read every record and write one
(``[records.KIND]``, for verify, backfill and repair), and the store's own facts
(``[store]``: ``identity``, ``write_order``, ``idempotency``, ``bulk``). Profiles ship in this
folder; ``[stores.NAME] profile`` names one, or the path of an operator's own. A config
that names none is for the reference store (``memshift-reference``).

``apply`` lays a profile under a config: every value the config gives wins, tables
merge key by key, and a list or a table the config gives (``routes = []``,
``[mcp.tools]``) replaces the profile's whole.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from memshift.errors import ConfigError

SHIPPED = Path(__file__).parent
DEFAULT = "memshift-reference"
STORE_FACTS = ("identity", "write_order", "idempotency", "bulk")
# Sections a config gives whole, never merged with the profile's.
WHOLE = {("routes",), ("mcp", "tools")}


def shipped() -> list[tuple[str, str]]:
    """The shipped profiles: name and one line each."""
    out = []
    for path in sorted(SHIPPED.glob("*.toml")):
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        out.append((path.stem, str(doc.get("profile", {}).get("summary", ""))))
    return out


def load(ref: str, key: str, base: Path | None = None) -> dict[str, Any]:
    """The profile ``ref`` names (a shipped name, or a path relative to ``base``);
    raise ``ConfigError`` naming ``key`` and what is wrong, in one line."""
    if "/" in ref or ref.endswith(".toml"):
        path = Path(ref) if base is None or Path(ref).is_absolute() else base / ref
    else:
        path = SHIPPED / f"{ref}.toml"
        if not path.exists():
            names = ", ".join(name for name, _ in shipped())
            raise ConfigError(key, f"no shipped profile {ref!r} (shipped: {names})")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(key, f"cannot read the profile {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(key, f"the profile {path} is not valid TOML: {exc}") from exc
    unknown = set(doc) - {"profile", "store", "ids", "mcp", "routes", "compare", "records"}
    if unknown:
        raise ConfigError(f"{key} ({path.name}).{sorted(unknown)[0]}", "is not a profile section")
    facts = doc.get("store", {})
    if not isinstance(facts, dict) or set(facts) - set(STORE_FACTS):
        raise ConfigError(f"{key} ({path.name}).store", f"may say {', '.join(STORE_FACTS)}")
    return doc


def apply(doc: dict[str, Any], base: Path | None = None) -> dict[str, Any]:
    """``doc`` (a config) with the profile its stores name laid under it."""
    found = doc.get("stores")
    stores: dict[str, Any] = found if isinstance(found, dict) else {}
    named = {
        name: table["profile"]
        for name, table in stores.items()
        if isinstance(table, dict) and "profile" in table
    }
    refs = set(named.values())
    if len(refs) > 1:
        raise ConfigError(
            "stores.new.profile",
            "both stores must speak one API: name the same profile for both (or one)",
        )
    ref = refs.pop() if refs else DEFAULT
    if not isinstance(ref, str):
        raise ConfigError(f"stores.{next(iter(named))}.profile", "must be a name or a path")
    key = f"stores.{next(iter(named))}.profile" if named else "profile"
    profile = load(ref, key, base)
    out: dict[str, Any] = _under(profile, doc, ())
    facts: dict[str, Any] = profile.get("store", {})
    for table in (out.get("stores") or {}).values():
        if isinstance(table, dict):
            for fact, value in facts.items():
                table.setdefault(fact, value)
    for section in ("profile", "store"):
        out.pop(section, None)
    _drop_orphan_rules(out, profile, doc)
    return out


def _drop_orphan_rules(out: dict[str, Any], profile: dict[str, Any], doc: dict[str, Any]) -> None:
    """Leave out the profile's compare rules for routes or tools the config replaced
    (the operator's own rules for unknown routes are still refused, by the loader)."""
    rules = (out.get("compare") or {}).get("routes")
    if not isinstance(rules, dict):
        return
    given = (profile.get("compare") or {}).get("routes") or {}
    own = ((doc.get("compare") or {}).get("routes")) or {}
    found = out.get("mcp")
    mcp: dict[str, Any] = found if isinstance(found, dict) else {}
    tools = {
        *((mcp.get("tools") or {}) if isinstance(mcp.get("tools"), dict) else {}),
        *(mcp.get("write_tools") or ()),
        *(mcp.get("read_tools") or ()),
    }
    known = {r.get("name") for r in out.get("routes") or () if isinstance(r, dict)}
    known |= {f"mcp:tools/call {t}" for t in tools if isinstance(t, str)}
    for name in list(rules):
        if name in given and name not in own and name not in known:
            del rules[name]


def _under(
    profile: dict[str, Any], config: dict[str, Any], where: tuple[str, ...]
) -> dict[str, Any]:
    """``config`` merged over ``profile`` (see the module)."""
    out = dict(profile)
    for name, value in config.items():
        here = (*where, name)
        below = out.get(name)
        if isinstance(value, dict) and isinstance(below, dict) and here not in WHOLE:
            out[name] = _under(below, value, here)
        else:
            out[name] = value
    return out
