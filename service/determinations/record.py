"""A reviewer's determination, recorded: the only way one comes to exist.

Nothing else in the service writes the ``determinations`` table: no evaluation, hook or FHIR
operation calls :func:`record_determination`; only the reviewer-only API route and the review
page's form do, each for a signed-in reviewer. Rules (shared/contract.md, "Determinations"):

- on the request's latest submission (``evaluation_id``), else Conflict: the reviewer is looking
  at a stale one; checked and the request locked in one conditional UPDATE, so a submission
  committed meanwhile cannot slip between the check and the record;
- ``attestation`` true; ``denied`` and ``partially_approved`` need a specific ``reason`` (at least
  30 characters) and at least one criterion, each a criterion id of the evaluation's policy;
- append-only: a correction ``amends`` an earlier determination of the same request;
- ``approved``, ``denied`` and ``partially_approved`` close the request (``decided``); the others
  leave its state as it is; a new submission reopens it (store/requests.py's upsert).
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import insert, select, update

from service.engine.ids import new_id
from service.errors import Conflict, InvalidInput, NotFound
from service.requests.people import display_name
from service.store.database import Database
from service.store.evaluations import RESULT_COLUMNS, result_text
from service.store.determinations import CLOSING, OUTCOMES, Determination, determination_dict
from service.store.keys import KeyRecord
from service.store.requests import Request
from service.store.tables import Evaluation, storable, utc_now
from service.store.tenancy import Caller, visible_to

MIN_DENIAL_REASON = 30
MAX_REASON = 10_000
MAX_CRITERIA = 200
NEEDS_REASON = ("denied", "partially_approved")
INVALID = "The determination is invalid."
NO_SUCH_REQUEST = "No request with this id."


class DeterminationRequest(BaseModel):
    """The body of ``POST /v1/requests/{request_id}/determinations``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    evaluation_id: str = Field(min_length=1, max_length=64,
                               description="The request's latest submission, which the reviewer has read")
    outcome: Literal[OUTCOMES]  # type: ignore[valid-type]
    reason: str | None = Field(None, max_length=MAX_REASON, description=(
        f"Why, in words; at least {MIN_DENIAL_REASON} characters for denied and partially_approved"))
    criteria: list[str] = Field(default_factory=list, max_length=MAX_CRITERIA, description=(
        "Ids of the policy's criteria the determination rests on; at least one for denied and partially_approved"))
    attestation: bool = Field(description="Must be true: the reviewer has reviewed the clinical documentation")
    amends: str | None = Field(None, max_length=36, description="The id of an earlier determination this corrects")


def record_determination(db: Database, request_id: str, body: Any, *, reviewer: KeyRecord) -> dict[str, Any]:
    """Check ``body`` (parsed JSON) and record it as ``reviewer``'s determination on the request;
    the stored determination. InvalidInput (naming each field), NotFound (no such request),
    Conflict (``evaluation_id`` is not the request's latest submission)."""
    try:
        asked = DeterminationRequest.model_validate(body)
    except ValidationError as error:
        raise InvalidInput.from_validation_error(error, detail=INVALID) from None
    if not storable(request_id):
        raise NotFound(NO_SUCH_REQUEST)
    with db.session() as session:
        request = session.execute(select(Request.latest_evaluation_id).where(Request.id == request_id)).first()
        if request is None:
            raise NotFound(NO_SUCH_REQUEST)
        evaluation = session.execute(select(Evaluation.request_id, *RESULT_COLUMNS)
                                     .where(Evaluation.id == asked.evaluation_id)).first() \
            if storable(asked.evaluation_id) else None
        amended = session.scalar(select(Determination.request_id).where(Determination.id == asked.amends)) \
            if asked.amends is not None and storable(asked.amends) else None
    if evaluation is None or evaluation.request_id != request_id:
        raise InvalidInput.one("evaluation_id", "Not a submission of this request", "unknown_evaluation")
    _check(asked, orjson.loads(result_text(*evaluation[1:])), amended, request_id)
    row = {
        "id": new_id(),
        "request_id": request_id,
        "evaluation_id": asked.evaluation_id,
        "outcome": asked.outcome,
        "reason": asked.reason,
        "criteria_json": json.dumps(asked.criteria),
        "attestation": True,
        "amends": asked.amends,
        "reviewer_key_id": reviewer.id,
        "reviewer_name": display_name(reviewer),
    }
    closes = asked.outcome in CLOSING
    with db.write() as connection:
        # The check and the lock in one statement: the evaluation is still the latest submission.
        still_latest = connection.execute(
            update(Request)
            .where(Request.id == request_id, Request.latest_evaluation_id == asked.evaluation_id)
            .values(state="decided" if closes else Request.state)
        ).rowcount
        if still_latest:
            row["recorded_at"] = utc_now()
            connection.execute(insert(Determination), row)
    if not still_latest:
        raise Conflict("A newer submission of this request has arrived since this one: read it, then decide "
                       "on it (its id is the request's latest_evaluation_id).")
    return determination_dict(Determination(**row))


