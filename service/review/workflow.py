"""A submission's place in its request, as the review page shows it: which submission of how
many, every submission, whether a newer one exists, the request's clock, assignee and
determinations; and the determination form's starting values. What a request is and what a
determination may say are ``service.requests``' and ``service.determinations``'; this module
reads them and shapes them for the templates."""

from __future__ import annotations

from typing import Any

from service.requests.queue import get_request, request_of_evaluation
from service.review import words
from service.store.database import Database
from service.store.keys import KeyRecord

FORM_OUTCOMES = tuple(words.DETERMINATIONS)
NEEDS_REASON = ("denied", "partially_approved")  # the outcomes whose reason starts from the unmet criteria


def request_context(db: Database, caller: KeyRecord, evaluation_id: str) -> dict[str, Any] | None:
    """The request of this submission with ``this`` (its entry in ``evaluations``), ``latest``
    and ``newer`` (True when a later submission exists); None for an evaluation that opened no
    request (a CDS Hooks answer)."""
    request_id = request_of_evaluation(db, evaluation_id)
    found = get_request(db, request_id, caller) if request_id else None
    if found is None:
        return None
    submissions = found["evaluations"]  # newest first
    this = next((s for s in submissions if s["evaluation_id"] == evaluation_id), None)
    if this is None:
        return None
    return {**found, "this": this, "latest": submissions[0], "newer": this is not submissions[0], "total": len(submissions)}


def determination_draft(result: dict[str, Any], phrasing: words.ResultWords | None, form: Any = None,
                        start_reason: bool = False) -> dict[str, Any]:
    """The form's values: as sent (``form``), else the starting values: no outcome chosen, the
    criteria not met ticked (the findings), the reason empty, or (``start_reason``) the starting
    text made from the criteria not met, for a denial or partial approval."""
    not_met = [c["id"] for c in result.get("criteria", []) if c.get("status") == "not_met"]
    if form is None:
        return {
            "outcome": "",  # always the reviewer's choice, even with a reason started for a denial
            "reason": words.reason_to_start_from(result, phrasing) if start_reason and phrasing else "",
            "criteria": not_met,
            "attestation": False,
            "amends": "",
        }
    outcome = form.get("outcome")
    reason = form.get("reason")
    amends = form.get("amends")
    return {
        "outcome": outcome if outcome in FORM_OUTCOMES else "",
        "reason": reason.replace("\r\n", "\n") if isinstance(reason, str) else "",
        "criteria": [c for c in form.getlist("criteria") if isinstance(c, str)],
        "attestation": form.get("attestation") == "yes",
        "amends": amends if isinstance(amends, str) else "",
    }


def determination_body(evaluation_id: str, draft: dict[str, Any]) -> dict[str, Any]:
    """The form's values as ``POST /v1/requests/{id}/determinations`` takes them, for
    ``record_determination`` to check (the face checks nothing itself)."""
    return {
        "evaluation_id": evaluation_id,
        "outcome": draft["outcome"] or None,
        "reason": draft["reason"] if draft["reason"].strip() else None,
        "criteria": draft["criteria"],
        "attestation": draft["attestation"],
        "amends": draft["amends"] or None,
    }
