"""``POST /fhir/QuestionnaireResponse``: a completed DTR QuestionnaireResponse (bare, or first in a
Bundle with what it references) completes the case of the evaluation its context names, and the
case is evaluated again and stored as that request's next submission (same ``external_id``).

Answers are read by linkId as the FHIR intake reads them (service.fhir.answers): each answer's
evidence cites the response and its linkId and keeps its DTR information-origin. Unknown
questionnaire or context: 404; answers of the wrong type: 422; nothing is stored then.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool

from service.audit.record import Access

from service.evaluations.bundle import evidence_sources, outcome_errors, read_bundle
from service.evaluations.submit import evaluate_and_store
from service.fhir.dtr.responses import Submission, flag_replaced_values, read_submission
from service.fhir.outcome import Issue, OperationOutcomeError, operation_outcome
from service.fhir_api.routing import FHIR_ANSWER, FHIR_BODY, fhir_answer, fhir_body, fhir_router
from service.store.evaluations import get_evaluation_case, get_evaluation_result
from service.store.keys import KeyRecord
from service.web.audit import audit_of, audited
from service.web.dependencies import DatabaseDep, EvaluatorDep, IntakeKey

router = fhir_router()


@router.post("/QuestionnaireResponse", status_code=201, openapi_extra=FHIR_BODY,
             summary="A completed DTR QuestionnaireResponse: its answers complete the evaluation it names",
             responses={201: FHIR_ANSWER, 400: FHIR_ANSWER, 404: FHIR_ANSWER, 422: FHIR_ANSWER},
             dependencies=[audited("create", "evaluation")])
async def create_questionnaire_response(request: Request, key: IntakeKey, db: DatabaseDep,
                                        evaluator: EvaluatorDep) -> Response:
    submission = read_submission(await fhir_body(request))
    stored = await run_in_threadpool(_evaluate, evaluator, db, submission, key, audit_of(request))
    evaluation_id, result = stored
    summary = result["summary"]
    missing = result.get("missing_information", [])
    text = (f"{submission.reference} completed evaluation {submission.evaluation_id}: stored as evaluation "
            f"{evaluation_id} of request {result['external_id']} ({summary['met']} of {summary['total']} criteria met, "
            f"{len(missing)} field(s) still missing). Findings support a reviewer's determination; "
            "they are not a coverage decision.")
    response = fhir_answer(operation_outcome([Issue("informational", text, severity="information")]), status=201)
    response.headers["Location"] = f"/v1/evaluations/{evaluation_id}"
    return response


def _evaluate(evaluator: Any, db: Any, submission: Submission, key: KeyRecord,
              audit: Access) -> tuple[str, dict[str, Any]]:
    case_json = get_evaluation_case(db, key, submission.evaluation_id)  # the store's read: where tenancy is checked
    result_json = get_evaluation_result(db, key, submission.evaluation_id)
    if case_json is None or result_json is None:
        raise OperationOutcomeError.one("not-found", f"The context names evaluation {submission.evaluation_id!r}, "
                                        "which this service does not hold.", submission.where, status=404)
    base, earlier = json.loads(case_json), json.loads(result_json)
    if submission.policy_id is not None and submission.policy_id != earlier["policy"]["id"]:
        raise OperationOutcomeError.one("business-rule", f"The response answers the questionnaire of policy "
                                        f"{submission.policy_id}, but evaluation {submission.evaluation_id} is under "
                                        f"{earlier['policy']['id']}.", f"{submission.where}.questionnaire")
    read = read_bundle(evaluator, submission.bundle, external_id=base.get("external_id"), base=base)
    if not any(s.get("reference") == submission.reference for s in read.fhir.provenance.values()) \
            and not any(n.get("reference") == submission.reference for n in read.fhir.notes):
        raise OperationOutcomeError.one("not-found", "No item of the response has a linkId of a case field, so it "
                                        "answers nothing this evaluation asks.", f"{submission.where}.item")
    flag_replaced_values(base, evidence_sources(earlier), read, evaluator.dictionary)
    with outcome_errors(read):
        stored = evaluate_and_store(evaluator, db, read.case, key.id, None,
                                    {**evidence_sources(earlier), **read.fhir.provenance}, notes=read.fhir.notes,
                                    organization=key.organization, audit=audit)
    if stored is None:  # only an Idempotency-Key claimed elsewhere gives None, and none is used here
        raise RuntimeError("the evaluation was not stored")
    return stored[0], json.loads(stored[1])
