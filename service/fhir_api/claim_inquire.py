"""``POST /fhir/Claim/$inquire`` (Da Vinci PAS, intake key): the current answer to a request.

The inquiry Bundle is checked as a request Bundle is (its Claim first, ``use`` = preauthorization,
the entries its references need) and names the request by the Claim's identifier value, the
external_id it was submitted under. Only the submitting organization may inquire: another's
request is a 404, exactly like an unknown one. The answer is pended (A4) while the request has no
closing determination in force (``service.determinations``: none yet, or a submission since has
reopened the request), else the reviewer's outcome (``service.fhir.pas.decision``).
"""

from __future__ import annotations

import datetime
from typing import Any

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool

from service.determinations.record import latest_closing_determination
from service.engine.evaluation import Evaluator
from service.evaluations.pas import requests_named
from service.fhir.outcome import FHIR_JSON, OperationOutcomeError
from service.fhir.parse import read_json
from service.fhir.pas.decision import Determination, pended_or_decided
from service.fhir.pas.request import read_request
from service.fhir_api.routing import FHIR_ANSWER, fhir_answer, fhir_router
from service.store.database import Database
from service.web.audit import audited
from service.web.dependencies import DatabaseDep, EvaluatorDep, IntakeKey

router = fhir_router()
_BUNDLE_BODY = {"requestBody": {"required": True, "content": {FHIR_JSON: {"schema": {
    "type": "object", "required": ["resourceType"],
    "properties": {"resourceType": {"const": "Bundle"}, "entry": {"type": "array", "items": {"type": "object"}}},
    "description": "A PAS inquiry request Bundle: the ClaimInquiry first, its identifier the request's."}}}}}


@router.post(
    "/Claim/$inquire",
    summary="Da Vinci PAS: the current answer to a request (pended until a reviewer decides)",
    openapi_extra=_BUNDLE_BODY,
    dependencies=[audited("read", "request")],
    responses={200: {"description": "A PAS inquiry response Bundle (in Parameters for PAS 2.2.0)", **FHIR_ANSWER},
               400: {"description": "A malformed inquiry (one OperationOutcome)", **FHIR_ANSWER},
               404: {"description": "No request of the caller's organization has this identifier", **FHIR_ANSWER},
               413: {"description": "The body is over the size limit", **FHIR_ANSWER}},
)
async def inquire(request: Request, key: IntakeKey, db: DatabaseDep, evaluator: EvaluatorDep) -> Response:
    body = await request.body()
    return fhir_answer(await run_in_threadpool(inquire_claim, evaluator, db, body, key.organization))


def inquire_claim(evaluator: Evaluator, db: Database, body: bytes, organization: str,
                  now: datetime.datetime | None = None) -> dict[str, Any]:
    """The inquiry answer for ``organization``'s requests under the inquiry's identifier."""
    inquiry = read_request(read_json(body), operation="inquire")
    request_ids = requests_named(db, evaluator, inquiry.external_id, organization)
    if not request_ids:
        raise OperationOutcomeError.one("not-found", "No prior-authorization request of this organization has "
                                        "this identifier.", inquiry.external_id_path, status=404)
    answers = []
    for request_id in request_ids:
        record = latest_closing_determination(db, request_id)
        answers.append((request_id, Determination.from_record(record) if record is not None else None))
    return pended_or_decided(inquiry, answers, now=now or datetime.datetime.now(datetime.UTC))

