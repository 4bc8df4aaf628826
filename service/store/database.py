"""Durable storage: every accepted evaluation exactly as it was returned, and API keys.

SQLite by default (WAL journal, ``synchronous=FULL``: a commit that has returned survives a
hard kill), PostgreSQL through psycopg 3. The schema is owned by the Alembic migrations in
``service/store/migrations``, which :meth:`Database.migrate` applies.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
    Text,
    and_,
    create_engine,
    delete,
    event,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.engine import URL, Connection, make_url
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


def save_evaluation(
    db: Database,
    *,
    evaluation_id: str,
    external_id: str,
    policy_id: str,
    policy_version: str,
    key_id: str,
    case_json: str,
    result_json: str,
    idempotency: IdempotencyClaim | None = None,
) -> bool:
    """Store an evaluation; when this returns True, the row is committed. With ``idempotency``
    its Idempotency-Key is recorded in the same transaction, and both are stored or neither:
    False, nothing stored, when another request has claimed the key first."""
    row = {
        "id": evaluation_id,
        "external_id": external_id,
        "policy_id": policy_id,
        "policy_version": policy_version,
        "key_id": key_id,
        "case_json": case_json,
        "result_json": result_json,
        "created_at": utc_now(),
    }
    with db.write() as connection:
        connection.execute(insert(Evaluation), row)
        if idempotency is not None and not idempotency.record(connection, evaluation_id, row["created_at"]):
            connection.execute(delete(Evaluation).where(Evaluation.id == evaluation_id))
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
        return create_engine(url, pool_pre_ping=True, **_ENGINE_OPTIONS)
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
