"""What the review page keeps: reviewers' sessions and their notes (tables of migration 0002_review)."""

from __future__ import annotations

import datetime
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, delete, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from service.requests.people import display_name, name_column
from service.review.words import iso
from service.store.database import Database
from service.store.evaluations import get_evaluation_result
from service.store.group_commit import Rows
from service.store.tables import ApiKey, Base, as_utc, storable, utc_now
from service.store.keys import KeyRecord
from service.store.tenancy import Caller

SESSION_IDLE = datetime.timedelta(minutes=30)
SESSION_LIFETIME = datetime.timedelta(hours=8)
SESSION_REFRESH_STEP = datetime.timedelta(minutes=1)
MAX_NOTE_LENGTH = 4000


class ReviewSession(Base):
    __tablename__ = "review_sessions"
    __table_args__ = (Index(None, "expires_at"),)

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))


class ReviewNote(Base):
    __tablename__ = "review_notes"
    __table_args__ = (Index(None, "evaluation_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    evaluation_id: Mapped[str] = mapped_column(ForeignKey("evaluations.id"))
    criterion: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))


# --- sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    """A live session: the reviewer key behind it and the token its forms must carry."""

    key_id: str
    key_label: str | None
    name: str | None
    csrf_token: str
    expires_at: datetime.datetime
    key: KeyRecord  # the reviewer: the caller of the page's reads, as the backend's functions take them

    @property
    def reviewer(self) -> dict[str, str | None]:
        return {"key_id": self.key_id, "name": self.name}


def open_session(db: Database, key_id: str) -> str:
    """A new session for ``key_id``; returns its token (only the token's hash is stored).
    Sessions that have expired are removed on the way."""
    token = secrets.token_urlsafe(32)
    now = utc_now()
    with db.transaction() as session:
        session.execute(delete(ReviewSession).where(ReviewSession.expires_at < now))
        session.add(
            ReviewSession(
                token_sha256=_digest(token),
                key_id=key_id,
                csrf_token=secrets.token_urlsafe(32),
                created_at=now,
                expires_at=now + SESSION_IDLE,
            )
        )
    return token


def find_session(db: Database, token: str | None) -> SignedIn | None:
    """The live session for ``token``, its idle time restarted; None when the token is unknown,
    the session has expired, or its key has been revoked since. A page view writes only when
    the expiry moves by more than a minute (one commit, an fsync on SQLite, per page otherwise)."""
    if not token or len(token) > 128 or not storable(token):
        return None
    now = utc_now()
    digest = _digest(token)
    with db.session() as session:
        row = session.execute(
            select(ReviewSession, ApiKey)
            .join(ApiKey, ApiKey.id == ReviewSession.key_id)
            .where(ReviewSession.token_sha256 == digest)
        ).first()
    if row is None:
        return None
    stored, key = row
    caller = KeyRecord(key.id, key.role, key.label, key.organization, key.name)
    if as_utc(stored.expires_at) <= now or key.revoked_at is not None or not caller.has_role("reviewer"):
        close_session(db, token)
        return None
    expires_at = min(now + SESSION_IDLE, as_utc(stored.created_at) + SESSION_LIFETIME)
    moved = expires_at - as_utc(stored.expires_at)
    if moved > SESSION_REFRESH_STEP or moved < datetime.timedelta(0):
        with db.transaction() as session:
            session.execute(
                update(ReviewSession).where(ReviewSession.token_sha256 == digest).values(expires_at=expires_at)
            )
    else:
        expires_at = as_utc(stored.expires_at)
    return SignedIn(key.id, key.label, display_name(key), stored.csrf_token, expires_at, caller)


def close_session(db: Database, token: str | None) -> None:
    if token and storable(token):
        with db.transaction() as session:
            session.execute(delete(ReviewSession).where(ReviewSession.token_sha256 == _digest(token)))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- evaluations and notes ---------------------------------------------------------------------


def load_result(db: Database, caller: Caller, evaluation_id: str) -> dict[str, Any] | None:
    """A stored result, parsed; None when there is none ``caller`` may read."""
    result_json = get_evaluation_result(db, caller, evaluation_id)
    return None if result_json is None else json.loads(result_json)


def add_note(db: Database, evaluation_id: str, criterion: str | None, text: str, key_id: str,
             also: Rows = ()) -> dict[str, Any]:
    """Append a note (the caller has checked that the evaluation and criterion exist), with the
    rows ``also`` given (the request's audit record) in the same transaction."""
    row = {
        "evaluation_id": evaluation_id,
        "criterion": criterion,
        "text": text,
        "key_id": key_id,
        "created_at": utc_now(),
    }
    with db.write() as connection:
        note_id = connection.execute(insert(ReviewNote).returning(ReviewNote.id), row).scalar_one()
        for table, other in also:
            connection.execute(insert(table), other)
    return _note_dict(note_id, **row)


def list_notes(db: Database, evaluation_id: str) -> list[dict[str, Any]]:
    """An evaluation's notes, oldest first."""
    with db.session() as session:
        notes = session.scalars(
            select(ReviewNote).where(ReviewNote.evaluation_id == evaluation_id).order_by(ReviewNote.id)
        )
        return [
            _note_dict(n.id, n.evaluation_id, n.criterion, n.text, n.key_id, n.created_at) for n in notes
        ]


def _note_dict(
    note_id: int, evaluation_id: str, criterion: str | None, text: str, key_id: str, created_at: datetime.datetime
) -> dict[str, Any]:
    return {
        "id": note_id,
        "evaluation_id": evaluation_id,
        "criterion": criterion,
        "text": text,
        "key_id": key_id,
        "created_at": iso(created_at),
    }


def reviewer_names(db: Database, key_ids: set[str]) -> dict[str, str | None]:
    """Each key's name for people, by the requests' rule (``service.requests.people``), so notes,
    the queue and determinations name a reviewer alike; None for a key without one."""
    if not key_ids:
        return {}
    with db.session() as session:
        return {key_id: name for key_id, name in session.execute(select(ApiKey.id, name_column()).where(ApiKey.id.in_(key_ids)))}
