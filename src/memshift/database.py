"""Database access shared by the stores and memshift's state db.

One SQLAlchemy engine, a writer path and reader threads. Handlers never block the
event loop: each request runs one whole transaction as a plain function in a thread.
On SQLite all writes of a process go through a single writer thread and start with
``BEGIN IMMEDIATE`` (WAL, a 30 s busy timeout), so concurrent writers queue instead
of failing with "database is locked"; other processes on the same file (a backup, a
check) wait on the busy timeout. PostgreSQL gets a few writer threads.

Each thread keeps its connection between transactions (a pool checkout costs more
than a small transaction); one that broke is replaced on the next call.

Grouped writes (``group_writes=True``, SQLite only; the stores use them): the writer
thread takes every write queued while it was busy, up to ``GROUP_MAX``, and runs them
in one transaction, one after the other. One commit then serves many requests, and
SQLite's full-text index is flushed once for all of them. Should a write fail, the
group is rolled back and run again with each write in a savepoint of its own, so that
it fails alone (a write may so run twice: its first run was rolled back). A group
whose commit fails fails every write in it, and nothing of it is kept. To each caller
it looks as if its write had its own transaction, run after those queued before it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Connection, CursorResult, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from memshift.errors import ConfigError

T = TypeVar("T")
BUSY_TIMEOUT_S = 30.0
GROUP_MAX = 64  # the most writes one grouped transaction takes


def normalize_url(url: str, key: str = "db") -> str:
    """Return ``url`` with the driver memshift uses; raise ``ConfigError`` naming ``key``."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(key, f"not a database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError(key, "SQLite needs a file path (sqlite:///path/to/file.db)")
        return parsed.set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)
    raise ConfigError(key, f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def _sqlite_engine(url: str) -> Engine:
    path = make_url(url).database
    assert path is not None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun explicitly below
        cur = dbapi_conn.cursor()
        # Switching a new file to WAL does not wait on the busy timeout: when another
        # process opens the same new file at that moment, try again for a while.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                cur.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        for pragma in ("synchronous=NORMAL", "foreign_keys=ON"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("immediate", False)
        raw = conn.connection.driver_connection  # straight to SQLite: this runs per transaction
        assert raw is not None
        raw.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@functools.lru_cache(maxsize=64)
def _for_style(sql: str, paramstyle: str) -> str:
    return sql if paramstyle == "qmark" else sql.replace("?", "%s")


def driver_execute(conn: Connection, sql: str, params: Sequence[Any]) -> Any:
    """Run ``sql`` (``?`` placeholders) on the driver's own connection; return its cursor.

    For the few statements run on every request: SQLAlchemy's execution machinery
    costs more than the database's own work for them. The statement joins the
    transaction ``conn`` is in. Quote column names: the SQL is not translated.
    The driver's errors are raised as SQLAlchemy's (``IntegrityError``,
    ``OperationalError``...), as ``conn.execute`` would raise them.
    """
    raw = conn.connection.driver_connection
    assert raw is not None
    try:
        return raw.execute(_for_style(sql, conn.dialect.paramstyle), params)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _translated(conn, sql, params, exc) from exc


def driver_executemany(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``sql`` once per row of parameters, as ``driver_execute`` runs it once."""
    raw = conn.connection.driver_connection
    assert raw is not None
    try:
        raw.cursor().executemany(_for_style(sql, conn.dialect.paramstyle), rows)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _translated(conn, sql, rows, exc) from exc


def _on_driver(conn: Connection, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` in a write transaction begun and committed on ``conn``'s driver
    connection (SQLite's, in autocommit mode: memshift begins its transactions).
    On failure the caller ends what is left of it (``_finished``)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.execute("BEGIN IMMEDIATE")  # busy: raised, nothing begun
    result = fn(conn)
    try:
        raw.execute("COMMIT")  # a deferred constraint, a full disk may refuse it
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _translated(conn, "COMMIT", (), exc) from exc
    return result


def _translated(conn: Connection, sql: str, params: Any, exc: Exception) -> Exception:
    return DBAPIError.instance(sql, params, exc, conn.dialect.loaded_dbapi.Error)


def _is_busy(exc: OperationalError | sqlite3.OperationalError) -> bool:
    text = str(exc.orig if isinstance(exc, OperationalError) else exc).lower()
    return "locked" in text or "busy" in text


def _finished(conn: Connection) -> bool:
    """Whether a transaction that raised left ``conn`` usable, with no transaction open.

    SQLite keeps a transaction whose COMMIT it refused (a deferred constraint) open,
    where SQLAlchemy counts it as ended: roll it back here."""
    if conn.invalidated or conn.in_transaction():
        return False
    raw = conn.connection.driver_connection
    if isinstance(raw, sqlite3.Connection) and raw.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            raw.execute("ROLLBACK")
        return not raw.in_transaction
    return True


def inserted_id(result: CursorResult[Any]) -> int:
    """Return the primary key an INSERT assigned."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


class _Job(NamedTuple):
    """A write waiting for the writer thread, and where its caller waits."""

    fn: Callable[[Connection], Any]
    context: contextvars.Context
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


class _Refused(Exception):
    """A write of a group raised: the group is rolled back and run again, isolated."""


def _together(jobs: list[_Job], conn: Connection) -> list[tuple[bool, Any]]:
    """Run every write of a group in one transaction, with no savepoint between them.

    A savepoint costs: SQLite's full-text index flushes what it holds at each one. A
    write that raises makes the whole group run again, isolated (``_isolated``).
    """
    results: list[tuple[bool, Any]] = []
    for job in jobs:
        try:
            results.append((True, job.context.run(job.fn, conn)))
        except Exception as exc:
            raise _Refused from exc
    return results


def _isolated(jobs: list[_Job], conn: Connection) -> list[tuple[bool, Any]]:
    """Run every write of a group in one transaction, each in a savepoint of its own."""
    raw = conn.connection.driver_connection
    assert raw is not None
    results: list[tuple[bool, Any]] = []
    for job in jobs:
        raw.execute("SAVEPOINT grouped_write")
        try:
            result = job.context.run(job.fn, conn)
        except Exception as exc:
            raw.execute("ROLLBACK TO grouped_write")
            raw.execute("RELEASE grouped_write")
            results.append((False, exc))
        else:
            raw.execute("RELEASE grouped_write")
            results.append((True, result))
    return results


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the caller gave up (cancelled)
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class Database:
    """A store database: schema creation and transactions run off the event loop."""

    def __init__(
        self, url: str, *, readers: int = 4, key: str = "db", group_writes: bool = False
    ) -> None:
        self.url = normalize_url(url, key)
        self.is_sqlite = self.url.startswith("sqlite")
        self._grouped = group_writes and self.is_sqlite
        self._queued: collections.deque[_Job] = collections.deque()
        self._queue_lock = threading.Lock()
        self._draining = False
        self.groups = 0  # grouped transactions committed or tried
        writers = 1 if self.is_sqlite else 4
        if self.is_sqlite:
            self.engine = _sqlite_engine(self.url)
        else:
            self.engine = create_engine(
                self.url, pool_size=readers + writers, max_overflow=4, pool_pre_ping=True
            )
        self._writer = ThreadPoolExecutor(writers, thread_name_prefix="store-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="store-reader")
        self._local = threading.local()
        self._kept: list[Connection] = []
        self._kept_lock = threading.Lock()
        self._quick: Connection | None = None

    def _connection(self, write: bool) -> Connection:
        """This thread's connection for reads or writes, opened on first use."""
        name = "writes" if write else "reads"
        conn: Connection | None = getattr(self._local, name, None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self.engine.connect()
            if write:
                conn.execution_options(immediate=True)
            setattr(self._local, name, conn)
            with self._kept_lock:
                self._kept.append(conn)
        return conn

    def _transaction(self, write: bool, fn: Callable[[Connection], T]) -> T:
        conn = self._connection(write)
        try:
            with conn.begin():
                return fn(conn)
        except BaseException:
            if not _finished(conn):  # broken: the next call reconnects
                setattr(self._local, "writes" if write else "reads", None)
                with self._kept_lock:
                    self._kept.remove(conn)
                conn.close()
            raise

    def read_sync(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a read transaction on this thread and return its result."""
        return self._transaction(False, fn)

    def write_sync(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a write transaction on this thread; commit if it returns."""
        return self._transaction(True, fn)

    async def write_quick(self, fn: Callable[[Connection], T], *, driver: bool = False) -> T:
        """A short write: on SQLite, run right here when the lock is free; else as ``write``.

        Handing a transaction to the writer thread costs more than a small SQLite
        transaction: each statement gives the GIL up and must win it back from a busy
        event loop. Here it never waits: with the lock held elsewhere (another process,
        or the writer thread) it goes to the writer thread, which waits its turn.
        ``fn`` may run twice: its first transaction was rolled back.

        ``driver``: ``fn`` runs its statements with ``driver_execute`` alone; on SQLite
        its transaction is then begun and committed on the driver's connection, without
        SQLAlchemy's transaction machinery (which costs more than a small transaction).
        """
        if self.is_sqlite:
            conn = self._quick
            if conn is None or conn.closed or conn.invalidated:
                # Opening may wait on SQLite's lock (the WAL set-up): on the writer thread.
                loop = asyncio.get_running_loop()
                conn = await loop.run_in_executor(self._writer, self._open_quick)
            try:
                if driver:
                    return _on_driver(conn, fn)
                with conn.begin():
                    return fn(conn)
            except (OperationalError, sqlite3.OperationalError) as exc:  # BEGIN is sent raw
                self._after_failure(conn)
                if not _is_busy(exc):
                    raise
            except BaseException:
                self._after_failure(conn)
                raise
        return await self.write(fn)

    def _after_failure(self, conn: Connection) -> None:
        """Keep the quick connection if the failure left it usable; else drop it (the
        next quick write reconnects)."""
        if _finished(conn):
            return
        self._quick = None
        with self._kept_lock:
            self._kept.remove(conn)
        conn.close()

    def _open_quick(self) -> Connection:
        conn = self._quick
        if conn is None or conn.closed or conn.invalidated:
            conn = self.engine.connect()
            conn.execution_options(immediate=True)
            raw = conn.connection.driver_connection  # not through SQLAlchemy: no BEGIN
            assert raw is not None
            raw.execute("PRAGMA busy_timeout = 0")
            # A checkpoint writes the database file and syncs it: never on the event
            # loop. ``checkpoint()`` runs them on the writer thread instead.
            raw.execute("PRAGMA wal_autocheckpoint = 0")
            self._quick = conn
            with self._kept_lock:
                self._kept.append(conn)
        return conn

    async def checkpoint(self) -> tuple[int, int]:
        """Copy SQLite's write-ahead log into the database, on the writer thread.

        For a process whose quick writes (``write_quick``) leave checkpoints to it.
        Returns the frames in the log and those copied; (0, 0) on PostgreSQL.
        """
        if not self.is_sqlite:
            return 0, 0

        def run() -> tuple[int, int]:
            raw = self._connection(True).connection.driver_connection
            assert raw is not None
            _busy, frames, copied = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(frames), int(copied)

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a read transaction on a reader thread."""
        return await self._run(self._readers, self.read_sync, fn)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a write transaction on the writer path (grouped, if so made)."""
        if not self._grouped:
            return await self._run(self._writer, self.write_sync, fn)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._queue_lock:
            self._queued.append(_Job(fn, contextvars.copy_context(), future, loop))
            start, self._draining = not self._draining, True
        if start:
            try:
                self._writer.submit(self._drain)
            except RuntimeError:  # closed: nothing will drain the queue
                with self._queue_lock:
                    self._queued.clear()
                    self._draining = False
                raise
        return await future

    def _drain(self) -> None:
        """On the writer thread: run queued writes in groups until none is left."""
        while True:
            with self._queue_lock:
                jobs = [self._queued.popleft() for _ in range(min(GROUP_MAX, len(self._queued)))]
                if not jobs:
                    self._draining = False
                    return
            self._run_group(jobs)

    def _run_group(self, jobs: list[_Job]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        if len(jobs) == 1:
            job = jobs[0]
            try:
                outcomes.append((True, job.context.run(self.write_sync, job.fn)))
            except BaseException as exc:  # the caller's to see, never the writer thread's
                outcomes.append((False, exc))
        else:
            self.groups += 1
            try:
                outcomes = self.write_sync(functools.partial(_together, jobs))
            except _Refused:  # rolled back whole: again, each write in a savepoint
                try:
                    outcomes = self.write_sync(functools.partial(_isolated, jobs))
                except BaseException as exc:
                    outcomes = [(False, exc)] * len(jobs)
            except BaseException as exc:  # nothing of the group was kept
                outcomes = [(False, exc)] * len(jobs)
        for job, (ok, value) in zip(jobs, outcomes, strict=True):
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                job.loop.call_soon_threadsafe(_settle, job.future, ok, value)

    @staticmethod
    async def _run(
        pool: ThreadPoolExecutor,
        runner: Callable[[Callable[[Connection], T]], T],
        fn: Callable[[Connection], T],
    ) -> T:
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, ctx.run, runner, fn)

    def close(self) -> None:
        """Stop the threads and close every pooled connection."""
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._kept_lock:
            kept, self._kept = self._kept, []
        for conn in kept:
            conn.close()
        self.engine.dispose()
