"""The PAS response Bundle: ClaimResponse first, every item pended (X12 306 ``A4``).

The shape follows the PAS ClaimResponse profile and what the Inferno PAS kit checks of a pended
answer (shared/dtr-pas.md §3.3): each item echoes its Claim ``sequence`` and carries
``adjudication.extension[reviewAction].extension[reviewActionCode]`` = ``306#A4`` (the
sub-extension's URL is the full canonical); ``request`` names the Claim by its fullUrl;
``identifier``, ``type`` and the patient, insurer and requestor are the Claim's; every reference
of the response (except ``request``, which the response Bundle need not hold) names an entry of
the same Bundle by its absolute fullUrl, and the entries copied from the request keep their
fullUrls (spec-33). ``outcome`` is the version's (``constants.VERSIONS``): ``queued`` for 2.0.1
and 2.1, ``complete`` for 2.2, which has no ``queued``. ``preAuthRef`` is the request id.

When a criterion is ``insufficient_information`` the answer also asks for what is missing, as
PAS additionalinfo.md says: a CommunicationRequest whose payload is LOINC ``102089-0`` (fill in the
payer's questionnaire) and whose identifier, the trace number, is the DTR context: the evaluation
id, which ``$questionnaire-package`` turns into that evaluation's questionnaire.

Nothing here decides: the review action of every item is ``A4``, whatever the findings.
"""

from __future__ import annotations

import copy
import datetime
import uuid
from typing import Any

from service.fhir.pas import constants as pas
from service.fhir.pas.bundle import Entry, references
from service.fhir.pas.request import PasRequest

DISPOSITION = ("Pended for review by the payer's clinical reviewer. The criteria findings support the "
               "reviewer's determination; they are not a coverage decision.")


def instant(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def review_action(code: str) -> list[dict[str, Any]]:
    """An item's ``adjudication``: category ``submitted``, and the X12 306 review action ``code``."""
    return [{
        "extension": [{"url": pas.REVIEW_ACTION, "extension": [{
            "url": pas.REVIEW_ACTION_CODE,
            "valueCodeableConcept": {"coding": [{"system": pas.X12_306, "code": code,
                                                 "display": pas.REVIEW_ACTIONS[code]}]},
        }]}],
        "category": {"coding": [{"system": pas.ADJUDICATION, "code": "submitted"}]},
    }]


def claim_response(request: PasRequest, *, request_id: str, now: datetime.datetime, code: str,
                   outcome: str, profile: str = pas.CLAIM_RESPONSE) -> dict[str, Any]:
    """The ClaimResponse of ``request`` with the review action ``code`` on every item."""
    claim = request.claim.resource
    response: dict[str, Any] = {
        "resourceType": "ClaimResponse",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [profile]},
        "identifier": copy.deepcopy(claim.get("identifier")),
        "status": "active",
        "type": copy.deepcopy(claim.get("type")),
        "use": "preauthorization",
        "patient": _reference(request, "patient"),
        "created": instant(now),
        "insurer": _reference(request, "insurer"),
        "requestor": _reference(request, "provider"),
        "request": {"reference": request.index.full_url_of(request.claim)},
        "outcome": outcome,
        "preAuthRef": request_id,
        "item": [{"itemSequence": item.sequence, "adjudication": review_action(code)} for item in request.items],
    }
    return {key: value for key, value in response.items() if value is not None}


def pended_response(request: PasRequest, *, request_id: str, result: dict[str, Any],
                    now: datetime.datetime, sequences: tuple[int, ...] = ()) -> dict[str, Any]:
    """The answer to ``$submit``: every item pended, and a request for what is missing when a
    criterion of ``result`` (the stored evaluation) is ``insufficient_information``."""
    response = claim_response(request, request_id=request_id, now=now, code=pas.PENDED,
                              outcome=request.answers.pended_outcome)
    response["disposition"] = DISPOSITION
    extra = []
    if any(c.get("status") == "insufficient_information" for c in result.get("criteria", [])):
        asking = information_request(request, context=result["evaluation_id"], now=now, sequences=sequences)
        response["communicationRequest"] = [{"reference": f"urn:uuid:{asking['id']}"}]
        extra.append(asking)
    return response_bundle(request, response, extra, now=now)


