"""SDC Questionnaires from the field dictionary, and the round trip: an evaluation with gaps ->
its Questionnaire -> answers -> a complete evaluation."""

from __future__ import annotations

import json

import pytest

from fhir_support import (
    bmi, bundle, condition, example_bundle, nrs, odi_response, order, patient, procedure,
)
from service.fhir.parse import Located, validation_issues

FHIR = {"Content-Type": "application/fhir+json"}
POLICY_ID = "isass-2023-restorative-neurostimulation"


def items(questionnaire):
    for item in questionnaire.get("item", []):
        yield item
        yield from items(item)


def fields_asked(questionnaire):
    return [i["linkId"] for i in items(questionnaire) if i["type"] not in ("group", "display")]


def test_the_policy_questionnaire_asks_for_every_field_the_rules_read(client, intake_key, evaluator):
    response = client.get(f"/v1/policies/{POLICY_ID}/questionnaire", headers={"X-API-Key": intake_key})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    questionnaire = response.json()
    assert not validation_issues(Located(questionnaire, "Questionnaire"))
    version = evaluator.catalog.versions[POLICY_ID][-1]
    read = {path for rule in (*version.criteria, *version.flags) for path in rule.fields}
    assert set(fields_asked(questionnaire)) == read
    by_link = {i["linkId"]: i for i in items(questionnaire)}
    assert by_link["low_back_pain.nrs"]["code"] == [{"system": "http://loinc.org", "code": "72514-3"}]
    assert by_link["low_back_pain.nrs"]["type"] == "decimal"
    imaging = by_link["multifidus_dysfunction.imaging"]
    assert imaging["type"] == "choice"
    assert "atrophy_or_fatty_infiltration" in [o["valueCoding"]["code"] for o in imaging["answerOption"]]
    assert by_link["patient.age_years"]["type"] == "integer"
    assert by_link["low_back_pain.mechanical"]["type"] == "boolean"
    assert questionnaire["url"].endswith(f"/v1/policies/{POLICY_ID}/questionnaire")
    assert client.get("/v1/policies/none/questionnaire", headers={"X-API-Key": intake_key}).status_code == 404


ANSWERS = {"boolean": {"valueBoolean": True}, "integer": {"valueInteger": 60}, "decimal": {"valueDecimal": 7}}
GOOD = {  # answers that meet each criterion
    "low_back_pain.axial_predominant": True, "low_back_pain.mechanical": True,
    "low_back_pain.quality_of_life_severely_impaired": True, "low_back_pain.predominant_pain_type": "nociceptive",
    "conservative_care.medication_outcome": "failed", "conservative_care.duration_months": 14,
    "multifidus_dysfunction.prone_instability_test": "positive", "multifidus_dysfunction.imaging": "atrophy_or_fatty_infiltration",
    "surgery.spine_surgery_indicated": False, "surgery.prior_spine_surgery_at_or_below_t8": False,
    "device.able_to_operate": True, "device.fit_for_implant_surgery": True,
    "other_findings.scoliosis": False, "other_findings.neurological_deficit": False,
    "other_findings.stenosis_with_leg_pain": False, "other_findings.scs_candidate": False,
}


def answer_for(item):
    value = GOOD[item["linkId"]]
    if item["type"] == "choice":
        option = next(o for o in item["answerOption"] if o["valueCoding"]["code"] == value)
        return {"valueCoding": option["valueCoding"]}
    if item["type"] == "boolean":
        return {"valueBoolean": value}
    return {"valueDecimal": value} if item["type"] == "decimal" else {"valueInteger": value}


def respond(questionnaire):
    """A QuestionnaireResponse answering every item, nested as the Questionnaire is."""
    def answered(item):
        if item["type"] == "group":
            return {"linkId": item["linkId"], "item": [answered(i) for i in item["item"]]}
        return {"linkId": item["linkId"], "answer": [answer_for(item)]}
    return {"resourceType": "QuestionnaireResponse", "id": "answers-1", "questionnaire": questionnaire["url"],
            "status": "completed", "authored": "2026-11-25", "subject": {"reference": "Patient/pat-1"},
            "item": [answered(i) for i in questionnaire["item"]]}


