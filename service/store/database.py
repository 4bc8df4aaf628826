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
import base64
import datetime
import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    and_,
    create_engine,
    delete,
    event,
    insert,
    Select,
    or_,
    select,
    text,
)
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

if TYPE_CHECKING:
    from service.store.idempotency import IdempotencyClaim

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
        self.writer = GroupCommit(self.insert_rows)
        self._compiled: dict[tuple[Any, tuple[str, ...] | None], _DriverSql] = {}

    def __str__(self) -> str:
        """Where the data is: the SQLite file, or the URL without its password."""
        path = sqlite_file(self.url)
        return str(path.resolve()) if path else self.url.render_as_string(hide_password=True)

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

    # --- the two statements of every request, on the driver directly --------------------------
    # SQLAlchemy's Connection costs ~150-450 µs a statement here (cache keys, events, result
    # objects): more than the key check and an evaluation's insert themselves. These two run
    # their SQL, compiled once, on a pooled driver connection; errors are still raised as
    # SQLAlchemy's (so they map to 503 like any other), and a broken connection leaves the pool.

    def first(self, statement: Select, **values: Any) -> tuple | None:
        """The first row of a select (~20 µs for an indexed lookup on SQLite). On PostgreSQL it
        runs outside a transaction (as SQLAlchemy's pre-ping does), so that returning the
        connection to the pool costs no ROLLBACK round trip."""
        compiled = self._driver_sql(statement)
        try:
            return self._first(compiled, values)
        except DBAPIError as error:  # a connection found broken (the database restarted, say): once more
            if not error.connection_invalidated:
                raise
            return self._first(compiled, values)

    def _first(self, compiled: _DriverSql, values: dict[str, Any]) -> tuple | None:
        with self._driver_cursor(compiled.sql) as cursor:
            connection = cursor.connection
            postgresql = self.url.get_backend_name() == "postgresql"
            if postgresql:
                connection.autocommit = True
            try:
                cursor.execute(compiled.sql, compiled.parameters(values))
                return cursor.fetchone()
            finally:
                if postgresql and not connection.closed:
                    connection.autocommit = False

    def insert_rows(self, by_table: dict[Table, list[dict[str, Any]]]) -> None:
        """Insert rows in one transaction, tables in the order given; returns once committed
        (durably: see the module docstring).

        PostgreSQL: one executemany a table (psycopg pipelines it). SQLite: one multi-row INSERT a
        table, and for a single table no BEGIN or COMMIT either, since a lone statement is its own
        transaction: every call into SQLite lets other threads take the GIL, and the event loop
        then waits to get it back, so the writer makes as few as it can (one, typically)."""
        with self._write_lock, self._driver_cursor("INSERT") as cursor:
            if self.url.get_backend_name() != "sqlite":
                for table, rows in by_table.items():
                    compiled = self._driver_sql(table, tuple(rows[0]))
                    cursor.executemany(compiled.sql, [compiled.parameters(row) for row in rows])
                cursor.connection.commit()
                return
            statements = []
            for table, rows in by_table.items():
                compiled = self._driver_sql(table, tuple(rows[0]))
                values = f"({', '.join('?' * len(compiled.names))})"
                sql = f"{compiled.sql.partition(' VALUES ')[0]} VALUES {', '.join([values] * len(rows))}"
                statements.append((sql, [value for row in rows for value in compiled.parameters(row)]))
            if len(statements) == 1:
                cursor.execute(*statements[0])  # the driver's own transaction handling is off (see below)
                return
            cursor.execute("BEGIN")
            for statement in statements:
                cursor.execute(*statement)
            cursor.execute("COMMIT")

    def _driver_sql(self, statement: Select | Table, columns: tuple[str, ...] | None = None) -> _DriverSql:
        """A select, or the insert into a table of the given columns, compiled once."""
        compiled = self._compiled.get((statement, columns))
        if compiled is None:
            query = statement.insert() if isinstance(statement, Table) else statement
            compiled = self._compiled[statement, columns] = _DriverSql(query, self.engine.dialect, columns)
        return compiled

    @contextmanager
    def _driver_cursor(self, what: str) -> Iterator[Any]:
        dialect = self.engine.dialect
        try:
            connection = self.engine.raw_connection()
        except dialect.loaded_dbapi.Error as error:  # could not connect
            raise DBAPIError.instance(None, None, error, dialect.loaded_dbapi.Error, dialect=dialect) from error
        try:
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        except dialect.loaded_dbapi.Error as error:
            invalidated = dialect.is_disconnect(error, connection.dbapi_connection, None) or getattr(
                error, "sqlite_errorname", "").startswith(_SQLITE_FILE_ERRORS)
            if invalidated:  # and the pool's idle connections with it: they are likely as broken
                connection.invalidate(error)
                self.engine.pool.dispose()
            raise DBAPIError.instance(what, None, error, dialect.loaded_dbapi.Error, hide_parameters=True,
                                      connection_invalidated=invalidated, dialect=dialect) from error
        finally:
            connection.close()  # back to the pool, which rolls back whatever was not committed

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

    def is_ready(self) -> bool:
        """Whether the database answers and holds the schema (any error means no, and is logged)."""
        try:
            with self.engine.connect() as connection:
                connection.execute(select(Evaluation.id).limit(1))
        except Exception as error:  # noqa: BLE001 - not ready, whatever the reason
            logging.getLogger("service").warning("database not ready: %s", getattr(error, "orig", None) or type(error).__name__)
            return False
        return True

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


