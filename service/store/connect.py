"""Connecting: the engine for a URL, with the pool it needs and, on SQLite, the settings every
connection gets (WAL journal, ``synchronous=FULL``, a busy timeout, foreign keys) and files only
their owner may read."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL

from service.store.key_changes import KEY_CHANGES_SUFFIX

SQLITE_BUSY_TIMEOUT_MS = 15_000
# Requests use the database from FastAPI's thread pool (40 threads): with SQLAlchemy's default pool
# (5 kept, 10 more opened and closed on demand) a busy server opened and closed connections all
# the time, which cost PostgreSQL ~1.5 ms of CPU per evaluation. Up to 40 connections per worker.
_ENGINE_OPTIONS = {"hide_parameters": True, "pool_size": 20, "max_overflow": 20}
# SQLite decides at open time whether a connection may write; after these errors the connection is
# dropped so that the next request opens the file afresh, e.g. once it is writable again.
SQLITE_FILE_ERRORS = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR")


def with_driver(url: URL) -> URL:
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
    """The database and its -wal, -shm and -keys files readable by their owner only (0600), in a folder
    created 0700: they hold cases. SQLite creates -wal and -shm with the database file's mode,
    so the file is created here, empty, before SQLite opens it; existing files are tightened."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", KEY_CHANGES_SUFFIX))):
        try:
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)
        except FileNotFoundError:
            pass


def create_database_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        # No pre-ping: it cost a round trip per checkout (~0.13 ms of CPU, ~0.4 ms of waiting on the
        # event loop under load). A connection found broken empties the pool instead, and the key
        # check, the first statement of every request, tries once more on a fresh connection.
        return create_engine(url, **_ENGINE_OPTIONS)
    if (path := sqlite_file(url)) is not None:
        _make_private(path)
    engine = create_engine(url, **_ENGINE_OPTIONS)
    event.listen(engine, "connect", configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    event.listen(engine, "handle_error", _drop_connection_on_file_error)
    return engine


def configure_sqlite_connection(dbapi_connection, _connection_record) -> None:
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
    if getattr(context.original_exception, "sqlite_errorname", "").startswith(SQLITE_FILE_ERRORS):
        context.is_disconnect = True
