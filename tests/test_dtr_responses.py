"""``POST /fhir/QuestionnaireResponse``: a DTR response completes the evaluation its context names,
stored as the request's next submission; evidence keeps the information-origin and cites the
response and linkId; what LHC-Forms showed (item 6 of issue 20) no longer happens: answers
authored after the service date are read, nothing is dropped in silence, a contradiction with the
chart is shown, an out-of-range answer is named and the rest read."""

from __future__ import annotations

import copy

import pytest
from dtr_support import (
    GOOD,
    chart_with_gaps,
    evaluate_chart,
    evidence,
    fetch_package,
    post_response,
    respond,
)
from fhir_support import bmi, bundle

COVERAGE_INFORMATION = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'dtr.db'}"


def history(client, key, external_id):
    listed = client.get("/v1/evaluations", params={"external_id": external_id}, headers={"X-API-Key": key})
    assert listed.status_code == 200, listed.text
    return listed.json()["evaluations"]


def test_answers_authored_after_the_service_date_complete_the_evaluation_as_its_next_submission(
        client, intake_key, reviewer_key):
    first = evaluate_chart(client, intake_key, chart_with_gaps())
    assert first["summary"]["outcome"] == "information_missing"
    package = fetch_package(client, intake_key, context=first["evaluation_id"])
    questionnaire = package["entry"][0]["resource"]
    answers = respond(questionnaire, GOOD, origin={"low_back_pain.mechanical": "override"})
    assert answers["authored"][:10] > first["service_date"]  # signed after the service date, as LHC-Forms does
    stored = post_response(client, intake_key, answers)
    assert stored.status_code == 201, stored.text
    assert stored.json()["resourceType"] == "OperationOutcome"
    new_id = stored.headers["Location"].rpartition("/")[2]
    result = client.get(f"/v1/evaluations/{new_id}", headers={"X-API-Key": intake_key}).json()
    assert result["external_id"] == first["external_id"] and result["evaluation_id"] != first["evaluation_id"]
    assert result["missing_information"] == [] and result["summary"]["outcome"] == "all_criteria_met"
    found = evidence(result)
    assert found["low_back_pain.mechanical"]["source"] == {
        "reference": "QuestionnaireResponse/dtr-answers-1", "date": answers["authored"][:10],
        "link_id": "low_back_pain.mechanical", "information_origin": "override", "author": "Practitioner/dr-1"}
    assert found["device.able_to_operate"]["source"]["information_origin"] == "manual"
    assert found["patient.bmi"]["source"]["reference"] == "Observation/bmi-1"  # earlier evidence keeps its source
    ids = [e["evaluation_id"] for e in history(client, reviewer_key, first["external_id"])]
    assert set(ids) == {first["evaluation_id"], new_id}


def test_a_response_in_a_bundle_to_the_policy_questionnaire_names_its_evaluation_by_coverage_assertion_id(
        client, intake_key):
    first = evaluate_chart(client, intake_key, chart_with_gaps("DTR-BUNDLE-1"))
    package = fetch_package(client, intake_key, questionnaire="http://testserver/v1/policies/"
                                                               "isass-2023-restorative-neurostimulation/questionnaire")
    questionnaire = package["entry"][0]["resource"]
    order = {"resourceType": "ServiceRequest", "id": "order-1", "status": "draft", "intent": "order",
             "extension": [{"url": COVERAGE_INFORMATION, "extension": [
                 {"url": "coverage-assertion-id", "valueString": first["evaluation_id"]}]}],
             "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "64568"}]},
             "subject": {"reference": "Patient/pat-1"}}
    answers = respond(questionnaire, {k: v for k, v in GOOD.items() if k in first["missing_information"]})
    sent = bundle(answers, order, identifier=None)
    stored = post_response(client, intake_key, sent)
    assert stored.status_code == 201, stored.text
    result = client.get(stored.headers["Location"], headers={"X-API-Key": intake_key}).json()
    assert result["missing_information"] == [] and result["external_id"] == "DTR-BUNDLE-1"


def outcome(response, status):
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    return response.json()["issue"]


def test_unknown_questionnaire_or_context_or_wrong_answers_are_refused_and_nothing_is_stored(client, intake_key, reviewer_key):
    first = evaluate_chart(client, intake_key, chart_with_gaps("DTR-REFUSED-1"))
    questionnaire = fetch_package(client, intake_key, context=first["evaluation_id"])["entry"][0]["resource"]
    good = respond(questionnaire, GOOD)
    elsewhere = dict(good, questionnaire="http://elsewhere.example/Questionnaire/q|1")
    (issue,) = outcome(post_response(client, intake_key, elsewhere), 404)
    assert issue["expression"] == ["QuestionnaireResponse.questionnaire"]
    unknown = dict(good, questionnaire=good["questionnaire"].replace(first["evaluation_id"], "no-such-evaluation"))
    outcome(post_response(client, intake_key, unknown), 404)
    policy_only = dict(good, questionnaire="http://testserver/v1/policies/isass-2023-restorative-neurostimulation/questionnaire")
    outcome(post_response(client, intake_key, policy_only), 404)  # a policy's form with no context
    wrong = copy.deepcopy(good)
    wrong["item"][0]["item"][0]["answer"] = [{"valueString": "yes"}]  # a boolean answered with text
    (issue,) = outcome(post_response(client, intake_key, wrong), 422)
    assert "answered with" in issue["diagnostics"] and issue["expression"][0].startswith("Bundle.entry[0].resource.item[0]")
    outcome(post_response(client, intake_key, dict(good, status="in-progress")), 422)
    outcome(post_response(client, intake_key, {"resourceType": "Patient"}), 400)
    assert len(history(client, reviewer_key, "DTR-REFUSED-1")) == 1  # nothing stored


