"""Rule folders: a broken file is refused naming file, criterion and problem; versions follow dates."""

import datetime
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import POLICY_DIR, with_dictionary
from service.engine.evaluation import Evaluator
from service.policy.rules import RuleError, load_catalog

POLICY_ID = "isass-2023-restorative-neurostimulation"


def copy_policy(rules_dir: Path, version: str = "1.0.0", **changes) -> Path:
    """Copy the bundled policy into ``rules_dir/<id>/<version>/`` with top-level keys changed."""
    folder = rules_dir / POLICY_ID / version
    shutil.copytree(POLICY_DIR, folder)
    with_dictionary(rules_dir)
    data = yaml.safe_load((folder / "policy.yaml").read_text())
    data.update(version=version, **changes)
    (folder / "policy.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def edit_criterion(folder: Path, criterion_id: str, **changes) -> None:
    path = folder / "policy.yaml"
    data = yaml.safe_load(path.read_text())
    for kind in ("criteria", "flags"):
        for entry in data[kind]:
            if entry["id"] == criterion_id:
                entry.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def load_error(rules_dir: Path) -> str:
    with pytest.raises(RuleError) as caught:
        load_catalog(rules_dir)
    return str(caught.value)


def test_bundled_rules_load_with_every_criterion_and_flag_of_the_brief():
    catalog = load_catalog()
    (version,) = catalog.versions[POLICY_ID]
    assert [r.id for r in version.criteria] == [f"ISASS-RN-{n:02d}" for n in range(1, 14)]
    assert [r.id for r in version.flags] == [
        "TRIAL-BMI", "TRIAL-AGE", "TRIAL-CONSERVATIVE-DURATION", "TRIAL-SCOLIOSIS",
        "TRIAL-NEURO-DEFICIT", "TRIAL-STENOSIS", "TRIAL-SCS-CANDIDATE"]
    assert version.status == "draft" and version.review_note
    for rule in (*version.criteria, *version.flags):
        assert rule.citations and all(c.reference for c in rule.citations)
    for rule in version.criteria[:11]:  # every patient-selection and coverage criterion cites ISASS
        assert "isass-2023" in {c.source for c in rule.citations}, rule.id


@pytest.mark.parametrize(
    ("criterion", "changes", "problem"),
    [
        ("ISASS-RN-04", {"met_when": {"field": "low_back_pain.nrs_score", "at_least": 6}},
         "unknown case field 'low_back_pain.nrs_score'"),
        ("ISASS-RN-04", {"met_when": {"field": "low_back_pain.nrs", "at_least": "6"}},
         "low_back_pain.nrs is a number, not '6'"),
        ("ISASS-RN-04", {"met_when": {"field": "low_back_pain.nrs", "greater_or_equal": 6}},
         "expected exactly one operator"),
        ("ISASS-RN-06", {"met_when": {"field": "low_back_pain.quality_of_life_severely_impaired", "at_least": 1}},
         "at_least cannot test boolean field"),
        ("ISASS-RN-09", {"met_when": {"any": [{"field": "multifidus_dysfunction.imaging", "equals": "atrophy"}]}},
         "met_when.any: expected a list of at least two conditions"),
        ("ISASS-RN-09", {"met_when": {"any": [
            {"field": "multifidus_dysfunction.imaging", "equals": "atrophy"},
            {"field": "multifidus_dysfunction.prone_instability_test", "equals": "positive"}]}},
         "met_when.any[0]: 'atrophy' is not a value of multifidus_dysfunction.imaging"),
        ("ISASS-RN-07", {"met_when": {"field": "conservative_care.medication_outcome", "one_of": []}},
         "one_of needs a non-empty list"),
        ("ISASS-RN-02", {"citations": [{"source": "isass-2024", "locator": "Patient Selection"}]},
         "citations[0]: unknown source 'isass-2024'"),
        ("ISASS-RN-02", {"citations": []}, "citations: List should have at least 1 item"),
        ("ISASS-RN-02", {"python": "lambda case: True"}, "python: Extra inputs are not permitted"),
        ("TRIAL-BMI", {"met_when": {"field": "patient.bmi", "more_than": 35}}, "met_when: flags say present_when"),
        ("ISASS-RN-03", {"met_when": None}, "met_when: missing"),
    ],
)
def test_a_broken_criterion_is_refused_naming_file_criterion_and_problem(tmp_path, criterion, changes, problem):
    folder = copy_policy(tmp_path)
    edit_criterion(folder, criterion, **changes)
    message = load_error(tmp_path)
    assert str(folder / "policy.yaml") in message
    assert criterion in message
    assert problem in message


def test_duplicate_ids_are_refused(tmp_path):
    folder = copy_policy(tmp_path)
    edit_criterion(folder, "ISASS-RN-05", id="ISASS-RN-04")
    assert "ISASS-RN-04: duplicate id" in load_error(tmp_path)


def test_invalid_yaml_and_missing_metadata_are_refused(tmp_path):
    folder = copy_policy(tmp_path)
    (folder / "policy.yaml").write_text("id: [unclosed\n")
    assert "cannot read YAML" in load_error(tmp_path)
    (folder / "policy.yaml").write_text(yaml.safe_dump({"id": POLICY_ID, "version": "1.0.0"}))
    message = load_error(tmp_path)
    for missing in ("title", "status", "effective_from", "sources", "criteria"):
        assert f"{missing}: Field required" in message


def test_folder_names_must_match_id_and_version(tmp_path):
    folder = copy_policy(tmp_path, version="2.0.0")
    data = yaml.safe_load((folder / "policy.yaml").read_text())
    data["version"] = "2.1.0"
    (folder / "policy.yaml").write_text(yaml.safe_dump(data))
    assert "must match the folders" in load_error(tmp_path)


def test_every_problem_of_every_file_is_listed(tmp_path):
    first = copy_policy(tmp_path, "1.0.0")
    second = copy_policy(tmp_path, "2.0.0", effective_from=datetime.date(2025, 1, 1))
    edit_criterion(first, "ISASS-RN-01", citations=[{"source": "nowhere", "locator": "x"}])
    edit_criterion(second, "ISASS-RN-13", met_when={"field": "device.fit", "equals": True})
    message = load_error(tmp_path)
    assert "1.0.0/policy.yaml: ISASS-RN-01" in message and "2.0.0/policy.yaml: ISASS-RN-13" in message


def test_two_versions_with_the_same_effective_date_are_refused(tmp_path):
    copy_policy(tmp_path, "1.0.0")
    copy_policy(tmp_path, "1.1.0")
    assert "is also that of version 1.0.0" in load_error(tmp_path)


def test_service_date_selects_the_version_in_force(tmp_path, full_case):
    copy_policy(tmp_path, "1.0.0", effective_to=datetime.date(2025, 12, 31))
    folder = copy_policy(tmp_path, "2.0.0", effective_from=datetime.date(2026, 1, 1))
    edit_criterion(folder, "ISASS-RN-04", requirement="Back pain NRS of 8 or more",
                   met_when={"field": "low_back_pain.nrs", "at_least": 8})
    evaluator = Evaluator.from_rules_dir(tmp_path)

    full_case["service_date"] = "2025-12-31"
    old = evaluator.evaluate(full_case)
    full_case["service_date"] = "2026-01-01"
    new = evaluator.evaluate(full_case)

    assert old["policy"]["version"] == "1.0.0" and old["summary"]["outcome"] == "all_criteria_met"
    assert new["policy"]["version"] == "2.0.0" and new["summary"]["outcome"] == "criteria_not_met"
    assert [p["versions"] for p in evaluator.policies()][0] == [
        {"version": "1.0.0", "status": "draft", "effective_from": "2023-10-01", "effective_to": "2025-12-31"},
        {"version": "2.0.0", "status": "draft", "effective_from": "2026-01-01", "effective_to": None},
    ]


def _variant(rules_dir: Path, policy_id: str) -> None:
    variant = rules_dir / policy_id / "1.0.0"
    shutil.copytree(POLICY_DIR, variant)
    data = yaml.safe_load((variant / "policy.yaml").read_text())
    data["id"] = policy_id
    (variant / "policy.yaml").write_text(yaml.safe_dump(data))


def test_a_payer_variant_is_a_second_policy_and_the_isass_policy_stays_the_default(tmp_path, full_case):
    copy_policy(tmp_path)
    _variant(tmp_path, "acme-health-restorative-neurostimulation")
    evaluator = Evaluator.from_rules_dir(tmp_path)

    assert evaluator.evaluate(full_case)["policy"]["id"] == POLICY_ID
    full_case["policy"] = "acme-health-restorative-neurostimulation"
    assert evaluator.evaluate(full_case)["policy"]["id"] == "acme-health-restorative-neurostimulation"
    del full_case["policy"]
    assert evaluator.evaluate(full_case)["policy"]["id"] == POLICY_ID


def test_without_the_default_policy_several_policies_make_cases_name_one(tmp_path, full_case, monkeypatch):
    _variant(with_dictionary(tmp_path), "acme-health-restorative-neurostimulation")
    _variant(tmp_path, "beta-health-restorative-neurostimulation")
    del full_case["policy"]
    from service.errors import InvalidInput

    with pytest.raises(InvalidInput) as caught:
        Evaluator.from_rules_dir(tmp_path).evaluate(full_case)
    assert caught.value.errors[0]["field"] == "policy"
    monkeypatch.setenv("COVERAGE_CRITERIA_DEFAULT_POLICY", "beta-health-restorative-neurostimulation")
    assert Evaluator.from_rules_dir(tmp_path).evaluate(full_case)["policy"]["id"] == "beta-health-restorative-neurostimulation"
