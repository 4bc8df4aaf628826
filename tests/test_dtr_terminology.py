"""DTR's other payer operations: ``ValueSet/$expand`` for the packages' value sets, and
``Questionnaire/$log-questionnaire-errors``, stored and listed per questionnaire version."""

from __future__ import annotations

import json

from dtr_support import FHIR, fetch_package

ISASS_QUESTIONNAIRE = "http://testserver/v1/policies/isass-2023-restorative-neurostimulation/questionnaire"


def bearer(key):
    return {**FHIR, "Authorization": f"Bearer {key}"}


def test_expand_gives_the_codes_the_package_ships(client, intake_key):
    package = fetch_package(client, intake_key, questionnaire=ISASS_QUESTIONNAIRE)
    shipped = [e["resource"] for e in package["entry"] if e["resource"]["resourceType"] == "ValueSet"]
    assert shipped
    for value_set in shipped:
        by_url = client.get("/fhir/ValueSet/$expand", params={"url": value_set["url"]}, headers=bearer(intake_key))
        assert by_url.status_code == 200, by_url.text
        assert by_url.json()["expansion"]["contains"] == value_set["expansion"]["contains"]
        versioned = client.get("/fhir/ValueSet/$expand", params={"url": f"{value_set['url']}|{value_set['version']}"},
                               headers=bearer(intake_key))
        assert versioned.json()["version"] == value_set["version"]
        posted = client.post("/fhir/ValueSet/$expand", headers=bearer(intake_key), content=json.dumps(
            {"resourceType": "Parameters", "parameter": [{"name": "url", "valueUri": value_set["url"]},
                                                         {"name": "valueSetVersion", "valueString": value_set["version"]}]}))
        assert posted.status_code == 200 and posted.json()["expansion"] == value_set["expansion"]
        by_id = client.get(f"/fhir/ValueSet/{value_set['id']}/$expand", headers=bearer(intake_key))
        assert by_id.json()["url"] == value_set["url"]
    surgery = next(v for v in shipped if "surgery" in v["id"])
    filtered = client.get("/fhir/ValueSet/$expand", params={"url": surgery["url"], "filter": "6304"},
                          headers=bearer(intake_key)).json()
    assert {c["code"] for c in filtered["expansion"]["contains"]} == {"63047"}
    assert filtered["expansion"]["total"] == 1


def test_expand_of_an_unknown_value_set_is_a_404_operation_outcome(client, intake_key):
    for response in (client.get("/fhir/ValueSet/$expand", params={"url": "http://elsewhere/ValueSet/x"}, headers=bearer(intake_key)),
                     client.get("/fhir/ValueSet/nope/$expand", headers=bearer(intake_key)),
                     client.get("/fhir/ValueSet/$expand", params={"url": ISASS_QUESTIONNAIRE, "valueSetVersion": "9"},
                                headers=bearer(intake_key))):
        assert response.status_code == 404
        assert response.json()["resourceType"] == "OperationOutcome"
    missing = client.post("/fhir/ValueSet/$expand", headers=bearer(intake_key),
                          content=json.dumps({"resourceType": "Parameters", "parameter": []}))
    assert missing.status_code == 400 and missing.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/ValueSet/$expand", params={"url": "x"}).status_code == 401


def errors(*issues):
    return {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing", "diagnostics": text} for text in issues]}


def test_logged_errors_are_stored_and_listed_per_questionnaire_version(client, intake_key, reviewer_key):
    package = fetch_package(client, intake_key, questionnaire=ISASS_QUESTIONNAIRE)
    questionnaire = package["entry"][0]["resource"]
    canonical = f"{questionnaire['url']}|{questionnaire['version']}"
    spellings = [  # the IG's LogQuestionnaireErrorsInputParamsExample (2.2), and 2.0.1's two spellings
        [{"name": "questionnaire", "valueCanonical": canonical},
         {"name": "operationOutcome", "resource": errors("CQL: define patient.bmi failed (DTR app 1.2, 2026-12-05T10:00:00+01:00)")}],
        [{"name": "Questionnaire", "valueCanonical": canonical},
         {"name": "OperationOutcome", "resource": errors("second")}],
        [{"name": "questionnaire", "valueCanonical": f"{questionnaire['url']}|0.9.0"},
         {"name": "outcome", "resource": errors("an older version")}],
    ]
    for parameters in spellings:
        logged = client.post("/fhir/Questionnaire/$log-questionnaire-errors", headers=bearer(intake_key),
                             content=json.dumps({"resourceType": "Parameters", "parameter": parameters}))
        assert logged.status_code == 200, logged.text
        assert logged.json()["resourceType"] == "OperationOutcome"
    listed = client.get("/fhir/Questionnaire/$log-questionnaire-errors", params={"questionnaire": canonical},
                        headers=bearer(reviewer_key))
    assert listed.status_code == 200
    texts = [e["resource"]["issue"][0]["diagnostics"] for e in listed.json()["entry"]]
    assert sorted(texts) == sorted(["second", spellings[0][1]["resource"]["issue"][0]["diagnostics"]])
    every = client.get("/fhir/Questionnaire/$log-questionnaire-errors", params={"questionnaire": questionnaire["url"]},
                       headers=bearer(reviewer_key)).json()
    assert every["total"] == 3
    assert client.get("/fhir/Questionnaire/$log-questionnaire-errors", params={"questionnaire": canonical},
                      headers=bearer(intake_key)).status_code == 403
    bad = client.post("/fhir/Questionnaire/$log-questionnaire-errors", headers=bearer(intake_key),
                      content=json.dumps({"resourceType": "Parameters", "parameter": [{"name": "questionnaire",
                                                                                        "valueCanonical": canonical}]}))
    assert bad.status_code == 400 and "OperationOutcome" in bad.json()["issue"][0]["diagnostics"]
