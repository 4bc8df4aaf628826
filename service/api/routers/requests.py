"""Requests over the API: the work queue, one request, taking and releasing it, and what a
submission changed. Thin: the work is ``service.requests``'s."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import InvalidInput, NotFound
from service.requests.assignment import set_assignee
from service.requests.changes import evaluation_changes
from service.requests.queue import DEFAULT_PAGE, MAX_PAGE, QueueFilter, get_request, list_queue
from service.store.paging import InvalidCursor
from service.web.audit import audited
from service.web.dependencies import DatabaseDep, IntakeKey, ReviewerKey
from service.web.media import parse_json_body
from service.web.schemas import ErrorResponse, InvalidRequestResponse

router = APIRouter(tags=["requests"],
                   responses={status: {"model": ErrorResponse} for status in (401, 403, 429, 503)})

_PERSON = {"type": ["object", "null"], "properties": {"key_id": {"type": "string"}, "name": {"type": ["string", "null"]}}}
_REQUEST = {
    "type": "object",
    "properties": {
        "request_id": {"type": "string"}, "organization": {"type": "string"}, "external_id": {"type": "string"},
        "policy": {"type": "string"}, "priority": {"enum": ["standard", "expedited"]},
        "received_at": {"type": "string", "format": "date-time"}, "due_at": {"type": "string", "format": "date-time"},
        "overdue": {"type": "boolean"}, "assigned_to": _PERSON, "state": {"enum": ["open", "decided"]},
        "submissions": {"type": "integer"}, "latest_evaluation_id": {"type": "string"},
        "latest_outcome": {"type": "string"}, "latest_determination": {"type": ["object", "null"]},
    },
}
_QUEUE = {"type": "object", "properties": {
    "requests": {"type": "array", "items": _REQUEST},
    "next_cursor": {"type": ["string", "null"], "description": "pass as `cursor` for the next page; null on the last"},
}}
_DETAIL = {"type": "object", "properties": {
    **_REQUEST["properties"],
    "evaluations": {"type": "array", "items": {"type": "object", "properties": {
        "evaluation_id": {"type": "string"}, "submission": {"type": "integer"},
        "evaluated_at": {"type": "string"}, "outcome": {"type": "string"}}}},
    "determinations": {"type": "array", "items": {"type": "object"}},
}}
_CHANGE = {"type": "object", "properties": {"before": {}, "after": {}}}
_CHANGES = {"type": "object", "properties": {
    "evaluation_id": {"type": "string"}, "request_id": {"type": ["string", "null"]},
    "previous_evaluation_id": {"type": ["string", "null"]},
    "fields": {"type": "array", "items": {**_CHANGE, "properties": {"path": {"type": "string"}, **_CHANGE["properties"]}}},
    "criteria": {"type": "array", "items": {**_CHANGE, "properties": {"id": {"type": "string"}, **_CHANGE["properties"]}}},
    "flags": {"type": "array", "items": {**_CHANGE, "properties": {"id": {"type": "string"}, **_CHANGE["properties"]}}},
}}


class AssigneeRequest(BaseModel):
    """Take the request (``"me"``) or release it (null)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    assignee: Literal["me"] | None = Field(description='"me" to take the request, null to release it')


@router.get(
    "/requests",
    summary="The work queue: requests, most urgent first (due_at ascending), a page at a time (reviewer keys only)",
    responses={200: {"content": {"application/json": {"schema": _QUEUE}}}, 422: {"model": InvalidRequestResponse}},
    dependencies=[audited("search", "request")],
)
def queue(
    key: ReviewerKey,
    db: DatabaseDep,
    state: Annotated[Literal["open", "decided", "all"], Query(description="default: open")] = "open",
    policy: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    priority: Annotated[Literal["standard", "expedited"] | None, Query()] = None,
    assigned: Annotated[Literal["me", "none", "any"], Query(description="to this key, to nobody, or any")] = "any",
    overdue: Annotated[bool, Query(description="true: only open requests past their due time")] = False,
    external_id: Annotated[str | None, Query(min_length=1, max_length=128,
                                             description="a prefix of the reference, whatever the case")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="requests per page")] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=512, description="`next_cursor` of the page before")] = None,
) -> JSONResponse:
    filters = QueueFilter(state=state, policy=policy, priority=priority, assigned=assigned, overdue=overdue,
                          external_id=external_id)
    try:
        page = list_queue(db, filters, viewer_key_id=key.id, limit=limit, cursor=cursor)
    except InvalidCursor as error:
        raise InvalidInput.one("query.cursor", f"Invalid cursor: {error}; use a next_cursor as given.",
                               "cursor_invalid") from None
    return JSONResponse({"requests": page.results, "next_cursor": page.next_cursor})


@router.get(
    "/requests/{request_id}",
    summary="One request: its submissions (newest first) and determinations (oldest first); an intake key reads "
            "its own organization's",
    responses={200: {"content": {"application/json": {"schema": _DETAIL}}}, 404: {"model": ErrorResponse}},
    dependencies=[audited("read", "request", "request_id")],
)
def read_request(request_id: str, key: IntakeKey, db: DatabaseDep) -> JSONResponse:
    found = get_request(db, request_id, key)
    if found is None:
        raise NotFound("No request with this id.")
    return JSONResponse(found)


@router.put(
    "/requests/{request_id}/assignee",
    summary="Take a request (\"me\") or release it (null) (reviewer keys only)",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": AssigneeRequest.model_json_schema()}}}},
    responses={200: {"content": {"application/json": {"schema": _DETAIL}}}, 404: {"model": ErrorResponse},
               409: {"model": ErrorResponse, "description": "Another reviewer holds the request"},
               422: {"model": InvalidRequestResponse}},
    dependencies=[audited("create", "request", "request_id")],  # a write, answered with the request
)
async def assign(request_id: str, request: Request, key: ReviewerKey, db: DatabaseDep) -> JSONResponse:
    body = parse_json_body(request.headers.get("content-type"), await request.body())
    try:
        asked = AssigneeRequest.model_validate(body)
    except ValidationError as error:
        raise InvalidInput.from_validation_error(error, detail="The assignee is invalid.") from None
    return JSONResponse(await run_in_threadpool(set_assignee, db, request_id, asked.assignee, by=key))


@router.get(
    "/evaluations/{evaluation_id}/changes",
    summary="What this submission changed against the previous one of its request (reviewer keys only)",
    responses={200: {"content": {"application/json": {"schema": _CHANGES}}}, 404: {"model": ErrorResponse}},
    dependencies=[audited("read", "evaluation", "evaluation_id")],
)
def changes(evaluation_id: str, _key: ReviewerKey, db: DatabaseDep) -> JSONResponse:
    found: dict[str, Any] | None = evaluation_changes(db, evaluation_id)
    if found is None:
        raise NotFound("No evaluation with this id.")
    return JSONResponse(found)
