"""Each known durable-rules pitfall (DEVELOPERS.md) has a test that fails if its guard goes away."""

import itertools
import subprocess
import sys
import threading
import textwrap
from concurrent.futures import ThreadPoolExecutor

import durable_rules_engine
import pytest


from conftest import FULL_CASE, statuses, with_dictionary
from service.policy.compiler import DISCRIMINATOR, compile_policy
from service.engine.durable import EngineError, RulesEngine, case_fact_json
from service.engine.evaluation import Evaluator
from service.policy.rules import load_catalog


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


def varied_cases(count: int) -> list[dict]:
    """Cases that differ in every criterion's outcome, so mixed-up cases would show."""
    cases = []
    for i in range(count):
        case = {"external_id": f"case-{i}", "service_date": "2026-12-01",
                "patient": {"age_years": 10 + i % 80},
                "low_back_pain": {"nrs": i % 11, "odi_percent": (i * 7) % 101},
                "multifidus_dysfunction": {"prone_instability_test": ["positive", "negative", "not_performed"][i % 3]}}
        if i % 4:
            case["surgery"] = {"spine_surgery_indicated": i % 2 == 0}
        cases.append(case)
    return cases


def findings(result: dict) -> tuple:
    return result["summary"], result["criteria"], result["flags"]


def test_every_rule_is_guarded_by_the_discriminator_and_a_sentinel_matches_every_case():
    for version in load_catalog().all_versions():
        compiled = compile_policy(version)
        ruleset = compiled.ruleset
        assert ruleset[compiled.sentinel] == {"all": [{"m": DISCRIMINATOR}]}
        for name, rule in ruleset.items():
            if name != compiled.sentinel:
                assert rule["all"][0]["m"]["$and"][0] == DISCRIMINATOR, name


