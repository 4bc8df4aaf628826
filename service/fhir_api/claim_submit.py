"""``POST /fhir/Claim/$submit`` (Da Vinci PAS, intake key): a PAS request Bundle in, the pended
PAS response Bundle out (``service.evaluations.pas``; docs/pas.md)."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool

from service.evaluations.pas import submit_claim
from service.fhir.outcome import FHIR_JSON
from service.fhir_api.routing import FHIR_ANSWER, fhir_answer, fhir_router
from service.web.audit import audit_of, audited
from service.web.dependencies import DatabaseDep, EvaluatorDep, IntakeKey

router = fhir_router()

_BUNDLE_BODY = {"requestBody": {"required": True, "content": {FHIR_JSON: {"schema": {
    "type": "object", "required": ["resourceType"],
    "properties": {"resourceType": {"const": "Bundle"}, "type": {"const": "collection"},
                   "entry": {"type": "array", "items": {"type": "object"}}},
    "description": "A PAS request Bundle: the Claim (use = preauthorization) first, then every "
                   "resource it references."}}}}}


@router.post(
    "/Claim/$submit",
    summary="Da Vinci PAS: submit a prior-authorization request; answered pended (X12 306 A4)",
    openapi_extra=_BUNDLE_BODY,
    dependencies=[audited("create", "evaluation")],
    responses={200: {"description": "A PAS response Bundle, ClaimResponse first", **FHIR_ANSWER},
               400: {"description": "A malformed request (one OperationOutcome); nothing stored", **FHIR_ANSWER},
               413: {"description": "The body is over the size limit", **FHIR_ANSWER},
               422: {"description": "No policy here lists the items' codes (one OperationOutcome)", **FHIR_ANSWER}},
)
async def submit(request: Request, key: IntakeKey, db: DatabaseDep, evaluator: EvaluatorDep) -> Response:
    body = await request.body()
    submitted = await run_in_threadpool(submit_claim, evaluator, db, body, key, clock=request.app.state.due_clock,
                                        audit=audit_of(request))
    return fhir_answer(submitted.answer)
