"""Shared steps of the DTR tests: a chart with gaps evaluated from FHIR, a package fetched for it,
and a QuestionnaireResponse answering the package's questionnaire as a DTR client would."""

from __future__ import annotations

import base64
import copy
import datetime
import json
from typing import Any

from fhir_support import example_bundle

FHIR = {"Content-Type": "application/fhir+json"}
INFORMATION_ORIGIN = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/information-origin"
COVERAGE = {"resourceType": "Coverage", "id": "cov-1", "status": "active",
            "beneficiary": {"reference": "Patient/pat-1"}, "payor": [{"reference": "Organization/payer"}]}
# answers that meet each criterion (the clinician's part of the worked example)
GOOD = {
    "low_back_pain.axial_predominant": True, "low_back_pain.mechanical": True,
    "low_back_pain.quality_of_life_severely_impaired": True, "low_back_pain.predominant_pain_type": "nociceptive",
    "conservative_care.medication_outcome": "failed", "conservative_care.psychological_therapy_outcome": "failed",
    "conservative_care.duration_months": 14,
    "multifidus_dysfunction.prone_instability_test": "positive",
    "multifidus_dysfunction.imaging": "atrophy_or_fatty_infiltration", "multifidus_dysfunction.electromyography": "positive",
    "surgery.spine_surgery_indicated": False, "surgery.prior_spine_surgery_at_or_below_t8": False,
    "device.able_to_operate": True, "device.fit_for_implant_surgery": True,
    "other_findings.scoliosis": False, "other_findings.neurological_deficit": False,
    "other_findings.stenosis_with_leg_pain": False, "other_findings.scs_candidate": False,
    "provider.facilities_and_follow_up_available": True, "stimulation_trial.outcome": "successful",
    "stimulation_trial.intraoperative_multifidus_contraction": True,
    "patient.age_years": 52, "patient.bmi": 31.2, "low_back_pain.nrs": 7, "low_back_pain.odi_percent": 44,
    "low_back_pain.duration_months": 26, "conservative_care.physical_therapy_outcome": "failed",
}


def chart_with_gaps(identifier: str = "DTR-FLOW-1") -> dict[str, Any]:
    """The worked example without the clinician's answers: the chart alone."""
    bundle = copy.deepcopy(example_bundle())
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"].get("id") != "criteria-answers-1"]
    bundle["identifier"]["value"] = identifier
    return bundle


