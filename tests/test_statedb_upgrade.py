"""A state db written by an earlier memshift is moved forward, its rows kept and readable.

The fixtures hold the first schema (before it had a version: integer ids in the id map
and the backfill plans, one record per write) as that memshift created it, on SQLite and
on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text

from memshift.database import normalize_url
from memshift.shadow.idmap import IdMap
from memshift.shadow.writelog import WriteLog
from memshift.statedb import SCHEMA_VERSION, open_state, schema_version
from tests.shadow.test_writelog import running_log

FIXTURES = Path(__file__).parent / "fixtures"


def _write_v1(url: str) -> None:
    engine = create_engine(normalize_url(url))
    dialect = engine.dialect.name
    ddl = (FIXTURES / f"statedb-v1.{dialect}.sql").read_text()
    with engine.begin() as conn:
        for statement in filter(str.strip, ddl.split(";")):
            conn.exec_driver_sql(statement)
        conn.execute(text("INSERT INTO id_map VALUES ('memory', 75, 3), ('context', 9, 12)"))
        conn.execute(
            text(
                'INSERT INTO writes (at, state, idem_key, "user", route, method, path, body,'
                " record_key, depends, primary_store, primary_status, primary_body, attempts)"
                " VALUES (1, 'backlog', 'k1', 'user1', 'memories.item', 'PATCH',"
                " '/v1/memories/75', :body, 'memory:75', '[\"context:9\"]', 'legacy', 200,"
                " :answer, 1)"
            ),
            {"body": b'{"title": "t"}', "answer": b'{"id": 75}'},
        )
    engine.dispose()


async def test_a_first_schema_state_db_is_moved_forward(db_url: str) -> None:
    """Its pairs translate (integer ids stay integers), its backlog is replayable."""
    _write_v1(db_url)
    state = open_state(db_url)
    try:
        with state.engine.connect() as conn:
            assert SCHEMA_VERSION == schema_version(conn)
        idmap = IdMap(state)
        assert {75: 3} == await idmap.translate("memory", [75], "legacy", "new")
        assert {12: 9} == await idmap.translate("context", [12], "new", "legacy")
    finally:
        state.close()
    async with running_log(db_url) as wal:
        assert isinstance(wal, WriteLog)
        [row] = await wal.unfinished()
        assert (row.keys, row.depends, row.body) == (
            ("memory:75",),
            ("context:9",),
            b'{"title": "t"}',
        )
        assert 1 == (await wal.figures())["backlog"]
