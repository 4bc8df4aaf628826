"""Evaluate cases, and read back stored results exactly as they were first returned."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from service.api.dependencies import DatabaseDep, EvaluatorDep, IntakeKey, ReviewerKey
from service.errors import InvalidInput
from service.engine.evaluation import Evaluator
from service.api.schemas import ErrorResponse, InvalidRequestResponse
from service.json_output import json_bytes
from service.store.database import Database, evaluation_row, get_evaluation_result, list_evaluation_results

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
        "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Case"}}},
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
        413: {"model": ErrorResponse},
        422: {"model": InvalidRequestResponse},
    },
)
async def create_evaluation(
    request: Request, key: IntakeKey, db: DatabaseDep, evaluator: EvaluatorDep
) -> Response:
    payload = parse_json_body(request.headers.get("content-type"), await request.body())
    evaluation_id, result_json = await evaluate_and_store(evaluator, db, payload, key.id)
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


def parse_json_body(content_type: str | None, body: bytes) -> Any:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != _JSON and not media_type.endswith("+json"):
        raise InvalidInput.one(
            "headers.content-type", "The case must be sent as application/json.", "content_type"
        )
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:
        raise InvalidInput.one("body", f"The body is not valid JSON: {error}", "json_invalid") from None


async def evaluate_and_store(evaluator: Evaluator, db: Database, payload: Any, key_id: str) -> tuple[str, bytes]:
    """Evaluate, serialize once, commit; returns the id and the JSON to answer with, once durable.

    The evaluation runs on the event loop: it takes ~0.1 ms, less than a hand-off to a thread.
    The commit is the writer's (service.store.database.GroupCommit): it waits without blocking."""
    result = evaluator.evaluate(payload)
    result_json = json_bytes(result)
    row = evaluation_row(
        evaluation_id=result["evaluation_id"],
        external_id=result["external_id"],
        policy_id=result["policy"]["id"],
        policy_version=result["policy"]["version"],
        key_id=key_id,
        case_json=json_bytes(payload).decode(),
        result_json=result_json.decode(),
    )
    await db.writer.commit_async([row])
    return result["evaluation_id"], result_json


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
