"""A Da Vinci PAS ``Claim/$submit``: the request Bundle checked and read (``service.fhir.pas``),
evaluated and stored through ``submit.evaluate_and_store`` like every other submission, and
answered with the pended PAS response Bundle.

Errors are one OperationOutcome: 400 for anything wrong with what was sent (the Bundle, the Claim,
a resource read, a value the case refuses) and for JSON that does not parse; 422 for a request
whose items no policy here lists. Nothing is stored for either.

The evaluation opens or resubmits the request of the submitter's organization, the Claim's
identifier (its ``external_id``) and the chosen policy (``service.requests``), and the answer's
``preAuthRef`` is that request's id.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select

from service.audit.record import Access
from service.engine.evaluation import Evaluator
from service.evaluations.bundle import outcome_errors
from service.evaluations.submit import continued_case, evaluate_and_store
from service.fhir.outcome import OperationOutcomeError
from service.fhir.parse import read_json
from service.fhir.pas.clinical import read_case
from service.fhir.pas.policy_choice import choose_policy
from service.fhir.pas.request import MALFORMED, PasRequest, read_request
from service.fhir.pas.response import pended_response
from service.requests.grouping import DueClock
from service.requests.ids import request_id
from service.store.database import Database
from service.store.keys import KeyRecord
from service.store.requests import Request


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


def submit_claim(evaluator: Evaluator, db: Database, body: bytes, submitter: KeyRecord, *,
                 clock: DueClock | None = None, now: datetime.datetime | None = None,
                 audit: Access | None = None) -> Submitted:
    """Check, read, evaluate, store (opening or resubmitting the request of the submitter's
    organization, with ``audit``'s record), answer; the answer may be sent once this returns."""
    bundle = read_json(body)  # 400 when it does not parse
    request = read_request(bundle)
    choice = choose_policy(request.items, orders_of(evaluator), evaluator.catalog.default_policy)
    try:
        base, earlier = continued_case(db, submitter, bundle)
        read = read_case(request, evaluator.dictionary, policy=choice.policy, sequences=choice.sequences, base=base)
        with outcome_errors(read):
            stored = evaluate_and_store(evaluator, db, read.case, submitter.id,
                                        provenance={**earlier, **read.fhir.provenance}, notes=read.fhir.notes,
                                        organization=submitter.organization, audit=audit, clock=clock)
    except OperationOutcomeError as error:
        raise OperationOutcomeError(error.issues, MALFORMED) from None
    assert stored is not None  # only an Idempotency-Key claimed first stores nothing
    result = orjson.loads(stored[1])
    answer = pended_response(request, request_id=result["request_id"], result=result,
                             now=now or datetime.datetime.now(datetime.UTC), sequences=choice.sequences)
    return Submitted(request, result["request_id"], result, answer)


def requests_named(db: Database, evaluator: Evaluator, external_id: str, organization: str) -> list[str]:
    """The ids of ``organization``'s requests under ``external_id``, one per policy, oldest first;
    none for another organization's (it cannot tell them from unknown ones)."""
    ids = [request_id(db, organization, policy, external_id) for policy in evaluator.catalog.versions]
    query = select(Request.id).where(Request.id.in_(ids), Request.organization == organization) \
        .order_by(Request.received_at, Request.id)
    with db.session() as session:
        return list(session.scalars(query))
