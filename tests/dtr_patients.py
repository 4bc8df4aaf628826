"""Generated charts for the DTR pre-population tests: each a Bundle of the resources the field
dictionary reads, in the shapes and edge cases the FHIR intake handles (several dated values,
undated ones, partial dates, time zones, periods, statuses not read, units to convert, a scored
ODI response with and without its score, answers by linkId, codes by prefix)."""

from __future__ import annotations

import random
from typing import Any

from fhir_support import ICD10, LOINC, ODI_ITEMS, SNOMED, UCUM, bundle

CPT = "http://www.ama-assn.org/go/cpt"


def _date(rng: random.Random, year_from: int = 2020, year_to: int = 2027) -> str:
    year, month, day = rng.randint(year_from, year_to), rng.randint(1, 12), rng.randint(1, 28)
    shape = rng.random()
    if shape < 0.08:
        return f"{year}"
    if shape < 0.16:
        return f"{year}-{month:02d}"
    if shape < 0.6:
        return f"{year}-{month:02d}-{day:02d}"
    offset = rng.choice(["Z", "+02:00", "-05:00", "+14:00", "-11:00"])
    return f"{year}-{month:02d}-{day:02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00{offset}"


def _observation(rng: random.Random, code: str, n: int, value: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": f"obs-{code}-{n}",
                                "status": rng.choice(["final", "final", "amended", "corrected", "preliminary",
                                                      "entered-in-error"]),
                                "code": {"coding": [{"system": LOINC, "code": code}]},
                                "subject": {"reference": "Patient/pat-1"}, **value}
    when = rng.random()
    if when < 0.6:
        resource["effectiveDateTime"] = _date(rng)
    elif when < 0.75:
        resource["effectivePeriod"] = {"start": _date(rng, 2020, 2022), **({"end": _date(rng, 2023, 2026)}
                                                                            if rng.random() < 0.6 else {})}
    elif when < 0.85:
        resource["issued"] = f"{rng.randint(2020, 2026)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T10:00:00Z"
    return resource  # else undated


def _quantity(value: float, code: str | None, unit: str | None = None, system: str | None = UCUM) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value}
    for key, v in (("unit", unit if unit is not None else code), ("system", system if code else None), ("code", code)):
        if v is not None:
            quantity[key] = v
    return {"valueQuantity": quantity}


def _condition(rng: random.Random, n: int, system: str, code: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition", "id": f"cond-{n}",
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "code": rng.choice(["confirmed"] * 5 + ["refuted", "unconfirmed"])}]},
        "code": {"coding": [{"system": system, "code": code}]}, "subject": {"reference": "Patient/pat-1"}}
    if rng.random() < 0.3:
        resource["code"]["coding"].append({"system": SNOMED, "code": "279039007"})
    if rng.random() < 0.7:
        resource["onsetDateTime"] = _date(rng, 2015, 2026)
    elif rng.random() < 0.5:
        resource["onsetPeriod"] = {"start": _date(rng, 2015, 2026)}
    if rng.random() < 0.5:
        resource["recordedDate"] = _date(rng, 2016, 2027)
    return resource


def _procedure(rng: random.Random, n: int, system: str, code: str, outcome: bool) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Procedure", "id": f"proc-{n}",
                                "status": rng.choice(["completed", "completed", "completed", "in-progress", "not-done"]),
                                "code": {"coding": [{"system": system, "code": code}]},
                                "subject": {"reference": "Patient/pat-1"}}
    if rng.random() < 0.7:
        resource["performedDateTime"] = _date(rng, 2018, 2027)
    elif rng.random() < 0.6:
        resource["performedPeriod"] = {"start": _date(rng, 2018, 2020), "end": _date(rng, 2021, 2027)}
    if outcome and rng.random() < 0.8:
        resource["outcome"] = {"coding": [{"system": SNOMED, "code": rng.choice(["385671000", "385669000", "385670007"])}]}
    return resource


def _odi(rng: random.Random, n: int, questionnaire: str | None) -> dict[str, Any]:
    answered = rng.choice([8, 9, 10, 10])
    items = []
    for index, link_id in enumerate(ODI_ITEMS):
        item: dict[str, Any] = {"linkId": link_id}
        if index < answered:
            ordinal = rng.randint(0, 5)
            key = rng.choice(["ordinalValue", "itemWeight"])
            item["answer"] = [{"valueCoding": {"extension": [{"url": f"http://hl7.org/fhir/StructureDefinition/{key}",
                                                              "valueDecimal": ordinal}], "code": f"a{ordinal}"}}]
        items.append(item)
    if rng.random() < 0.4:
        items.append({"linkId": "score", "answer": [{"valueDecimal": rng.randint(0, 100)}]})
    resource: dict[str, Any] = {"resourceType": "QuestionnaireResponse", "id": f"odi-{n}",
                                "status": rng.choice(["completed", "completed", "in-progress"]),
                                "subject": {"reference": "Patient/pat-1"}, "authored": _date(rng, 2022, 2027),
                                "item": [{"linkId": "odi", "item": items}] if rng.random() < 0.5 else items}
    if questionnaire:
        resource["questionnaire"] = questionnaire
    return resource


