"""The audit trail, for auditors: ``GET /v1/audit``, newest first, a page at a time; as JSON
events, or as FHIR R4 AuditEvents one a line (``Accept: application/fhir+ndjson``)."""

from __future__ import annotations

import datetime
import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from service.audit.events import audit_event, event
from service.errors import InvalidInput
from service.store.audit import AuditFilter, list_audit_records
from service.store.paging import InvalidCursor
from service.web.audit import audit_of, audited
from service.web.dependencies import AuditorKey, DatabaseDep
from service.web.schemas import ErrorResponse, InvalidRequestResponse

FHIR_NDJSON = "application/fhir+ndjson"
DEFAULT_PAGE, MAX_PAGE = 100, 1000
_EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
        "actor": {"type": ["object", "null"], "description": "`{key_id, name, role}`, a CDS client's "
                  "`{client, key_id}`, or null when no key was accepted"},
        "organization": {"type": ["string", "null"]},
        "action": {"enum": ["read", "search", "create", "sign-in", "sign-in-failed", "export"]},
        "resource": {"enum": ["evaluation", "request", "determination", "note", "questionnaire", "audit",
                              "metrics", "page"]},
        "resource_id": {"type": ["string", "null"]},
        "status": {"type": "integer"},
        "client_ip": {"type": ["string", "null"]},
    },
}

router = APIRouter(
    prefix="/audit",
    tags=["audit"],
    responses={status: {"model": ErrorResponse} for status in (401, 403, 429, 503)},
)


@router.get(
    "",
    summary="The audit trail, newest first, a page at a time (auditor keys only)",
    responses={
        200: {"content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "events": {"type": "array", "items": _EVENT_SCHEMA},
                "next_cursor": {"type": ["string", "null"]}}}},
            FHIR_NDJSON: {"schema": {"type": "string", "description": "one FHIR R4 AuditEvent a line; the next "
                                     "page's URL in the Link header (rel=next)"}},
        }},
        422: {"model": InvalidRequestResponse},
    },
    dependencies=[audited("search", "audit")],
)
def list_audit(
    request: Request,
    _key: AuditorKey,
    db: DatabaseDep,
    since: Annotated[str | None, Query(max_length=40, description="ISO 8601 date or date-time (UTC if no "
                                       "offset): records at or after it")] = None,
    until: Annotated[str | None, Query(max_length=40, description="ISO 8601 date or date-time: records "
                                       "before it")] = None,
    actor: Annotated[str | None, Query(max_length=32, description="a key id")] = None,
    resource_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="records per page")] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=512, description="`next_cursor` of the page before")] = None,
) -> Response:
    ndjson = FHIR_NDJSON in (request.headers.get("accept") or "").lower()
    if ndjson:
        audit_of(request).action = "export"
    where = AuditFilter(_moment("since", since), _moment("until", until), actor, resource_id)
    try:
        page = list_audit_records(db, where, limit, cursor)
    except InvalidCursor as error:
        raise InvalidInput.one("query.cursor", f"Invalid cursor: {error}; use a next_cursor as given.",
                               "cursor_invalid") from None
    if not ndjson:
        body = {"events": [event(record) for record in page.results], "next_cursor": page.next_cursor}
        return Response(_dumps(body), media_type="application/json")
    headers = {}
    if page.next_cursor:
        query = {**request.query_params, "cursor": page.next_cursor}
        headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
    lines = "".join(_dumps(audit_event(record)) + "\n" for record in page.results)
    return Response(lines, media_type=FHIR_NDJSON, headers=headers)


def _moment(name: str, text: str | None) -> datetime.datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput.one(f"query.{name}", "Must be an ISO 8601 date (2026-12-05) or date-time "
                               "(2026-12-05T14:30:00Z).", "datetime_parsing") from None
    return moment.replace(tzinfo=datetime.UTC) if moment.tzinfo is None else moment


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
