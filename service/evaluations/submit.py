"""Evaluate a case and store it: the one path every face shares (REST JSON and FHIR Bundles,
CDS Hooks, and the FHIR operations). The caller may acknowledge only after a store returns.

Every stored result names its submitter's organization (``"submitter": {"organization": …}``),
which decides who may read it; and the request's audit record, when it has one, is committed
with the evaluation (the same group commit or transaction), so neither is stored without the other.
"""

from __future__ import annotations

import json
from typing import Any

from service.audit.record import Access
from service.engine.evaluation import Evaluator
from service.evaluations.bundle import evidence_sources, outcome_errors, read_bundle
from service.fhir.intake import continued_evaluation
from service.fhir.outcome import OperationOutcomeError
from service.fhir.parse import read_json
from service.json_output import json_bytes
from service.store.database import Database
from service.store.evaluations import evaluation_row, get_evaluation_case, get_evaluation_result, save_evaluation
from service.store.idempotency import IdempotencyClaim
from service.store.keys import KeyRecord

CREATED = 201


def evaluate_bundle_and_store(evaluator: Evaluator, db: Database, body: bytes, submitter: KeyRecord,
                              query: dict[str, str | None], idempotency: IdempotencyClaim | None = None,
                              audit: Access | None = None) -> tuple[str, bytes] | None:
    """A FHIR Bundle's evaluation; the case stored is the plain case read from it, so it can be
    evaluated again (``rules impact``) without FHIR. Answers to an evaluation's questionnaire
    continue that evaluation's case, if ``submitter`` may read it: another organization's
    evaluation is as unknown as one never stored (404)."""
    bundle = read_json(body)
    base, earlier = None, {}
    if (continued := continued_evaluation(bundle)) is not None:  # answers to an evaluation's questionnaire
        base_json = get_evaluation_case(db, submitter, continued)
        result_json = get_evaluation_result(db, submitter, continued)
        if base_json is None or result_json is None:
            raise OperationOutcomeError.one("not-found", "The QuestionnaireResponse answers the questionnaire of "
                                            "an evaluation this service does not hold.", status=404)
        base, earlier = json.loads(base_json), evidence_sources(json.loads(result_json))
    read = read_bundle(evaluator, bundle, base=base, **query)
    with outcome_errors(read):
        return evaluate_and_store(evaluator, db, read.case, submitter.id, idempotency,
                                  {**earlier, **read.fhir.provenance}, organization=submitter.organization,
                                  audit=audit)


def evaluate_and_store(
    evaluator: Evaluator, db: Database, payload: Any, key_id: str,
    idempotency: IdempotencyClaim | None = None, provenance: dict[str, Any] | None = None, *,
    organization: str, audit: Access | None = None,
) -> tuple[str, bytes] | None:
    """Evaluate, serialize once, commit (with ``audit``'s record); the caller may acknowledge only
    after this returns. The evaluation's id and result JSON; None, nothing stored, when another
    request claimed the same Idempotency-Key first."""
    result = evaluator.evaluate(payload, provenance=provenance)
    result_json = _submitted(result, organization)
    also = _audit_rows(audit, result)
    stored = save_evaluation(db, idempotency=idempotency, also=also,
                             **_stored(result, result_json, payload, key_id, organization))
    if not stored:
        return None
    if audit is not None:
        audit.committed()
    return result["evaluation_id"], result_json


async def evaluate_and_commit(evaluator: Evaluator, db: Database, payload: Any, key_id: str, *,
                              organization: str, audit: Access | None = None) -> tuple[str, bytes]:
    """``evaluate_and_store`` without an Idempotency-Key, on the event loop: the evaluation costs
    less than a hand-off to a thread, and the group commit (the evaluation's row and its audit
    record, in the same batch) is awaited without blocking."""
    result = evaluator.evaluate(payload)
    result_json = _submitted(result, organization)
    row = evaluation_row(**_stored(result, result_json, payload, key_id, organization))
    await db.writer.commit_async([row, *_audit_rows(audit, result)])
    if audit is not None:
        audit.committed()
    return result["evaluation_id"], result_json


def _submitted(result: dict[str, Any], organization: str) -> bytes:
    """The result as returned and stored: with its submitter, serialized once."""
    result["submitter"] = {"organization": organization}
    return json_bytes(result)


def _audit_rows(audit: Access | None, result: dict[str, Any]) -> list[Any]:
    if audit is None:
        return []
    audit.resource_id = result["evaluation_id"]
    return list(audit.rows(CREATED))


def _stored(result: dict[str, Any], result_json: bytes, payload: Any, key_id: str,
            organization: str) -> dict[str, str]:
    """The columns of a stored evaluation: the result as returned, the case as received."""
    return {
        "evaluation_id": result["evaluation_id"],
        "external_id": result["external_id"],
        "policy_id": result["policy"]["id"],
        "policy_version": result["policy"]["version"],
        "key_id": key_id,
        "organization": organization,
        "case_json": json_bytes(payload).decode(),
        "result_json": result_json.decode(),
    }
