"""ReActiv8 FHIR fixtures built in code, with the real codes (shared/fhir-crd.md §4), and the
field dictionary the FHIR tests read."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT.parent / "shared" / "fhir-examples"
LOINC, SNOMED, ICD10 = "http://loinc.org", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
ODI_ITEMS = [f"odi-{n}" for n in range(1, 11)]


def example_bundle() -> dict[str, Any]:
    return json.loads((ROOT / "examples" / "bundle.json").read_text())


def example_case() -> dict[str, Any]:
    return json.loads((ROOT / "examples" / "case.json").read_text())


def bundle(*resources: dict[str, Any], identifier: str | None = "INTAKE-FHIR-1", **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", **extra,
                              "entry": [{"fullUrl": f"urn:uuid:{i:08d}-0000-4000-8000-000000000000", "resource": r}
                                        for i, r in enumerate(resources)]}
    if identifier is not None:
        result["identifier"] = {"system": "urn:example:intake", "value": identifier}
    return result


def patient(birth: str = "1974-06-15", rid: str = "pat-1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": rid, "birthDate": birth}


def order(day: str = "2026-12-01", rid: str = "order-1") -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": rid, "status": "draft", "intent": "order",
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "64568"}]},
            "subject": {"reference": "Patient/pat-1"}, "occurrenceDateTime": day}


def observation(code: str, rid: str, day: str, *, status: str = "final", **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": rid, "status": status,
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": "Patient/pat-1"}, "effectiveDateTime": day, **value}


def quantity(value: float, code: str) -> dict[str, Any]:
    return {"valueQuantity": {"value": value, "unit": code, "system": UCUM, "code": code}}


def nrs(value: int, rid: str = "nrs-1", day: str = "2026-10-02", **kw: Any) -> dict[str, Any]:
    return observation("72514-3", rid, day, valueInteger=value, **kw)


def bmi(value: float, rid: str = "bmi-1", day: str = "2026-10-02", unit: str = "kg/m2", **kw: Any) -> dict[str, Any]:
    return observation("39156-5", rid, day, **quantity(value, unit), **kw)


def condition(code: str, rid: str, *, onset: str | None = None, recorded: str | None = None,
              verification: str = "confirmed", system: str = ICD10) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition", "id": rid,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "code": verification}]},
        "code": {"coding": [{"system": system, "code": code}]}, "subject": {"reference": "Patient/pat-1"}}
    if onset:
        resource["onsetDateTime"] = onset
    if recorded:
        resource["recordedDate"] = recorded
    return resource


def procedure(code: str, rid: str, day: str, *, outcome: str | None = None, status: str = "completed",
              system: str = SNOMED) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Procedure", "id": rid, "status": status,
                                "code": {"coding": [{"system": system, "code": code}]},
                                "subject": {"reference": "Patient/pat-1"}, "performedDateTime": day}
    if outcome:
        resource["outcome"] = {"coding": [{"system": SNOMED, "code": outcome}]}
    return resource


def odi_response(ordinals: list[int | None], rid: str = "odi-1", day: str = "2026-10-02", score: float | None = None,
                 status: str = "completed") -> dict[str, Any]:
    items = []
    for link_id, ordinal in zip(ODI_ITEMS, ordinals):
        item: dict[str, Any] = {"linkId": link_id}
        if ordinal is not None:
            item["answer"] = [{"valueCoding": {"extension": [
                {"url": "http://hl7.org/fhir/StructureDefinition/ordinalValue", "valueDecimal": ordinal}],
                "display": f"answer {ordinal}"}}]
        items.append(item)
    if score is not None:
        items.append({"linkId": "score", "answer": [{"valueDecimal": score}]})
    return {"resourceType": "QuestionnaireResponse", "id": rid, "status": status,
            "questionnaire": "http://example.org/Questionnaire/OswestryDisabilityIndexQuestionnaire",
            "subject": {"reference": "Patient/pat-1"}, "authored": day, "item": items}


def answer(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, float):
        return {"valueDecimal": value}
    return {"valueCoding": {"code": value}}


def response(answers: dict[str, Any], rid: str = "qr-1", day: str = "2026-11-20", status: str = "completed",
             questionnaire: str | None = None) -> dict[str, Any]:
    """A QuestionnaireResponse answering fields by path (grouped by section, as our Questionnaires are)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for path, value in answers.items():
        values = value if isinstance(value, list) else [value]
        groups.setdefault(path.partition(".")[0], []).append({"linkId": path, "answer": [answer(v) for v in values]})
    resource: dict[str, Any] = {"resourceType": "QuestionnaireResponse", "id": rid, "status": status,
                                "subject": {"reference": "Patient/pat-1"}, "authored": day,
                                "item": [{"linkId": section, "item": items} for section, items in groups.items()]}
    if questionnaire:
        resource["questionnaire"] = questionnaire
    return resource


def clinical(case: dict[str, Any]) -> dict[str, Any]:
    """A case's clinical sections only."""
    return {k: v for k, v in copy.deepcopy(case).items() if k not in ("external_id", "policy", "service_date")}

