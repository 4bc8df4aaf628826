"""Determinations and the metrics over the API. Thin: the work is ``service.determinations``'s.

Only ``POST /v1/requests/{request_id}/determinations``, with a reviewer key, creates a
determination (the review page's form is the other door, for a signed-in reviewer)."""

from __future__ import annotations

import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.determinations.metrics import metrics, metrics_csv
from service.determinations.record import DeterminationRequest, list_determinations, record_determination
from service.errors import InvalidInput
from service.web.audit import audit_of, audited
from service.web.dependencies import DatabaseDep, IntakeKey, MetricsKey, ReviewerKey
from service.web.media import media_type, parse_json_body
from service.web.schemas import ErrorResponse, InvalidRequestResponse

router = APIRouter(tags=["determinations"],
                   responses={status: {"model": ErrorResponse} for status in (401, 403, 429, 503)})

_CSV = "text/csv"
_DAY = r"^\d{4}-\d{2}-\d{2}$"
_DETERMINATION = {"type": "object", "properties": {
    "id": {"type": "string"}, "request_id": {"type": "string"}, "evaluation_id": {"type": "string"},
    "outcome": {"type": "string"}, "reason": {"type": ["string", "null"]},
    "criteria": {"type": "array", "items": {"type": "string"}}, "attestation": {"const": True},
    "amends": {"type": ["string", "null"]},
    "reviewer": {"type": "object", "properties": {"key_id": {"type": "string"}, "name": {"type": ["string", "null"]}}},
    "recorded_at": {"type": "string", "format": "date-time"},
}}
_FIGURES = {"type": "object", "properties": {
    "received": {"type": "integer"},
    "determined": {"type": "object", "properties": {o: {"type": "integer"} for o in (
        "approved", "denied", "partially_approved")}},
    **{name: {"type": ["number", "null"]} for name in (
        "percent_approved", "percent_denied", "mean_hours_to_determination", "median_hours_to_determination")},
    **{name: {"type": "integer"} for name in ("decided_late", "open", "overdue")},
}}
_METRICS = {"type": "object", "properties": {
    "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
    "overall": _FIGURES,
    "by_priority": {"type": "object", "properties": {"standard": _FIGURES, "expedited": _FIGURES}},
}}


@router.post(
    "/requests/{request_id}/determinations",
    status_code=201,
    summary="Record the reviewer's determination on the request's latest submission (append-only; reviewer keys only)",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": DeterminationRequest.model_json_schema()}}}},
    responses={201: {"content": {"application/json": {"schema": _DETERMINATION}}}, 404: {"model": ErrorResponse},
               409: {"model": ErrorResponse, "description": "evaluation_id is not the request's latest submission"},
               422: {"model": InvalidRequestResponse}},
    dependencies=[audited("create", "determination", "request_id")],
)
async def create_determination(request_id: str, request: Request, key: ReviewerKey, db: DatabaseDep) -> JSONResponse:
    body = parse_json_body(request.headers.get("content-type"), await request.body())
    stored = await run_in_threadpool(record_determination, db, request_id, body, reviewer=key)
    return JSONResponse(stored, status_code=201, headers={"Location": f"{request.url.path}/{stored['id']}"})


@router.get(
    "/requests/{request_id}/determinations",
    summary="A request's determinations, oldest first; an intake key reads its own organization's",
    responses={200: {"content": {"application/json": {"schema": {"type": "object", "properties": {
        "request_id": {"type": "string"}, "determinations": {"type": "array", "items": _DETERMINATION}}}}}},
        404: {"model": ErrorResponse}},
    dependencies=[audited("read", "determination", "request_id")],
)
def read_determinations(request_id: str, key: IntakeKey, db: DatabaseDep) -> JSONResponse:
    return JSONResponse({"request_id": request_id, "determinations": list_determinations(db, request_id, key)})


@router.get(
    "/metrics",
    summary="The CMS-0057-F figures for the requests received in a period (reviewer or auditor keys); "
            "JSON, or CSV with Accept: text/csv",
    responses={200: {"content": {"application/json": {"schema": _METRICS}, _CSV: {"schema": {"type": "string"}}}},
               422: {"model": InvalidRequestResponse}},
    dependencies=[audited("read", "metrics")],
)
def read_metrics(
    request: Request,
    _key: MetricsKey,
    db: DatabaseDep,
    start: Annotated[str, Query(alias="from", pattern=_DAY, description="first day received, YYYY-MM-DD (UTC)")],
    end: Annotated[str, Query(alias="to", pattern=_DAY, description="last day received, YYYY-MM-DD (UTC), inclusive")],
) -> Response:
    first, last = _day("from", start), _day("to", end)
    if last < first:
        raise InvalidInput.one("query.to", "Must be on or after `from`", "value_error")
    figures = metrics(db, first, last)
    if _wants_csv(request.headers.get("accept")):
        audit_of(request).action = "export"
        return Response(metrics_csv(figures), media_type=f"{_CSV}; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="metrics-{start}-{end}.csv"'})
    return JSONResponse(figures)


def _day(name: str, text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise InvalidInput.one(f"query.{name}", "Must be a day that exists, written YYYY-MM-DD", "value_error") from None


def _wants_csv(accept: str | None) -> bool:
    """CSV when the client asks for it before (or instead of) JSON."""
    for part in (accept or "").split(","):
        kind = media_type(part)
        if kind == _CSV:
            return True
        if kind in ("application/json", "*/*", "application/*"):
            return False
    return False
