"""Evaluations stored and read back: each exactly as it was returned, byte for byte.

Every read takes the caller and goes through :func:`~service.store.tenancy.visible_to`: another
organization's evaluation is not found, exactly like an unknown id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, delete, insert, select

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
) -> tuple[Table, dict[str, Any]]:
    """An evaluation as a row to insert (for :class:`GroupCommit`)."""
    return Evaluation.__table__, {
        "id": evaluation_id,
        "external_id": external_id,
        "policy_id": policy_id,
        "policy_version": policy_version,
        "key_id": key_id,
        "organization": organization,
        "case_json": case_json,
        "result_json": result_json,
        "created_at": utc_now(),
    }


def save_evaluation(db: Database, *, idempotency: IdempotencyClaim | None = None, also: Rows = (),
                    **evaluation: str) -> bool:
    """Store an evaluation (keywords of :func:`evaluation_row`) and the rows ``also`` given (its
    audit record, say) in one transaction; when this returns True, they are committed. Without
    ``idempotency``: by group commit. With it: in a transaction of its own that also records its
    Idempotency-Key, so all are stored or none; False, nothing stored, when another request has
    claimed the key first."""
    table, row = evaluation_row(**evaluation)
    if idempotency is None:
        db.writer.commit([(table, row), *also])
        return True
    with db.write() as connection:
        connection.execute(insert(table), row)
        if not idempotency.record(connection, row["id"], row["created_at"]):
            connection.execute(delete(table).where(table.c.id == row["id"]))
            return False
        for other, other_row in also:  # after the claim: an audit row, once written, stays
            connection.execute(insert(other), other_row)
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
