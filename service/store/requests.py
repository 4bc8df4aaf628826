"""The tables of requests (migration ``0006_requests``): one row per prior-authorization request
under review, and the secret its ids are made with. What they mean, and every query on them,
is ``service/requests``'s; this module only declares them and the one statement the group commit
runs for them.

A request is opened by an upsert riding the evaluation's group commit (parents first): its id is
made from (organization, policy, external_id) with a keyed hash, so two first submissions at once
compute the same id, and the primary key turns the second into a resubmission instead of a second
request. No lookup happens on the hot path.

The primary key is the unique constraint on (organization, external_id, policy): the id is a
function of that triple. There is deliberately no second unique index on the triple itself:
PostgreSQL's ``ON CONFLICT`` arbitrates on one index, and two first submissions committed at
once by two transactions then failed on the other one ("duplicate key value violates unique
constraint"; tests/test_requests_grouping.py caught it).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Insert,
    Integer,
    String,
    and_,
    case,
    literal_column,
    or_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from service.store.tables import Base

PRIORITIES = ("standard", "expedited")
STATES = ("open", "decided")


class Request(Base):
    __tablename__ = "requests"
    __table_args__ = (
        CheckConstraint("priority IN ('standard', 'expedited')", name="priority"),
        CheckConstraint("state IN ('open', 'decided')", name="state"),
        # The queue: open (or decided) requests, most urgent first; every state; one reviewer's.
        Index(None, "state", "due_at", "id"),
        Index(None, "due_at", "id"),
        Index(None, "assigned_key_id", "due_at", "id"),
        Index(None, "state", "priority", "due_at", "id"),
        Index(None, "state", "policy_id", "due_at", "id"),
        # Search by a case-insensitive prefix: LIKE 'p%' on PostgreSQL, GLOB 'p*' on SQLite.
        Index(None, "external_id_folded", postgresql_ops={"external_id_folded": "text_pattern_ops"}),
        # Metrics: requests received in a period.
        Index(None, "received_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization: Mapped[str] = mapped_column(String(128))
    external_id: Mapped[str] = mapped_column(String(128))
    external_id_folded: Mapped[str] = mapped_column(String(512))  # str.casefold(): 'ß' -> 'ss'
    policy_id: Mapped[str] = mapped_column(String(128))
    priority: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16))
    submissions: Mapped[int] = mapped_column(Integer)
    # No foreign key: the request row is written before its first evaluation (parents first).
    latest_evaluation_id: Mapped[str] = mapped_column(String(64))
    latest_outcome: Mapped[str | None] = mapped_column(String(32))  # None only for a row grouped from odd data
    latest_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    assigned_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    assigned_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True))


class RequestIdSecret(Base):
    """One row: the key of the HMAC that makes request ids (written by the migration)."""

    __tablename__ = "request_id_secret"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    secret: Mapped[str] = mapped_column(String(64))


def make_request_id(secret: bytes, organization: str, policy_id: str, external_id: str) -> str:
    """The id of the request of ``external_id`` from ``organization`` under ``policy_id``: the
    keyed hash ``service/requests/ids.py`` describes (the migration grouping stored evaluations
    makes the same ids with it)."""
    identity = json.dumps([organization, policy_id, external_id], ensure_ascii=False).encode()
    raw = bytearray(hmac.new(secret, identity, hashlib.sha256).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122/9562 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_UPSERTS: dict[str, Insert] = {}


def request_upsert(dialect_name: str) -> Insert:
    """The statement a submission's request row is written with (one per dialect, made once, so
    the group commit compiles it once): the first submission inserts the row; a later one counts
    itself, reopens the request, and becomes its latest submission if it is the newest (by time,
    then id: two workers may commit out of order). ``received_at`` stays the first's; a later
    submission marked expedited makes a standard request expedited, due 72 hours (as configured)
    after that submission if that is sooner (the row carries that submission's own due time);
    a later ``standard`` never slows an expedited one down. Constants are SQL literals, not parameters: the group commit binds only the row's columns."""
    statement = _UPSERTS.get(dialect_name)
    if statement is None:
        dialect_insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
        table = Request.__table__
        statement = dialect_insert(table)
        new = statement.excluded
        escalated = and_(new.priority == literal_column("'expedited'"), table.c.priority == literal_column("'standard'"))
        sooner = case((and_(escalated, new.due_at < table.c.due_at), new.due_at), else_=table.c.due_at)
        newer = or_(new.latest_at > table.c.latest_at,
                    and_(new.latest_at == table.c.latest_at, new.latest_evaluation_id > table.c.latest_evaluation_id))
        statement = _UPSERTS[dialect_name] = statement.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "submissions": table.c.submissions + literal_column("1"),
                "state": literal_column("'open'"),
                "priority": case((escalated, new.priority), else_=table.c.priority),
                "due_at": sooner,
                "latest_evaluation_id": case((newer, new.latest_evaluation_id), else_=table.c.latest_evaluation_id),
                "latest_outcome": case((newer, new.latest_outcome), else_=table.c.latest_outcome),
                "latest_at": case((newer, new.latest_at), else_=table.c.latest_at),
            },
        )
    return statement
