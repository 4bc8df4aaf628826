"""A Da Vinci PAS ``Claim/$submit``: the request Bundle checked and read (``service.fhir.pas``),
evaluated and stored through ``submit.evaluate_and_store`` like every other submission, and
answered with the pended PAS response Bundle.

Errors are one OperationOutcome: 400 for anything wrong with what was sent (the Bundle, the Claim,
a resource read, a value the case refuses) and for JSON that does not parse; 422 for a request
whose items no policy here lists. Nothing is stored for either.

Until the requests work lands (issue 18), a request is every evaluation stored by one key under
one external_id and policy, and its id is the id of its opening evaluation (``request_id_of``);
a result that names its ``request_id`` is believed first.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select

from service.engine.evaluation import Evaluator
from service.evaluations.bundle import outcome_errors
from service.evaluations.submit import continued_case, evaluate_and_store
from service.fhir.outcome import OperationOutcomeError
from service.fhir.parse import read_json
from service.fhir.pas.clinical import read_case
from service.fhir.pas.policy_choice import choose_policy
from service.fhir.pas.request import MALFORMED, PasRequest, read_request
from service.fhir.pas.response import pended_response
from service.store.database import Database
from service.store.tables import Evaluation


@dataclass(frozen=True)
class Submitted:
    """What a ``$submit`` stored: the request, its evaluation, and the answer to send."""

    request: PasRequest
    request_id: str
    result: dict[str, Any]
    answer: dict[str, Any]


def orders_of(evaluator: Evaluator) -> dict[str, list[tuple[str, str]]]:
    """Each policy's order codes (``orders:`` of any of its versions), as ``(system, code)``."""
    return {policy: [(o.system, o.code) for version in versions for o in version.orders]
            for policy, versions in evaluator.catalog.versions.items()}


def submit_claim(evaluator: Evaluator, db: Database, body: bytes, key_id: str,
                 now: datetime.datetime | None = None) -> Submitted:
    """Check, read, evaluate, store, answer; the answer may be sent once this returns."""
    bundle = read_json(body)  # 400 when it does not parse
    request = read_request(bundle)
    choice = choose_policy(request.items, orders_of(evaluator), evaluator.catalog.default_policy)
    try:
        base, earlier = continued_case(db, bundle)
        read = read_case(request, evaluator.dictionary, policy=choice.policy, sequences=choice.sequences, base=base)
        with outcome_errors(read):
            stored = evaluate_and_store(evaluator, db, read.case, key_id,
                                        provenance={**earlier, **read.fhir.provenance}, notes=read.fhir.notes)
    except OperationOutcomeError as error:
        raise OperationOutcomeError(error.issues, MALFORMED) from None
    assert stored is not None  # only an Idempotency-Key claimed first stores nothing
    result = orjson.loads(stored[1])
    request_id = request_id_of(db, result, key_id)
    answer = pended_response(request, request_id=request_id, result=result,
                             now=now or datetime.datetime.now(datetime.timezone.utc), sequences=choice.sequences)
    return Submitted(request, request_id, result, answer)


# --- stand-ins until the requests work (issue 18) lands ---------------------------------------------

def request_id_of(db: Database, result: dict[str, Any], key_id: str) -> str:
    """The id of the request an evaluation opened or resubmitted: the result's ``request_id`` when
    it names one, else the id of the first evaluation this key stored under the same external_id
    and policy."""
    named = result.get("request_id")
    if isinstance(named, str) and named:
        return named
    opening = select(Evaluation.id).where(
        Evaluation.external_id == result["external_id"], Evaluation.key_id == key_id,
        Evaluation.policy_id == result["policy"]["id"]).order_by(Evaluation.created_at, Evaluation.id).limit(1)
    with db.session() as session:
        return session.scalar(opening) or result["evaluation_id"]


def requests_named(db: Database, external_id: str, key_id: str) -> list[str]:
    """The ids of the requests this key opened under ``external_id`` (one per policy), oldest first."""
    query = select(Evaluation.id, Evaluation.policy_id).where(
        Evaluation.external_id == external_id, Evaluation.key_id == key_id).order_by(Evaluation.created_at, Evaluation.id)
    with db.session() as session:
        rows = session.execute(query).all()
    opening: dict[str, str] = {}
    for evaluation_id, policy_id in rows:
        opening.setdefault(policy_id, evaluation_id)
    return list(opening.values())