class _DriverSql:
    """A statement compiled once for a dialect, with how to lay out its parameters for the driver
    (SQLAlchemy's bind processing included, e.g. timestamps as SQLite stores them)."""

    def __init__(self, statement: Any, dialect: Any, columns: tuple[str, ...] | None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(columns) if columns else None)
        self.sql = compiled.string
        self.positional = compiled.positional
        self.names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        binds = compiled.binds
        processors = {name: binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names}
        self.processors = {name: processor for name, processor in processors.items() if processor}

    def parameters(self, values: dict[str, Any]) -> tuple | dict[str, Any]:
        if self.processors:
            values = {**values, **{name: process(values[name]) for name, process in self.processors.items()}}
        if self.positional:
            return tuple([values[name] for name in self.names])
        return values


class GroupCommit:
    """One writer thread that commits whatever rows are waiting, together.

    ``commit(rows)`` (blocking) and ``await commit_async(rows)`` queue one evaluation's rows (with
    any rows that must be committed with it, parents first) and return once a commit holding them
    has returned, or raise that commit's error. The writer takes every item waiting (up to
    ``GROUP_COMMIT_MAX``) into one transaction: under load one fsync serves a whole batch, and an
    item never waits for more than the commit in progress. Should a batch fail on one item's rows
    (a duplicate key, say), each item is retried in a transaction of its own so that only that one
    fails; when the database is unavailable, every item of the batch fails with that error.
    Waiters on an event loop are woken with one call per batch, not one per item.
    """

    def __init__(self, insert: Callable[[dict[Table, list[dict[str, Any]]]], None]) -> None:
        self._insert_rows = insert
        self._lock = threading.Lock()
        self._writer: tuple[threading.Thread, queue.SimpleQueue] | None = None

    def submit(self, rows: Rows) -> Future:
        """Queue ``rows``; the future completes once they are committed (or fails as the commit did)."""
        future: Future = Future()
        self._put((rows, future))
        return future

    def commit(self, rows: Rows) -> None:
        """When this returns, ``rows`` are committed."""
        self.submit(rows).result()

    async def commit_async(self, rows: Rows) -> None:
        """Like :meth:`commit`, waiting without blocking the event loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._put((rows, (loop, future)))
        await future

    def close(self) -> None:
        """Commit what is queued, then stop the writer (a later commit starts a new one)."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            thread, waiting = writer
            waiting.put(None)
            thread.join()

    def _put(self, item: tuple[Rows, Any]) -> None:
        with self._lock:  # started on first use: a process that forks workers never starts one
            if self._writer is None:
                waiting: queue.SimpleQueue = queue.SimpleQueue()
                thread = threading.Thread(target=self._run, args=(waiting,), name="group-commit", daemon=True)
                thread.start()
                self._writer = thread, waiting
            self._writer[1].put(item)

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
            outcomes: list[BaseException | None] = [None] * len(batch)
            try:
                self._commit_batch([rows for rows, _ in batch], outcomes)
            except BaseException as error:  # never leave a caller waiting, whatever happened
                outcomes = [error] * len(batch)
            _settle([waiter for _, waiter in batch], outcomes)

    def _commit_batch(self, items: list[Rows], outcomes: list[BaseException | None]) -> None:
        try:
            self._insert(items)
        except (OperationalError, InterfaceError, PoolTimeoutError) as error:
            outcomes[:] = [error] * len(items)
        except Exception as error:
            if len(items) == 1:
                outcomes[0] = error
                return
            for index, rows in enumerate(items):
                try:
                    self._insert([rows])
                except Exception as own_error:
                    outcomes[index] = own_error

    def _insert(self, items: list[Rows]) -> None:
        by_table: dict[Table, list[dict[str, Any]]] = {}
        for rows in items:
            for table, row in rows:
                by_table.setdefault(table, []).append(row)
        self._insert_rows(by_table)


