"""Evaluate a case and store it: the one path every face shares (REST JSON and FHIR Bundles,
CDS Hooks, and the FHIR operations). The caller may acknowledge only after a store returns.

Every stored evaluation opens or resubmits its request (``service.requests.grouping``) in the
same transaction, and its result names it (``request_id``), except where the caller says it
opens none (``opens_request=False``: CDS Hooks answers to an ordering clinician). Every result
also names its submitter's organization (``"submitter": {"organization": …}``), which decides
who may read it; and the request's audit record, when it has one, is committed with the
evaluation (the same group commit or transaction), so neither is stored without the other.
Keywords every function here takes after the key id:

- ``organization`` (required): the submitter's organization (a key's, a CDS Hooks client's);
- ``audit``: the request's audit record in the making (``service.audit.record.Access``), if any;
- ``opens_request``: False for an evaluation that is no request (its ``request_id`` is null);
- ``clock``: the due-time clock (default: from the environment; the app passes its settings').
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy.exc import IntegrityError

from service.audit.record import Access
from service.engine.evaluation import Evaluated, Evaluator
from service.evaluations.bundle import evidence_sources, outcome_errors, read_bundle
from service.fhir.intake import continued_evaluation
from service.fhir.outcome import OperationOutcomeError
from service.fhir.parse import read_json
from service.json_output import json_bytes
from service.requests.grouping import (
    DueClock,
    case_priority,
    request_of_result,
    request_row,
    with_request_id,
)
from service.store.database import Database
from service.store.evaluations import evaluation_row, get_evaluation_case, get_evaluation_result, save_rows
from service.store.idempotency import IdempotencyClaim
from service.store.keys import KeyRecord

CREATED = 201


def evaluate_bundle_and_store(evaluator: Evaluator, db: Database, body: bytes, submitter: KeyRecord,
                              query: dict[str, str | None], idempotency: IdempotencyClaim | None = None,
                              audit: Access | None = None, **request: Any) -> tuple[str, bytes] | None:
    """A FHIR Bundle's evaluation; the case stored is the plain case read from it, so it can be
    evaluated again (``rules impact``) without FHIR. Answers to an evaluation's questionnaire
    continue that evaluation's case, if ``submitter`` may read it: another organization's
    evaluation is as unknown as one never stored (404)."""
    bundle = read_json(body)
    base, earlier = continued_case(db, submitter, bundle)
    read = read_bundle(evaluator, bundle, base=base, **query)
    with outcome_errors(read):
        return evaluate_and_store(evaluator, db, read.case, submitter.id, idempotency,
                                  {**earlier, **read.fhir.provenance}, notes=read.fhir.notes,
                                  organization=submitter.organization, audit=audit, **request)


def continued_case(db: Database, submitter: KeyRecord, bundle: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """When a QuestionnaireResponse of the Bundle answers an evaluation's questionnaire: that
    evaluation's stored case (the Bundle's values complete it) and the FHIR sources of its evidence
    (so values taken from it keep citing where they came from); else ``(None, {})``. Another
    organization's evaluation is as unknown to ``submitter`` as one never stored (404)."""
    continued = continued_evaluation(bundle)
    if continued is None:
        return None, {}
    base_json = get_evaluation_case(db, submitter, continued)
    result_json = get_evaluation_result(db, submitter, continued)
    if base_json is None or result_json is None:
        raise OperationOutcomeError.one("not-found", "The QuestionnaireResponse answers the questionnaire of "
                                        "an evaluation this service does not hold.", status=404)
    return json.loads(base_json), evidence_sources(json.loads(result_json))


def evaluate_and_store(
    evaluator: Evaluator, db: Database, payload: Any, key_id: str,
    idempotency: IdempotencyClaim | None = None, provenance: dict[str, Any] | None = None,
    notes: list[dict[str, Any]] | None = None, *,
    organization: str, audit: Access | None = None, opens_request: bool = True, clock: DueClock | None = None,
) -> tuple[str, bytes] | None:
    """Evaluate, serialize once, commit (with its request's row and ``audit``'s record); the
    caller may acknowledge only after this returns. The evaluation's id and result JSON; None,
    nothing stored, when another request claimed the same Idempotency-Key first. ``notes`` (what
    the FHIR intake did not read, and conflicts between answers and the chart) go into the result
    as ``intake_notes``."""
    evaluated = evaluator.evaluate_json(payload, provenance=provenance)
    if notes:
        evaluated = evaluated.with_member("intake_notes", notes)
    rows, result_json = _submission(db, evaluated, payload, key_id, organization, opens_request, clock)
    if not save_rows(db, rows, idempotency, _audit_rows(audit, evaluated)):
        return None
    if audit is not None:
        audit.committed()
    return evaluated.evaluation_id, result_json


