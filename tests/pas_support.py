"""PAS request Bundles in the shapes the PAS IG and the Inferno PAS kit publish, and the kit's
checks of a response, written as Python.

Hand-written from the published forms (shared/dtr-pas.md §3.7):
- ``request_bundle``: the envelope, Claim, requestor and insurer Organizations, Coverage, Patient,
  ServiceRequest and Practitioner of inferno-framework/davinci-pas-test-kit
  ``spec/fixtures/conformant_pas_bundle_v110.json`` (the IG's ``ReferralAuthorizationBundleExample``),
  narrative left out; the item's ``productOrService`` is CPT 64568 (the kit's is X12 1365 ``3``,
  which no policy here lists: ``kit_claim_code`` gives it back), its clinical documents added as
  ``supportingInfo[AdditionalInformation]`` (PASTempCodes ``additionalInformation``).
  ``version="2.2.1"`` names the PAS 2.2.1 profiles in ``meta.profile``, as 2.2 clients do.
- ``NONCONFORMANT``: the kit's ``lib/davinci_pas_test_kit/server/v2.0.1/error_tests/
  nonconformant_pas_bundle.json``, verbatim (an empty ``entry``).
- ``kit_decision_code_present``: the kit's ``PasClaimResponseDecisionTest``; ``kit_unresolved``:
  its ``ReferencedResourcePresenceValidation`` (each reference once in the Bundle, ``request`` skipped).
"""

from __future__ import annotations

import copy
from typing import Any

BASE = "https://prior-auth.davinci.hl7.org/fhir"
PAS = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition"
CPT_64568 = ("http://www.ama-assn.org/go/cpt", "64568")
AUTHOR = {"resourceType": "Practitioner", "id": "dr-1", "name": [{"family": "REVIEWING", "given": ["DR"]}]}
KIT_CODE = ("http://codesystem.x12.org/005010/1365", "3")
REVIEW_ACTION = f"{PAS}/extension-reviewAction"
REVIEW_ACTION_CODE = f"{PAS}/extension-reviewActionCode"
X12_306 = "https://codesystem.x12.org/005010/306"

NONCONFORMANT = {
    "resourceType": "Bundle",
    "id": "ReferralAuthorizationBundleExample",
    "meta": {"profile": [f"{PAS}/profile-pas-request-bundle"]},
    "identifier": {"system": "http://example.org/SUBMITTER_TRANSACTION_IDENTIFIER", "value": "A12345"},
    "type": "collection",
    "timestamp": "2005-05-02T11:01:00+05:00",
    "entry": [],
}


def _profile(name: str, version: str | None) -> list[str]:
    return [f"{PAS}/{name}|{version}" if version else f"{PAS}/{name}"]


