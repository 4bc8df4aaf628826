"""A policy owner adds a field and a policy that reads it by editing YAML only.

In a copy of the bundled rules folder: a new section and field in fields.yaml, a new policy whose
criteria read it (and the diagnosis codes), its golden cases; then ``coverage-criteria rules
check`` and ``evaluate`` work on it, with no code changed.
"""

import json
import shutil
import textwrap

import yaml

from candidates import ROOT
from service.cli import main

NEW_FIELD = {
    "kind": "number",
    "label": "Sleep per night",
    "unit": "h",
    "minimum": 0,
    "maximum": 24,
    "description": "Average hours of sleep per night over the last month, as reported by the patient",
}
POLICY = """\
    id: acme-sleep-aware-neurostimulation
    version: "1.0.0"
    title: Restorative neurostimulation, sleep-aware variant (ACME Health)
    status: draft
    review_note: A test policy written by a policy owner.
    effective_from: 2026-01-01
    sources:
      acme-2026:
        reference: ACME Health. Medical policy 42. 2026.
    criteria:
      - id: ACME-1
        title: Enough sleep to take part in rehabilitation
        requirement: At least 4 hours of sleep per night
        met_when: {field: sleep.hours_per_night, at_least: 4}
        citations: [{source: acme-2026, locator: Item 1}]
      - id: ACME-2
        title: Low back pain diagnosed
        requirement: A diagnosis code M54.5x, or M62.85
        met_when: {field: diagnosis_codes, includes_any: [M54.5, M62.85]}
        citations: [{source: acme-2026, locator: Item 2}]
    flags:
      - id: ACME-SHORT-SLEEP
        title: Very short sleep
        requirement: Under 5 hours of sleep per night
        present_when: {field: sleep.hours_per_night, less_than: 5}
        citations: [{source: acme-2026, locator: Note 1}]
    """
GOLDEN = """\
    cases:
      - name: enough sleep and a coded diagnosis
        case: {sleep: {hours_per_night: 7.5}, diagnosis_codes: [M54.50]}
        expect:
          outcome: all_criteria_met
          criteria: {ACME-1: met, ACME-2: met}
          flags: {ACME-SHORT-SLEEP: absent}
      - name: too little sleep, no matching code
        case: {sleep: {hours_per_night: 3}, diagnosis_codes: [M51.16]}
        expect:
          outcome: criteria_not_met
          criteria: {ACME-1: not_met, ACME-2: not_met}
          flags: {ACME-SHORT-SLEEP: present}
      - name: nothing documented
        case: {}
        expect:
          outcome: information_missing
          criteria: {ACME-1: insufficient_information, ACME-2: insufficient_information}
          flags: {ACME-SHORT-SLEEP: unknown}
          missing_information: [sleep.hours_per_night, diagnosis_codes]
    """


def test_a_policy_owner_adds_a_field_and_a_policy_by_editing_yaml_only(tmp_path, capsys):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    dictionary = yaml.safe_load((rules / "fields.yaml").read_text(encoding="utf-8"))
    dictionary["sections"]["sleep"] = {"label": "Sleep"}
    dictionary["fields"]["sleep.hours_per_night"] = NEW_FIELD
    (rules / "fields.yaml").write_text(yaml.safe_dump(dictionary, sort_keys=False), encoding="utf-8")
    folder = rules / "acme-sleep-aware-neurostimulation" / "1.0.0"
    folder.mkdir(parents=True)
    (folder / "policy.yaml").write_text(textwrap.dedent(POLICY), encoding="utf-8")
    (folder / "golden.yaml").write_text(textwrap.dedent(GOLDEN), encoding="utf-8")

    assert main(["rules", "check", str(rules)]) == 0
    checked = capsys.readouterr().out
    assert "acme-sleep-aware-neurostimulation@1.0.0: 2 criteria, 1 flags, 3/3 golden cases pass" in checked
    assert "isass-2023-restorative-neurostimulation@1.0.0" in checked  # the bundled ones still pass

    case = tmp_path / "case.json"
    case.write_text(json.dumps({"external_id": "OWNER-1", "policy": "acme-sleep-aware-neurostimulation",
                                "service_date": "2026-12-01", "sleep": {"hours_per_night": 3.5}}))
    assert main(["evaluate", str(case), "--rules", str(rules)]) == 0
    result = json.loads(capsys.readouterr().out)
    acme_1, acme_2 = result["criteria"]
    assert (acme_1["status"], acme_1["evidence"]) == ("not_met", [{"field": "sleep.hours_per_night", "value": 3.5}])
    assert acme_1["reason"].startswith("Not met: Sleep per night is 3.5")
    assert (acme_2["status"], acme_2["missing"]) == ("insufficient_information", ["diagnosis_codes"])
    assert result["summary"]["flags_present"] == ["ACME-SHORT-SLEEP"]

    # the new field is validated like every other: its bounds, its type, no unknown neighbours
    for bad, field in (({"hours_per_night": 25}, "sleep.hours_per_night"),
                       ({"hours_per_night": "7"}, "sleep.hours_per_night"),
                       ({"naps": 2}, "sleep.naps")):
        case.write_text(json.dumps({"external_id": "OWNER-2", "policy": "acme-sleep-aware-neurostimulation",
                                    "sleep": bad}))
        assert main(["evaluate", str(case), "--rules", str(rules)]) == 2
        errors = json.loads(capsys.readouterr().err)["errors"]
        assert [e["field"] for e in errors] == [field]
