"""The golden cases kept beside each policy version give the findings they expect."""

import pytest

from service.engine.evaluation import Evaluator
from service.policy_tools.golden import load_golden, run_golden
from service.policy.rules import load_catalog

VERSIONS = list(load_catalog().all_versions())


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.key)
def test_golden_cases_pass(evaluator, version):
    outcomes = [o for o in run_golden(evaluator) if o.version.key == version.key]
    assert len(outcomes) == len(load_golden(version)) > 0
    failures = {o.name: o.problems for o in outcomes if not o.passed}
    assert failures == {}


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.key)
def test_golden_cases_cover_every_criterion_and_flag_status(version):
    """Each version's own golden cases show every criterion met, not met and insufficient, and
    every flag present, absent and unknown (flags shared by two policies too)."""
    seen = set()
    for golden in load_golden(version):
        seen |= {(i, s) for i, s in (*golden.expect.criteria.items(), *golden.expect.flags.items())}
    for rule in version.criteria:
        assert {(rule.id, "met"), (rule.id, "not_met"), (rule.id, "insufficient_information")} <= seen, rule.id
    for rule in version.flags:
        assert {(rule.id, "present"), (rule.id, "absent"), (rule.id, "unknown")} <= seen, rule.id


def test_a_wrong_expectation_is_reported(tmp_path):
    import shutil

    from conftest import POLICY_DIR, with_dictionary

    folder = tmp_path / "isass-2023-restorative-neurostimulation" / "1.0.0"
    shutil.copytree(POLICY_DIR, folder)
    with_dictionary(tmp_path)
    golden = folder / "golden.yaml"
    golden.write_text(golden.read_text().replace(
        "expect: {criteria: {ISASS-RN-04: met}}", "expect: {criteria: {ISASS-RN-04: not_met}}"))
    outcomes = run_golden(Evaluator.from_rules_dir(tmp_path))
    (failed,) = [o for o in outcomes if not o.passed]
    assert failed.name == "NRS 6 meets the threshold"
    assert failed.problems[0].startswith("ISASS-RN-04 is met, expected not_met")
