"""The case a PAS request documents, read by the FHIR intake (``service.fhir.intake``).

Read: the Claim's patient; the resources its ``supportingInfo`` (PAS spec-20: every supporting
resource is pointed to from there) and ``diagnosis.diagnosisReference`` name, and everything they
reference in turn (a QuestionnaireResponse's author, an Observation's ``hasMember``); the
Questionnaires those QuestionnaireResponses answer, when the Bundle holds them; the requested
services of the items (``extension-requestedService``), for the date of service. Other entries
(the insurer, the Coverage) are not read. ``Claim.diagnosis`` codes written on the Claim itself are
billing codes and are not read as clinical findings.

The date of service is the first policy item's ``servicedDate`` (or ``servicedPeriod.start``),
else the requested service's occurrence, else today. ``external_id`` is the Claim's identifier
value, and the case's ``priority`` the Claim's (``request.priority_of``).
"""

from __future__ import annotations

import datetime
from typing import Any

from service.fhir.intake import BundleCase, case_from_bundle
from service.fhir.parse import Located
from service.fhir.pas import constants as pas
from service.fhir.pas.bundle import Entry
from service.fhir.pas.request import PasRequest


def clinical_entries(request: PasRequest) -> list[Entry]:
    """The entries the case is read from, in Bundle order."""
    claim, index = request.claim, request.index
    starts: list[Entry] = []
    patient = request.target("patient")
    if patient is not None:
        starts.append(patient)
    for _, reference in _named_references(claim.resource):
        starts += index.resolve(reference, claim)[:1]
    chosen = {entry.index: entry for entry in starts}
    for entry in starts:
        reached, _ = index.closure(entry)
        chosen.update((e.index, e) for e in reached)
    answered = {r.get("questionnaire").partition("|")[0] for r in (e.resource for e in chosen.values())
                if r.get("resourceType") == "QuestionnaireResponse" and isinstance(r.get("questionnaire"), str)}
    for entry in index.entries:
        if entry.type == "Questionnaire" and entry.resource.get("url") in answered:
            chosen[entry.index] = entry
    chosen.pop(claim.index, None)
    return [chosen[i] for i in sorted(chosen)]


def _named_references(claim: dict[str, Any]) -> list[tuple[str, str]]:
    """``(element, reference)`` for the Claim's supporting information, diagnoses and requested services."""
    found = []
    for info in claim.get("supportingInfo") or []:
        value = info.get("valueReference") if isinstance(info, dict) else None
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            found.append(("supportingInfo", value["reference"]))
    for diagnosis in claim.get("diagnosis") or []:
        value = diagnosis.get("diagnosisReference") if isinstance(diagnosis, dict) else None
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            found.append(("diagnosis", value["reference"]))
    for item in claim.get("item") or []:
        for extension in (item.get("extension") or []) if isinstance(item, dict) else []:
            value = extension.get("valueReference") if isinstance(extension, dict) else None
            if extension.get("url") == pas.REQUESTED_SERVICE and isinstance(value, dict) \
                    and isinstance(value.get("reference"), str):
                found.append(("requestedService", value["reference"]))
    return found


def read_case(request: PasRequest, dictionary: Any, *, policy: str, sequences: tuple[int, ...] = (),
              base: dict[str, Any] | None = None, today: datetime.date | None = None) -> BundleCase:
    """The case (plain JSON, with provenance) the request documents under ``policy``; ``sequences``
    are the items the policy was chosen by (their service date is the case's). ``base``: the stored
    case of an evaluation whose questionnaire the request's QuestionnaireResponse answers."""
    items: list[Located] = [entry.located for entry in clinical_entries(request)]
    serviced = next((i.serviced for i in request.items if i.sequence in sequences and i.serviced), None)
    read = case_from_bundle(request.bundle, dictionary, external_id=request.external_id, policy=policy,
                            service_date=serviced, today=today, base=base, items=items)
    read.case["priority"] = request.priority
    read.fhir.expressions["external_id"] = request.external_id_path
    return read
