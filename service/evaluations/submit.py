"""Evaluate a case and store it: the one path every face shares (REST JSON and FHIR Bundles,
CDS Hooks, and the FHIR operations). The caller may acknowledge only after a store returns."""

from __future__ import annotations

import json
from typing import Any

from service.engine.evaluation import Evaluator
from service.evaluations.bundle import evidence_sources, outcome_errors, read_bundle
from service.fhir.intake import continued_evaluation
from service.fhir.outcome import OperationOutcomeError
from service.fhir.parse import read_json
from service.json_output import json_bytes
from service.store.database import Database
from service.store.evaluations import evaluation_row, get_evaluation_case, get_evaluation_result, save_evaluation
from service.store.idempotency import IdempotencyClaim


def evaluate_bundle_and_store(evaluator: Evaluator, db: Database, body: bytes, key_id: str,
                              query: dict[str, str | None],
                              idempotency: IdempotencyClaim | None = None) -> tuple[str, str] | None:
    """A FHIR Bundle's evaluation; the case stored is the plain case read from it, so it can be
    evaluated again (``rules impact``) without FHIR."""
    bundle = read_json(body)
    base, earlier = None, {}
    if (continued := continued_evaluation(bundle)) is not None:  # answers to an evaluation's questionnaire
        base_json = get_evaluation_case(db, continued)
        if base_json is None:
            raise OperationOutcomeError.one("not-found", "The QuestionnaireResponse answers the questionnaire of "
                                            "an evaluation this service does not hold.")
        base, earlier = json.loads(base_json), evidence_sources(json.loads(get_evaluation_result(db, continued)))
    read = read_bundle(evaluator, bundle, base=base, **query)
    with outcome_errors(read):
        return evaluate_and_store(evaluator, db, read.case, key_id, idempotency, {**earlier, **read.fhir.provenance},
                                  notes=read.fhir.notes)


def evaluate_and_store(
    evaluator: Evaluator, db: Database, payload: Any, key_id: str,
    idempotency: IdempotencyClaim | None = None, provenance: dict[str, Any] | None = None,
    notes: list[dict[str, Any]] | None = None,
) -> tuple[str, bytes] | None:
    """Evaluate, serialize once, commit; the caller may acknowledge only after this returns.
    The evaluation's id and result JSON; None, nothing stored, when another request claimed the
    same Idempotency-Key first. ``notes`` (what the FHIR intake did not read, and conflicts
    between answers and the chart) go into the result as ``intake_notes``."""
    result = evaluator.evaluate(payload, provenance=provenance)
    if notes:
        result["intake_notes"] = notes
    result_json = json_bytes(result)
    stored = save_evaluation(db, idempotency=idempotency, **_stored(result, result_json, payload, key_id))
    return (result["evaluation_id"], result_json) if stored else None


async def evaluate_and_commit(evaluator: Evaluator, db: Database, payload: Any, key_id: str) -> tuple[str, bytes]:
    """``evaluate_and_store`` without an Idempotency-Key, on the event loop: the evaluation costs
    less than a hand-off to a thread, and the group commit is awaited without blocking."""
    result = evaluator.evaluate(payload)
    result_json = json_bytes(result)
    await db.writer.commit_async([evaluation_row(**_stored(result, result_json, payload, key_id))])
    return result["evaluation_id"], result_json


def _stored(result: dict[str, Any], result_json: bytes, payload: Any, key_id: str) -> dict[str, str]:
    """The columns of a stored evaluation: the result as returned, the case as received."""
    return {
        "evaluation_id": result["evaluation_id"],
        "external_id": result["external_id"],
        "policy_id": result["policy"]["id"],
        "policy_version": result["policy"]["version"],
        "key_id": key_id,
        "case_json": json_bytes(payload).decode(),
        "result_json": result_json.decode(),
    }
