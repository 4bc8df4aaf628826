"""The audit trail's table: one row per access to case data, append-only (the database itself
refuses UPDATE and DELETE: triggers of migration ``0009_audit``, on SQLite and PostgreSQL).

A row names who (the key, or the CDS client), their organization, what was done to which
resource id, the HTTP status and the client's address; never a case value. Rows are written by
``service/audit`` (with the request's own transaction, or by the group-commit writer) and read
here, newest first, by the one cursor pager.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, Index, Integer, PrimaryKeyConstraint, String, Table, select
from sqlalchemy.orm import Mapped, mapped_column

from service.store.database import Database
from service.store.paging import Page, newest_first
from service.store.tables import ORGANIZATION_LENGTH, Base, storable, utc_now

RESOURCE_ID_LENGTH = 128


class AuditRecord(Base):
    __tablename__ = "audit_events"
    # Keyed by (at, id), the order records are appended and read in; on SQLite the table is that
    # key (WITHOUT ROWID), so a record is one insert at the end of one B-tree, plus its actor's
    # index (which also grows at each actor's end). An index on resource_id (a new evaluation's
    # random id, for every evaluation stored) would take a random page per record, about a third
    # of the audit's cost per stored evaluation: a search by resource_id walks the period asked for.
    __table_args__ = (PrimaryKeyConstraint("at", "id"), Index(None, "actor_key_id", "at"),
                      {"sqlite_with_rowid": False})

    at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    id: Mapped[str] = mapped_column(String(36))  # a UUIDv7 (audit/record.py): unique, in time order
    # Not foreign keys: a record outlives whatever it names, and must never stop a write.
    actor_key_id: Mapped[str | None] = mapped_column(String(32))
    actor_name: Mapped[str | None] = mapped_column(String(200))
    actor_role: Mapped[str | None] = mapped_column(String(16))
    actor_client: Mapped[str | None] = mapped_column(String(512))  # a CDS Hooks client's issuer
    organization: Mapped[str | None] = mapped_column(String(ORGANIZATION_LENGTH))
    action: Mapped[str] = mapped_column(String(16))
    resource: Mapped[str] = mapped_column(String(16))
    resource_id: Mapped[str | None] = mapped_column(String(RESOURCE_ID_LENGTH))
    status: Mapped[int] = mapped_column(Integer)
    client_ip: Mapped[str | None] = mapped_column(String(64))


def audit_row(record_id: str, **columns: Any) -> tuple[Table, dict[str, Any]]:
    """A record as a row to insert (with an evaluation's rows, or alone): its id, and the columns
    above but ``at``, which is now."""
    return AuditRecord.__table__, {"id": record_id, "at": utc_now(), **columns}


@dataclass(frozen=True)
class AuditFilter:
    since: datetime.datetime | None = None  # at or after
    until: datetime.datetime | None = None  # before
    actor: str | None = None  # a key id
    resource_id: str | None = None


def list_audit_records(db: Database, where: AuditFilter, limit: int, cursor: str | None) -> Page:
    """Records matching ``where`` (each a dict of the columns), newest first, ``limit`` at a time
    (``cursor`` as handed out). Only auditors read the trail, and they read every organization's."""
    if not all(storable(value) for value in (where.actor, where.resource_id) if value is not None):
        return Page([], None)  # no record holds a NUL character
    query = select(*AuditRecord.__table__.c)
    if where.since is not None:
        query = query.where(AuditRecord.at >= where.since)
    if where.until is not None:
        query = query.where(AuditRecord.at < where.until)
    if where.actor is not None:
        query = query.where(AuditRecord.actor_key_id == where.actor)
    if where.resource_id is not None:
        query = query.where(AuditRecord.resource_id == where.resource_id)
    with db.session() as session:
        page = newest_first(session, query, AuditRecord.at, AuditRecord.id, limit, cursor)
    return Page([row._asdict() for row in page.results], page.next_cursor)
