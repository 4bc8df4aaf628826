"""The fhir: key of rules/fields.yaml: a malformed declaration is refused when the dictionary
loads, naming the file, the field and the problem."""

import pytest
import yaml

from conftest import FIELDS_FILE
from service.policy.sources import parse_sources
from service.policy.fields import DictionaryError, load_dictionary


def write_dictionary(tmp_path, path, fhir):
    data = yaml.safe_load(FIELDS_FILE.read_text())
    data["fields"][path]["fhir"] = fhir
    target = tmp_path / "fields.yaml"
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


NRS = "low_back_pain.nrs"
BAD = [
    (NRS, [{"observation": "http://loinc.org|72514-3", "value": "quantity"}], "units: a valueQuantity is read only in declared units"),
    (NRS, [{"observation": "72514-3", "units": {"1": 1}}], "does not start with a code system URI"),
    (NRS, [{"observation": "http://loinc.org", "units": {"1": 1}}], "names a system but no code"),
    (NRS, [{"observation": "http://loinc.org|72514-3", "value": "valueString", "units": {"1": 1}}], "value forms"),
    (NRS, [{"observation": "http://loinc.org|72514-3", "units": {"mm": 0}}], "positive factors"),
    (NRS, [{"observation": "http://loinc.org|72514-3", "units": {"1": 1}, "colour": "red"}], "unknown key(s) colour"),
    (NRS, [{"observation": "http://loinc.org|1", "condition": "http://loinc.org|2"}], "exactly one of"),
    (NRS, [{"patient": "height"}], "patient reads one of age"),
    ("low_back_pain.mechanical", [{"observation": "http://loinc.org|1", "units": {"1": 1}}], "gives a number"),
    ("low_back_pain.mechanical", [{"condition": "http://snomed.info/sct|1", "read": "onset_months"}],
     "cannot fill a boolean field"),
    ("conservative_care.physical_therapy_outcome",
     [{"procedure": "http://snomed.info/sct|91251008", "read": "outcome",
       "outcomes": {"http://snomed.info/sct|385671000": "flopped"}}], "'flopped' is not one of"),
    ("low_back_pain.odi_percent", [{"scored_questionnaire": {"items": ["odi-1"], "item_maximum": 5, "min_answered": 3}}],
     "min_answered: expected a whole number from 1 to 1"),
]


@pytest.mark.parametrize(("path", "fhir", "problem"), BAD)
def test_a_malformed_fhir_declaration_is_refused_at_load(tmp_path, path, fhir, problem):
    target = write_dictionary(tmp_path, path, fhir)
    with pytest.raises(DictionaryError) as caught:
        load_dictionary(target)
    message = str(caught.value)
    assert str(target) in message and f"{path}: fhir: [0]" in message and problem in message


def test_the_bundled_dictionary_declares_the_contract_sources(evaluator):
    declared = {path for path, spec in evaluator.dictionary.fields.items() if parse_sources(spec.fhir, spec.kind, spec.choices)}
    assert declared == {
        "patient.age_years", "patient.bmi", "low_back_pain.duration_months", "low_back_pain.nrs",
        "low_back_pain.odi_percent", "conservative_care.physical_therapy_outcome",
        "surgery.prior_spine_surgery_at_or_below_t8", "other_findings.scoliosis",
        "other_findings.stenosis_with_leg_pain", "diagnosis_codes"}
