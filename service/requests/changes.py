"""What a submission changed against the previous submission of its request: its case's fields
(before and after), and the criteria and flags whose status moved.

``GET /v1/evaluations/{id}/changes`` and the review page's "what changed" view. A first
submission (or an evaluation that opened no request) has no previous one: empty lists.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select, tuple_

from service.store.database import Database
from service.store.evaluations import RESULT_COLUMNS, result_text
from service.store.tables import Evaluation, storable

# The request's identity: the same in every submission of it, never a change.
_SAME_BY_DEFINITION = ("external_id",)


def evaluation_changes(db: Database, evaluation_id: str) -> dict[str, Any] | None:
    """``{"evaluation_id", "request_id", "previous_evaluation_id", "fields": [{"path", "before",
    "after"}], "criteria": [{"id", "before", "after"}], "flags": [...]}``; None for an unknown
    evaluation. A field, criterion or flag that only one of the two has is null in the other."""
    if not storable(evaluation_id):
        return None
    columns = (Evaluation.id, Evaluation.request_id, Evaluation.created_at, Evaluation.case_json, *RESULT_COLUMNS)
    with db.session() as session:
        this = session.execute(select(*columns).where(Evaluation.id == evaluation_id)).first()
        if this is None:
            return None
        previous = None
        if this.request_id is not None:
            previous = session.execute(
                select(*columns)
                .where(Evaluation.request_id == this.request_id,
                       tuple_(Evaluation.created_at, Evaluation.id) < tuple_(this.created_at, this.id))
                .order_by(Evaluation.created_at.desc(), Evaluation.id.desc()).limit(1)
            ).first()
    changes = {"evaluation_id": this.id, "request_id": this.request_id, "previous_evaluation_id": None,
               "fields": [], "criteria": [], "flags": []}
    if previous is None:
        return changes
    before, after = orjson.loads(result_text(*previous[4:])), orjson.loads(result_text(*this[4:]))
    return {
        **changes,
        "previous_evaluation_id": previous.id,
        "fields": _field_changes(orjson.loads(previous.case_json), orjson.loads(this.case_json)),
        "criteria": _status_changes(before.get("criteria", []), after.get("criteria", [])),
        "flags": _status_changes(before.get("flags", []), after.get("flags", [])),
    }


def _flat(case: dict[str, Any]) -> dict[str, Any]:
    """A case's documented values by dotted path (``low_back_pain.nrs``); a list is one value."""
    values = {}
    for name, value in case.items():
        if name in _SAME_BY_DEFINITION:
            continue
        if isinstance(value, dict):
            values.update({f"{name}.{member}": v for member, v in value.items() if v is not None})
        elif value is not None:
            values[name] = value
    return values


def _field_changes(before_case: dict[str, Any], after_case: dict[str, Any]) -> list[dict[str, Any]]:
    before, after = _flat(before_case), _flat(after_case)
    return [{"path": path, "before": before.get(path), "after": after.get(path)}
            for path in sorted(before.keys() | after.keys()) if before.get(path) != after.get(path)]


def _status_changes(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items (criteria or flags) whose status differs, in the newer result's order, then any the
    older one had alone."""
    old = {item["id"]: item["status"] for item in before}
    new = {item["id"]: item["status"] for item in after}
    order = [*new, *(item_id for item_id in old if item_id not in new)]
    return [{"id": item_id, "before": old.get(item_id), "after": new.get(item_id)}
            for item_id in order if old.get(item_id) != new.get(item_id)]
