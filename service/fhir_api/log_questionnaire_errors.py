"""``POST /fhir/Questionnaire/$log-questionnaire-errors`` (DTR): a client reports the errors it met
with a questionnaire (a CQL failure, say); stored, and listed per questionnaire version by
``GET`` on the same path (reviewer keys: the form authors' view).

Parameter names differ between DTR versions (2.0.1's OperationDefinition: ``Questionnaire`` and
``OperationOutcome``; its profile: ``questionnaire`` and ``outcome``; 2.2: ``operationOutcome``):
all are accepted, in any case.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.fhir.outcome import Issue, OperationOutcomeError, operation_outcome
from service.fhir_api.questionnaire_errors import list_errors, save_error
from service.fhir_api.routing import FHIR_ANSWER, FHIR_BODY, fhir_answer, fhir_body, fhir_router
from service.web.audit import audited
from service.web.dependencies import DatabaseDep, IntakeKey, ReviewerKey

router = fhir_router()
PATH = "/Questionnaire/$log-questionnaire-errors"
_QUESTIONNAIRE = {"questionnaire"}
_OUTCOME = {"outcome", "operationoutcome"}


# The errors are about a questionnaire, which may be an evaluation's (its id in the canonical).
@router.post(PATH, openapi_extra=FHIR_BODY, responses={200: FHIR_ANSWER, 400: FHIR_ANSWER},
             summary="DTR $log-questionnaire-errors: store the errors a client met with a questionnaire",
             dependencies=[audited("create", "questionnaire")])
async def log_questionnaire_errors(request: Request, key: IntakeKey, db: DatabaseDep) -> Response:
    canonical, outcome = _read(await fhir_body(request))
    url, _, version = canonical.partition("|")
    await run_in_threadpool(save_error, db, url, version, key.id, outcome)
    issue = Issue("informational", f"{len(outcome.get('issue', []))} issue(s) logged against {canonical}.",
                  severity="information")
    return fhir_answer(operation_outcome([issue]))


def _read(body: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters" or not isinstance(body.get("parameter"), list):
        raise OperationOutcomeError.one("structure", "The body must be a Parameters resource.", "Parameters", status=400)
    canonical = outcome = None
    for entry in body["parameter"]:
        name = str(entry.get("name", "")).lower() if isinstance(entry, dict) else ""
        if name in _QUESTIONNAIRE:
            canonical = entry.get("valueCanonical") or entry.get("valueUri")
        elif name in _OUTCOME and isinstance(entry.get("resource"), dict):
            outcome = entry["resource"]
    issues = []
    if not isinstance(canonical, str) or not canonical.strip():
        issues.append(Issue("required", "questionnaire (a valueCanonical) names the questionnaire the errors are about.",
                            "Parameters.parameter"))
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome" \
            or not isinstance(outcome.get("issue"), list):
        issues.append(Issue("required", "outcome (an OperationOutcome with its issues) holds the errors.",
                            "Parameters.parameter"))
    if issues:
        raise OperationOutcomeError(issues, status=400)
    return canonical.strip(), outcome


@router.get(PATH, responses={200: FHIR_ANSWER},
            summary="The errors logged against a questionnaire, per version (newest first)",
            dependencies=[audited("search", "questionnaire")])
async def list_questionnaire_errors(
    _key: ReviewerKey, db: DatabaseDep,
    questionnaire: Annotated[str, Query(min_length=1, max_length=2200,
                                        description="The questionnaire's canonical: url, or url|version")],
) -> Response:
    url, bar, version = questionnaire.partition("|")
    rows = await run_in_threadpool(list_errors, db, url, version if bar else None)
    entries = [{"fullUrl": f"urn:uuid:{row['id']}", "resource": {**row["outcome"], "id": row["id"]},
                "search": {"mode": "match"},
                "extension": [{"url": "urn:coverage-criteria:questionnaire-version", "valueString": row["version"]}]}
               for row in rows]
    return fhir_answer({"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries})