def test_round_trip_gaps_questionnaire_answers_complete(client, intake_key):
    key = {"X-API-Key": intake_key}
    facts = [order("2026-12-01"), patient("1974-06-15"), bmi(31.2), nrs(7),
             condition("M54.50", "lbp", onset="2024-10-01", recorded="2024-10-01"),
             procedure("91251008", "pt", "2025-06-01", outcome="385671000"),
             odi_response([3, 2, 3, 2, 2, 2, 3, 2, 1, 2])]
    first = client.post("/v1/evaluations", content=json.dumps(bundle(*facts, identifier="RT-1")), headers={**FHIR, **key})
    assert first.status_code == 201, first.text
    result = first.json()
    assert result["summary"]["outcome"] == "information_missing"

    response = client.get(f"/v1/evaluations/{result['evaluation_id']}/questionnaire", headers=key)
    assert response.status_code == 200
    questionnaire = response.json()
    assert not validation_issues(Located(questionnaire, "Questionnaire"))
    asked = fields_asked(questionnaire)
    assert set(result["missing_information"]) <= set(asked)
    assert "low_back_pain.nrs" not in asked and "patient.bmi" not in asked  # only what is missing

    answers = respond(questionnaire)
    assert not validation_issues(Located(answers, "QuestionnaireResponse"))
    second = client.post("/v1/evaluations", content=json.dumps(bundle(*facts, answers, identifier="RT-1")),
                         headers={**FHIR, **key})
    assert second.status_code == 201, second.text
    complete = second.json()
    assert complete["missing_information"] == []
    assert complete["summary"]["outcome"] == "all_criteria_met"
    mechanical = next(e for c in complete["criteria"] for e in c["evidence"] if e["field"] == "low_back_pain.mechanical")
    assert mechanical["source"] == {"reference": "QuestionnaireResponse/answers-1", "date": "2026-11-25",
                                  "date_element": "authored", "link_id": "low_back_pain.mechanical"}

    assert client.get("/v1/evaluations/nope/questionnaire", headers=key).status_code == 404


def test_answers_alone_complete_the_evaluation_whose_questionnaire_they_answer(client, intake_key, database):
    key = {"X-API-Key": intake_key}
    facts = [order("2026-12-01"), patient("1974-06-15"), bmi(31.2), nrs(7),
             condition("M54.50", "lbp", onset="2024-10-01", recorded="2024-10-01"),
             procedure("91251008", "pt", "2025-06-01", outcome="385671000"),
             odi_response([3, 2, 3, 2, 2, 2, 3, 2, 1, 2])]
    first = client.post("/v1/evaluations", content=json.dumps(bundle(*facts, identifier="RT-2")), headers={**FHIR, **key}).json()
    questionnaire = client.get(f"/v1/evaluations/{first['evaluation_id']}/questionnaire", headers=key).json()
    answers = respond(questionnaire)
    # Only the QuestionnaireResponse: the rest of the case comes from the evaluation it answers.
    second = client.post("/v1/evaluations", content=json.dumps(bundle(answers, identifier=None)), headers={**FHIR, **key})
    assert second.status_code == 201, second.text
    complete = second.json()
    assert (complete["external_id"], complete["service_date"]) == ("RT-2", "2026-12-01")
    assert complete["summary"]["outcome"] == "all_criteria_met" and complete["missing_information"] == []
    evidence = {e["field"]: e for c in complete["criteria"] for e in c["evidence"]}
    assert evidence["low_back_pain.nrs"]["value"] == 7  # from the first evaluation, still cited
    assert evidence["low_back_pain.nrs"]["source"] == {"reference": "Observation/nrs-1", "date": "2026-10-02", "date_element": "effectiveDateTime"}
    assert evidence["low_back_pain.mechanical"]["source"]["reference"] == "QuestionnaireResponse/answers-1"

    answers["questionnaire"] = questionnaire["url"].replace(first["evaluation_id"], "no-such-evaluation")
    refused = client.post("/v1/evaluations", content=json.dumps(bundle(answers)), headers={**FHIR, **key})
    assert refused.status_code == 404 and refused.json()["resourceType"] == "OperationOutcome"


def test_a_complete_evaluation_has_a_questionnaire_without_items(client, intake_key):
    key = {"X-API-Key": intake_key}
    done = client.post("/v1/evaluations", content=json.dumps(example_bundle()), headers={**FHIR, **key}).json()
    assert done["missing_information"] == []
    questionnaire = client.get(f"/v1/evaluations/{done['evaluation_id']}/questionnaire", headers=key).json()
    assert "item" not in questionnaire and not validation_issues(Located(questionnaire, "Questionnaire"))
