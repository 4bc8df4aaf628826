"""Durable storage: every accepted evaluation exactly as it was returned, and API keys.

SQLite by default (WAL journal, ``synchronous=FULL``: a commit that has returned survives a
hard kill), PostgreSQL through psycopg 3. The schema is owned by the Alembic migrations in
``service/store/migrations``, which :meth:`Database.migrate` applies.

Evaluations are stored by group commit (:class:`GroupCommit`): one writer thread commits every
evaluation waiting at that moment in one transaction, so one fsync serves many, and each caller
learns that its own rows are durable only once that commit has returned.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    Select,
    select,
    text,
)
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000
# Any constant works; it only has to be the same for every server sharing a PostgreSQL database.
_MIGRATION_LOCK_KEY = 0x636F7665
# Stored rows hold whole cases: SQL logging (INFO statements, DEBUG rows) stays off even when an
# operator turns DEBUG on for "sqlalchemy" or the root logger; parameters are hidden from errors.
logging.getLogger("sqlalchemy.engine.Engine").setLevel(logging.WARNING)
# Requests use the database from FastAPI's thread pool (40 threads): with SQLAlchemy's default pool
# (5 kept, 10 more opened and closed on demand) a busy server opened and closed connections all
# the time, which cost PostgreSQL ~1.5 ms of CPU per evaluation. Up to 40 connections per worker.
_ENGINE_OPTIONS = {"hide_parameters": True, "pool_size": 20, "max_overflow": 20}
# Evaluations one transaction commits at most; more wait for the next (bounds a commit's size).
GROUP_COMMIT_MAX = 256
# SQLite decides at open time whether a connection may write; after these errors the connection is
# dropped so that the next request opens the file afresh, e.g. once it is writable again.
_SQLITE_FILE_ERRORS = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR")


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('intake', 'reviewer')", name="role"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(200))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True))


class Evaluation(Base):
    __tablename__ = "evaluations"
    __table_args__ = (Index(None, "external_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128))
    policy_id: Mapped[str] = mapped_column(String(128))
    policy_version: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    case_json: Mapped[str] = mapped_column(Text)
    result_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))


class Database:
    """An engine and session factory for one database URL (``sqlite:///…`` or ``postgresql://…``)."""

    def __init__(self, url: str) -> None:
        self.url = _with_driver(make_url(url))
        self.engine = _create_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite allows one writer at a time, and writers that find the file locked back off by
        # sleeping; queueing this process's writers on a lock instead keeps throughput up.
        self._write_lock = threading.Lock() if self.url.get_backend_name() == "sqlite" else nullcontext()
        self.writer = GroupCommit(self.write)
        self._compiled: dict[Select, tuple[str, list[str] | None]] = {}

    def session(self) -> Session:
        """A session for reading; use as ``with db.session() as session:``."""
        return self._sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed (durably) when the block ends without error."""
        with self._write_lock, self._sessions.begin() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """Like :meth:`transaction`, for Core statements: a connection, without a session's unit
        of work (which costs about as much CPU as the insert of a whole evaluation)."""
        with self._write_lock, self.engine.begin() as connection:
            yield connection

    def first(self, statement: Select, **values: Any) -> tuple | None:
        """The first row of a select, run on a pooled driver connection with its SQL compiled once
        per statement: ~20 µs for an indexed lookup, against ~150-450 µs through SQLAlchemy's
        Connection (statement cache keys, events, result objects), which mattered for the key check
        on every request. Errors are raised as SQLAlchemy's, as from any other query, and a
        connection found broken is dropped from the pool."""
        compiled = self._compiled.get(statement)
        if compiled is None:
            done = statement.compile(dialect=self.engine.dialect)
            compiled = self._compiled[statement] = (done.string, done.positiontup if done.positional else None)
        sql, names = compiled
        parameters = tuple(values[name] for name in names) if names is not None else values
        dialect = self.engine.dialect
        try:
            connection = self.engine.raw_connection()
        except dialect.loaded_dbapi.Error as error:  # could not connect
            raise DBAPIError.instance(None, None, error, dialect.loaded_dbapi.Error, dialect=dialect) from error
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(sql, parameters)
                return cursor.fetchone()
            finally:
                cursor.close()
        except dialect.loaded_dbapi.Error as error:
            invalidated = dialect.is_disconnect(error, connection.dbapi_connection, None)
            if invalidated:
                connection.invalidate(error)
            raise DBAPIError.instance(sql, None, error, dialect.loaded_dbapi.Error, hide_parameters=True,
                                      connection_invalidated=invalidated, dialect=dialect) from error
        finally:
            connection.close()

    def migrate(self) -> None:
        """Bring the schema up to every newest migration (features add revisions side by side, each off
        0001, so "heads"); safe to run at every start-up."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, "heads")

    def dispose(self) -> None:
        self.writer.close()
        self.engine.dispose()


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def as_utc(moment: datetime.datetime) -> datetime.datetime:
    """SQLite hands timestamps back without a zone; they were stored in UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def storable(value: str) -> bool:
    """PostgreSQL text cannot hold NUL characters, so no stored key has one (on any backend)."""
    return "\x00" not in value


# Rows to insert in one transaction, parents first: (table, column values).
Rows = Sequence[tuple[Table, dict[str, Any]]]


class GroupCommit:
    """One writer thread that commits whatever rows are waiting, together.

    ``submit(rows)`` queues one evaluation's rows (with any rows that must be committed with it)
    and returns a future that completes once a commit holding them has returned, or fails with
    that commit's error. The writer takes every item waiting (up to ``GROUP_COMMIT_MAX``) into one
    transaction: under load, one fsync serves a whole batch, and an item never waits for more than
    the commit in progress. Should a batch fail on one item's rows (a duplicate key, say), each
    item is retried in a transaction of its own so that only that one fails; when the database is
    unavailable, every item of the batch fails with that error and nothing is retried.
    """

    def __init__(self, begin: Callable[[], AbstractContextManager[Connection]]) -> None:
        self._begin = begin
        self._lock = threading.Lock()
        self._writer: tuple[threading.Thread, queue.SimpleQueue] | None = None

    def submit(self, rows: Rows) -> Future:
        future: Future = Future()
        with self._lock:  # started on first use: a process that forks workers never starts one
            if self._writer is None:
                waiting: queue.SimpleQueue[tuple[Rows, Future] | None] = queue.SimpleQueue()
                thread = threading.Thread(target=self._run, args=(waiting,), name="group-commit", daemon=True)
                thread.start()
                self._writer = thread, waiting
            self._writer[1].put((rows, future))
        return future

    def commit(self, rows: Rows) -> None:
        """Submit and wait: when this returns, ``rows`` are committed."""
        self.submit(rows).result()

    async def commit_async(self, rows: Rows) -> None:
        """Submit and wait without blocking the event loop."""
        await asyncio.wrap_future(self.submit(rows))

    def close(self) -> None:
        """Commit what is queued, then stop the writer (a later ``submit`` starts a new one)."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            thread, waiting = writer
            waiting.put(None)
            thread.join()

    def _run(self, waiting: queue.SimpleQueue) -> None:
        stopping = False
        while not stopping:
            item = waiting.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < GROUP_COMMIT_MAX:
                try:
                    item = waiting.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            batch = [(rows, future) for rows, future in batch if future.set_running_or_notify_cancel()]
            try:
                self._commit_batch(batch)
            except BaseException as error:  # never leave a caller waiting, whatever happened
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)

    def _commit_batch(self, batch: list[tuple[Rows, Future]]) -> None:
        try:
            self._insert([rows for rows, _ in batch])
        except (OperationalError, InterfaceError, PoolTimeoutError) as error:
            for _, future in batch:
                future.set_exception(error)
            return
        except Exception as error:
            if len(batch) == 1:
                batch[0][1].set_exception(error)
                return
            for rows, future in batch:
                try:
                    self._insert([rows])
                except Exception as own_error:
                    future.set_exception(own_error)
                else:
                    future.set_result(None)
            return
        for _, future in batch:
            future.set_result(None)

    def _insert(self, items: list[Rows]) -> None:
        """One transaction; each table's rows in one executemany, tables in order of first appearance."""
        by_table: dict[Table, list[dict[str, Any]]] = {}
        for rows in items:
            for table, row in rows:
                by_table.setdefault(table, []).append(row)
        with self._begin() as connection:
            for table, table_rows in by_table.items():
                connection.execute(insert(table), table_rows)