def test_an_out_of_range_answer_is_named_and_the_other_answers_are_read(client, intake_key):
    first = evaluate_chart(client, intake_key, chart_with_gaps("DTR-RANGE-1"))
    questionnaire = fetch_package(client, intake_key, questionnaire="http://testserver/v1/policies/"
                                  "isass-2023-restorative-neurostimulation/questionnaire")["entry"][0]["resource"]
    answers = respond(questionnaire, {**{k: GOOD[k] for k in first["missing_information"]}, "low_back_pain.nrs": 15})
    answers["extension"] = [{"url": COVERAGE_INFORMATION, "extension": [
        {"url": "coverage-assertion-id", "valueString": first["evaluation_id"]}]}]
    stored = post_response(client, intake_key, answers)
    assert stored.status_code == 201, stored.text
    result = client.get(stored.headers["Location"], headers={"X-API-Key": intake_key}).json()
    (note,) = [n for n in result["intake_notes"] if n["field"] == "low_back_pain.nrs"]
    assert note["link_id"] == "low_back_pain.nrs" and note["value"] == 15 and "outside its range" in note["note"]
    assert evidence(result)["low_back_pain.nrs"]["value"] == 7  # the chart's value stands
    assert result["missing_information"] == []  # the other answers were read


def test_an_answer_that_contradicts_the_chart_shows_both_and_which_was_used(client, intake_key):
    first = evaluate_chart(client, intake_key, chart_with_gaps("DTR-CONFLICT-1"))
    questionnaire = fetch_package(client, intake_key, questionnaire="http://testserver/v1/policies/"
                                  "isass-2023-restorative-neurostimulation/questionnaire")["entry"][0]["resource"]
    answers = respond(questionnaire, {**{k: GOOD[k] for k in first["missing_information"]}, "patient.bmi": 29.5})
    answers["extension"] = [{"url": COVERAGE_INFORMATION, "extension": [
        {"url": "coverage-assertion-id", "valueString": first["evaluation_id"]}]}]
    stored = post_response(client, intake_key, answers)
    assert stored.status_code == 201, stored.text
    result = client.get(stored.headers["Location"], headers={"X-API-Key": intake_key}).json()
    bmi_evidence = evidence(result)["patient.bmi"]
    assert bmi_evidence["value"] == 29.5
    conflict = bmi_evidence["source"]["conflict"]
    assert conflict["used"] == "answer" and conflict["answer"]["value"] == 29.5
    assert conflict["chart"]["value"] == 31.2 and conflict["chart"]["reference"] == "Observation/bmi-1"
    assert any(n["field"] == "patient.bmi" and "31.2" in n["note"] and "29.5" in n["note"] for n in result["intake_notes"])


def test_in_one_bundle_too_a_chart_value_and_a_different_answer_are_both_shown(client, intake_key):
    chart = chart_with_gaps("DTR-CONFLICT-2")
    questionnaire = fetch_package(client, intake_key, questionnaire="http://testserver/v1/policies/"
                                  "isass-2023-restorative-neurostimulation/questionnaire")["entry"][0]["resource"]
    answers = respond(questionnaire, {"patient.bmi": 29.5, **{k: v for k, v in GOOD.items() if k.startswith("device")}})
    chart["entry"].append({"fullUrl": "urn:uuid:answers", "resource": answers})
    result = evaluate_chart(client, intake_key, chart)
    conflict = evidence(result)["patient.bmi"]["source"]["conflict"]
    assert {conflict["answer"]["value"], conflict["chart"]["value"]} == {29.5, 31.2}
    assert conflict["used"] == "answer" and "later" in conflict["why"]


def test_values_dated_after_the_service_date_are_listed_not_dropped_in_silence(client, intake_key):
    chart = chart_with_gaps("DTR-LATER-1")
    chart["entry"].append({"fullUrl": "urn:uuid:later-bmi", "resource": bmi(40.1, rid="bmi-later", day="2027-01-10")})
    result = evaluate_chart(client, intake_key, chart)
    assert evidence(result)["patient.bmi"]["value"] == 31.2
    (note,) = [n for n in result["intake_notes"] if n["reference"] == "Observation/bmi-later"]
    assert note["field"] == "patient.bmi" and "after the service date" in note["note"]
