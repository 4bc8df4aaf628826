"""Evaluations stored and read back: each exactly as it was returned, byte for byte.

Every read takes the caller and goes through :func:`~service.store.tenancy.visible_to`: another
organization's evaluation is not found, exactly like an unknown id.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Insert, Table, insert, select

from service.store.database import Database
from service.store.group_commit import Rows
from service.store.paging import Page, newest_first
from service.store.tables import Evaluation, storable, utc_now
from service.store.tenancy import Caller, visible_to

if TYPE_CHECKING:
    from service.store.idempotency import IdempotencyClaim


def evaluation_row(
    *,
    evaluation_id: str,
    external_id: str,
    policy_id: str,
    policy_version: str,
    key_id: str,
    organization: str,
    case_json: str,
    result_json: str,
    request_id: str | None = None,
    created_at: datetime.datetime | None = None,
) -> tuple[Table, dict[str, Any]]:
    """An evaluation as a row to insert (for :class:`GroupCommit`); ``request_id`` names the
    request it opens or resubmits (whose row must be committed first, in the same transaction)."""
    return Evaluation.__table__, {
        "id": evaluation_id,
        "external_id": external_id,
        "policy_id": policy_id,
        "policy_version": policy_version,
        "key_id": key_id,
        "organization": organization,
        "case_json": case_json,
        "result_json": result_json,
        "created_at": created_at or utc_now(),
        "request_id": request_id,
    }


class _ClaimedFirst(Exception):
    """Another request recorded the same Idempotency-Key first: roll this transaction back."""


def save_evaluation(db: Database, *, idempotency: IdempotencyClaim | None = None,
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
              idempotency: IdempotencyClaim | None = None, also: Rows = ()) -> bool:
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
    ``caller`` may read."""
    if not storable(evaluation_id):
        return None
    with db.session() as session:
        return session.scalar(_one(caller, Evaluation.result_json, evaluation_id))


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
    query = select(Evaluation.created_at, Evaluation.id, Evaluation.result_json).where(
        Evaluation.external_id == external_id
    )
    query = visible_to(caller, query, Evaluation.organization)
    with db.session() as session:
        page = newest_first(session, query, Evaluation.created_at, Evaluation.id, limit, cursor)
    return Page([row.result_json for row in page.results], page.next_cursor)