def request_bundle(*supporting: dict[str, Any], version: str | None = None, identifier: str = "111099",
                   code: tuple[str, str] = CPT_64568, urgent: bool = False, priority: str = "normal",
                   serviced: str | None = "2026-12-01", birth_date: str = "1974-06-15",
                   base: str = BASE, referenced: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """A PAS request Bundle; ``supporting`` resources are added as entries and pointed to from
    ``Claim.supportingInfo`` (their references to ``Patient/pat-1`` resolve to the subscriber);
    ``referenced`` ones (what those reference, such as an answer's author) are added as entries."""
    level = "U" if urgent else "E"
    item: dict[str, Any] = {
        "extension": [
            {"url": f"{PAS}/extension-itemTraceNumber",
             "valueIdentifier": {"system": f"{base}/ITEM_TRACE_NUMBER", "value": "1122334"}},
            {"url": f"{PAS}/extension-serviceItemRequestType",
             "valueCodeableConcept": {"coding": [{"system": "http://codesystem.x12.org/005010/1525", "code": "SC",
                                                  "display": "Specialty Care Review"}]}},
            {"url": f"{PAS}/extension-certificationType",
             "valueCodeableConcept": {"coding": [{"system": "http://codesystem.x12.org/005010/1322", "code": "I",
                                                  "display": "Initial"}]}},
            {"url": f"{PAS}/extension-requestedService", "valueReference": {"reference": "ServiceRequest/ReferralRequestExample"}},
            {"url": f"{PAS}/extension-epsdtIndicator", "valueBoolean": False},
        ],
        "sequence": 1,
        "careTeamSequence": [1],
        "diagnosisSequence": [1],
        "productOrService": {"coding": [{"system": code[0], "code": code[1]}]},
        "locationCodeableConcept": {"coding": [{
            "system": "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set",
            "code": "22"}]},
    }
    if serviced:
        item["servicedDate"] = serviced
    claim: dict[str, Any] = {
        "resourceType": "Claim",
        "id": "ReferralAuthorizationExample",
        "meta": {"profile": _profile("profile-claim", version)},
        "extension": [{"url": f"{PAS}/extension-levelOfServiceCode", "valueCodeableConcept": {"coding": [
            {"system": "http://codesystem.x12.org/005010/1338", "code": level}]}}],
        "identifier": [{"system": f"{base}/PATIENT_EVENT_TRACE_NUMBER", "value": identifier,
                        "assigner": {"identifier": {"system": f"{base}/USER_ASSIGNED", "value": "9012345678"}}}],
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "preauthorization",
        "patient": {"reference": "Patient/SubscriberExample"},
        "created": "2026-11-25T11:01:00+05:00",
        "insurer": {"reference": "Organization/InsurerExample"},
        "provider": {"reference": "Organization/UMOExample"},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": priority}]},
        "careTeam": [{"extension": [{"url": f"{PAS}/extension-careTeamClaimScope", "valueBoolean": True}],
                      "sequence": 1, "provider": {"reference": "Practitioner/ReferralPractitionerExample"}}],
        "diagnosis": [{"sequence": 1, "diagnosisCodeableConcept": {"coding": [
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50"}]}}],
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/InsuranceExample"}}],
        "item": [item],
    }
    entries = [
        ("Claim", claim),
        ("Organization", {"resourceType": "Organization", "id": "UMOExample",
                          "meta": {"profile": _profile("profile-requestor", version)},
                          "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "8189991234"}],
                          "active": True,
                          "type": [{"coding": [{"system": "https://codesystem.x12.org/005010/98", "code": "X3"}]}],
                          "name": "DR. JOE SMITH CORPORATION",
                          "address": [{"line": ["111 1ST STREET"], "city": "SAN DIEGO", "state": "CA",
                                       "postalCode": "92101", "country": "US"}]}),
        ("Organization", {"resourceType": "Organization", "id": "InsurerExample",
                          "meta": {"profile": _profile("profile-insurer", version)},
                          "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "789312"}],
                          "active": True,
                          "type": [{"coding": [{"system": "https://codesystem.x12.org/005010/98", "code": "PR"}]}],
                          "name": "MARYLAND CAPITAL INSURANCE COMPANY"}),
        ("Coverage", {"resourceType": "Coverage", "id": "InsuranceExample",
                      "meta": {"profile": _profile("profile-coverage", version)}, "status": "active",
                      "beneficiary": {"reference": "Patient/SubscriberExample"},
                      "payor": [{"reference": "Organization/InsurerExample"}]}),
        ("Patient", {"resourceType": "Patient", "id": "SubscriberExample",
                     "meta": {"profile": _profile("profile-subscriber", version)},
                     "identifier": [{"system": "https://prior-auth.davinci.hl7.org/MIN", "value": "12345678901"}],
                     "name": [{"family": "SMITH", "given": ["JOE"]}], "gender": "male", "birthDate": birth_date}),
        ("ServiceRequest", {"resourceType": "ServiceRequest", "id": "ReferralRequestExample",
                            "meta": {"profile": _profile("profile-servicerequest", version)},
                            "status": "active", "intent": "order",
                            "code": {"coding": [{"system": code[0], "code": code[1]}]},
                            "subject": {"reference": "Patient/SubscriberExample"}}),
        ("Practitioner", {"resourceType": "Practitioner", "id": "ReferralPractitionerExample",
                          "meta": {"profile": _profile("profile-practitioner", version)},
                          "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "987654321"}],
                          "name": [{"family": "WATSON", "given": ["SUSAN"]}],
                          "telecom": [{"system": "phone", "value": "4029993456"}]}),
    ]
    supporting_info = []
    for position, resource in enumerate(supporting, start=1):
        resource = _about_subscriber(copy.deepcopy(resource))
        entries.append((resource["resourceType"], resource))
        supporting_info.append({
            "sequence": position,
            "category": {"coding": [{"system": "http://hl7.org/fhir/us/davinci-pas/CodeSystem/PASTempCodes",
                                     "code": "additionalInformation"}]},
            "valueReference": {"reference": f"{resource['resourceType']}/{resource['id']}"},
        })
    if supporting_info:
        claim["supportingInfo"] = supporting_info
    entries += [(r["resourceType"], copy.deepcopy(r)) for r in referenced]
    return {
        "resourceType": "Bundle",
        "id": "ReferralAuthorizationBundleExample",
        "meta": {"profile": _profile("profile-pas-request-bundle", version)},
        "identifier": {"system": f"{base}/SUBMITTER_TRANSACTION_IDENTIFIER", "value": "A12345"},
        "type": "collection",
        "timestamp": "2026-11-25T11:01:00+05:00",
        "entry": [{"fullUrl": f"{base}/{kind}/{resource['id']}", "resource": resource} for kind, resource in entries],
    }


def _about_subscriber(value: Any) -> Any:
    """The fhir_support resources speak of ``Patient/pat-1``: here the patient is the subscriber."""
    if isinstance(value, dict):
        return {k: ({"reference": "Patient/SubscriberExample"} if isinstance(v, dict) and v.get("reference") == "Patient/pat-1"
                    else _about_subscriber(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_about_subscriber(v) for v in value]
    return value


def claim_response(bundle: dict[str, Any]) -> dict[str, Any]:
    return bundle["entry"][0]["resource"]


def review_codes(bundle: dict[str, Any]) -> list[str]:
    """Every review action code of the response's first ClaimResponse, item by item."""
    return [ext["valueCodeableConcept"]["coding"][0]["code"]
            for item in claim_response(bundle)["item"] for adjudication in item["adjudication"]
            for action in adjudication.get("extension", []) if action["url"] == REVIEW_ACTION
            for ext in action["extension"] if ext["url"] == REVIEW_ACTION_CODE]


def kit_decision_code_present(bundle: dict[str, Any], code: str) -> bool:
    """The Inferno kit's decision check: some ClaimResponse item has the code under the full-canonical URLs."""
    return bundle.get("resourceType") == "Bundle" and any(
        entry.get("resource", {}).get("resourceType") == "ClaimResponse" and any(
            any(ext.get("url") == REVIEW_ACTION and any(
                inner.get("url") == REVIEW_ACTION_CODE and any(
                    coding.get("system") == X12_306 and coding.get("code") == code
                    for coding in inner.get("valueCodeableConcept", {}).get("coding", []))
                for inner in ext.get("extension", []))
                for ext in adjudication.get("extension", []))
            for item in entry["resource"].get("item", []) for adjudication in item.get("adjudication", []))
        for entry in bundle.get("entry", []))


def kit_unresolved(bundle: dict[str, Any]) -> list[str]:
    """The kit's reference presence check from the first entry: each reference (made absolute
    against the base of that entry's fullUrl) names exactly one entry; ClaimResponse.request is
    not followed. The messages of what fails (empty when the Bundle passes)."""
    first = bundle["entry"][0]
    full_url = first["fullUrl"]
    base = full_url.rsplit("/", 2)[0] if full_url.startswith("http") else ""
    errors: list[str] = []
    seen: set[str] = set()

    def absolute(reference: str) -> str:
        if not base or reference.startswith(("urn:uuid:", "http://", "https://")):
            return reference
        return f"{base}/{reference}"

    def walk(value: Any, resource_type: str | None) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("reference"), str) and not value["reference"].startswith("#"):
                target = absolute(value["reference"])
                matches = [e for e in bundle["entry"] if e.get("fullUrl") == target]
                if len(matches) != 1:
                    errors.append(f"{target}: {len(matches)} entries")
                elif target not in seen:
                    seen.add(target)
                    walk(matches[0]["resource"], matches[0]["resource"]["resourceType"])
                return
            for key, child in value.items():
                if key == "request" and resource_type == "ClaimResponse":
                    continue
                walk(child, value.get("resourceType", resource_type) if key != "resourceType" else None)
        elif isinstance(value, list):
            for child in value:
                walk(child, resource_type)

    walk(first["resource"], first["resource"]["resourceType"])
    return errors
