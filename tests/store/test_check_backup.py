"""``memshift store check`` finds damage; ``memshift store backup`` copies a serving store."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text, update

from memshift.cli import main
from memshift.store.api import STATE
from memshift.store.schema import blob_chunks, blobs, memories
from tests.store.conftest import ALICE, MakeStore, post
from tests.store.test_engines import prose


async def _filled(make_store: MakeStore, engine: str, url: str) -> Any:
    store = await make_store(engine, url)
    await post(store, "/v1/memories", {"title": "a", "content": prose(40_000)})
    await post(store, "/v1/memories", {"title": "b", "content": prose(40_000)})
    await post(store, "/v1/memories", {"title": "c", "content": prose(1_500_000, seed=2)})
    await post(store, "/v1/memories", {"title": "d", "content": "tiny"})
    return store


async def test_check_passes_on_a_whole_store(
    make_store: MakeStore, engine: str, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store that was only written through its API checks clean (exit 0)."""
    await _filled(make_store, engine, db_url)
    assert 0 == main(["store", "check", "--db", db_url])
    assert f"{engine} store: ok" in capsys.readouterr().out


@pytest.mark.parametrize(
    "damage,expected",
    [
        (update(blobs).where(blobs.c.codec == "zstd").values(data=b"not zstd"), "cannot be read"),
        (update(blobs).values(refcount=5), "refcount 5"),
        (update(blob_chunks).where(blob_chunks.c.seq == 1).values(seq=7), "lacks chunk 1"),
        (
            update(memories).where(memories.c.title == "b").values(content_hash=None),
            "without content_hash",
        ),
        (
            text("INSERT INTO memory_search (rowid, title, body) VALUES (999, 'gone', 'x')"),
            "1 entries refer to missing memories",
        ),
    ],
)
async def test_check_names_damage(
    make_store: MakeStore,
    tmp_path: Path,
    damage: Any,
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Damaged blobs, chunks and reference counts are each named, and check exits 1."""
    url = f"sqlite:///{tmp_path}/s.db"
    store = await _filled(make_store, "new", url)
    store.server.app[STATE].db.write_sync(lambda conn: conn.execute(damage))
    assert 1 == main(["store", "check", "--db", url])
    assert expected in capsys.readouterr().out


async def test_check_finds_altered_content(
    make_store: MakeStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Raw bytes that decode but no longer match their hash are reported."""
    url = f"sqlite:///{tmp_path}/s.db"
    store = await _filled(make_store, "new", url)
    store.server.app[STATE].db.write_sync(
        lambda conn: conn.execute(update(blobs).where(blobs.c.codec == "raw").values(data=b"tinY"))
    )
    assert 1 == main(["store", "check", "--db", url])
    assert "does not match its hash" in capsys.readouterr().out


async def test_backup_while_writes_go_on(make_store: MakeStore, tmp_path: Path) -> None:
    """A backup taken during a stream of writes is a whole, consistent, checkable store."""
    url = f"sqlite:///{tmp_path}/live.db"
    store = await _filled(make_store, "new", url)
    out = tmp_path / "copy.db"

    async def writer() -> None:
        for i in range(30):
            resp = await store.post(
                "/v1/memories",
                json={"title": f"w{i}", "content": prose(3000, seed=i)},
                headers=ALICE,
            )
            assert 201 == resp.status

    code, _ = await asyncio.gather(
        asyncio.to_thread(main, ["store", "backup", "--db", url, "--out", str(out)]), writer()
    )
    assert 0 == code
    with sqlite3.connect(out) as copy:
        assert ("ok",) == copy.execute("PRAGMA integrity_check").fetchone()
        count = copy.execute("SELECT count(*) FROM memories").fetchone()[0]
    assert 4 <= count <= 34
    assert 0 == main(["store", "check", "--db", f"sqlite:///{out}"])


def test_backup_refuses_postgresql(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Backing up a PostgreSQL store says to use pg_dump, exit 2."""
    assert 2 == main(
        ["store", "backup", "--db", "postgresql://x@127.0.0.1/db", "--out", str(tmp_path / "x")]
    )
    assert "pg_dump" in capsys.readouterr().err