def _answers(rng: random.Random, n: int, dictionary: Any) -> dict[str, Any]:
    """A response to our own questionnaire answering a few fields by linkId."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for path, spec in rng.sample(sorted(dictionary.fields.items()), 6):
        if spec.kind == "boolean":
            yes = rng.random() < 0.5
            answer: list[dict[str, Any]] = [rng.choice([{"valueBoolean": yes}, {"valueCoding": {  # as DTR forms ask
                "system": "http://terminology.hl7.org/CodeSystem/v2-0136", "code": "Y" if yes else "N"}}])]
        elif spec.kind == "integer":
            answer = [{"valueInteger": rng.randint(int(spec.minimum or 0), int(spec.maximum or 90) + 5)}]
        elif spec.kind == "number":
            low, high = spec.minimum if spec.minimum is not None else 0, spec.maximum if spec.maximum is not None else 50
            number = round(rng.uniform(low - 1, high + 1), 1)  # now and then out of range: not read
            answer = [rng.choice([{"valueDecimal": number}, _quantity(number, spec.unit or "1")])]
        elif spec.kind == "enum":
            answer = [{"valueCoding": {"code": rng.choice(sorted(spec.choices))}}]
        else:
            answer = [{"valueString": code} for code in rng.sample(["M54.50", "M62.85", "M41.26", "G89.29"], 2)]
        groups.setdefault(path.partition(".")[0], []).append({"linkId": path, "answer": answer})
    resource = {"resourceType": "QuestionnaireResponse", "id": f"answers-{n}", "status": "completed",
                "subject": {"reference": "Patient/pat-1"}, "authored": _date(rng, 2025, 2027),
                "item": [{"linkId": section, "item": items} for section, items in groups.items()]}
    if rng.random() < 0.5:  # an answer to this service's questionnaire: read whatever its authored date
        resource["questionnaire"] = rng.choice(["https://payer.example/v1/evaluations/ev-1/questionnaire",
                                                "https://payer.example/v1/policies/p/questionnaire|1.0.0"])
    return resource


def chart(seed: int, dictionary: Any) -> dict[str, Any]:
    """One generated patient's Bundle."""
    rng = random.Random(seed)
    birth = rng.choice([f"{rng.randint(1940, 2010)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                        "1960-02-29", "1984-12-01", f"{rng.randint(1950, 1990)}"])
    resources: list[dict[str, Any]] = [{"resourceType": "Patient", "id": "pat-1", "birthDate": birth}]
    for n in range(rng.randint(0, 4)):
        value = rng.choice([_quantity(round(rng.uniform(18, 45), 1), "kg/m2"),
                            _quantity(round(rng.uniform(0.03, 0.06), 4), "[lb_av]/[in_i]2"),
                            _quantity(round(rng.uniform(18, 45), 1), None, unit="kg/m2")])
        resources.append(_observation(rng, "39156-5", n, value))
    for n in range(rng.randint(0, 3)):
        value = rng.choice([{"valueInteger": rng.randint(0, 10)}, _quantity(rng.randint(0, 10), "{score}"),
                            _quantity(rng.randint(0, 10), None, unit=None), {"dataAbsentReason": {"text": "asked"}}])
        resources.append(_observation(rng, "72514-3", n, value))
    for n in range(rng.randint(0, 2)):
        resources.append(_observation(rng, "97909-6", n, rng.choice([{"valueInteger": rng.randint(0, 100)},
                                                                      _quantity(rng.randint(0, 100), "%")])))
    codes = [(ICD10, "M54.50"), (ICD10, "M54.59"), (ICD10, "M54.51"), (SNOMED, "279039007"), (ICD10, "M41.26"),
             (ICD10, "M48.062"), (ICD10, "M62.85"), (ICD10, "G89.29"), (ICD10, "M48.06")]
    for n in range(rng.randint(0, 5)):
        resources.append(_condition(rng, n, *rng.choice(codes)))
    procedures = [(SNOMED, "91251008", True), (SNOMED, "50172003", False), (CPT, "63047", False),
                  (SNOMED, "55705006", False), (CPT, "22612", False)]
    for n in range(rng.randint(0, 4)):
        resources.append(_procedure(rng, n, *rng.choice(procedures)))
    odi_questionnaire = "http://example.org/Questionnaire/ODI"
    if rng.random() < 0.5:
        resources.append(_odi(rng, 0, odi_questionnaire if rng.random() < 0.5 else None))
        if rng.random() < 0.5:
            resources.append({"resourceType": "Questionnaire", "url": odi_questionnaire, "status": "active",
                              "code": [{"system": LOINC, "code": "97908-8"}]})
    if rng.random() < 0.5:
        resources.append(_answers(rng, 0, dictionary))
    rng.shuffle(resources)
    return bundle(*resources, identifier=f"GEN-{seed}")
