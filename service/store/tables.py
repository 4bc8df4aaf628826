"""The shared tables (API keys, evaluations, Idempotency-Key records) and the clock they are
written with; requests and determinations have modules of their own (``requests``,
``determinations``). Keys and evaluations belong to an organization (migration
``0008_organizations``). A face-only table may stay in its face (``cds/store.py``, ``review/store.py``);
every model joins :data:`Base.metadata` on import (see ``store/__init__.py``)."""

from __future__ import annotations

import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, MetaData, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.store.compressed import CompressedText


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


# Where keys made without ``--org``, and everything stored before organizations, belong.
DEFAULT_ORGANIZATION = "default"
ORGANIZATION_LENGTH = 128


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('intake', 'reviewer', 'auditor')", name="role"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(200))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True))
    # A CDS Hooks client's row is made without one (cds/store.py): its organization is the
    # clients file's, recorded on each evaluation it submits.
    organization: Mapped[str] = mapped_column(String(ORGANIZATION_LENGTH),
                                              server_default=text(f"'{DEFAULT_ORGANIZATION}'"))
    name: Mapped[str | None] = mapped_column(String(200))  # a reviewer's name, as notes and printouts show it


class Evaluation(Base):
    __tablename__ = "evaluations"
    # No index on organization: a list by external_id (reviewers', or an intake key's through
    # store/tenancy) reads the few rows of that reference from its index and filters those; a
    # third index would cost every stored evaluation an insert more.
    __table_args__ = (Index(None, "external_id", "created_at"), Index(None, "request_id", "created_at"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128))
    policy_id: Mapped[str] = mapped_column(String(128))
    policy_version: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    # The submitter's organization: who may read it (store/tenancy.py). Always written by
    # evaluation_row; the default only filled the rows stored before organizations.
    organization: Mapped[str] = mapped_column(String(ORGANIZATION_LENGTH),
                                              server_default=text(f"'{DEFAULT_ORGANIZATION}'"))
    case_json: Mapped[str] = mapped_column(Text)
    # The result as first returned: written as its JSON, stored compressed (a zstd frame); read it
    # only through service.store.evaluations (get_evaluation_result, or result_text on RESULT_COLUMNS).
    result_zstd: Mapped[bytes | None] = mapped_column(CompressedText)
    # Rows stored before migration 0010_compressed_results hold the result's JSON text here, later ones "" (the
    # column stays NOT NULL: SQLite cannot relax that without copying the table).
    result_json_before_0008: Mapped[str] = mapped_column("result_json", Text)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    # The request it opened or resubmitted (store/requests.py); null for CDS Hooks evaluations.
    request_id: Mapped[str | None] = mapped_column(ForeignKey("requests.id"))


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    evaluation_id: Mapped[str] = mapped_column(ForeignKey("evaluations.id"))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def as_utc(moment: datetime.datetime) -> datetime.datetime:
    """SQLite hands timestamps back without a zone; they were stored in UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def iso_utc(moment: datetime.datetime) -> str:
    """A stored moment as the API writes it: ISO 8601 in UTC, to the second, ``Z``."""
    return as_utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")


def storable(value: str) -> bool:
    """PostgreSQL text cannot hold NUL characters, so no stored key has one (on any backend)."""
    return "\x00" not in value
