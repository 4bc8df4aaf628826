"""Evaluate cases, and read back stored results exactly as they were first returned."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.audit.record import Access, Actor
from service.web.audit import audit_of, audited
from service.web.media import media_type, parse_json_body
from service.web.dependencies import DatabaseDep, EvaluatorDep, IntakeKey, ReviewerKey
from service.errors import InvalidInput
from service.evaluations.submit import evaluate_and_commit, evaluate_bundle_and_store
from service.web.schemas import ErrorResponse, InvalidRequestResponse
from service.web.media import fhir_response
from service.fhir.outcome import FHIR_JSON
from service.fhir.questionnaire import for_evaluation
from service.store.evaluations import get_evaluation_result, list_evaluation_results
from service.store.paging import InvalidCursor
from service.store.idempotency import HEADER, IdempotencyClaim, Previous
from service.store.keys import KeyRecord

router = APIRouter(
    prefix="/evaluations",
    tags=["evaluations"],
    responses={status: {"model": ErrorResponse} for status in (401, 403, 429, 503)},
)

_JSON = "application/json"
# The body is parsed by the handler (so the engine reports every field error itself); this
# documents it. The schema is added to the OpenAPI components by service.app.
_CASE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            _JSON: {"schema": {"$ref": "#/components/schemas/Case"}},
            # docs/fhir.md: a FHIR R4 Bundle; query parameters external_id, policy, service_date
            FHIR_JSON: {"schema": {
                "type": "object", "required": ["resourceType"],
                "properties": {"resourceType": {"const": "Bundle"}, "type": {"type": "string"},
                               "identifier": {"type": "object", "properties": {"value": {"type": "string"}}},
                               "entry": {"type": "array", "items": {"type": "object"}}},
            }},
        },
    }
}
_EVALUATION_LIST_SCHEMA = {
    "type": "object",
    "properties": {
        "external_id": {"type": "string"},
        "evaluations": {"type": "array", "items": {"type": "object"}},
        "next_cursor": {"type": ["string", "null"], "description": "pass as `cursor` for the next page; null on the last"},
    },
}
DEFAULT_PAGE, MAX_PAGE = 50, 500


@router.post(
    "",
    status_code=201,
    summary="Evaluate a case; the result is stored before it is returned",
    openapi_extra=_CASE_BODY,
    response_description="The result (see the contract); also served by GET /v1/evaluations/{id}",
    responses={
        201: {"content": {_JSON: {"schema": {"type": "object"}}}},
        409: {"model": ErrorResponse, "description": "The Idempotency-Key was used with a different body"},
        400: {"description": "A FHIR request whose body is not JSON (an OperationOutcome)",
              "content": {FHIR_JSON: {"schema": {"type": "object"}}}},
        413: {"model": ErrorResponse},
        422: {"model": InvalidRequestResponse, "description": "Invalid case (a FHIR request: an OperationOutcome)",
              "content": {FHIR_JSON: {"schema": {"type": "object"}}}},
    },
    dependencies=[audited("create", "evaluation")],
)
async def create_evaluation(
    request: Request,
    key: IntakeKey,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="1-255 visible ASCII characters. A retry with the same key and body gets the first "
            "answer again (`Idempotent-Replayed: true`), nothing new stored; the same key with another body "
            "gets 409. Scoped to the API key; kept 24 h.",
        ),
    ] = None,
) -> Response:
    # JSON cases are answered by service.api.lean_post before they reach FastAPI; this route
    # documents the operation and answers the rest (FHIR Bundles) the same way.
    return await post_evaluation(request.app.state, key, audit_of(request), request.url.path,
                                 request.headers.get("content-type"), idempotency_key, await request.body(),
                                 request.query_params)


async def post_evaluation(state: Any, key: KeyRecord, access: Access, path: str, content_type: str | None,
                          idempotency_key: str | None, body: bytes, query: Mapping[str, str]) -> Response:
    """``POST /v1/evaluations`` once its key is admitted (and its audit record begun) and its body
    read: a new evaluation (201), the first answer again to a retry with the same
    Idempotency-Key, or an error raised."""
    db, evaluator, clock = state.database, state.evaluator, state.due_clock
    if access.actor is None:  # the record stored with the evaluation names who sent it
        access.actor = Actor.of_key(key)
    claim = IdempotencyClaim.from_header(idempotency_key, key.id, body)
    if claim is not None and (previous := claim.previous(db)):
        return _answer_again(path, previous, access)
    if media_type(content_type) == FHIR_JSON:  # a FHIR Bundle: service.fhir reads the case from it
        bundle_query = {name: query.get(name) for name in ("external_id", "policy", "service_date")}
        stored = await run_in_threadpool(evaluate_bundle_and_store, evaluator, db, body, key, bundle_query, claim,
                                         access, clock=clock)
    else:  # on the event loop (it is ~0.1 ms) and stored by group commit, with its key's and audit's records
        stored = await evaluate_and_commit(evaluator, db, parse_json_body(content_type, body), key.id, claim,
                                           organization=key.organization, audit=access, clock=clock)
    if stored is None:  # a request with the same Idempotency-Key was stored first
        return _answer_again(path, claim.previous(db), access)
    return _created(path, *stored)


def _created(path: str, evaluation_id: str, result_json: str | bytes, replayed: bool = False) -> Response:
    headers = {"Location": f"{path}/{evaluation_id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(result_json, status_code=201, media_type=_JSON, headers=headers)


def _answer_again(path: str, previous: Previous, access: Access) -> Response:
    access.resource_id = previous.evaluation_id
    if not previous.same_body:
        raise HTTPException(
            409,
            detail=f"This {HEADER} was used with a different body within the last 24 hours; "
            "use a new key for a new request.",
        )
    return _created(path, previous.evaluation_id, previous.result_json, replayed=True)


@router.get(
    "/{evaluation_id}",
    summary="A stored result, exactly as it was returned",
    responses={200: {"content": {_JSON: {"schema": {"type": "object"}}}}, 404: {"model": ErrorResponse}},
    dependencies=[audited("read", "evaluation", "evaluation_id")],
)
def get_evaluation(evaluation_id: str, key: IntakeKey, db: DatabaseDep) -> Response:
    result_json = get_evaluation_result(db, key, evaluation_id)
    if result_json is None:
        raise HTTPException(404, detail="No evaluation with this id.")
    return Response(result_json, media_type=_JSON)


@router.get(
    "/{evaluation_id}/questionnaire",
    summary="An SDC Questionnaire (FHIR R4) asking only for the fields this evaluation is missing",
    responses={200: {"content": {FHIR_JSON: {"schema": {"type": "object"}}}}, 404: {"model": ErrorResponse}},
    dependencies=[audited("read", "questionnaire", "evaluation_id")],
)
def get_evaluation_questionnaire(evaluation_id: str, request: Request, key: IntakeKey, db: DatabaseDep,
                                 evaluator: EvaluatorDep) -> Response:
    result_json = get_evaluation_result(db, key, evaluation_id)
    if result_json is None:
        raise HTTPException(404, detail="No evaluation with this id.")
    url = str(request.url.replace(query=None))
    return fhir_response(for_evaluation(evaluator.dictionary, json.loads(result_json), url))


@router.get(
    "",
    summary="Stored results for an intake reference, newest first, a page at a time (reviewer keys only)",
    responses={
        200: {"content": {_JSON: {"schema": _EVALUATION_LIST_SCHEMA}}},
        422: {"model": InvalidRequestResponse},
    },
    dependencies=[audited("search", "evaluation")],
)
def list_evaluations(
    external_id: Annotated[str, Query(min_length=1, max_length=128)],
    key: ReviewerKey,
    db: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="results per page")] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` of the page before; absent for the first page")
    ] = None,
) -> Response:
    try:
        page = list_evaluation_results(db, key, external_id, limit, cursor)
    except InvalidCursor as error:
        raise InvalidInput.one("query.cursor", f"Invalid cursor: {error}; use a next_cursor as given.",
                               "cursor_invalid") from None
    # Each stored text is spliced in unchanged, so every result reads exactly as first returned.
    body = (
        f'{{"external_id":{_dumps(external_id)},"evaluations":[{",".join(page.results)}],'
        f'"next_cursor":{_dumps(page.next_cursor)}}}'
    )
    return Response(body, media_type=_JSON)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
