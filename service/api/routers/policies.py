import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from service.web.dependencies import EvaluatorDep, IntakeKey
from service.web.schemas import ErrorResponse
from service.web.media import fhir_response
from service.fhir.questionnaire import for_policy

router = APIRouter(
    prefix="/policies",
    tags=["policies"],
    responses={status: {"model": ErrorResponse} for status in (401, 403, 429, 503)},
)


@router.get("", summary="The policies and versions the service knows")
def list_policies(_key: IntakeKey, evaluator: EvaluatorDep) -> dict[str, Any]:
    return {"policies": evaluator.policies()}


@router.get(
    "/{policy_id}",
    summary="One policy: its criteria, flags, thresholds in words, and citations",
    responses={404: {"model": ErrorResponse}},
)
def get_policy(policy_id: str, _key: IntakeKey, evaluator: EvaluatorDep) -> dict[str, Any]:
    policy = evaluator.describe_policy(policy_id)
    if policy is None:
        raise HTTPException(404, detail=f"No policy with id {policy_id!r}.")
    return policy


@router.get(
    "/{policy_id}/questionnaire",
    summary="An SDC Questionnaire (FHIR R4) asking for every field the policy in force today reads",
    responses={200: {"content": {"application/fhir+json": {"schema": {"type": "object"}}}},
               404: {"model": ErrorResponse}},
)
def get_policy_questionnaire(policy_id: str, request: Request, _key: IntakeKey, evaluator: EvaluatorDep) -> Response:
    versions = evaluator.catalog.versions.get(policy_id)
    if versions is None:
        raise HTTPException(404, detail=f"No policy with id {policy_id!r}.")
    version = evaluator.catalog.in_force(policy_id, datetime.date.today()) or versions[-1]
    return fhir_response(for_policy(evaluator.dictionary, version, str(request.url.replace(query=None))))