def evaluation_row(
    *,
    evaluation_id: str,
    external_id: str,
    policy_id: str,
    policy_version: str,
    key_id: str,
    case_json: str,
    result_json: str,
) -> tuple[Table, dict[str, Any]]:
    """An evaluation as a row to insert (for :class:`GroupCommit`)."""
    return Evaluation.__table__, {
        "id": evaluation_id,
        "external_id": external_id,
        "policy_id": policy_id,
        "policy_version": policy_version,
        "key_id": key_id,
        "case_json": case_json,
        "result_json": result_json,
        "created_at": utc_now(),
    }


def save_evaluation(db: Database, **evaluation: str) -> None:
    """Store an evaluation (keywords of :func:`evaluation_row`); when this returns, it is committed."""
    db.writer.commit([evaluation_row(**evaluation)])


def get_evaluation_result(db: Database, evaluation_id: str) -> str | None:
    """The stored result JSON text, byte for byte as first returned; None if there is none."""
    if not storable(evaluation_id):
        return None
    with db.session() as session:
        return session.scalar(select(Evaluation.result_json).where(Evaluation.id == evaluation_id))


def list_evaluation_results(db: Database, external_id: str) -> list[str]:
    """Stored result JSON texts for an intake reference, newest first."""
    if not storable(external_id):
        return []
    with db.session() as session:
        return list(
            session.scalars(
                select(Evaluation.result_json)
                .where(Evaluation.external_id == external_id)
                .order_by(Evaluation.created_at.desc(), Evaluation.id.desc())
            )
        )


def _with_driver(url: URL) -> URL:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's default driver is psycopg2)."""
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    return url


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **_ENGINE_OPTIONS)
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **_ENGINE_OPTIONS)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    event.listen(engine, "handle_error", _drop_connection_on_file_error)
    return engine


def _configure_sqlite_connection(dbapi_connection, _connection_record) -> None:
    # The driver's own transaction handling is switched off so that SQLAlchemy's BEGIN (below)
    # covers every statement, DDL included: a migration either applies fully or not at all.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin_sqlite_transaction(connection) -> None:
    connection.exec_driver_sql("BEGIN")


def _drop_connection_on_file_error(context) -> None:
    if getattr(context.original_exception, "sqlite_errorname", "").startswith(_SQLITE_FILE_ERRORS):
        context.is_disconnect = True
