"""The field dictionary (rules/fields.yaml) is the one place case fields are declared: the case
model, the rule loader's checks and the wording of results all follow it, and a malformed one is
refused at load naming the file, the field and the problem."""

import shutil
import textwrap

import pytest
import yaml

from conftest import FIELDS_FILE, POLICY_DIR, with_dictionary
from service.engine.evaluation import Evaluator
from service.errors import InvalidInput
from service.policy.fields import DictionaryError, load_dictionary
from service.policy.rules import RuleError, load_catalog


def write_dictionary(tmp_path, change) -> "Path":
    data = yaml.safe_load(FIELDS_FILE.read_text())
    change(data)
    path = tmp_path / "fields.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["fields"]["patient.bmi"].update(kind="decimal"), "patient.bmi"),
        (lambda d: d["fields"]["multifidus_dysfunction.imaging"].pop("choices"),
         "multifidus_dysfunction.imaging: choices: an enum field lists its values"),
        (lambda d: d["fields"]["patient.bmi"].update(choices={"a": "b"}), "patient.bmi: choices: only enum"),
        (lambda d: d["fields"]["patient.bmi"].update(minimum=50, maximum=10), "patient.bmi: minimum is above maximum"),
        (lambda d: d["fields"].update({"cardiac.ef": {"kind": "number", "label": "EF"}}),
         "cardiac.ef: section 'cardiac' is not declared"),
        (lambda d: d["fields"].update({"external_id": {"kind": "boolean", "label": "x"}}),
         "external_id: 'external_id' is already a top-level name"),
        (lambda d: d["fields"]["patient.age_years"].update(maximum=130.5),
         "patient.age_years: maximum: an integer field's bound is a whole number"),
        (lambda d: d["fields"]["patient.bmi"].update(colour="red"), "patient.bmi.colour"),
    ],
)
def test_a_malformed_dictionary_is_refused_naming_file_field_and_problem(tmp_path, change, problem):
    path = write_dictionary(tmp_path, change)
    with pytest.raises(DictionaryError) as caught:
        load_dictionary(path)
    assert str(path) in str(caught.value) and problem in str(caught.value)


def test_a_field_a_policy_reads_but_the_dictionary_lacks_is_refused(tmp_path):
    shutil.copytree(POLICY_DIR, tmp_path / "isass-2023-restorative-neurostimulation" / "1.0.0")
    write_dictionary(tmp_path, lambda d: d["fields"].pop("low_back_pain.nrs"))
    with pytest.raises(RuleError) as caught:
        load_catalog(tmp_path)
    assert "ISASS-RN-04: met_when: unknown case field 'low_back_pain.nrs' (not in the field dictionary" in str(caught.value)


def test_a_rule_may_not_read_an_evidence_only_field(tmp_path):
    folder = tmp_path / "isass-2023-restorative-neurostimulation" / "1.0.0"
    shutil.copytree(POLICY_DIR, folder)
    with_dictionary(tmp_path)
    text = (folder / "policy.yaml").read_text()
    (folder / "policy.yaml").write_text(text.replace("{field: low_back_pain.nrs, at_least: 6}",
                                                     "{field: low_back_pain.eq5d_index, at_most: 0.5}"))
    with pytest.raises(RuleError, match="eq5d_index is evidence only"):
        load_catalog(tmp_path)


def test_a_new_section_and_field_need_no_code(tmp_path, full_case):
    """A dictionary edit alone adds a section to the case model and its OpenAPI schema."""
    shutil.copytree(POLICY_DIR, tmp_path / "isass-2023-restorative-neurostimulation" / "1.0.0")
    write_dictionary(tmp_path, lambda d: (d["sections"].update(cardiac={"label": "Cardiac"}),
                                          d["fields"].update({"cardiac.pacemaker": {"kind": "boolean", "label": "Pacemaker"}})))
    evaluator = Evaluator.from_rules_dir(tmp_path)
    result = evaluator.evaluate({**full_case, "cardiac": {"pacemaker": True}})
    assert {"field": "cardiac.pacemaker", "label": "Pacemaker", "value": True} in result["other_evidence"]
    with pytest.raises(InvalidInput) as caught:
        evaluator.evaluate({**full_case, "cardiac": {"pacemaker": "yes"}})
    assert [e["field"] for e in caught.value.errors] == ["cardiac.pacemaker"]
    schema = evaluator.case_model.model_json_schema()
    assert "cardiac" in schema["properties"]


def test_the_bundled_dictionary_keeps_every_contract_field_exactly(evaluator):
    """Names, kinds and ranges of the contract's fields (docs/api.md) as the old Python model had them."""
    fields = evaluator.dictionary.fields
    expected = {
        "patient.age_years": ("integer", 0, 130), "patient.bmi": ("number", 10, 100),
        "low_back_pain.duration_months": ("number", 0, None), "low_back_pain.nrs": ("number", 0, 10),
        "low_back_pain.odi_percent": ("number", 0, 100), "low_back_pain.eq5d_index": ("number", -1, 1),
        "conservative_care.duration_months": ("number", 0, None),
    }
    for path, (kind, minimum, maximum) in expected.items():
        assert (fields[path].kind, fields[path].minimum, fields[path].maximum) == (kind, minimum, maximum)
    outcomes = ["failed", "not_tolerated", "improved", "not_tried", "contraindicated"]
    for name in ("medication_outcome", "physical_therapy_outcome", "psychological_therapy_outcome"):
        assert list(fields[f"conservative_care.{name}"].choices) == outcomes
    assert fields["diagnosis_codes"].kind == "code_list" and fields["diagnosis_codes"].max_items == 50


