"""The reviewer's closing determination as a PAS ClaimResponse: the only place A1, A3 and A6 come from.

A determination is what a reviewer recorded (shared/contract.md "Determinations"): ``approved``
→ X12 306 ``A1`` (certified in total), ``denied`` → ``A3`` (not certified), ``partially_approved``
→ ``A6`` (modified), on every item. The reviewer's reason is the ClaimResponse's ``processNote``
(PAS 2.2, FHIR-56288: a denial's reason goes in the processNote); PAS 2.2 requests also get the
``claimResponseReviewer`` extension with ``wasHumanReviewedFlag`` true (and ``reviewerNPI`` when
the reviewer's record has one). ``outcome`` is ``complete``: the review is done.

Every function here takes a ``Determination``, built from a stored determination record; no
evaluation, finding or engine output can be turned into one. ``pended_or_decided`` answers
``$inquire``: pended (A4) while there is no closing determination.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from service.fhir.pas import constants as pas
from service.fhir.pas.request import PasRequest
from service.fhir.pas.response import DISPOSITION, claim_response, response_bundle

# The closing outcomes of a determination and their X12 306 review actions.
CLOSING = {"approved": "A1", "denied": "A3", "partially_approved": "A6"}
_DISPOSITIONS = {
    "approved": "Certified in total by the payer's clinical reviewer.",
    "denied": "Not certified by the payer's clinical reviewer; the reason is in the process note.",
    "partially_approved": "Certified in part (modified) by the payer's clinical reviewer; see the process note.",
}


@dataclass(frozen=True)
class Determination:
    """A reviewer's closing determination, as the determinations record holds it."""

    id: str
    outcome: str  # approved | denied | partially_approved
    reason: str
    recorded_at: str
    reviewer_key_id: str
    reviewer_name: str | None = None
    reviewer_npi: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in CLOSING:
            raise ValueError(f"{self.outcome!r} is not a closing determination ({', '.join(CLOSING)})")
        if not self.reviewer_key_id:
            raise ValueError("a determination names the reviewer who recorded it")

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Determination:
        """From the contract's JSON shape: ``id``, ``outcome``, ``reason``, ``recorded_at``,
        ``reviewer {key_id, name[, npi]}``."""
        reviewer = record.get("reviewer") or {}
        return cls(id=str(record["id"]), outcome=record["outcome"], reason=record.get("reason") or "",
                   recorded_at=str(record["recorded_at"]), reviewer_key_id=str(reviewer.get("key_id") or ""),
                   reviewer_name=reviewer.get("name"), reviewer_npi=reviewer.get("npi"))


def decided_claim_response(request: PasRequest, determination: Determination, *, request_id: str,
                           now: datetime.datetime, profile: str = pas.CLAIM_RESPONSE) -> dict[str, Any]:
    """The ClaimResponse carrying the reviewer's outcome, reason and (PAS 2.2) the reviewer."""
    if not isinstance(determination, Determination):
        raise TypeError("a decided ClaimResponse needs a reviewer's Determination")
    response = claim_response(request, request_id=request_id, now=now, code=CLOSING[determination.outcome],
                              outcome="complete", profile=profile)
    response["disposition"] = _DISPOSITIONS[determination.outcome]
    if determination.reason:
        response["processNote"] = [{"number": 1, "type": "display", "text": determination.reason}]
    if request.answers.reviewer_extension:
        reviewer: list[dict[str, Any]] = [{"url": pas.REVIEWER_HUMAN, "valueBoolean": True}]
        if determination.reviewer_npi:
            reviewer.append({"url": pas.REVIEWER_NPI,
                             "valueIdentifier": {"system": pas.NPI, "value": determination.reviewer_npi}})
        response["extension"] = [{"url": pas.CLAIM_RESPONSE_REVIEWER, "extension": reviewer}]
    return response


def pended_or_decided(request: PasRequest, answers: list[tuple[str, Determination | None]], *,
                      now: datetime.datetime) -> dict[str, Any]:
    """The answer to ``$inquire`` (a PAS inquiry response Bundle, in Parameters for 2.2.0): one
    ClaimResponse for each ``(request id, closing determination or None)`` of ``answers``, pended
    while its request has no closing determination, else the reviewer's outcome."""
    responses = []
    for request_id, determination in answers:
        if determination is None:
            response = claim_response(request, request_id=request_id, now=now, code=pas.PENDED,
                                      outcome=request.answers.pended_outcome, profile=pas.CLAIM_INQUIRY_RESPONSE)
            response["disposition"] = DISPOSITION
        else:
            response = decided_claim_response(request, determination, request_id=request_id, now=now,
                                              profile=pas.CLAIM_INQUIRY_RESPONSE)
        responses.append(response)
    bundle = response_bundle(request, responses[0], responses[1:], now=now, profile=pas.INQUIRY_RESPONSE_BUNDLE)
    if request.answers.inquire_in_parameters:
        return {"resourceType": "Parameters", "parameter": [{"name": "return", "resource": bundle}]}
    return bundle
