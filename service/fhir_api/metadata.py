"""``GET /fhir/metadata``: the CapabilityStatement of the FHIR base (R4): every operation served
under /fhir, DTR's payer service and PAS's intermediary (the Claim operations)."""

from __future__ import annotations

import datetime
from typing import Any

from fastapi import Request, Response

from service.fhir_api.routing import FHIR_ANSWER, fhir_answer, fhir_base, fhir_router

router = fhir_router()

DTR_OPERATIONS = "http://hl7.org/fhir/us/davinci-dtr/OperationDefinition"
PAS_OPERATIONS = "http://hl7.org/fhir/us/davinci-pas/OperationDefinition"
# (resource type, operation name, its definition, what this service does with it)
OPERATIONS = (
    ("Questionnaire", "questionnaire-package", f"{DTR_OPERATIONS}/questionnaire-package",
     "The questionnaire for an order (or, with context, what an evaluation is missing), its CQL library "
     "(text/cql and application/elm+json) and value sets."),
    ("Questionnaire", "log-questionnaire-errors", f"{DTR_OPERATIONS}/log-questionnaire-errors",
     "Errors a DTR client met with a questionnaire, stored and listed per questionnaire version."),
    ("ValueSet", "expand", "http://hl7.org/fhir/OperationDefinition/ValueSet-expand",
     "The value sets the questionnaire packages use."),
    ("Claim", "submit", f"{PAS_OPERATIONS}/Claim-submit",
     "A PAS request Bundle evaluated against the policy its items' codes select; answered pended."),
    ("Claim", "inquire", f"{PAS_OPERATIONS}/Claim-inquire", "The current ClaimResponse of a request."),
)
SERVER_LEVEL = (("questionnaire-package", f"{DTR_OPERATIONS}/questionnaire-package"),)


def capability_statement(base: str) -> dict[str, Any]:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource, name, definition, documentation in OPERATIONS:
        by_type.setdefault(resource, []).append({"name": name, "definition": definition, "documentation": documentation})
    resources = [{"type": resource, "operation": operations} for resource, operations in by_type.items()]
    resources.append({"type": "QuestionnaireResponse", "interaction": [{
        "code": "create", "documentation": "A completed DTR QuestionnaireResponse (bare, or a Bundle with it first): "
        "its answers complete the case of the evaluation its context names, evaluated again as a resubmission."}]})
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": datetime.date.today().isoformat(),
        "publisher": "coverage-criteria", "kind": "instance", "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "implementation": {"description": "Coverage criteria: findings that support a reviewer's determination; "
                           "never a coverage decision.", "url": base},
        "instantiates": ["http://hl7.org/fhir/us/davinci-dtr/CapabilityStatement/dtr-payer-service|2.0.1"],
        "rest": [{
            "mode": "server",
            "documentation": "Send the API key as Authorization: Bearer <key> or in X-API-Key. Errors are one "
                             "OperationOutcome.",
            "security": {"description": "API key (intake role) as a bearer token or in X-API-Key."},
            "resource": resources,
            "operation": [{"name": name, "definition": definition} for name, definition in SERVER_LEVEL],
        }],
    }


@router.get("/metadata", summary="The CapabilityStatement of the FHIR base", responses={200: FHIR_ANSWER})
def metadata(request: Request) -> Response:
    return fhir_answer(capability_statement(fhir_base(request)))
