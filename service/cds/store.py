"""What CDS Hooks keeps in the database: the token ids seen (so a token is never accepted twice,
whichever worker process it reaches), the feedback clients send, and one ``api_keys`` row per
trusted client, so that the evaluations a client's calls store name who sent them like any other.

Tables are created by migration ``0002_cds``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import secrets
import uuid
from typing import Any

from sqlalchemy import DateTime, Index, String, Text, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from service.store.database import Database
from service.store.tables import ApiKey, Base, utc_now

MAX_LABEL_LENGTH = 200


class CdsTokenId(Base):
    """A ``jti`` accepted from a client, kept until its token has expired."""

    __tablename__ = "cds_token_ids"
    __table_args__ = (Index(None, "expires_at"),)

    # SHA-256 of issuer and jti: fixed length, whatever a client sends.
    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))


class CdsFeedback(Base):
    __tablename__ = "cds_feedback"
    __table_args__ = (Index(None, "service_id", "received_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(200))
    client: Mapped[str] = mapped_column(String(32))  # the client's api_keys id
    card: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))
    outcome_timestamp: Mapped[str] = mapped_column(String(64))
    feedback_json: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))


def remember_token_id(db: Database, issuer: str, jti: str, expires_at: datetime.datetime) -> bool:
    """Record a token id; False when it was already recorded (a replay). Expired ids are dropped."""
    digest = hashlib.sha256(json.dumps([issuer, jti]).encode()).hexdigest()
    try:
        with db.write() as connection:
            connection.execute(delete(CdsTokenId).where(CdsTokenId.expires_at < utc_now()))
            connection.execute(insert(CdsTokenId), {"id_sha256": digest, "expires_at": expires_at})
    except IntegrityError:
        return False
    return True


def client_key_id(issuer: str) -> str:
    return "cds" + hashlib.sha256(issuer.encode()).hexdigest()[:29]


def client_key(db: Database, issuer: str) -> str | None:
    """The ``api_keys`` id that stands for a CDS client (made on its first call, role intake, no
    usable secret); None when an operator has revoked it (``coverage-criteria keys revoke``)."""
    key_id = client_key_id(issuer)
    with db.session() as session:
        row = session.get(ApiKey, key_id)
    if row is None:
        try:
            with db.write() as connection:
                connection.execute(insert(ApiKey), {
                    "id": key_id,
                    "role": "intake",
                    "label": f"CDS Hooks client {issuer}"[:MAX_LABEL_LENGTH],
                    "secret_sha256": hashlib.sha256(secrets.token_bytes(32)).hexdigest(),
                    "created_at": utc_now(),
                })
        except IntegrityError:  # another worker made it first
            pass
        return key_id
    return None if row.revoked_at is not None else key_id


def save_feedback(db: Database, service_id: str, client: str, items: list[dict[str, Any]]) -> None:
    """Store each feedback item of one call, all or none."""
    now = utc_now()
    rows = [
        {
            "id": str(uuid.uuid4()),
            "service_id": service_id,
            "client": client,
            "card": item["card"],
            "outcome": item["outcome"],
            "outcome_timestamp": item["outcomeTimestamp"],
            "feedback_json": json.dumps(item, separators=(",", ":"), ensure_ascii=False),
            "received_at": now,
        }
        for item in items
    ]
    if rows:
        with db.write() as connection:
            connection.execute(insert(CdsFeedback), rows)


def list_feedback(db: Database, service_id: str) -> list[dict[str, Any]]:
    """Stored feedback for a service, oldest first (for operators and tests)."""
    with db.session() as session:
        rows = session.scalars(
            select(CdsFeedback).where(CdsFeedback.service_id == service_id)
            .order_by(CdsFeedback.received_at, CdsFeedback.id)
        )
        return [{"client": r.client, **json.loads(r.feedback_json)} for r in rows]
