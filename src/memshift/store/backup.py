"""``memshift store backup``: a consistent copy of a SQLite store while it serves.

SQLite's online backup API copies every page inside one read transaction, so the copy
is a snapshot of one instant; in WAL mode the store's writers keep going meanwhile. The
copy is written beside the target and renamed into place only once it passed
``PRAGMA integrity_check``, so a failed backup never leaves a half-written file.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import make_url

from memshift.database import normalize_url
from memshift.errors import ConfigError, IntegrityError


def backup_sqlite(db_url: str, out: Path) -> int:
    """Copy the SQLite store at ``db_url`` to ``out``; return the copy's size in bytes.

    Raises ``ConfigError`` for a non-SQLite or missing store, ``IntegrityError`` if the
    copy fails its integrity check.
    """
    url = make_url(normalize_url(db_url))
    if url.get_backend_name() != "sqlite":
        raise ConfigError("db", "backup copies SQLite stores; for PostgreSQL use pg_dump")
    source = Path(str(url.database))
    if not source.is_file():
        raise ConfigError("db", f"no store at {source}")
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    with (
        closing(sqlite3.connect(source, timeout=30)) as src,
        closing(sqlite3.connect(partial)) as dst,
    ):
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
        verdict = [r[0] for r in dst.execute("PRAGMA integrity_check")]
    if verdict != ["ok"]:
        partial.unlink(missing_ok=True)
        raise IntegrityError(verdict)
    partial.replace(out)
    return out.stat().st_size
