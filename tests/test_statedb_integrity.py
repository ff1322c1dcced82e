"""A state db that cannot be trusted stops the start with one line, never serves.

Real SQLite files are damaged the ways disks and people damage them (pages in the
middle, the header, a truncated file, a foreign database of the same table names), and
a PostgreSQL schema loses a column; ``open_state`` refuses each, naming what is wrong,
and ``memshift serve`` exits 2 with one line and no traceback.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert

from memshift.database import normalize_url
from memshift.statedb import StateDbError, open_state, writes
from tests.proxy.conftest import proxy_doc, toml_of

PAGE = 4096


def _filled(path: Path) -> Path:
    """A state db with a few hundred pages of write log."""
    state = open_state(f"sqlite:///{path}")

    def fill(conn: object) -> None:
        for i in range(400):
            conn.execute(  # type: ignore[attr-defined]
                insert(writes).values(
                    at=i,
                    state="done",
                    idem_key=f"k{i}",
                    user="u",
                    route="r",
                    method="POST",
                    path="/p",
                    body=bytes([i % 251]) * 2000,
                    depends="[]",
                    primary_store="legacy",
                    attempts=0,
                )
            )

    state.write_sync(fill)
    state.close()
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    return path


def _spoil(path: Path, offset: int, size: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(b"\xa5" * size)


def _middle_pages(path: Path) -> None:
    pages = path.stat().st_size // PAGE
    _spoil(path, (pages // 2) * PAGE, 3 * PAGE)


def _header(path: Path) -> None:
    _spoil(path, 0, 100)


def _truncated(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2 + 123)


@pytest.mark.parametrize("damage", [_middle_pages, _header, _truncated])
def test_a_damaged_sqlite_state_db_is_refused(tmp_path: Path, damage: object) -> None:
    """Damaged pages, a damaged header or a truncated file: StateDbError, naming it."""
    path = _filled(tmp_path / "state.db")
    damage(path)  # type: ignore[operator]
    with pytest.raises(StateDbError) as refused:
        open_state(f"sqlite:///{path}")
    assert "state.url" == refused.value.key
    assert "damaged" in str(refused.value)
    assert "restore it from a backup" in str(refused.value)


def test_an_intact_state_db_opens_again(tmp_path: Path) -> None:
    """The check passes what it should: the same file, undamaged, opens."""
    path = _filled(tmp_path / "state.db")
    open_state(f"sqlite:///{path}").close()


def test_a_foreign_database_with_memshifts_table_names_is_refused(db_url: str) -> None:
    """Tables named like memshift's, with no memshift schema: refused, nothing added."""
    engine = create_engine(normalize_url(db_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE audit (who TEXT, what TEXT)")
    with pytest.raises(StateDbError, match=r"named like memshift's \(audit\)"):
        open_state(db_url)
    with engine.connect() as conn:
        tables = set(conn.dialect.get_table_names(conn))
    engine.dispose()
    assert {"audit"} == tables


def test_a_table_missing_a_column_is_refused(db_url: str) -> None:
    """A schema changed by hand (a column dropped) stops the start, naming the column."""
    open_state(db_url).close()
    engine = create_engine(normalize_url(db_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE writes DROP COLUMN instance")
    engine.dispose()
    with pytest.raises(StateDbError, match="writes lacks instance"):
        open_state(db_url)


async def test_serve_on_a_damaged_state_db_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """No traceback, no listener: one line naming state.url, and exit code 2."""
    path = _filled(tmp_path / "state.db")
    _middle_pages(path)
    config = tmp_path / "memshift.toml"
    doc = proxy_doc("http://127.0.0.1:9", "http://127.0.0.1:9", f"sqlite:///{path}")
    config.write_text(toml_of(doc))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "memshift",
        "serve",
        "--config",
        str(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert 2 == proc.returncode, err.decode()
    assert 1 == len(lines), err.decode()
    assert lines[0].startswith("memshift: error: state.url: the state db is damaged")
    assert b"" == out
