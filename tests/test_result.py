"""The result has exactly the contract's shape, words the reason, and never decides coverage."""

import json
import re

from conftest import statuses


def by_id(result: dict) -> dict[str, dict]:
    return {item["id"]: item for item in (*result["criteria"], *result["flags"])}


def test_contract_shape_for_the_example_case(evaluator, full_case):
    result = evaluator.evaluate(full_case)
    assert set(result) >= {"evaluation_id", "external_id", "evaluated_at", "policy", "summary", "criteria",
                           "flags", "missing_information"}
    assert result["external_id"] == "INTAKE-2026-000123"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result["evaluated_at"])
    assert {"id", "version", "title", "status"} <= set(result["policy"])
    assert result["policy"]["status"] == "draft" and result["policy"]["review_note"]
    assert result["summary"] == {
        "outcome": "all_criteria_met", "met": 13, "not_met": 0, "insufficient_information": 0, "total": 13,
        "flags_present": [],
        "notice": "These findings support a reviewer's determination; they are not a coverage decision."}
    assert [c["id"] for c in result["criteria"]] == [f"ISASS-RN-{n:02d}" for n in range(1, 14)]
    for item in (*result["criteria"], *result["flags"]):
        assert set(item) >= {"id", "title", "status", "evidence", "missing", "citations"}
        assert item["citations"] and all({"source", "locator", "reference"} <= set(c) for c in item["citations"])
    assert result["missing_information"] == []


def test_reason_evidence_and_citations_of_a_met_criterion(evaluator, full_case):
    nrs = by_id(evaluator.evaluate(full_case))["ISASS-RN-04"]
    assert nrs["status"] == "met"
    assert nrs["reason"] == "Met: Back pain NRS is 7 (required: at least 6)."
    assert nrs["evidence"] == [{"field": "low_back_pain.nrs", "value": 7}]
    assert nrs["missing"] == []
    assert [c["source"] for c in nrs["citations"]] == ["isass-2023", "matis-2021"]
    assert nrs["citations"][0]["reference"].startswith("Lorio M")


def test_an_or_names_what_it_still_waits_for(evaluator, full_case):
    full_case["multifidus_dysfunction"] = {"prone_instability_test": "negative"}
    result = evaluator.evaluate(full_case)
    criterion = by_id(result)["ISASS-RN-09"]
    assert criterion["status"] == "insufficient_information"
    assert criterion["missing"] == ["multifidus_dysfunction.imaging"]
    assert criterion["evidence"] == [{"field": "multifidus_dysfunction.prone_instability_test", "value": "negative"}]
    assert "Prone instability test is negative" in criterion["reason"]
    assert "Multifidus imaging is not documented" in criterion["reason"]
    assert result["missing_information"] == ["multifidus_dysfunction.imaging"]
    assert result["summary"]["outcome"] == "information_missing"


def test_an_and_is_settled_by_its_false_part(evaluator, full_case):
    full_case["low_back_pain"] = {"predominant_pain_type": "neuropathic"}
    criterion = by_id(evaluator.evaluate(full_case))["ISASS-RN-03"]
    assert criterion["status"] == "not_met"
    assert criterion["missing"] == []
    assert criterion["reason"] == "Not met: Predominant pain type is neuropathic (required: nociceptive)."


def test_flags_are_reported_but_never_counted(evaluator, full_case):
    full_case["patient"]["bmi"] = 38
    full_case["other_findings"]["scoliosis"] = True
    result = evaluator.evaluate(full_case)
    assert by_id(result)["TRIAL-BMI"]["status"] == "present"
    assert by_id(result)["TRIAL-BMI"]["reason"] == "Present: BMI is 38 (present when: more than 35)."
    assert by_id(result)["TRIAL-SCOLIOSIS"]["status"] == "present"
    assert result["summary"]["outcome"] == "all_criteria_met"


def test_missing_information_is_the_union_of_criteria_missing_in_policy_order(evaluator):
    result = evaluator.evaluate({"external_id": "x", "patient": {"age_years": 40},
                                 "low_back_pain": {"mechanical": True}})
    expected = []
    for criterion in result["criteria"]:
        expected += [f for f in criterion["missing"] if f not in expected]
    assert result["missing_information"] == expected
    assert "patient.age_years" not in expected and "low_back_pain.mechanical" not in expected
    assert "patient.bmi" not in expected  # flags' missing fields are not the intake's to-do list


def test_nothing_in_a_result_decides_coverage(evaluator, full_case):
    for case in (full_case, {"external_id": "x", "device": {"fit_for_implant_surgery": False}}):
        text = json.dumps(evaluator.evaluate(case)).lower()
        for word in ("approved", "denied", "approve", "deny", "authorized"):
            assert word not in text
        assert not re.search(r"(?<!not a )\bcoverage decision", text)
        assert " covered" not in text and "not covered" not in text


def test_same_case_same_findings(evaluator, full_case):
    first, second = evaluator.evaluate(full_case), evaluator.evaluate(full_case)
    assert first["evaluation_id"] != second["evaluation_id"]
    for key in ("summary", "criteria", "flags", "missing_information", "policy"):
        assert first[key] == second[key]


def test_the_service_date_defaults_to_today(evaluator, full_case):
    import datetime

    del full_case["service_date"]
    result = evaluator.evaluate(full_case)
    assert result["service_date"] == datetime.date.today().isoformat()
    assert statuses(result)["ISASS-RN-01"] == "met"
