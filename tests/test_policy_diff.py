"""``coverage-criteria rules diff``: what changed between two policy versions, in words."""

import json

from candidates import ISASS, ROOT, candidate
from service.cli import main

OLD = ROOT / "rules" / ISASS / "1.0.0"


def diff(capsys, *args) -> tuple[int, str]:
    status = main(["rules", "diff", *map(str, args)])
    return status, capsys.readouterr().out


def test_the_same_version_has_no_differences(capsys):
    status, out = diff(capsys, OLD, OLD / "policy.yaml")
    assert status == 0
    assert out.startswith("No differences between")


def test_a_changed_threshold_is_named_with_the_field_and_both_values(tmp_path, capsys):
    new = candidate(tmp_path, {"{field: low_back_pain.nrs, at_least: 6}": "{field: low_back_pain.nrs, at_least: 7}"})
    status, out = diff(capsys, OLD, new / ISASS / "1.1.0")
    assert status == 0
    assert out.splitlines() == [
        f"{ISASS}:",
        "  version was 1.0.0, now 1.1.0",
        "  ISASS-RN-04: Back pain NRS at least 6 becomes at least 7",
    ]


def test_added_removed_logic_requirement_and_citation_changes(tmp_path, capsys):
    new = candidate(tmp_path, {
        # ISASS-RN-13 gains a second part: its logic changes, not a threshold
        "    met_when: {field: device.fit_for_implant_surgery, equals: true}":
            "    met_when:\n      all:\n        - {field: device.fit_for_implant_surgery, equals: true}\n"
            "        - {field: diagnosis_codes, includes_any: [M62.85, M54.5]}",
        "requirement: Spine surgery is not indicated": "requirement: Spine surgery is not indicated by a surgeon",
        '      - {source: mitchell-2021, locator: Study population}\n':
            '      - {source: isass-2023, locator: Patient Selection Characteristics}\n',
        # remove TRIAL-BMI, add a criterion
        "  - id: TRIAL-BMI\n": "  - id: TRIAL-BMI-40\n",
        "    present_when: {field: patient.bmi, more_than: 35}": "    present_when: {field: patient.bmi, more_than: 40}",
    })
    status, out = diff(capsys, OLD, new)  # a rules folder: its newest version of each policy
    assert status == 0
    lines = out.splitlines()
    assert ("  ISASS-RN-13: criterion met when Fit for implant surgery is yes; now when Fit for implant "
            "surgery is yes and Diagnosis codes (ICD-10-CM) include one of M62.85, M54.5") in lines
    assert ('  ISASS-RN-10: requirement was "Spine surgery is not indicated", now "Spine surgery is not '
            'indicated by a surgeon"') in lines
    assert ("  TRIAL-SCS-CANDIDATE: now cites isass-2023 (Patient Selection Characteristics); "
            "no longer cites mitchell-2021 (Study population)") in lines
    assert ('  TRIAL-BMI-40: flag added: "BMI above the pivotal trial\'s limit": BMI over 35 (excluded from '
            "ReActiv8-B) (present when BMI more than 40)") in lines
    assert '  TRIAL-BMI: flag removed: "BMI above the pivotal trial\'s limit"' in lines


def test_either_or_logic_reads_in_words(tmp_path, capsys):
    new = candidate(tmp_path, {
        "        - {field: multifidus_dysfunction.imaging, equals: atrophy_or_fatty_infiltration}":
            "        - {field: multifidus_dysfunction.imaging, one_of: [atrophy_or_fatty_infiltration, not_performed]}",
    })
    _, out = diff(capsys, OLD, new)
    assert ("  ISASS-RN-09: Multifidus imaging is atrophy or fatty infiltration becomes one of atrophy or "
            "fatty infiltration, not performed") not in out  # equals -> one_of is a change of logic
    assert ("  ISASS-RN-09: criterion met when either Prone instability test is positive or Multifidus "
            "imaging is atrophy or fatty infiltration; now when either Prone instability test is positive "
            "or Multifidus imaging is one of atrophy or fatty infiltration, not performed") in out.splitlines()


def test_json_lists_each_change(tmp_path, capsys):
    new = candidate(tmp_path, {"{field: low_back_pain.odi_percent, at_least: 21}":
                               "{field: low_back_pain.odi_percent, at_least: 30}"})
    status, out = diff(capsys, OLD, new, "--json")
    assert status == 0
    changes = json.loads(out)
    assert changes[-1] == {"policy": ISASS, "item": "criterion", "id": "ISASS-RN-05", "change": "threshold",
                           "words": "Oswestry Disability Index (%) at least 21 becomes at least 30"}


def test_a_folder_that_does_not_load_is_refused(tmp_path, capsys):
    new = candidate(tmp_path, {"at_least: 6}": "at_least: six}"})
    assert main(["rules", "diff", str(OLD), str(new)]) == 2
    assert "ISASS-RN-04: met_when: low_back_pain.nrs is a number, not 'six'" in capsys.readouterr().err
