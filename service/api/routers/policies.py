from typing import Any

from fastapi import APIRouter, HTTPException

from service.api.dependencies import EvaluatorDep, IntakeKey
from service.api.schemas import ErrorResponse

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
