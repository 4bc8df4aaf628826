"""``includes_any``: a code-list condition durable-rules decides, with Kleene's missing-is-unknown.

A code matches a given code when it equals it or starts with it (``M54.5`` matches ``M54.50``);
a missing list is unknown; a documented list (an empty one too) without a match is false.
"""

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import with_dictionary
from service.engine.evaluation import Evaluator
from service.policy.rules import RuleError, load_catalog

POLICY = "codes-test"


def write_policy(root: Path, criteria: str, policy_id: str = POLICY) -> Path:
    folder = with_dictionary(root) / policy_id / "1.0.0"
    folder.mkdir(parents=True)
    (folder / "policy.yaml").write_text(textwrap.dedent("""\
        id: {policy_id}
        version: "1.0.0"
        title: Code list test
        status: draft
        effective_from: 2020-01-01
        sources:
          test: {{reference: A test source}}
        criteria:
        """).format(policy_id=policy_id) + textwrap.indent(textwrap.dedent(criteria), "  "))
    return root


CRITERIA = """\
- id: LBP-CODE
  title: Low back pain coded
  requirement: A diagnosis of low back pain (M54.5x) or multifidus dysfunction (M62.85)
  met_when: {field: diagnosis_codes, includes_any: [M62.85, M54.5]}
  citations: [{source: test, locator: "1"}]
- id: NO-LBP-CODE
  title: Not coded
  requirement: No code for low back pain
  met_when: {not: {field: diagnosis_codes, includes_any: [M54.5]}}
  citations: [{source: test, locator: "2"}]
- id: CODE-OR-NRS
  title: Coded, or severe pain
  requirement: A code M54.5x, or NRS 6 or more
  met_when:
    any:
      - {field: diagnosis_codes, includes_any: [M54.5]}
      - {field: low_back_pain.nrs, at_least: 6}
  citations: [{source: test, locator: "3"}]
"""


@pytest.fixture(scope="module")
def codes_evaluator(tmp_path_factory) -> Evaluator:
    return Evaluator.from_rules_dir(write_policy(tmp_path_factory.mktemp("rules"), CRITERIA))


def evaluate(evaluator: Evaluator, **case) -> dict[str, dict]:
    result = evaluator.evaluate({"external_id": "CODES-1", "service_date": "2026-12-01", **case})
    return {c["id"]: c for c in result["criteria"]}


@pytest.mark.parametrize(
    "codes, status",
    [
        (["M54.50"], "met"),  # starts with M54.5
        (["M54.5"], "met"),  # equals M54.5
        (["M54.59", "M62.85"], "met"),
        (["Z00.00", "M62.85"], "met"),  # a later code matches
        (["M54.4"], "not_met"),
        (["M62.8"], "not_met"),  # shorter than M62.85: does not start with it
        (["M545"], "not_met"),  # codes are compared as written
        (["M62.86", "M54.41", "Z99"], "not_met"),
        ([], "not_met"),  # an empty list is documented: no such diagnosis
    ],
)
def test_a_documented_list_is_decided(codes_evaluator, codes, status):
    found = evaluate(codes_evaluator, diagnosis_codes=codes)["LBP-CODE"]
    assert (found["status"], found["missing"]) == (status, [])
    assert found["evidence"] == [{"field": "diagnosis_codes", "value": codes}]
    no_lbp = "not_met" if any(c.startswith("M54.5") for c in codes) else "met"
    assert evaluate(codes_evaluator, diagnosis_codes=codes)["NO-LBP-CODE"]["status"] == no_lbp


@pytest.mark.parametrize("case", [{}, {"diagnosis_codes": None}])
def test_a_missing_list_is_unknown(codes_evaluator, case):
    found = evaluate(codes_evaluator, **case)
    for criterion_id in ("LBP-CODE", "NO-LBP-CODE"):
        assert found[criterion_id]["status"] == "insufficient_information"
        assert found[criterion_id]["missing"] == ["diagnosis_codes"]


def test_kleene_or_with_a_code_list(codes_evaluator):
    assert evaluate(codes_evaluator, low_back_pain={"nrs": 7})["CODE-OR-NRS"]["status"] == "met"
    assert evaluate(codes_evaluator, diagnosis_codes=["M54.50"])["CODE-OR-NRS"]["status"] == "met"
    open_one = evaluate(codes_evaluator, diagnosis_codes=["M62.85"])["CODE-OR-NRS"]
    assert (open_one["status"], open_one["missing"]) == ("insufficient_information", ["low_back_pain.nrs"])
    closed = evaluate(codes_evaluator, diagnosis_codes=[], low_back_pain={"nrs": 3})["CODE-OR-NRS"]
    assert closed["status"] == "not_met"