def evaluate_chart(client, key: str, bundle: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/evaluations", content=json.dumps(bundle), headers={**FHIR, "X-API-Key": key})
    assert response.status_code == 201, response.text
    return response.json()


def fetch_package(client, key: str, *, context: str | None = None, orders=(), questionnaire: str | None = None) -> dict:
    parameters = [{"name": "coverage", "resource": COVERAGE}] + [{"name": "order", "resource": o} for o in orders]
    if context:
        parameters.append({"name": "context", "valueString": context})
    if questionnaire:
        parameters.append({"name": "questionnaire", "valueCanonical": questionnaire})
    response = client.post("/fhir/Questionnaire/$questionnaire-package",
                           content=json.dumps({"resourceType": "Parameters", "parameter": parameters}),
                           headers={**FHIR, "Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()["parameter"][0]["resource"]


def answer_for(item: dict[str, Any], value: Any) -> dict[str, Any]:
    if item["type"] == "choice" and isinstance(value, bool):  # a yes/no question: Y / N
        value = "Y" if value else "N"
    if item["type"] == "choice":
        option = next(o for o in item["answerOption"] if o["valueCoding"]["code"] == value)
        return {"valueCoding": option["valueCoding"]}
    if item["type"] == "boolean":
        return {"valueBoolean": value}
    if item["type"] == "open-choice":
        return {"valueString": value}
    return {"valueDecimal": value} if item["type"] == "decimal" else {"valueInteger": value}


def respond(questionnaire: dict[str, Any], answers: dict[str, Any], *, origin: dict[str, str] | None = None,
            authored: str | None = None, rid: str | None = "dtr-answers-1",
            subject: str = "Patient/pat-1") -> dict[str, Any]:
    """A completed response to ``questionnaire``, nested as it is, answering the items ``answers``
    names (each answer's information-origin from ``origin``, default ``manual``)."""
    origin = origin or {}

    def answered(item: dict[str, Any]) -> dict[str, Any] | None:
        if item["type"] == "group":
            children = [a for a in (answered(i) for i in item.get("item", [])) if a]
            return {"linkId": item["linkId"], "item": children} if children else None
        if item["type"] == "display" or item["linkId"] not in answers:
            return None
        values = answers[item["linkId"]]
        source = {"url": INFORMATION_ORIGIN, "extension": [
            {"url": "source", "valueCode": origin.get(item["linkId"], "manual")},
            {"url": "author", "valueReference": {"reference": "Practitioner/dr-1"}}]}
        return {"linkId": item["linkId"], "answer": [{**answer_for(item, v), "extension": [source]}
                                                     for v in (values if isinstance(values, list) else [values])]}

    response: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse", "status": "completed",
        "questionnaire": f"{questionnaire['url']}|{questionnaire['version']}",
        "subject": {"reference": subject},
        "authored": authored or datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat(),
        "item": [a for a in (answered(i) for i in questionnaire.get("item", [])) if a]}
    if rid:
        response["id"] = rid
    return response


def post_response(client, key: str, body: dict[str, Any]):
    return client.post("/fhir/QuestionnaireResponse", content=json.dumps(body),
                       headers={**FHIR, "Authorization": f"Bearer {key}"})


def evidence(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    items = [e for f in (*result["criteria"], *result["flags"]) for e in f["evidence"]]
    return {e["field"]: e for e in (*items, *result.get("other_evidence", []))}


def initial_expressions(questionnaire: dict[str, Any]) -> dict[str, str]:
    """Each question's linkId -> the define its CQL initialExpression names."""
    found = {}

    def walk(items):
        for item in items:
            for extension in item.get("extension", []):
                if extension["url"].endswith("sdc-questionnaire-initialExpression"):
                    found[item["linkId"]] = json.loads(extension["valueExpression"]["expression"].partition(".")[2])
            walk(item.get("item", []))
    walk(questionnaire.get("item", []))
    return found


def prefill_with_cql(package: dict[str, Any], chart: dict[str, Any], service_date: str | None) -> dict[str, Any]:
    """Run the package's Library (its ELM) in cql-execution on the chart, as a DTR app does:
    linkId -> the value its initialExpression gives (only those it gives)."""
    from cql_engine import run_cql

    resources = [e["resource"] for e in package["entry"]]
    questionnaire, library = resources[0], next(r for r in resources if r["resourceType"] == "Library")
    elm = json.loads(base64.b64decode(next(c["data"] for c in library["content"]
                                            if c["contentType"] == "application/elm+json")))
    value_sets = [r for r in resources if r["resourceType"] == "ValueSet"]
    defines = initial_expressions(questionnaire)
    (row,) = run_cql(elm, value_sets, sorted(set(defines.values())), [(chart, service_date)])
    return {link_id: row[define] for link_id, define in defines.items() if row[define] is not None}


def prefilled_response(questionnaire: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The draft response a DTR app builds from the CQL results (information-origin auto-client)."""
    def answer(item, value):
        if isinstance(value, dict) and "code" in value:  # a System Code (yes/no)
            return {"valueCoding": {k: value[k] for k in ("system", "code", "display") if value.get(k)}}
        if item["type"] == "choice":
            return {"valueCoding": next(o["valueCoding"] for o in item["answerOption"] if o["valueCoding"]["code"] == value)}
        if item["type"] == "integer":
            return {"valueInteger": int(value)}
        if item["type"] == "decimal":
            return {"valueDecimal": value}
        return {"valueString": value}

    def walk(items):
        out = []
        for item in items:
            if item["type"] == "group":
                children = walk(item.get("item", []))
                if children:
                    out.append({"linkId": item["linkId"], "item": children})
            elif item["linkId"] in values:
                value = values[item["linkId"]]
                origin = {"url": INFORMATION_ORIGIN, "extension": [{"url": "source", "valueCode": "auto-client"}]}
                out.append({"linkId": item["linkId"], "answer": [
                    {**answer(item, v), "extension": [origin]} for v in (value if isinstance(value, list) else [value])]})
        return out

    return {"resourceType": "QuestionnaireResponse", "status": "in-progress",
            "questionnaire": f"{questionnaire['url']}|{questionnaire['version']}", "item": walk(questionnaire["item"])}
