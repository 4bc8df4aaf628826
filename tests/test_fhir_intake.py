"""FHIR intake, in process: every field's FHIR path gives the same facts as plain JSON."""

from __future__ import annotations

import datetime

import pytest

from fhir_support import (
    ICD10, ODI_ITEMS, SNOMED, bmi, bundle, clinical, condition, example_bundle, example_case,
    nrs, observation, odi_response, order, patient, procedure, quantity, response,
)
from service.evaluations.bundle import evaluate_bundle, read_bundle
from service.fhir.intake import case_from_resources
from service.fhir.outcome import OperationOutcomeError

DAY = datetime.date(2026, 12, 1)


@pytest.fixture(scope="module")
def dictionary(evaluator):
    return evaluator.dictionary


def read(dictionary, *resources, day=DAY):
    return case_from_resources(list(resources), dictionary, service_date=day)


def test_the_worked_example_reads_as_the_example_case(evaluator, dictionary):
    read_case = read_bundle(evaluator, example_bundle())
    expected = example_case()
    expected.pop("policy")
    assert read_case.case == expected
    assert read_case.fhir.provenance["low_back_pain.nrs"] == {"reference": "Observation/pain-1", "date": "2026-10-02"}
    assert read_case.fhir.provenance["diagnosis_codes"]["references"] == ["Condition/lbp-1", "Condition/multifidus-1"]


def test_the_worked_example_evaluates_like_the_plain_case_and_cites_its_resources(evaluator, dictionary):
    _, from_fhir = evaluate_bundle(evaluator, example_bundle())
    plain = evaluator.evaluate(example_case())
    assert from_fhir["summary"] == plain["summary"]
    for fhir_item, plain_item in zip(from_fhir["criteria"] + from_fhir["flags"], plain["criteria"] + plain["flags"]):
        assert fhir_item["status"] == plain_item["status"] and fhir_item["reason"] == plain_item["reason"]
        assert [{k: v for k, v in e.items() if k != "source"} for e in fhir_item["evidence"]] == plain_item["evidence"]
    evidence = {e["field"]: e for c in from_fhir["criteria"] for e in c["evidence"]}
    assert evidence["low_back_pain.nrs"]["source"] == {"reference": "Observation/pain-1", "date": "2026-10-02"}
    assert evidence["low_back_pain.odi_percent"]["source"] == {"reference": "QuestionnaireResponse/odi-1", "date": "2026-10-02"}
    assert evidence["patient.age_years"]["source"]["reference"] == "Patient/pat-1"


def test_age_counts_a_birthday_on_the_service_date(dictionary):
    assert read(dictionary, patient("1950-12-01")).payload == {"patient": {"age_years": 76}}
    assert read(dictionary, patient("1950-12-02")).payload == {"patient": {"age_years": 75}}
    assert read(dictionary, patient("1950")).payload == {}  # a partial birth date: age unknown


def test_nrs_in_both_value_forms(dictionary):
    assert read(dictionary, nrs(7)).payload == {"low_back_pain": {"nrs": 7}}
    as_quantity = observation("72514-3", "nrs-q", "2026-10-02", **quantity(6, "{score}"))
    assert read(dictionary, as_quantity).payload == {"low_back_pain": {"nrs": 6}}


def test_the_latest_value_on_or_before_the_service_date_wins(dictionary):
    fhir = read(dictionary, nrs(5, "old", "2026-01-01"), nrs(8, "new", "2026-11-30"), nrs(2, "later", "2026-12-02"))
    assert fhir.payload == {"low_back_pain": {"nrs": 8}}
    assert fhir.provenance["low_back_pain.nrs"] == {"reference": "Observation/new", "date": "2026-11-30"}


@pytest.mark.parametrize("status", ["entered-in-error", "preliminary", "cancelled", "registered"])
def test_observations_not_final_are_not_read(dictionary, status):
    assert read(dictionary, nrs(4, "old", "2026-01-01"), nrs(9, "bad", "2026-11-01", status=status)).payload == {
        "low_back_pain": {"nrs": 4}}


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_conditions_are_not_read(dictionary, verification):
    assert read(dictionary, condition("M41.26", "sco", recorded="2026-01-01", verification=verification)).payload == {}


def test_no_resource_means_unknown_never_false(dictionary):
    assert read(dictionary).payload == {}
    assert read(dictionary, condition("J44.0", "copd", recorded="2026-01-01")).payload == {"diagnosis_codes": ["J44.0"]}


def test_units_are_checked_or_converted_never_read_raw(dictionary):
    with pytest.raises(OperationOutcomeError) as error:
        read(dictionary, observation("72514-3", "nrs-mm", "2026-10-02", **quantity(70, "mm")))
    assert error.value.issues[0].expression == "Observation.value.ofType(Quantity).code"
    assert "mm" in error.value.issues[0].diagnostics
    # 31.2 kg/m2 is 0.044377 lb/in2 (1 lb/in2 = 703.0696 kg/m2)
    converted = read(dictionary, bmi(0.044377, unit="[lb_av]/[in_i]2")).payload["patient"]["bmi"]
    assert converted == pytest.approx(31.2, abs=0.01)


