"""The work queue and one request: what reviewers (and the review page) read.

- :func:`list_queue`: requests most urgent first (``due_at`` ascending, then id), filtered
  (:class:`QueueFilter`), a page at a time with the one cursor pager;
- :func:`get_request`: one request with its submissions (newest first) and determinations
  (oldest first), if the caller may read it (``store/tenancy.py``: another organization's id is
  None, a 404, to an intake key);
- :func:`request_of_evaluation`: the request an evaluation belongs to (None for CDS Hooks ones).

Each request is a dict: ``request_id``, ``organization``, ``external_id``, ``policy``,
``priority``, ``received_at``, ``due_at``, ``overdue``, ``assigned_to`` (``{key_id, name}`` or
None), ``state``, ``submissions``, ``latest_evaluation_id``, ``latest_outcome`` and
``latest_determination`` (the newest determination, any outcome, or None).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.expression import UnaryExpression

from service.requests.people import name_column, person
from service.store.database import Database
from service.store.evaluations import RESULT_COLUMNS, result_text
from service.store.determinations import Determination, determination_dict
from service.store.paging import Page, soonest_first
from service.store.tenancy import Caller, visible_to
from service.store.requests import Request
from service.store.tables import ApiKey, Evaluation, as_utc, iso_utc, storable, utc_now

DEFAULT_PAGE, MAX_PAGE = 50, 500


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows: ``state`` (``open``, ``decided`` or ``all``), one ``policy`` and
    ``priority``, ``assigned`` to the viewer (``me``), to nobody (``none``) or ``any``; only
    ``overdue`` ones (open and past due); ``external_id`` starting with a prefix, whatever the case."""

    state: Literal["open", "decided", "all"] = "open"
    policy: str | None = None
    priority: Literal["standard", "expedited"] | None = None
    assigned: Literal["me", "none", "any"] = "any"
    overdue: bool = False
    external_id: str | None = None


def _columns() -> Select:
    return select(
        Request.id, Request.organization, Request.external_id, Request.policy_id, Request.priority,
        Request.received_at, Request.due_at, Request.state, Request.submissions, Request.latest_evaluation_id,
        Request.latest_outcome, Request.assigned_key_id, name_column().label("assignee_name"),
    ).outerjoin(ApiKey, ApiKey.id == Request.assigned_key_id)


def list_queue(db: Database, filters: QueueFilter, *, viewer_key_id: str, limit: int = DEFAULT_PAGE,
               cursor: str | None = None, now: datetime.datetime | None = None) -> Page:
    """A page of the queue as the viewer (a reviewer's key id: ``assigned=me``) sees it; raises
    :class:`~service.store.paging.InvalidCursor` for a cursor this service did not hand out."""
    now = now or utc_now()
    query = _columns()
    searching = filters.external_id is not None
    state, policy, priority, assignee, due_at = (
        _not_indexed(db, column) if searching else column
        for column in (Request.state, Request.policy_id, Request.priority, Request.assigned_key_id, Request.due_at))
    if filters.state != "all":
        query = query.where(state == filters.state)
    if filters.policy is not None:
        query = query.where(policy == filters.policy)
    if filters.priority is not None:
        query = query.where(priority == filters.priority)
    if filters.assigned == "me":
        query = query.where(assignee == viewer_key_id)
    elif filters.assigned == "none":
        query = query.where(assignee.is_(None))
    if filters.overdue:
        query = query.where(state == "open", due_at < now)
    if not all(storable(text) for text in (filters.policy or "", filters.external_id or "")):
        return Page([], None)  # no stored text holds a NUL (PostgreSQL would refuse to compare one)
    if searching:
        query = query.where(_starts_with(db, filters.external_id.casefold()))
    with db.session() as session:
        page = soonest_first(session, query, Request.due_at, Request.id, limit, cursor)
        latest = _latest_determinations(session, [row.id for row in page.results])
    return Page([_item(row, now, latest.get(row.id)) for row in page.results], page.next_cursor)