def information_request(request: PasRequest, *, context: str, now: datetime.datetime,
                        sequences: tuple[int, ...] = ()) -> dict[str, Any]:
    """A PAS CommunicationRequest asking for the payer's questionnaire (LOINC 102089-0), its
    identifier (the trace number) the DTR context: ``context``, an evaluation id."""
    lines = sequences or tuple(item.sequence for item in request.items)
    asking: dict[str, Any] = {
        "resourceType": "CommunicationRequest",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [pas.COMMUNICATION_REQUEST]},
        "identifier": [{"system": pas.CONTEXT_ID_SYSTEM, "value": context}],
        "status": "active",
        "subject": _reference(request, "patient"),
        "payload": [{
            "extension": [{"url": pas.SERVICE_LINE_NUMBER, "valuePositiveInt": line}],
            "contentString": pas.QUESTIONNAIRE_REQUEST_LOINC,
        } for line in lines],
        "authoredOn": instant(now),
        "requester": _reference(request, "insurer"),
        "recipient": [r for r in [_reference(request, "provider")] if r is not None] or None,
        "note": [{"text": "Documentation is missing for some criteria. Complete the payer's questionnaire: "
                  "DTR $questionnaire-package with this request's identifier as its context, then "
                  "submit the answers with the request again."}],
    }
    return {key: value for key, value in asking.items() if value is not None}


def response_bundle(request: PasRequest, first: dict[str, Any], extra: list[dict[str, Any]], *,
                    now: datetime.datetime, profile: str = pas.RESPONSE_BUNDLE) -> dict[str, Any]:
    """A response Bundle: ``first`` (the ClaimResponse), ``extra`` resources of ours, then every
    request entry they reference, directly or not, copied under its own fullUrl."""
    ours = [first, *extra]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [profile]},
        "type": "collection",
        "timestamp": instant(now),
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in ours],
    }
    if request.answers.bundle_identifier:
        bundle["identifier"] = {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{bundle['id']}"}
    bundle["entry"] += [{"fullUrl": request.index.full_url_of(e), "resource": absolute_copy(request, e)}
                        for e in _referenced(request, ours)]
    return bundle


def _reference(request: PasRequest, element: str) -> dict[str, Any] | None:
    """The Claim's reference ``element``, written as the absolute fullUrl of the entry it names."""
    target = request.target(element)
    if target is None:
        original = request.claim.resource.get(element)
        return copy.deepcopy(original) if isinstance(original, dict) else None
    return {"reference": request.index.full_url_of(target)}


def _referenced(request: PasRequest, resources: list[dict[str, Any]]) -> list[Entry]:
    """The request entries ``resources`` reference, and what those reference in turn; the Claim
    only as ``ClaimResponse.request`` names it, which is not followed."""
    found: dict[int, Entry] = {}
    for resource in resources:
        skip = ("request",) if resource.get("resourceType") == "ClaimResponse" else ()
        for ref in references(resource, resource["resourceType"], skip):
            for entry in request.index.resolve(ref.text, request.claim)[:1]:
                if entry.index != request.claim.index and entry.index not in found:
                    found[entry.index] = entry
                    reached, _ = request.index.closure(entry)
                    found.update((e.index, e) for e in reached if e.index != request.claim.index)
    return [found[i] for i in sorted(found)]


def absolute_copy(request: PasRequest, entry: Entry) -> dict[str, Any]:
    """A copy of an entry's resource whose references name their entries by absolute fullUrl."""
    resource = copy.deepcopy(entry.resource)
    _absolute(resource, request, entry)
    return resource


def _absolute(value: Any, request: PasRequest, entry: Entry) -> None:
    if isinstance(value, dict):
        text = value.get("reference")
        if isinstance(text, str) and not text.startswith("#"):
            found = request.index.resolve(text, entry)
            if len(found) == 1:
                value["reference"] = request.index.full_url_of(found[0])
        for key, child in value.items():
            if key not in ("contained", "text") and isinstance(child, (dict, list)):
                _absolute(child, request, entry)
    elif isinstance(value, list):
        for child in value:
            _absolute(child, request, entry)