def test_odi_from_an_observation(dictionary):
    odi = observation("97909-6", "odi-obs", "2026-10-02", **quantity(44, "%"))
    assert read(dictionary, odi).payload == {"low_back_pain": {"odi_percent": 44}}


def test_odi_from_a_response_score_item_or_recomputed_from_ordinals(dictionary):
    assert read(dictionary, odi_response([0] * 10, score=38)).payload == {"low_back_pain": {"odi_percent": 38}}
    assert read(dictionary, odi_response([3, 2, 3, 2, 2, 2, 3, 2, 1, 2])).payload == {"low_back_pain": {"odi_percent": 44}}
    # the sex-life section skipped: 20 of 45 is 44.44 %
    assert read(dictionary, odi_response([3, 2, 3, 2, 2, 2, 3, None, 1, 2])).payload == {
        "low_back_pain": {"odi_percent": 44.44}}
    assert read(dictionary, odi_response([3, 2, 3, 2, 2, 2, 3, None, None, 2])).payload == {}  # 8 answered: unknown


def test_odi_response_recognized_by_its_questionnaire_code(dictionary):
    questionnaire = {"resourceType": "Questionnaire", "id": "odi", "status": "active",
                     "url": "http://example.org/Questionnaire/OswestryDisabilityIndexQuestionnaire",
                     "code": [{"system": "http://loinc.org", "code": "97908-8"}]}
    qr = odi_response([None] * 10, score=30)
    qr["item"] = [{"linkId": "total", "item": [{"linkId": "score", "answer": [{"valueDecimal": 30}]}]}]
    assert read(dictionary, qr).payload == {}
    assert read(dictionary, questionnaire, qr).payload == {"low_back_pain": {"odi_percent": 30}}


def test_low_back_pain_duration_from_the_onset(dictionary):
    fhir = read(dictionary, condition("M54.50", "lbp", onset="2024-10-01", recorded="2024-10-05"))
    assert fhir.payload["low_back_pain"] == {"duration_months": 26}
    assert read(dictionary, condition("M54.50", "lbp", onset="2024-10-02")).payload["low_back_pain"] == {
        "duration_months": 25}
    assert read(dictionary, condition("279039007", "lbp", onset="2026-05", system=SNOMED)).payload == {
        "low_back_pain": {"duration_months": 6}}  # a partial onset counts from its last day


def test_physical_therapy_and_its_outcome(dictionary):
    assert read(dictionary, procedure("91251008", "pt", "2026-03-01", outcome="385671000")).payload == {
        "conservative_care": {"physical_therapy_outcome": "failed"}}
    assert read(dictionary, procedure("91251008", "pt", "2026-03-01", outcome="385669000")).payload == {
        "conservative_care": {"physical_therapy_outcome": "improved"}}
    assert read(dictionary, procedure("91251008", "pt", "2026-03-01")).payload == {}
    assert read(dictionary, procedure("91251008", "pt", "2026-03-01", outcome="385671000", status="not-done")).payload == {}


def test_prior_lumbar_spine_surgery(dictionary):
    assert read(dictionary, procedure("50172003", "fusion", "2019-03-01")).payload == {
        "surgery": {"prior_spine_surgery_at_or_below_t8": True}}
    cpt = procedure("63047", "laminectomy", "2019-03-01", system="http://www.ama-assn.org/go/cpt")
    assert read(dictionary, cpt).payload == {"surgery": {"prior_spine_surgery_at_or_below_t8": True}}
    assert read(dictionary, procedure("50172003", "fusion", "2019-03-01", status="entered-in-error")).payload == {}


def test_any_field_from_a_response_item_keyed_by_its_path(dictionary):
    fhir = read(dictionary, response({"low_back_pain.mechanical": True, "multifidus_dysfunction.imaging": "no_abnormality",
                                      "low_back_pain.eq5d_index": 0.5}))
    assert fhir.payload == {"low_back_pain": {"mechanical": True, "eq5d_index": 0.5},
                            "multifidus_dysfunction": {"imaging": "no_abnormality"}}
    assert fhir.provenance["low_back_pain.mechanical"] == {"reference": "QuestionnaireResponse/qr-1", "date": "2026-11-20",
                                                                "link_id": "low_back_pain.mechanical"}


def test_a_wrong_answer_is_refused_with_its_expression(dictionary):
    with pytest.raises(OperationOutcomeError) as error:
        read(dictionary, response({"multifidus_dysfunction.imaging": "blurry"}))
    assert error.value.issues[0].expression == "QuestionnaireResponse.item[0].item[0].answer[0].value.ofType(Coding).code"