def get_request(db: Database, request_id: str, caller: Caller, *,
                now: datetime.datetime | None = None) -> dict[str, Any] | None:
    """One request with ``evaluations`` (each submission: ``evaluation_id``, ``submission`` (1
    for the first), ``evaluated_at``, ``outcome``; newest first) and ``determinations`` (oldest
    first). None when there is none that ``caller`` may read."""
    if not storable(request_id):
        return None
    with db.session() as session:
        row = session.execute(visible_to(caller, _columns().where(Request.id == request_id),
                                         Request.organization)).first()
        if row is None:
            return None
        submissions = session.execute(
            select(Evaluation.id, *RESULT_COLUMNS).where(Evaluation.request_id == request_id)
            .order_by(Evaluation.created_at.desc(), Evaluation.id.desc())).all()
        determinations = [determination_dict(d) for d in session.scalars(
            select(Determination).where(Determination.request_id == request_id)
            .order_by(Determination.recorded_at, Determination.id))]
    evaluations = []
    for index, (evaluation_id, *stored) in enumerate(submissions):
        result = orjson.loads(result_text(*stored))
        evaluations.append({"evaluation_id": evaluation_id, "submission": len(submissions) - index,
                            "evaluated_at": result.get("evaluated_at"), "outcome": result["summary"]["outcome"]})
    latest = determinations[-1] if determinations else None
    return {**_item(row, now or utc_now(), latest), "evaluations": evaluations, "determinations": determinations}


def request_of_evaluation(db: Database, evaluation_id: str) -> str | None:
    """The id of the request an evaluation opened or resubmitted; None for an evaluation that
    opens none (CDS Hooks) and for an unknown id."""
    if not storable(evaluation_id):
        return None
    with db.session() as session:
        return session.scalar(select(Evaluation.request_id).where(Evaluation.id == evaluation_id))


def _not_indexed(db: Database, column: Any) -> Any:
    """On SQLite, ``+column``: the same value, which the planner may not answer from an index.
    A reference search must start from its prefix index (a few rows, then sorted by due time);
    without statistics (no ANALYZE) SQLite took the state index instead, for its order, and
    read every open request: 220 ms with 100,000 (bench/queue_page.py), 1 ms this way."""
    if db.engine.dialect.name != "sqlite":
        return column
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


def _starts_with(db: Database, prefix: str) -> Any:
    """``external_id_folded`` starts with ``prefix``, in a form each database answers from its
    index: GLOB on SQLite (case-sensitive, as the folded column needs), LIKE on PostgreSQL (the
    index is ``text_pattern_ops``); wildcard characters of the prefix match only themselves."""
    column = Request.external_id_folded
    if db.engine.dialect.name == "sqlite":
        escaped = "".join(f"[{c}]" if c in "*?[" else c for c in prefix)
        return column.op("GLOB")(escaped + "*")
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped + "%", escape="\\")


def _latest_determinations(session: Session, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The newest determination of each of these requests that has one."""
    if not request_ids:
        return {}
    rows = session.scalars(select(Determination).where(Determination.request_id.in_(request_ids))
                           .order_by(Determination.recorded_at, Determination.id))
    return {row.request_id: determination_dict(row) for row in rows}  # the last of each wins


def _item(row: Any, now: datetime.datetime, latest_determination: dict[str, Any] | None) -> dict[str, Any]:
    due_at = as_utc(row.due_at)
    return {
        "request_id": row.id,
        "organization": row.organization,
        "external_id": row.external_id,
        "policy": row.policy_id,
        "priority": row.priority,
        "received_at": iso_utc(row.received_at),
        "due_at": iso_utc(due_at),
        "overdue": row.state == "open" and due_at < now,
        "assigned_to": person(row.assigned_key_id, row.assignee_name),
        "state": row.state,
        "submissions": row.submissions,
        "latest_evaluation_id": row.latest_evaluation_id,
        "latest_outcome": row.latest_outcome,
        "latest_determination": latest_determination,
    }