async def evaluate_and_commit(evaluator: Evaluator, db: Database, payload: Any, key_id: str,
                              idempotency: IdempotencyClaim | None = None, *, organization: str,
                              audit: Access | None = None, clock: DueClock | None = None) -> tuple[str, bytes] | None:
    """``evaluate_and_store`` on the event loop (the evaluation costs less than a hand-off to a
    thread), its rows committed by the group commit, awaited without blocking: its request's,
    the evaluation's, its Idempotency-Key record and its audit record, in one transaction. None,
    nothing stored, when another request recorded the same key first (the transaction then fails
    on the record)."""
    evaluated = evaluator.evaluate_json(payload)
    rows, result_json = _submission(db, evaluated, payload, key_id, organization, True, clock)
    also = _audit_rows(audit, evaluated)
    record = [] if idempotency is None else [idempotency.row(evaluated.evaluation_id, rows[-1][1]["created_at"])]
    try:
        await db.writer.commit_async([*rows, *record, *also])
    except IntegrityError:
        if idempotency is None:
            raise
        if idempotency.previous(db) is not None:
            return None
        # The key's record is older than 24 h: the transaction that replaces it, in a thread.
        if not await asyncio.to_thread(save_rows, db, rows, idempotency, also):
            return None
    if audit is not None:
        audit.committed()
    return evaluated.evaluation_id, result_json


def _audit_rows(audit: Access | None, evaluated: Evaluated) -> list[Any]:
    if audit is None:
        return []
    audit.resource_id = evaluated.evaluation_id
    return list(audit.rows(CREATED))


def _submission(db: Database, evaluated: Evaluated, payload: Any, key_id: str, organization: str,
                opens_request: bool, clock: DueClock | None) -> tuple[list, bytes]:
    """The rows to commit, parents first (the request's, then the evaluation's: the result as
    returned, naming its request and its submitter, and the case as received), and the result's
    JSON."""
    # What the request's id and row are made of, as the result says it.
    result = {"evaluation_id": evaluated.evaluation_id, "external_id": evaluated.external_id,
              "policy": {"id": evaluated.policy_id}, "summary": {"outcome": evaluated.outcome}}
    rid = request_of_result(db, result, organization) if opens_request else None
    result_json = naming_request(evaluated.with_member("submitter", {"organization": organization}), rid)
    evaluation = evaluation_row(
        evaluation_id=evaluated.evaluation_id,
        external_id=evaluated.external_id,
        policy_id=evaluated.policy_id,
        policy_version=evaluated.policy_version,
        key_id=key_id,
        organization=organization,
        case_json=json_bytes(payload).decode(),
        result_json=result_json,
        request_id=rid,
    )
    if not opens_request:
        return [evaluation], result_json
    request = request_row(db, rid, result, priority=case_priority(payload), organization=organization,
                          at=evaluation[1]["created_at"], clock=clock)
    return [request, evaluation], result_json


def naming_request(evaluated: Evaluated, rid: str | None) -> bytes:
    """The result's JSON naming its request: the bytes of ``json_bytes(with_request_id(result,
    rid))``, written by inserting the member after ``external_id`` rather than by reading the
    ~21 kB result back into a dict and writing it again (~40 µs)."""
    head = b'{"evaluation_id":' + json_bytes(evaluated.evaluation_id) + b',"external_id":' + json_bytes(
        evaluated.external_id)
    if not evaluated.json.startswith(head):  # not as the result builder writes it: the long way
        return json_bytes(with_request_id(evaluated.result(), rid))
    return head + b',"request_id":' + json_bytes(rid) + evaluated.json[len(head):]