def test_reasons_name_the_codes_in_words(codes_evaluator):
    found = evaluate(codes_evaluator, diagnosis_codes=["M54.50"])
    assert found["LBP-CODE"]["reason"] == (
        "Met: Diagnosis codes (ICD-10-CM) are M54.50 (required: include one of M62.85, M54.5, "
        "or a code starting with one of them)."
    )
    assert found["NO-LBP-CODE"]["reason"].startswith("Not met: Diagnosis codes (ICD-10-CM) are M54.50 "
                                                     "(required: include none of M54.5")
    empty = evaluate(codes_evaluator, diagnosis_codes=[])["LBP-CODE"]["reason"]
    assert empty.startswith("Not met: Diagnosis codes (ICD-10-CM) are none (required: include one of")
    missing = evaluate(codes_evaluator)["LBP-CODE"]["reason"]
    assert missing.startswith("Insufficient information: Diagnosis codes (ICD-10-CM) is not documented (diagnosis_codes;")


# Codes and prefixes drawn from a small alphabet, so that prefixes, near misses and equal codes
# are common; the oracle is str.startswith.
CODE_CHARS = st.sampled_from("MN5.40")
PREFIXES = st.lists(st.text(CODE_CHARS, min_size=1, max_size=5).filter(lambda p: p[0] != "."),
                    min_size=1, max_size=3, unique=True)
ICD_CODES = st.sampled_from(["M54.5", "M54.50", "M54.59", "M54.4", "M5450", "M55", "N54.5", "M54", "M40.5"])


@settings(max_examples=150, deadline=None)
@given(prefixes=PREFIXES, codes=st.lists(ICD_CODES, max_size=4))
def test_prefix_matching_agrees_with_startswith(tmp_path_factory, prefixes, codes):
    rules = tmp_path_factory.mktemp("rules")
    criterion = f"""\
        - id: CODED
          title: Coded
          requirement: Coded
          met_when: {{field: diagnosis_codes, includes_any: [{", ".join(f"'{p}'" for p in prefixes)}]}}
          citations: [{{source: test, locator: "1"}}]
        """
    evaluator = Evaluator.from_rules_dir(write_policy(rules, criterion))
    expected = "met" if any(c.startswith(p) for c in codes for p in prefixes) else "not_met"
    assert evaluate(evaluator, diagnosis_codes=codes)["CODED"]["status"] == expected


@pytest.mark.parametrize(
    "condition, problem",
    [
        ("{field: diagnosis_codes, includes_any: []}", "includes_any needs a non-empty list of codes"),
        ("{field: diagnosis_codes, includes_any: M54.5}", "includes_any needs a non-empty list of codes"),
        ("{field: diagnosis_codes, includes_any: [M54.5, M54.5]}", "includes_any lists a code twice"),
        ("{field: diagnosis_codes, includes_any: ['M54 5']}", "'M54 5' does not look like a code"),
        ("{field: diagnosis_codes, includes_any: ['M54.5*']}", "'M54.5*' does not look like a code"),
        ("{field: diagnosis_codes, includes_any: [545]}", "545 does not look like a code"),
        ("{field: diagnosis_codes, equals: M54.5}", "equals cannot test code_list field diagnosis_codes"),
        ("{field: diagnosis_codes, includes_none: [M54.5]}", "includes_none cannot test code_list field"),
        ("{field: low_back_pain.nrs, includes_any: [M54.5]}", "includes_any cannot test number field"),
    ],
)
def test_the_loader_refuses_bad_code_conditions(tmp_path, condition, problem):
    write_policy(tmp_path, f"""\
        - id: BAD
          title: Bad
          requirement: Bad
          met_when: {condition}
          citations: [{{source: test, locator: "1"}}]
        """)
    with pytest.raises(RuleError) as raised:
        load_catalog(tmp_path)
    assert problem in str(raised.value)
    assert "policy.yaml: BAD: met_when: " in str(raised.value)


def test_facts_hold_lists_closed_with_an_empty_code():
    from service.engine.durable import fact_json
    from service.policy.compiler import CompiledPolicy

    compiled = CompiledPolicy("p", {}, ("low_back_pain.nrs", "diagnosis_codes"),
                              {"low_back_pain.nrs": "A.B", "diagnosis_codes": "C"}, {"0": None}, "0",
                              lists=frozenset({"diagnosis_codes"}))
    facts = compiled.facts({"diagnosis_codes": ["M54.50"], "low_back_pain.nrs": 1e-05, "patient.bmi": 30})
    assert facts == {"C": ["M54.50", ""], "A": {"B": 1e-05}}  # only what rules read, under their short names
    assert fact_json(facts) == '{"A":{"B":0.00001},"C":["M54.50",""]}'
    assert fact_json({"codes": []}) == '{"codes":[]}'