def test_diagnosis_codes_gather_every_icd10_condition(dictionary):
    fhir = read(dictionary, condition("M54.50", "a", recorded="2024-01-01"), condition("M62.85", "b", recorded="2025-01-01"),
                condition("279039007", "c", recorded="2025-01-01", system=SNOMED))
    assert fhir.payload == {"diagnosis_codes": ["M54.50", "M62.85"]}


def test_an_invalid_resource_the_engine_reads_gets_an_outcome_naming_the_element(evaluator, dictionary):
    broken = nrs(7)
    broken["effectiveDateTime"] = "2026-13-45"
    with pytest.raises(OperationOutcomeError) as error:
        read_bundle(evaluator, bundle(patient(), broken))
    assert [i.expression for i in error.value.issues] == ["Bundle.entry[1].resource.effective.ofType(dateTime)"]


def test_an_unrelated_invalid_resource_does_not_sink_the_request(evaluator, dictionary):
    nutrition = {"resourceType": "NutritionOrder", "id": "n1", "status": "draft",
                 "patient": {"reference": "Patient/pat-1"}, "dateTime": "2026-11-01"}  # no intent: invalid R4
    read_case = read_bundle(evaluator, bundle(patient(), nrs(7), nutrition, order()))
    assert read_case.case["low_back_pain"] == {"nrs": 7}
    assert read_case.case["service_date"] == "2026-12-01"


def test_a_value_out_of_range_is_named_by_its_fhir_element(evaluator, dictionary):
    with pytest.raises(OperationOutcomeError) as error:
        evaluate_bundle(evaluator, bundle(nrs(15)))
    (issue,) = error.value.issues
    assert issue.expression == "Bundle.entry[0].resource.value.ofType(integer)"
    assert issue.diagnostics.startswith("low_back_pain.nrs:")


def test_external_id_and_service_date(evaluator, dictionary):
    with pytest.raises(OperationOutcomeError) as error:
        read_bundle(evaluator, bundle(patient(), identifier=None))
    assert error.value.issues[0].expression == "Bundle.identifier.value"
    given = read_bundle(evaluator, bundle(patient(), identifier=None), external_id="Q-1", service_date="2026-11-01")
    assert (given.case["external_id"], given.case["service_date"]) == ("Q-1", "2026-11-01")
    today = read_bundle(evaluator, bundle(patient()), today=datetime.date(2026, 11, 22))
    assert today.case["service_date"] == "2026-11-22"


def test_two_patients_are_refused(evaluator, dictionary):
    with pytest.raises(OperationOutcomeError):
        read_bundle(evaluator, bundle(patient(rid="a"), patient(rid="b")))


def test_the_cli_evaluates_a_bundle_and_answers_an_invalid_one_with_an_outcome(tmp_path):
    import json
    import subprocess
    import sys

    from fhir_support import ROOT

    command = [sys.executable, "-m", "service.cli", "evaluate"]
    done = subprocess.run([*command, str(ROOT / "examples" / "bundle.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["external_id"] == "INTAKE-2026-000123" and result["service_date"] == "2026-12-01"
    assert result["summary"]["outcome"] == "all_criteria_met"
    broken = bundle(nrs(7) | {"valueInteger": "seven"})
    done = subprocess.run([*command, "-"], input=json.dumps(broken), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    outcome = json.loads(done.stderr)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[0].resource.value.ofType(integer)"]


def test_a_resource_about_another_patient_is_refused(evaluator, dictionary):
    other = nrs(7)
    other["subject"] = {"reference": "http://ehr.example/fhir/Patient/someone-else"}
    with pytest.raises(OperationOutcomeError) as error:
        read_bundle(evaluator, bundle(patient(rid="pat-1"), other))
    assert error.value.issues[0].expression == "Bundle.entry[1].resource.subject.reference"
    same = nrs(7)
    same["subject"] = {"reference": "http://ehr.example/fhir/Patient/pat-1"}
    assert read_bundle(evaluator, bundle(patient(rid="pat-1"), same)).case["low_back_pain"] == {"nrs": 7}


def test_an_outcome_lists_at_most_100_issues_and_says_how_many_in_all():
    from service.fhir.outcome import Issue, operation_outcome
    from service.fhir.parse import Located, validation_issues

    outcome = operation_outcome([Issue("value", f"bad {i}", f"Bundle.entry[{i}].resource") for i in range(130)])
    assert len(outcome["issue"]) == 101
    assert outcome["issue"][-1]["diagnostics"] == "130 issues in all; the first 100 are listed."
    assert not validation_issues(Located(outcome, "OperationOutcome"))


def test_an_outcome_from_tuples_severity_code_expression_diagnostics():
    from service.fhir.outcome import operation_outcome

    assert operation_outcome([("error", "required", "Bundle.entry[0].resource.status", "status is required")]) == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "required", "diagnostics": "status is required",
                   "expression": ["Bundle.entry[0].resource.status"]}]}
