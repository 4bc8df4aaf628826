"""Idempotency-Key records: a retried ``POST /v1/evaluations`` gets the first answer again.

A record ties (API key, Idempotency-Key) to the SHA-256 of the request body and to the
evaluation it produced. It is written in the transaction that stores the evaluation (by the group
commit, :meth:`IdempotencyClaim.row`; or ``save_evaluation(..., idempotency=claim)``, which also
replaces a record past its 24 h), so a stored evaluation always has its record and a record
always has its evaluation. Only accepted evaluations are recorded: a rejected request
stores nothing, and the same body is rejected the same way again.

Records count for :data:`KEPT` (24 h) after they are made; after that the key may be used again.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from service.errors import InvalidInput
from service.store.database import Database
from service.store.evaluations import RESULT_COLUMNS, result_text
from service.store.tables import Evaluation, IdempotencyRecord, utc_now

KEPT = datetime.timedelta(hours=24)
HEADER = "Idempotency-Key"
_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # 1-255 visible ASCII characters
_PREVIOUS = (
    select(IdempotencyRecord.request_sha256, Evaluation.id, *RESULT_COLUMNS)
    .join(Evaluation, Evaluation.id == IdempotencyRecord.evaluation_id)
    .where(IdempotencyRecord.key_id == bindparam("key_id"),
           IdempotencyRecord.idempotency_key == bindparam("idempotency_key"),
           IdempotencyRecord.created_at >= bindparam("since", type_=IdempotencyRecord.created_at.type))
)


@dataclass(frozen=True)
class Previous:
    """What an earlier request with the same key produced."""

    evaluation_id: str
    result_json: str
    same_body: bool


@dataclass(frozen=True)
class IdempotencyClaim:
    """An API key's Idempotency-Key and the body it came with."""

    key_id: str
    idempotency_key: str
    request_sha256: str

    @classmethod
    def from_header(cls, header: str | None, key_id: str, body: bytes) -> IdempotencyClaim | None:
        """None without the header; InvalidInput naming the header when it is malformed."""
        if header is None:
            return None
        if not _VALID_KEY.fullmatch(header):
            raise InvalidInput.one(
                "headers.idempotency-key",
                "Must be 1 to 255 visible ASCII characters (no spaces or control characters).",
                "idempotency_key",
            )
        return cls(key_id, header, hashlib.sha256(body).hexdigest())

    def previous(self, db: Database) -> Previous | None:
        """The evaluation an earlier request with this key made within the last 24 h, if any
        (an indexed select on a pooled driver connection, as the key check is)."""
        row = db.first(_PREVIOUS, key_id=self.key_id, idempotency_key=self.idempotency_key, since=utc_now() - KEPT)
        if row is None:
            return None
        return Previous(row[1], result_text(*row[2:]), row[0] == self.request_sha256)

    def row(self, evaluation_id: str, created_at: datetime.datetime) -> tuple[Table, dict[str, Any]]:
        """This key's record for ``evaluation_id``, as a row for the group commit to insert in the
        evaluation's transaction, after it. Should another request have recorded the key first,
        that transaction fails with an IntegrityError and stores neither (a record older than
        24 h fails it too: :meth:`record` replaces one)."""
        return IdempotencyRecord.__table__, {
            "key_id": self.key_id, "idempotency_key": self.idempotency_key,
            "request_sha256": self.request_sha256, "evaluation_id": evaluation_id, "created_at": created_at,
        }

    def record(self, connection: Connection, evaluation_id: str, created_at: datetime.datetime) -> bool:
        """Record this key for ``evaluation_id`` inside the caller's transaction; False, changing
        nothing, when a request with the same key was recorded first (within 24 h: an older record
        is replaced). No error is raised, so a transaction shared with other work goes on."""
        connection.execute(
            delete(IdempotencyRecord).where(*self._identity(), IdempotencyRecord.created_at < created_at - KEPT)
        )
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        recorded = connection.execute(
            insert(IdempotencyRecord)
            .values(
                key_id=self.key_id,
                idempotency_key=self.idempotency_key,
                request_sha256=self.request_sha256,
                evaluation_id=evaluation_id,
                created_at=created_at,
            )
            .on_conflict_do_nothing()
            .returning(IdempotencyRecord.evaluation_id)  # a row when recorded (rowcount is not reliable here)
        )
        return recorded.first() is not None

    def _identity(self):
        return IdempotencyRecord.key_id == self.key_id, IdempotencyRecord.idempotency_key == self.idempotency_key