def _settle(waiters: list[Any], outcomes: list[BaseException | None]) -> None:
    """Answer each waiter: threads at once, each event loop with one call for all of its waiters."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, BaseException | None]]] = {}
    for waiter, outcome in zip(waiters, outcomes):
        if isinstance(waiter, Future):
            if outcome is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(outcome)
        else:
            loop, future = waiter
            by_loop.setdefault(loop, []).append((future, outcome))
    for loop, answers in by_loop.items():
        try:
            loop.call_soon_threadsafe(_answer, answers)
        except RuntimeError:  # that loop has closed: nobody is waiting any more
            pass


def _answer(answers: list[tuple[asyncio.Future, BaseException | None]]) -> None:
    for future, outcome in answers:
        if future.done():  # cancelled meanwhile (the client went away)
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)


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


def save_evaluation(db: Database, *, idempotency: IdempotencyClaim | None = None, **evaluation: str) -> bool:
    """Store an evaluation (keywords of :func:`evaluation_row`); when this returns True, it is
    committed. Without ``idempotency``: by group commit. With it: in a transaction of its own
    that also records its Idempotency-Key, so both are stored or neither; False, nothing stored,
    when another request has claimed the key first."""
    table, row = evaluation_row(**evaluation)
    if idempotency is None:
        db.writer.commit([(table, row)])
        return True
    with db.write() as connection:
        connection.execute(insert(table), row)
        if not idempotency.record(connection, row["id"], row["created_at"]):
            connection.execute(delete(table).where(table.c.id == row["id"]))
            return False
    return True


def get_evaluation_result(db: Database, evaluation_id: str) -> str | None:
    """The stored result JSON text, byte for byte as first returned; None if there is none."""
    if not storable(evaluation_id):
        return None
    with db.session() as session:
        return session.scalar(select(Evaluation.result_json).where(Evaluation.id == evaluation_id))


def get_evaluation_case(db: Database, evaluation_id: str) -> str | None:
    """The stored case JSON text an evaluation was made from; None if there is none."""
    if not storable(evaluation_id):
        return None
    with db.session() as session:
        return session.scalar(select(Evaluation.case_json).where(Evaluation.id == evaluation_id))


class InvalidCursor(ValueError):
    """A paging cursor this service did not hand out."""


@dataclass(frozen=True)
class Page:
    results: list[str]
    next_cursor: str | None  # None on the last page


def list_evaluation_results(db: Database, external_id: str, limit: int = 50, cursor: str | None = None) -> Page:
    """Stored result JSON texts for an intake reference, newest first, ``limit`` at a time.

    Ordered by storage time, then id, so that results stored in the same microsecond keep one
    order and a page never repeats or skips one; ``cursor`` (opaque: the position of the last
    result of the page before) continues after that page.
    """
    if not storable(external_id):
        return Page([], None)
    query = select(Evaluation.created_at, Evaluation.id, Evaluation.result_json).where(
        Evaluation.external_id == external_id
    )
    if cursor is not None:
        created_at, evaluation_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                Evaluation.created_at < created_at,
                and_(Evaluation.created_at == created_at, Evaluation.id < evaluation_id),
            )
        )
    query = query.order_by(Evaluation.created_at.desc(), Evaluation.id.desc()).limit(limit + 1)
    with db.session() as session:
        rows = session.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([row.result_json for row in rows], _encode_cursor(rows[-1].created_at, rows[-1].id) if more else None)


def _encode_cursor(created_at: datetime.datetime, evaluation_id: str) -> str:
    position = json.dumps([as_utc(created_at).isoformat(), evaluation_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime.datetime, str]:
    try:
        moment, evaluation_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        created_at = datetime.datetime.fromisoformat(moment)
    except (ValueError, TypeError) as error:  # binascii.Error, JSON, unpacking and dates are ValueErrors
        raise InvalidCursor("not a cursor this service handed out") from error
    if created_at.tzinfo is None or not isinstance(evaluation_id, str) or not storable(evaluation_id):
        raise InvalidCursor("not a cursor this service handed out")
    return created_at, evaluation_id


def _with_driver(url: URL) -> URL:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's default driver is psycopg2)."""
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    return url


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL; None for other databases and in-memory ones."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return None if url.database.startswith("file:") else Path(url.database)


def _make_private(path: Path) -> None:
    """The database and its -wal and -shm files readable by their owner only (0600), in a folder
    created 0700: they hold cases. SQLite creates -wal and -shm with the database file's mode,
    so the file is created here, empty, before SQLite opens it; existing files are tightened."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)
        except FileNotFoundError:
            pass


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        # No pre-ping: it cost a round trip per checkout (~0.13 ms of CPU, ~0.4 ms of waiting on the
        # event loop under load). A connection found broken empties the pool instead, and the key
        # check, the first statement of every request, tries once more on a fresh connection.
        return create_engine(url, **_ENGINE_OPTIONS)
    if (path := sqlite_file(url)) is not None:
        _make_private(path)
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
