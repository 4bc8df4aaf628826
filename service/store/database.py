"""The database: one engine and session factory per URL, migrations, and the driver-level path of
the two statements every request runs.

SQLite by default (WAL journal, ``synchronous=FULL``: a commit that has returned survives a
hard kill), PostgreSQL through psycopg 3. The schema is owned by the Alembic migrations in
``service/store/migrations``, which :meth:`Database.migrate` applies.

Evaluations are stored by group commit (``store/group_commit.py``); the tables are in
``store/tables.py``, what is stored and read of an evaluation in ``store/evaluations.py``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, Insert, Select, Table, TextClause, event, select, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from service.store.connect import (
    SQLITE_FILE_ERRORS,
    configure_sqlite_connection,
    create_database_engine,
    sqlite_file,
    with_driver,
)
from service.store.driver_sql import DriverSql
from service.store.fanout import Fanouts
from service.store.group_commit import GroupCommit
from service.store.key_changes import KEY_CHANGES_SUFFIX, KeyChanges
from service.store.tables import Evaluation

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every server sharing a PostgreSQL database.
_MIGRATION_LOCK_KEY = 0x636F7665
# Stored rows hold whole cases: SQL logging (INFO statements, DEBUG rows) stays off even when an
# operator turns DEBUG on for "sqlalchemy" or the root logger; parameters are hidden from errors.
logging.getLogger("sqlalchemy.engine.Engine").setLevel(logging.WARNING)


class Database:
    """An engine and session factory for one database URL (``sqlite:///…`` or ``postgresql://…``)."""

    def __init__(self, url: str) -> None:
        self.url = with_driver(make_url(url))
        self.engine = create_database_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite allows one writer at a time, and writers that find the file locked back off by
        # sleeping; queueing this process's writers on a lock instead keeps throughput up.
        self._write_lock = threading.Lock() if self.url.get_backend_name() == "sqlite" else nullcontext()
        self.writer = GroupCommit(self.insert_rows)
        self._compiled: dict[tuple[Any, tuple[str, ...] | None], DriverSql] = {}
        self._fanouts = Fanouts()
        self._fanout_connection: Any = None  # the writer's own, for fan-outs (store/fanout.py)
        self._fanouts_made: set[str] = set()
        if self.url.get_backend_name() == "sqlite":  # (any engine event slows every Core statement down)
            event.listen(self.engine, "engine_disposed", self._engine_disposed)
        self._kept = threading.local()  # the connection an event loop's thread keeps (see first)
        self._kept_connections: list[Any] = []
        self._kept_lock = threading.Lock()
        # Key rows kept until a key changes (SQLite only: one host; see store/key_changes.py).
        self.key_changes = _key_changes_of(self.url)

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

    # --- the statements of every request, on the driver directly ------------------------------
    # SQLAlchemy's Connection costs ~150-450 µs a statement here (cache keys, events, result
    # objects): more than the key check and an evaluation's insert themselves. These run their
    # SQL, compiled once, on a driver connection; errors are still raised as SQLAlchemy's (so
    # they map to 503 like any other), and a broken connection is dropped.

    def first(self, statement: Select | TextClause, **values: Any) -> tuple | None:
        """The first row a statement returns (~20 µs for an indexed lookup on SQLite). On
        PostgreSQL it runs outside a transaction (as SQLAlchemy's pre-ping does). On an event
        loop's thread it runs on a connection that thread keeps (checking a connection out of
        the pool and back cost ~25 µs on SQLite, ~55 µs on PostgreSQL: more than the query);
        elsewhere on a pooled one."""
        compiled = self._driver_sql(statement)
        try:
            return self._first(compiled, values)
        except DBAPIError as error:  # a connection found broken (the database restarted, say): once more
            if not error.connection_invalidated:
                raise
            return self._first(compiled, values)

    def _first(self, compiled: DriverSql, values: dict[str, Any]) -> tuple | None:
        if _on_event_loop():
            with self._loop_cursor(compiled.sql) as cursor:
                cursor.execute(compiled.sql, compiled.parameters(values))
                return cursor.fetchone()
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

    def insert_rows(self, by_table: dict[tuple[Table | Insert, tuple[str, ...]], list[dict[str, Any]]],
                    uniform: bool = False) -> None:
        """Insert rows in one transaction, by (table, the columns the rows give) in the order
        given; returns once committed (durably: see the module docstring). A table may also be an
        INSERT statement of its own (an upsert): its rows are written in the order of their
        ``id``, so that two transactions updating the same rows lock them in one order and never
        deadlock. ``uniform``: the rows are those of items that each hold one row of every table
        (the i-th rows go together), which SQLite writes in one statement (store/fanout.py).

        One multi-row INSERT a table: one round trip, where psycopg's executemany pipeline cost
        the writer ~3 times the CPU in Python (on PostgreSQL an upsert's rows go by executemany when
        two of them name one row: one INSERT may not update a row twice). On SQLite, for a single
        table, no BEGIN or COMMIT either, since a lone statement is its own transaction: every call
        into SQLite lets other threads take the GIL, and the event loop then waits to get it back,
        so the writer makes as few as it can (one, typically)."""
        postgresql = self.url.get_backend_name() != "sqlite"
        if uniform and not postgresql and len(by_table) > 1 and self._insert_fanned_out(by_table):
            return
        statements = []
        for (table, columns), rows in by_table.items():
            compiled = self._driver_sql(table, columns)
            if not isinstance(table, Table):  # an upsert: its rows in the order of their id
                rows = sorted(rows, key=_row_id)
                if postgresql and any(_row_id(a) == _row_id(b) for a, b in zip(rows, rows[1:])):
                    statements.append((compiled.sql, [compiled.parameters(row) for row in rows], True))
                    continue
            values = f"({', '.join(['%s' if postgresql else '?'] * len(compiled.order))})"
            statements.append((compiled.with_values(", ".join([values] * len(rows))), compiled.in_order(rows), False))
        with self._write_lock, self._driver_cursor("INSERT") as cursor:
            if postgresql:
                for sql, parameters, many in statements:
                    (cursor.executemany if many else cursor.execute)(sql, parameters)
                cursor.connection.commit()
                return
            statements = [(sql, parameters) for sql, parameters, _ in statements]
            if len(statements) == 1:
                cursor.execute(*statements[0])  # the driver's own transaction handling is off (see below)
                return
            cursor.execute("BEGIN")
            for statement in statements:
                cursor.execute(*statement)
            cursor.execute("COMMIT")

    def _insert_fanned_out(self, by_table: dict[tuple[Table | Insert, tuple[str, ...]], list[dict[str, Any]]]) -> bool:
        """The batch in one statement (store/fanout.py); False, nothing written, for a shape it cannot take."""
        compiled = [self._driver_sql(table, columns) for table, columns in by_table]
        if (fanout := self._fanouts.of(compiled)) is None:
            return False
        rows = len(next(iter(by_table.values())))
        values = fanout.parameters([target.in_order(rows) for target, rows in zip(compiled, by_table.values())], rows)
        with self._write_lock:
            if self._fanout_connection is None:  # from the pool (its settings, its events), then its own
                self._fanout_connection = self._pooled_connection()
                self._fanout_connection.detach()
                self._fanouts_made = set()
            connection = self._fanout_connection
            with self._cursor(connection, "INSERT", connection.dbapi_connection,
                              lambda _: self._close_fanout_connection()) as cursor:
                if fanout.name not in self._fanouts_made:
                    for ddl in fanout.ddl:
                        cursor.execute(ddl)
                    self._fanouts_made.add(fanout.name)
                cursor.execute(fanout.insert(rows), values)
        return True

    def _engine_disposed(self, _engine: Engine) -> None:
        with self._write_lock:
            self._close_fanout_connection()

    def _close_fanout_connection(self) -> None:
        """Close the writer's own connection (found broken, or the engine disposed of, under the
        write lock): a new one next time."""
        connection, self._fanout_connection = self._fanout_connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def _driver_sql(self, statement: Select | Table | Insert, columns: tuple[str, ...] | None = None) -> DriverSql:
        """A select, or the insert (plain into a table, or a statement of its own) of the given
        columns, compiled once."""
        compiled = self._compiled.get((statement, columns))
        if compiled is None:
            query = statement.insert() if isinstance(statement, Table) else statement
            compiled = self._compiled[statement, columns] = DriverSql(query, self.engine.dialect, columns)
        return compiled

    @contextmanager
    def _driver_cursor(self, what: str) -> Iterator[Any]:
        connection = self._pooled_connection()
        try:
            with self._cursor(connection, what, connection.dbapi_connection, connection.invalidate) as cursor:
                yield cursor
        finally:
            connection.close()  # back to the pool, which rolls back whatever was not committed

    def _pooled_connection(self) -> Any:
        """A driver connection from the pool (SQLAlchemy's proxy); could not connect: raised as SQLAlchemy's."""
        try:
            return self.engine.raw_connection()
        except self.engine.dialect.loaded_dbapi.Error as error:
            raise _not_connected(error, self.engine.dialect) from error

    @contextmanager
    def _loop_cursor(self, what: str) -> Iterator[Any]:
        """A cursor on the connection this thread keeps (opened on first use, outside the pool:
        one a worker's event loop; autocommit on PostgreSQL)."""
        dialect = self.engine.dialect
        connection = getattr(self._kept, "connection", None)
        if connection is None:
            try:
                cargs, cparams = dialect.create_connect_args(self.url)
                connection = dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.Error as error:
                raise _not_connected(error, dialect) from error
            if self.url.get_backend_name() == "sqlite":
                configure_sqlite_connection(connection, None)
            else:
                connection.autocommit = True
            with self._kept_lock:
                self._kept_connections.append(connection)
            self._kept.connection = connection
        with self._cursor(connection, what, connection, self._forget_kept) as cursor:
            yield cursor

    @contextmanager
    def _cursor(self, connection: Any, what: str, dbapi_connection: Any,
                drop: Callable[[Exception], None]) -> Iterator[Any]:
        """A cursor of ``connection``, closed afterwards. The driver's errors are raised as
        SQLAlchemy's, parameters hidden (they map to 503 like any other); a connection one shows
        broken (or, on SQLite, an error of the file) is dropped with ``drop``, and the pool's idle
        connections with it: they are likely as broken."""
        dialect = self.engine.dialect
        try:
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        except dialect.loaded_dbapi.Error as error:
            invalidated = dialect.is_disconnect(error, dbapi_connection, None) or getattr(
                error, "sqlite_errorname", "").startswith(SQLITE_FILE_ERRORS)
            if invalidated:
                drop(error)
                self.engine.pool.dispose()
            raise DBAPIError.instance(what, None, error, dialect.loaded_dbapi.Error, hide_parameters=True,
                                      connection_invalidated=invalidated, dialect=dialect) from error

    def _forget_kept(self, _error: Exception) -> None:
        """Close the connection this thread keeps, found broken: a new one next time."""
        connection, self._kept.connection = self._kept.connection, None
        self._close_kept(connection)

    def _close_kept(self, connection: Any) -> None:
        with self._kept_lock:
            if connection in self._kept_connections:
                self._kept_connections.remove(connection)
        try:
            connection.close()
        except Exception:  # noqa: BLE001 - already broken
            pass

    def migrate(self, revision: str = "head", *, down: bool = False) -> None:
        """Bring the schema up to the newest migration (one line of history: ``alembic heads``
        shows one); safe to run at every start-up. ``down``: back to ``revision`` instead."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        with migration_connection(self.engine) as connection:
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, revision)

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
        for connection in list(self._kept_connections):
            self._close_kept(connection)
        self.engine.dispose()


def _row_id(row: dict[str, Any]) -> Any:
    return row["id"]


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction for migrations, committed when the block ends without error.

    PostgreSQL: under an advisory lock shared by every server (:func:`hold_migration_lock`).
    SQLite: with foreign keys off, as SQLite's own procedure for changing a table asks (a
    migration may rebuild a table others refer to, and the pragma is ignored inside a
    transaction, so it is set before); ``PRAGMA foreign_key_check`` must find nothing before the
    commit, and the connection leaves the pool afterwards rather than go back without them."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                hold_migration_lock(connection)
                yield connection
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").first()):
                    raise RuntimeError(f"a migration left a row of {broken[0]} without the row it refers to")
        finally:
            if sqlite:
                connection.invalidate()


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def hold_migration_lock(connection: Connection) -> None:
    """On PostgreSQL, one migration at a time among every server sharing the database (released
    when the transaction ends); SQLite's write lock does the same for a file."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})


def _key_changes_of(url: URL) -> KeyChanges | None:
    if (path := sqlite_file(url)) is None:
        return None
    try:
        return KeyChanges(path.with_name(path.name + KEY_CHANGES_SUFFIX))
    except OSError:  # a folder this process may not write: every request reads its key
        return None


def _not_connected(error: Exception, dialect: Any) -> DBAPIError:
    return DBAPIError.instance(None, None, error, dialect.loaded_dbapi.Error, dialect=dialect)
