"""Evaluations stored and read back: each exactly as it was returned, byte for byte.

Every read takes the caller and goes through :func:`~service.store.tenancy.visible_to` (or, for
a result by id, the same decision, :func:`~service.store.tenancy.reads_every_organization`):
another organization's evaluation is not found, exactly like an unknown id.

A result is stored compressed (service.store.compressed: the column compresses what is written,
on the group commit's writer thread); rows stored before migration 0010_compressed_results hold
the text itself.
Whatever reads a stored result goes through this module: :func:`get_evaluation_result` for one,
or :data:`RESULT_COLUMNS` in a select and :func:`result_text` on what they hold.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Insert, Table, bindparam, insert, select
from sqlalchemy.engine import Connection

from service.store.compressed import decompress
from service.store.database import Database
from service.store.group_commit import Rows
from service.store.paging import Page, newest_first
from service.store.tables import Evaluation, storable, utc_now
from service.store.tenancy import Caller, reads_every_organization, visible_to

# The two columns that hold a stored result between them (see result_text).
RESULT_COLUMNS = (Evaluation.result_zstd, Evaluation.result_json_before_0008)
# A result by id, for a caller who reads every organization's, and for one who reads its own.
_RESULT_BY_ID = select(*RESULT_COLUMNS).where(Evaluation.id == bindparam("evaluation_id"))
_OWN_RESULT_BY_ID = _RESULT_BY_ID.where(Evaluation.organization == bindparam("organization"))


def result_text(result_zstd: bytes | None, result_json_before_0008: str) -> str:
    """A stored result's JSON text, byte for byte as first returned, from its :data:`RESULT_COLUMNS`."""
    if result_zstd is None:
        return result_json_before_0008
    return decompress(result_zstd).decode()


class Claim(Protocol):
    """An Idempotency-Key claim (service.store.idempotency.IdempotencyClaim, which reads results
    through this module)."""

    def record(self, connection: Connection, evaluation_id: str, created_at: datetime.datetime) -> bool: ...


def evaluation_row(
    *,
    evaluation_id: str,
    external_id: str,
    policy_id: str,
    policy_version: str,
    key_id: str,
    organization: str,
    case_json: str,
    result_json: str | bytes,
    request_id: str | None = None,
    created_at: datetime.datetime | None = None,
) -> tuple[Table, dict[str, Any]]:
    """An evaluation as a row to insert (for :class:`GroupCommit`), its result compressed as it is written;
    ``request_id`` names the request it opens or resubmits (whose row must be committed first, in
    the same transaction)."""
    return Evaluation.__table__, {
        "id": evaluation_id,
        "external_id": external_id,
        "policy_id": policy_id,
        "policy_version": policy_version,
        "key_id": key_id,
        "organization": organization,
        "case_json": case_json,
        "result_zstd": result_json,
        "result_json": "",
        "created_at": created_at or utc_now(),
        "request_id": request_id,
    }


class _ClaimedFirst(Exception):
    """Another request recorded the same Idempotency-Key first: roll this transaction back."""


def save_evaluation(db: Database, *, idempotency: Claim | None = None,
                    parents: Sequence[tuple[Table | Insert, dict[str, Any]]] = (), also: Rows = (),
                    **evaluation: Any) -> bool:
    """Store an evaluation (keywords of :func:`evaluation_row`) after ``parents`` (rows it
    refers to, such as its request's, each a table or an INSERT statement with its values) and
    before ``also`` (its audit record, say), all in one transaction; when this returns True, they
    are committed. Without ``idempotency``: by group commit. With it: in a transaction of its own
    that also records its Idempotency-Key, so all are stored or none; False, nothing stored, when
    another request has claimed the key first."""
    return save_rows(db, [*parents, evaluation_row(**evaluation)], idempotency, also)


def save_rows(db: Database, rows: Sequence[tuple[Table | Insert, dict[str, Any]]],
              idempotency: Claim | None = None, also: Rows = ()) -> bool:
    """:func:`save_evaluation` of rows already made: parents first, the evaluation's last, then
    ``also``."""
    row = rows[-1][1]
    if idempotency is None:
        db.writer.commit([*rows, *also])
        return True
    try:
        with db.write() as connection:
            for target, values in [*rows, *also]:
                connection.execute(insert(target) if isinstance(target, Table) else target, values)
            if not idempotency.record(connection, row["id"], row["created_at"]):
                raise _ClaimedFirst  # the whole transaction rolls back, its audit record too
    except _ClaimedFirst:
        return False
    return True


def _one(caller: Caller, column: Any, evaluation_id: str) -> Any:
    return visible_to(caller, select(column).where(Evaluation.id == evaluation_id), Evaluation.organization)


def get_evaluation_result(db: Database, caller: Caller, evaluation_id: str) -> str | None:
    """The stored result JSON text, byte for byte as first returned; None if there is none that
    ``caller`` may read. (An indexed select on a driver connection: ~20 µs where a session took
    ~250 µs.)"""
    if not storable(evaluation_id):
        return None
    if reads_every_organization(caller):
        row = db.first(_RESULT_BY_ID, evaluation_id=evaluation_id)
    else:
        row = db.first(_OWN_RESULT_BY_ID, evaluation_id=evaluation_id, organization=caller.organization)
    return None if row is None else result_text(*row)


def get_evaluation_case(db: Database, caller: Caller, evaluation_id: str) -> str | None:
    """The stored case JSON text an evaluation was made from; None if there is none that
    ``caller`` may read."""
    if not storable(evaluation_id):
        return None
    with db.session() as session:
        return session.scalar(_one(caller, Evaluation.case_json, evaluation_id))


def list_evaluation_results(db: Database, caller: Caller, external_id: str, limit: int = 50,
                            cursor: str | None = None) -> Page:
    """Stored result JSON texts for an intake reference that ``caller`` may read, newest first,
    ``limit`` at a time; ``cursor`` (opaque) continues after the page that handed it out. The
    same reference sent by two organizations names two requests: an intake caller sees its own."""
    if not storable(external_id):
        return Page([], None)
    query = select(Evaluation.created_at, Evaluation.id, *RESULT_COLUMNS).where(Evaluation.external_id == external_id)
    query = visible_to(caller, query, Evaluation.organization)
    with db.session() as session:
        page = newest_first(session, query, Evaluation.created_at, Evaluation.id, limit, cursor)
    return Page([result_text(*row[2:]) for row in page.results], page.next_cursor)
