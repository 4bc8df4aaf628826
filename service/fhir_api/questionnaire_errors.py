"""What ``$log-questionnaire-errors`` keeps: each OperationOutcome a DTR client reported about a
questionnaire, by the questionnaire's url and version (a face-only table, created by migration
``0004_dtr``). DTR forbids PHI in these outcomes; they are stored as sent and never logged."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

from sqlalchemy import DateTime, Index, String, Text, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from service.store.database import Database
from service.store.tables import Base, utc_now


class QuestionnaireError(Base):
    __tablename__ = "dtr_questionnaire_errors"
    __table_args__ = (Index(None, "url", "version", "received_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    version: Mapped[str] = mapped_column(String(200))  # "" when the canonical names none
    key_id: Mapped[str] = mapped_column(String(32))
    outcome_json: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))


def save_error(db: Database, url: str, version: str, key_id: str, outcome: dict[str, Any]) -> str:
    identifier = str(uuid.uuid4())
    with db.write() as connection:
        connection.execute(insert(QuestionnaireError), {
            "id": identifier, "url": url, "version": version, "key_id": key_id,
            "outcome_json": json.dumps(outcome, separators=(",", ":"), ensure_ascii=False), "received_at": utc_now()})
    return identifier


def list_errors(db: Database, url: str, version: str | None, limit: int = 500) -> list[dict[str, Any]]:
    """The outcomes logged against a questionnaire (one version, or every version), newest first."""
    query = select(QuestionnaireError).where(QuestionnaireError.url == url)
    if version is not None:
        query = query.where(QuestionnaireError.version == version)
    with db.session() as session:
        rows = session.scalars(query.order_by(QuestionnaireError.received_at.desc(), QuestionnaireError.id).limit(limit))
        return [{"id": r.id, "version": r.version, "received_at": r.received_at,
                 "outcome": json.loads(r.outcome_json)} for r in rows]