def test_cases_with_no_facts_are_stored_and_deleted_without_killing_the_process():
    # Without the sentinel, deleting the sid of a case that stored no fact segfaults.
    result = run_python("""
        from service.engine.evaluation import Evaluator
        evaluator = Evaluator.from_rules_dir()
        for i in range(1500):
            result = evaluator.evaluate({"external_id": str(i)})
        print(result["summary"]["outcome"])
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "information_missing"


def test_a_rule_made_only_of_negations_terminates(tmp_path):
    # Negations must match documented facts only, never the engine's own state record (which
    # would loop); the discriminator that guards against that is checked structurally above.
    folder = tmp_path / "negations" / "1"
    folder.mkdir(parents=True)
    with_dictionary(tmp_path)
    (folder / "policy.yaml").write_text(textwrap.dedent("""
        id: negations
        version: "1"
        title: Only negations
        status: draft
        effective_from: 2020-01-01
        sources: {s: {reference: A source}}
        criteria:
          - id: NEG-01
            title: Not indicated
            requirement: Spine surgery is anything but indicated
            met_when: {not: {field: surgery.spine_surgery_indicated, equals: true}}
            citations: [{source: s, locator: here}]
          - id: NEG-02
            title: Not atrophy
            requirement: Imaging is none of atrophy
            met_when: {field: multifidus_dysfunction.imaging, none_of: [atrophy_or_fatty_infiltration]}
            citations: [{source: s, locator: here}]
    """))
    result = run_python(f"""
        from service.engine.evaluation import Evaluator
        evaluator = Evaluator.from_rules_dir({str(tmp_path)!r})
        for case in ({{}}, {{"surgery": {{"spine_surgery_indicated": False}}}},
                     {{"multifidus_dysfunction": {{"imaging": "no_abnormality"}}}}):
            result = evaluator.evaluate({{"external_id": "x", **case}})
            print(*[c["status"] for c in result["criteria"]])
    """, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == [
        "insufficient_information insufficient_information",
        "met insufficient_information",
        "insufficient_information met",
    ]


def test_thousands_of_cases_in_a_row_well_past_1024_live_sids(evaluator):
    # Each sid is deleted after its case; otherwise the 1,025th raises MemoryError.
    cases = varied_cases(3000)
    results = [evaluator.evaluate(c) for c in cases]
    again = evaluator.evaluate(cases[7])
    assert findings(again) == findings(results[7])
    assert len({r["evaluation_id"] for r in results}) == 3000


def test_threads_at_once_give_the_same_results_as_one_by_one(evaluator):
    cases = varied_cases(1200)
    one_by_one = [findings(evaluator.evaluate(c)) for c in cases]
    with ThreadPoolExecutor(max_workers=8) as pool:
        at_once = list(pool.map(lambda c: findings(evaluator.evaluate(c)), cases))
    assert at_once == one_by_one


def test_facts_are_asserted_so_every_matching_rule_fires(evaluator):
    # An event (post) would fire only the first matching rule: one criterion met, the rest unknown.
    result = evaluator.evaluate(FULL_CASE)
    assert set(statuses(result).values()) == {"met", "absent"}


def test_a_failure_in_the_middle_of_a_case_is_raised_and_leaves_no_lease_behind(monkeypatch, evaluator):
    # An action started and never completed leases the sid for 30 s: later cases would fire nothing.
    # The engine abandons the action and deletes the sid's state, so the next case runs as usual.
    expected = findings(evaluator.evaluate(FULL_CASE))
    complete_next = durable_rules_engine.complete_and_start_action
    calls = itertools.count()

    def failing_on_the_third(handle, offset):
        if next(calls) == 2:
            raise durable_rules_engine.error("failed mid-case")
        return complete_next(handle, offset)

    monkeypatch.setattr(durable_rules_engine, "complete_and_start_action", failing_on_the_third)
    with pytest.raises(EngineError, match="durable-rules failed"):
        evaluator.evaluate(FULL_CASE)
    assert findings(evaluator.evaluate(FULL_CASE)) == expected


def test_a_fact_left_under_the_sid_is_an_error_not_mixed_into_the_case(evaluator):
    # Facts are retracted after each case; should one ever stay, the next assert is refused
    # (code 2) rather than matched together with it, and the state is cleared for the case after.
    compiled = compile_policy(next(load_catalog().all_versions()))
    handle = evaluator.engine._rulesets[compiled.name].handle
    expected = findings(evaluator.evaluate(FULL_CASE))
    durable_rules_engine.assert_fact(handle, case_fact_json({"patient": {"age_years": 3}}))
    with pytest.raises(EngineError, match="answered 2"):
        evaluator.evaluate(FULL_CASE)
    assert findings(evaluator.evaluate(FULL_CASE)) == expected


def test_the_engine_starts_no_background_threads():
    before = threading.active_count()
    RulesEngine()
    assert threading.active_count() == before


def test_registration_leaves_the_compiled_ruleset_intact_and_is_done_once():
    engine = RulesEngine()
    compiled = compile_policy(next(load_catalog().all_versions()))
    engine.register(compiled)
    engine.register(compiled)
    assert all("run" not in rule for rule in compiled.ruleset.values())
    assert compiled.sentinel in engine.run(compiled.name, {})


def test_an_unregistered_ruleset_is_an_engine_error():
    with pytest.raises(EngineError, match="not registered"):
        RulesEngine().run("nothing@1", {})


@pytest.mark.parametrize("number", [1e-05, 5e-324, 2e16, 1.7976931348623157e308, 5.999999999999999])
def test_numbers_python_writes_with_a_bare_exponent_reach_the_engine_exactly(evaluator, number):
    # durable-rules' JSON parser rejects "1e-05" (error 204); facts are written fixed-point instead.
    result = evaluator.evaluate({"external_id": "x", "low_back_pain": {"duration_months": number}})
    chronic = result["criteria"][1]
    assert chronic["status"] == ("met" if number >= 3 else "not_met")
    assert chronic["evidence"][0]["value"] == number


@pytest.mark.parametrize("value", [1e-05, 1e-4, 9.99e14, 1e15, 1e16, 2e16, 5e-324, 1.7976931348623157e308, -0.0, 7.0,
                                   123456789012345680000.0, 10**30, "5e", "null", "M5E1", ["M54.5", "7e", ""]])
def test_a_case_fact_is_the_careful_writers_text_whoever_writes_it(value):
    """orjson writes the fact unless its text might differ from fact_json's (exponents, null)."""
    from service.engine.durable import _CASE_FIELDS, fact_json

    facts = {"A": {"B": value, "C": True}, "D": ["X", ""]}
    assert case_fact_json(facts) == fact_json(facts)[:-1] + f",{_CASE_FIELDS}}}"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_case_fact_refuses_numbers_that_are_not_finite(value):
    with pytest.raises(ValueError):
        case_fact_json({"A": {"B": value}})
