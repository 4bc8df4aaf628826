"""Reviewers' notes over the API: ``POST`` and ``GET /v1/evaluations/{evaluation_id}/notes``.

Append-only: a note is stored with the key that wrote it and the time, and there is no way to
change or remove one (the database refuses it too). The review page's note form checks a note
with the same :func:`checked_note` and stores it with the same :func:`add_note`.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.web.audit import audit_of, audited
from service.web.dependencies import DatabaseDep, ReviewerKey
from service.web.media import parse_json_body
from service.web.schemas import ErrorResponse, InvalidRequestResponse
from service.errors import InvalidInput
from service.review.store import MAX_NOTE_LENGTH, add_note, list_notes, load_result
from service.store.database import Database
from service.store.tenancy import Caller

NO_STORE = {"Cache-Control": "no-store"}
NOTE_INVALID = "The note is invalid."


class NoteRequest(BaseModel):
    """A reviewer's note: on one criterion (its id), or on the whole evaluation (null)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # Lengths and ids are checked by checked_note (for the API and the page's form alike), so one
    # answer names every problem; the schema states the same limits for clients.
    criterion: str | None = Field(None, description="A criterion id of the evaluation, or null for the whole evaluation")
    text: str = Field(json_schema_extra={"minLength": 1, "maxLength": MAX_NOTE_LENGTH})


class Note(BaseModel):
    id: int
    evaluation_id: str
    criterion: str | None
    text: str
    key_id: str
    created_at: str


class NoteList(BaseModel):
    evaluation_id: str
    notes: list[Note]


router = APIRouter(
    prefix="/evaluations",
    tags=["notes"],
    responses={status: {"model": ErrorResponse} for status in (401, 403, 404, 429, 503)},
)


@router.post(
    "/{evaluation_id}/notes",
    status_code=201,
    summary="Add a reviewer's note to an evaluation (append-only; reviewer keys only)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": NoteRequest.model_json_schema()}},
        }
    },
    responses={201: {"model": Note}, 422: {"model": InvalidRequestResponse}},
    dependencies=[audited("create", "note", "evaluation_id")],
)
async def create_note(evaluation_id: str, request: Request, key: ReviewerKey, db: DatabaseDep) -> JSONResponse:
    body = await request.body()
    result = await run_in_threadpool(stored_result, db, key, evaluation_id)
    payload = parse_json_body(request.headers.get("content-type"), body)
    try:
        note = NoteRequest.model_validate(payload)
    except ValidationError as error:
        raise InvalidInput.from_validation_error(error, detail=NOTE_INVALID) from None
    criterion, text = checked_note(result, note.criterion, note.text)
    access = audit_of(request)
    stored = await run_in_threadpool(add_note, db, evaluation_id, criterion, text, key.id, access.rows(201))
    access.committed()
    return JSONResponse(
        stored, status_code=201, headers={**NO_STORE, "Location": f"{request.url.path}/{stored['id']}"}
    )


@router.get(
    "/{evaluation_id}/notes",
    summary="An evaluation's reviewer notes, oldest first (reviewer keys only)",
    response_model=NoteList,
    dependencies=[audited("read", "note", "evaluation_id")],
)
def get_notes(evaluation_id: str, key: ReviewerKey, db: DatabaseDep) -> JSONResponse:
    stored_result(db, key, evaluation_id)
    return JSONResponse({"evaluation_id": evaluation_id, "notes": list_notes(db, evaluation_id)}, headers=NO_STORE)


def stored_result(db: Database, caller: Caller, evaluation_id: str) -> dict[str, Any]:
    """The stored result, parsed; 404 when there is none ``caller`` may read."""
    result = load_result(db, caller, evaluation_id)
    if result is None:
        raise HTTPException(404, detail="No evaluation with this id.")
    return result


def checked_note(result: dict[str, Any], criterion: str | None, text: str) -> tuple[str | None, str]:
    """The note's criterion and text, once both are acceptable for ``result``; raises InvalidInput
    naming ``criterion`` (not one of the result's criteria) or ``text`` (blank, too long, or
    holding control characters other than tab and line breaks)."""
    errors = []
    known = [c["id"] for c in result.get("criteria", [])]
    if criterion is not None and criterion not in known:
        errors.append(
            {
                "field": "criterion",
                "message": f"Not a criterion of this evaluation; one of {', '.join(known)}, or null for the whole evaluation",
                "type": "unknown_criterion",
            }
        )
    problem = _text_problem(text)
    if problem:
        errors.append({"field": "text", "message": problem, "type": "value_error"})
    if errors:
        raise InvalidInput(errors, detail=NOTE_INVALID)
    return criterion, text


def _text_problem(text: str) -> str | None:
    if not text.strip():
        return "The note is empty or blank; write 1 to 4,000 characters"
    if len(text) > MAX_NOTE_LENGTH:
        return f"The note is longer than {MAX_NOTE_LENGTH:,} characters ({len(text):,})"
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in text):
        return "The note holds control characters; only tabs and line breaks are allowed"
    return None
