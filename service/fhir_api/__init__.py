"""The FHIR operations face, at ``/fhir`` (shared/contract.md, "Da Vinci PAS and DTR"): one module
per operation, every error one OperationOutcome (``routing``).

- ``metadata``: ``GET /fhir/metadata``, the CapabilityStatement;
- ``questionnaire_package``: DTR ``$questionnaire-package``;
- ``questionnaire_response``: ``POST /fhir/QuestionnaireResponse``, answers completing an evaluation;
- ``valueset_expand``: ``ValueSet/$expand`` for the packages' value sets;
- ``log_questionnaire_errors``: DTR ``$log-questionnaire-errors``, stored and listed;
- ``claim_submit``, ``claim_inquire``: PAS (another module's work, composed here).
"""

from __future__ import annotations

from fastapi import APIRouter

from service.fhir_api import (
    log_questionnaire_errors,
    metadata,
    questionnaire_package,
    questionnaire_response,
    valueset_expand,
)

router = APIRouter(prefix="/fhir", tags=["fhir"])
for _module in (metadata, questionnaire_package, questionnaire_response, valueset_expand, log_questionnaire_errors):
    router.include_router(_module.router)
