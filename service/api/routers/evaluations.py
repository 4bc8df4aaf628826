"""Evaluate cases, and read back stored results exactly as they were first returned."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pydantic_core
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.api.dependencies import DatabaseDep, EvaluatorDep, IntakeKey, ReviewerKey
from service.errors import InvalidInput
from service.engine.evaluation import Evaluator
from service.api.schemas import ErrorResponse, InvalidRequestResponse
from service.fhir.evaluation import dictionary_of, evidence_sources, fhir_response, outcome_errors, read_bundle
from service.fhir.intake import continued_evaluation
from service.fhir.outcome import FHIR_JSON, OperationOutcomeError
from service.fhir.parse import read_json
from service.fhir.questionnaire import for_evaluation
from service.store.database import (
    Database,
    get_evaluation_case,
    get_evaluation_result,
    list_evaluation_results,
    save_evaluation,
)

router = APIRouter(
    prefix="/evaluations",
    tags=["evaluations"],
    responses={status: {"model": ErrorResponse} for status in (401, 403, 429, 503)},
)

_JSON = "application/json"
# The body is parsed by the handler (so the engine reports every field error itself); this
# documents it. The schema is added to the OpenAPI components by service.api.app.
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
    },
}


@router.post(
    "",
    status_code=201,
    summary="Evaluate a case; the result is stored before it is returned",
    openapi_extra=_CASE_BODY,
    response_description="The result (see the contract); also served by GET /v1/evaluations/{id}",
    responses={
        201: {"content": {_JSON: {"schema": {"type": "object"}}}},
        400: {"description": "A FHIR request whose body is not JSON (an OperationOutcome)",
              "content": {FHIR_JSON: {"schema": {"type": "object"}}}},
        413: {"model": ErrorResponse},
        422: {"model": InvalidRequestResponse, "description": "Invalid case (a FHIR request: an OperationOutcome)",
              "content": {FHIR_JSON: {"schema": {"type": "object"}}}},
    },
)
async def create_evaluation(
    request: Request, key: IntakeKey, db: DatabaseDep, evaluator: EvaluatorDep
) -> Response:
    content_type = request.headers.get("content-type")
    if _media_type(content_type) == FHIR_JSON:  # a FHIR Bundle: service.fhir reads the case from it
        query = {name: request.query_params.get(name) for name in ("external_id", "policy", "service_date")}
        work = (evaluate_bundle_and_store, evaluator, db, await request.body(), key.id, query)
    else:
        work = (evaluate_and_store, evaluator, db, parse_json_body(content_type, await request.body()), key.id)
    evaluation_id, result_json = await run_in_threadpool(*work)
    return Response(
        result_json,
        status_code=201,
        media_type=_JSON,
        headers={"Location": f"{request.url.path}/{evaluation_id}"},
    )


@router.get(
    "/{evaluation_id}",
    summary="A stored result, exactly as it was returned",
    responses={200: {"content": {_JSON: {"schema": {"type": "object"}}}}, 404: {"model": ErrorResponse}},
)
def get_evaluation(evaluation_id: str, _key: IntakeKey, db: DatabaseDep) -> Response:
    result_json = get_evaluation_result(db, evaluation_id)
    if result_json is None:
        raise HTTPException(404, detail="No evaluation with this id.")
    return Response(result_json, media_type=_JSON)


@router.get(
    "/{evaluation_id}/questionnaire",
    summary="An SDC Questionnaire (FHIR R4) asking only for the fields this evaluation is missing",
    responses={200: {"content": {FHIR_JSON: {"schema": {"type": "object"}}}}, 404: {"model": ErrorResponse}},
)
def get_evaluation_questionnaire(evaluation_id: str, request: Request, _key: IntakeKey, db: DatabaseDep,
                                 evaluator: EvaluatorDep) -> Response:
    result_json = get_evaluation_result(db, evaluation_id)
    if result_json is None:
        raise HTTPException(404, detail="No evaluation with this id.")
    url = str(request.url.replace(query=None))
    return fhir_response(for_evaluation(dictionary_of(evaluator), json.loads(result_json), url))


@router.get(
    "",
    summary="Stored results for an intake reference, newest first (reviewer keys only)",
    responses={
        200: {"content": {_JSON: {"schema": _EVALUATION_LIST_SCHEMA}}},
        422: {"model": InvalidRequestResponse},
    },
)
def list_evaluations(
    external_id: Annotated[str, Query(min_length=1, max_length=128)], _key: ReviewerKey, db: DatabaseDep
) -> Response:
    stored = list_evaluation_results(db, external_id)
    # Each stored text is spliced in unchanged, so every result reads exactly as first returned.
    body = f'{{"external_id":{_dumps(external_id)},"evaluations":[{",".join(stored)}]}}'
    return Response(body, media_type=_JSON)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_json_body(content_type: str | None, body: bytes) -> Any:
    media_type = _media_type(content_type)
    if media_type != _JSON and not media_type.endswith("+json"):
        raise InvalidInput.one(
            "headers.content-type", "The case must be sent as application/json.", "content_type"
        )
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:
        raise InvalidInput.one("body", f"The body is not valid JSON: {error}", "json_invalid") from None


def evaluate_bundle_and_store(evaluator: Evaluator, db: Database, body: bytes, key_id: str,
                              query: dict[str, str | None]) -> tuple[str, str]:
    """A FHIR Bundle's evaluation; the case stored is the plain case read from it, so it can be
    evaluated again (``rules impact``) without FHIR."""
    bundle = read_json(body)
    base, earlier = None, {}
    if (continued := continued_evaluation(bundle)) is not None:  # answers to an evaluation's questionnaire
        base_json = get_evaluation_case(db, continued)
        if base_json is None:
            raise OperationOutcomeError.one("not-found", "The QuestionnaireResponse answers the questionnaire of "
                                            "an evaluation this service does not hold.")
        base, earlier = json.loads(base_json), evidence_sources(json.loads(get_evaluation_result(db, continued)))
    read = read_bundle(evaluator, bundle, base=base, **query)
    with outcome_errors(read):
        return evaluate_and_store(evaluator, db, read.case, key_id, {**earlier, **read.fhir.provenance})


def evaluate_and_store(evaluator: Evaluator, db: Database, payload: Any, key_id: str,
                       provenance: dict[str, Any] | None = None) -> tuple[str, str]:
    """Evaluate, serialize once, commit; the caller may acknowledge only after this returns."""
    result = evaluator.evaluate(payload, provenance=provenance)
    # pydantic-core writes the ~20 kB result 2-3 times faster than json.dumps (as the CLI does).
    result_json = pydantic_core.to_json(result).decode()
    save_evaluation(
        db,
        evaluation_id=result["evaluation_id"],
        external_id=result["external_id"],
        policy_id=result["policy"]["id"],
        policy_version=result["policy"]["version"],
        key_id=key_id,
        case_json=_dumps(payload),
        result_json=result_json,
    )
    return result["evaluation_id"], result_json


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