# --- external_id and service_date (issue 7, items 6 and 7) ------------------------------------

@pytest.mark.parametrize("value", [" ", "  X-1  ", "X-1\n", "X\u00851", "X\u202e\u200b1", "\u200bX", "X\x00"])
def test_external_id_refuses_blanks_padding_controls_and_invisible_characters(evaluator, full_case, value):
    full_case["external_id"] = value
    with pytest.raises(InvalidInput) as caught:
        evaluator.evaluate(full_case)
    assert [e["field"] for e in caught.value.errors] == ["external_id"]


def test_external_id_keeps_ordinary_references(evaluator, full_case):
    full_case["external_id"] = "INTAKE 2026/000123-Ä"
    assert evaluator.evaluate(full_case)["external_id"] == "INTAKE 2026/000123-Ä"


@pytest.mark.parametrize("value", ["20261201", "2026-W48-2", "2026-336", "2026-12-1", "2026-02-30"])
def test_service_date_is_yyyy_mm_dd_only(evaluator, full_case, value):
    full_case["service_date"] = value
    with pytest.raises(InvalidInput) as caught:
        evaluator.evaluate(full_case)
    assert [e["field"] for e in caught.value.errors] == ["service_date"]
    assert "YYYY-MM-DD" in caught.value.errors[0]["message"]


# --- wording and result additions (issue 7, items 15-17) ---------------------------------------

def by_id(result):
    return {item["id"]: item for item in (*result["criteria"], *result["flags"])}


def test_enum_values_read_as_words(evaluator, full_case):
    full_case["multifidus_dysfunction"] = {"prone_instability_test": "not_performed", "imaging": "no_abnormality"}
    reason = by_id(evaluator.evaluate(full_case))["ISASS-RN-09"]["reason"]
    assert "not performed" in reason and "no abnormality" in reason and "atrophy or fatty infiltration" in reason
    assert "_" not in reason


def test_an_any_reads_as_either_or(evaluator, full_case):
    full_case["multifidus_dysfunction"] = {"prone_instability_test": "negative", "imaging": "no_abnormality"}
    assert by_id(evaluator.evaluate(full_case))["ISASS-RN-09"]["reason"] == (
        "Not met: either Prone instability test positive or Multifidus imaging atrophy or fatty infiltration"
        " is required: Prone instability test is negative, Multifidus imaging is no abnormality.")
    full_case["multifidus_dysfunction"] = {"prone_instability_test": "negative"}
    assert by_id(evaluator.evaluate(full_case))["ISASS-RN-09"]["reason"] == (
        "Insufficient information: either Prone instability test positive or Multifidus imaging atrophy or fatty"
        " infiltration is required: Prone instability test is negative, Multifidus imaging is not documented"
        " (multifidus_dysfunction.imaging).")


def test_numbers_in_reasons_are_never_in_exponent_notation(evaluator, full_case):
    full_case["low_back_pain"]["duration_months"] = 0.00001
    reason = by_id(evaluator.evaluate(full_case))["ISASS-RN-02"]["reason"]
    assert "0.00001" in reason and "e-" not in reason


def test_other_evidence_lists_documented_values_no_rule_reads(evaluator, full_case):
    result = evaluator.evaluate(full_case)
    assert result["other_evidence"] == [
        {"field": "low_back_pain.eq5d_index", "label": "EQ-5D index", "value": 0.43},
        {"field": "diagnosis_codes", "label": "Diagnosis codes (ICD-10-CM)", "value": ["M54.50", "M62.85"]},
    ]


def test_flags_present_are_listed_in_the_summary(evaluator, full_case):
    full_case["patient"]["age_years"] = 76
    result = evaluator.evaluate(full_case)
    assert result["summary"]["outcome"] == "all_criteria_met"
    assert result["summary"]["flags_present"] == ["TRIAL-AGE"]


def test_citations_carry_the_source_link_where_one_exists(evaluator, full_case):
    citations = by_id(evaluator.evaluate(full_case))["ISASS-RN-01"]["citations"]
    fda = next(c for c in citations if c["source"] == "fda-p190021")
    assert fda["url"] == "https://www.accessdata.fda.gov/scripts/cdrh/cfdocs/cfpma/pma.cfm?id=P190021"
    assert "url" not in next(c for c in citations if c["source"] == "matis-2021")  # no stable public link


def test_evidence_read_from_fhir_cites_its_resource(evaluator, full_case):
    source = {"reference": "Observation/pain-1", "date": "2026-10-02"}
    result = evaluator.evaluate(full_case, provenance={"low_back_pain.nrs": source})
    assert by_id(result)["ISASS-RN-04"]["evidence"] == [{"field": "low_back_pain.nrs", "value": 7, "source": source}]
    assert "source" not in by_id(result)["ISASS-RN-01"]["evidence"][0]