def _check(asked: DeterminationRequest, result: dict[str, Any], amended: str | None, request_id: str) -> None:
    """Every rule on the body's fields, all reported at once."""
    errors = []
    if asked.attestation is not True:
        errors.append(("attestation", "Must be true: a determination is recorded only by a reviewer who has "
                                      "reviewed the clinical documentation", "attestation_required"))
    reason = asked.reason
    if reason is not None and (problem := _text_problem(reason)):
        errors.append(("reason", problem, "value_error"))
    elif asked.outcome in NEEDS_REASON and len((reason or "").strip()) < MIN_DENIAL_REASON:
        errors.append(("reason", f"A {asked.outcome} determination needs a specific reason of at least "
                                 f"{MIN_DENIAL_REASON} characters (CMS-0057-F)", "reason_required"))
    known = [c["id"] for c in result.get("criteria", [])]
    for index, criterion in enumerate(asked.criteria):
        if criterion not in known:
            errors.append((f"criteria[{index}]", f"Not a criterion of this policy; one of {', '.join(known)}",
                           "unknown_criterion"))
        elif criterion in asked.criteria[:index]:
            errors.append((f"criteria[{index}]", "Listed twice", "duplicate_criterion"))
    if asked.outcome in NEEDS_REASON and not asked.criteria:
        errors.append(("criteria", f"A {asked.outcome} determination names at least one criterion it rests on",
                       "criteria_required"))
    if asked.amends is not None and amended != request_id:
        errors.append(("amends", "Not a determination of this request", "unknown_determination"))
    if errors:
        raise InvalidInput([{"field": f, "message": m, "type": t} for f, m, t in errors], detail=INVALID)


def _text_problem(text: str) -> str | None:
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in text):
        return "The reason holds control characters; only tabs and line breaks are allowed"
    return None


def list_determinations(db: Database, request_id: str, caller: Caller) -> list[dict[str, Any]]:
    """A request's determinations, oldest first; NotFound for an unknown request, or one that
    ``caller`` may not read (``store/tenancy.py``)."""
    if not storable(request_id):
        raise NotFound(NO_SUCH_REQUEST)
    with db.session() as session:
        owner = session.scalar(visible_to(caller, select(Request.id).where(Request.id == request_id),
                                          Request.organization))
        if owner is None:
            raise NotFound(NO_SUCH_REQUEST)
        rows = session.scalars(select(Determination).where(Determination.request_id == request_id)
                               .order_by(Determination.recorded_at, Determination.id))
        return [determination_dict(row) for row in rows]


def latest_closing_determination(db: Database, request_id: str, *, while_decided: bool = True) -> dict[str, Any] | None:
    """The request's latest ``approved``, ``denied`` or ``partially_approved`` determination (what
    PAS ``$inquire`` answers with); None when there is none, or (``while_decided``, the default)
    when a later submission has reopened the request: that submission awaits a new decision."""
    if not storable(request_id):
        return None
    with db.session() as session:
        if while_decided and session.scalar(select(Request.state).where(Request.id == request_id)) != "decided":
            return None
        row = session.scalars(
            select(Determination).where(Determination.request_id == request_id, Determination.outcome.in_(CLOSING))
            .order_by(Determination.recorded_at.desc(), Determination.id.desc()).limit(1)).first()
        return None if row is None else determination_dict(row)
