"""The case model is strict: wrong types, ranges, enum values and unknown fields are refused by path."""

import pytest

from service.errors import InvalidInput


def errors_of(evaluator, payload) -> dict[str, str]:
    with pytest.raises(InvalidInput) as caught:
        evaluator.evaluate(payload)
    return {e["field"]: e["type"] for e in caught.value.errors}


@pytest.mark.parametrize(
    ("section", "field", "value", "error_type"),
    [
        ("low_back_pain", "nrs", "7", "float_type"),           # no "7" for 7
        ("patient", "age_years", "40", "int_type"),            # '40' would pass >= 30 in durable-rules
        ("patient", "age_years", 52.5, "int_type"),
        ("patient", "age_years", True, "int_type"),            # a boolean is not a number
        ("low_back_pain", "mechanical", "yes", "bool_type"),    # no "yes" for true
        ("low_back_pain", "mechanical", 1, "bool_type"),
        ("low_back_pain", "nrs", 11, "less_than_equal"),
        ("low_back_pain", "nrs", -1, "greater_than_equal"),
        ("patient", "age_years", 131, "less_than_equal"),
        ("patient", "bmi", 9.9, "greater_than_equal"),
        ("low_back_pain", "odi_percent", 100.5, "less_than_equal"),
        ("low_back_pain", "eq5d_index", 1.2, "less_than_equal"),
        ("low_back_pain", "predominant_pain_type", "somatic", "literal_error"),
        ("conservative_care", "medication_outcome", "FAILED", "literal_error"),
        ("multifidus_dysfunction", "imaging", "atrophy", "literal_error"),
        ("low_back_pain", "unknown_field", 1, "extra_forbidden"),
    ],
)
def test_bad_values_are_refused_with_their_path(evaluator, full_case, section, field, value, error_type):
    full_case[section][field] = value
    assert errors_of(evaluator, full_case) == {f"{section}.{field}": error_type}


def test_unknown_top_level_field_and_section_shape(evaluator, full_case):
    full_case["approved"] = True
    full_case["device"] = ["able_to_operate"]
    assert errors_of(evaluator, full_case) == {"approved": "extra_forbidden", "device": "model_type"}


def test_external_id_is_required_and_bounded(evaluator, full_case):
    del full_case["external_id"]
    assert errors_of(evaluator, full_case) == {"external_id": "missing"}
    full_case["external_id"] = ""
    assert errors_of(evaluator, full_case) == {"external_id": "string_too_short"}
    full_case["external_id"] = "x" * 129
    assert errors_of(evaluator, full_case) == {"external_id": "string_too_long"}


def test_every_error_is_reported_at_once(evaluator, full_case):
    full_case["patient"]["age_years"] = "52"
    full_case["surgery"]["spine_surgery_indicated"] = "no"
    full_case["other_findings"]["kyphosis"] = True
    assert set(errors_of(evaluator, full_case)) == {
        "patient.age_years", "surgery.spine_surgery_indicated", "other_findings.kyphosis"}


@pytest.mark.parametrize("value", ["01/12/2026", "2026-12-01T10:00:00", 1764547200, "2026-13-01"])
def test_service_date_must_be_an_iso_date(evaluator, full_case, value):
    full_case["service_date"] = value
    assert set(errors_of(evaluator, full_case)) == {"service_date"}


def test_diagnosis_codes_must_look_like_icd10(evaluator, full_case):
    full_case["diagnosis_codes"] = ["M54.50", "lumbago"]
    assert errors_of(evaluator, full_case) == {"diagnosis_codes[1]": "string_pattern_mismatch"}


@pytest.mark.parametrize("payload", [[], "case", 7, None])
def test_a_case_must_be_an_object(evaluator, payload):
    assert errors_of(evaluator, payload) == {"case": "model_type"}


def test_unknown_policy_names_the_policy_field(evaluator, full_case):
    full_case["policy"] = "some-other-policy"
    assert errors_of(evaluator, full_case) == {"policy": "unknown_policy"}


def test_service_date_before_any_version_names_the_date(evaluator, full_case):
    full_case["service_date"] = "2020-01-01"
    assert errors_of(evaluator, full_case) == {"service_date": "no_policy_in_force"}


def test_nulls_are_missing_not_values(evaluator, full_case):
    full_case["surgery"]["spine_surgery_indicated"] = None
    full_case["patient"] = None
    result = evaluator.evaluate(full_case)
    by_id = {c["id"]: c for c in result["criteria"]}
    assert by_id["ISASS-RN-10"]["status"] == "insufficient_information"
    assert by_id["ISASS-RN-10"]["missing"] == ["surgery.spine_surgery_indicated"]
    assert by_id["ISASS-RN-01"]["missing"] == ["patient.age_years"]
    assert result["summary"]["outcome"] == "information_missing"


def test_integer_valued_numbers_may_be_sent_as_floats(evaluator, full_case):
    full_case["low_back_pain"]["nrs"] = 6.0
    result = evaluator.evaluate(full_case)
    nrs = next(c for c in result["criteria"] if c["id"] == "ISASS-RN-04")
    assert nrs["status"] == "met"
    assert nrs["evidence"] == [{"field": "low_back_pain.nrs", "value": 6}]


def test_the_requested_service_is_codes_with_a_system(evaluator, full_case):
    full_case["requested_service"] = [{"system": "http://www.ama-assn.org/go/cpt", "code": "64568", "display": "Implant"}]
    assert evaluator.evaluate(full_case)["summary"]["outcome"] == "all_criteria_met"  # shown to reviewers, never evaluated

    full_case["requested_service"] = [{"code": "64568"}, {"system": "urn:x", "code": ""}, {"system": "urn:x", "code": "1", "extra": 1}]
    assert errors_of(evaluator, full_case) == {
        "requested_service[0].system": "missing",
        "requested_service[1].code": "string_too_short",
        "requested_service[2].extra": "extra_forbidden",
    }
    full_case["requested_service"] = [{"system": "urn:x", "code": str(n)} for n in range(11)]
    assert errors_of(evaluator, full_case) == {"requested_service": "too_long"}
