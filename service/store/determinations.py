"""The table of reviewers' determinations (migration ``0007_determinations``).

Append-only, in the database itself: triggers refuse UPDATE and DELETE on SQLite and PostgreSQL,
so not even a bug or a hand-typed statement can rewrite what a reviewer decided. A correction is
a new row that ``amends`` an earlier one. What a determination may say is
``service/determinations``'s; this module only declares the table.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.store.tables import Base, iso_utc

OUTCOMES = ("approved", "denied", "partially_approved", "pended_for_information", "referred_to_physician_reviewer")
# The outcomes that decide a request (its state becomes ``decided``); the others leave it open.
CLOSING = ("approved", "denied", "partially_approved")


class Determination(Base):
    __tablename__ = "determinations"
    __table_args__ = (
        CheckConstraint(
            "outcome IN ('approved', 'denied', 'partially_approved', 'pended_for_information', "
            "'referred_to_physician_reviewer')",
            name="outcome",
        ),
        CheckConstraint("attestation", name="attested"),
        Index(None, "request_id", "recorded_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    evaluation_id: Mapped[str] = mapped_column(ForeignKey("evaluations.id"))
    outcome: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    criteria_json: Mapped[str] = mapped_column(Text)  # a JSON list of criterion ids
    attestation: Mapped[bool] = mapped_column(Boolean)
    amends: Mapped[str | None] = mapped_column(ForeignKey("determinations.id"))
    reviewer_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    # The reviewer's name as it was when they decided: a record does not change with a key's label.
    reviewer_name: Mapped[str | None] = mapped_column(String(200))
    recorded_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))


def determination_dict(row: Any) -> dict[str, Any]:
    """A stored determination as the API gives it (``row``: a Determination or a row of its columns)."""
    return {
        "id": row.id,
        "request_id": row.request_id,
        "evaluation_id": row.evaluation_id,
        "outcome": row.outcome,
        "reason": row.reason,
        "criteria": json.loads(row.criteria_json),
        "attestation": bool(row.attestation),
        "amends": row.amends,
        "reviewer": {"key_id": row.reviewer_key_id, "name": row.reviewer_name},
        "recorded_at": iso_utc(row.recorded_at),
    }
