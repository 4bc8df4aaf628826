"""Property-based checks of the engine against an independent Kleene oracle.

The oracle below is written from the domain brief's criteria and flag tables and its
"Three-valued logic" section (/work/shared/domain.md), and the case fields of the contract
(/work/shared/contract.md); it deliberately does not look at rules/ or service/.

Kleene logic, with None as "unknown" (a field absent or explicitly null):
- AND: any documented false part -> false; all parts true -> true; otherwise unknown.
- OR:  any documented true part -> true; all parts false -> false; otherwise unknown.
An unknown answer names the missing parts it still depends on; a decided one names none.
"""

import copy
from typing import Any, Callable, NamedTuple

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from conftest import FULL_CASE  # the contract's example case: every criterion met

SERVICE_DATE = "2026-12-01"


# --------------------------------------------------------------------------- oracle


class Rule(NamedTuple):
    """A criterion or flag: `combine` ("all" or "any") over parts, each a (field path, predicate)
    pair or a nested Rule."""

    combine: str
    parts: tuple["tuple[str, Callable[[Any], bool]] | Rule", ...]


def all_of(*parts) -> Rule:
    return Rule("all", parts)


def any_of(*parts) -> Rule:
    return Rule("any", parts)


def is_true(value: Any) -> bool:
    return value is True


def is_false(value: Any) -> bool:
    return value is False


def equals(*allowed: str) -> Callable[[Any], bool]:
    return lambda value: value in allowed


def at_least(threshold: float) -> Callable[[Any], bool]:
    return lambda value: value >= threshold


def above(threshold: float) -> Callable[[Any], bool]:
    return lambda value: value > threshold


def below(threshold: float) -> Callable[[Any], bool]:
    return lambda value: value < threshold


# Criteria, in policy order, each phrased so that True means "met".
CRITERIA: dict[str, Rule] = {
    "ISASS-RN-01": all_of(("patient.age_years", at_least(18))),
    "ISASS-RN-02": all_of(("low_back_pain.duration_months", at_least(3))),
    "ISASS-RN-03": all_of(
        ("low_back_pain.mechanical", is_true),
        ("low_back_pain.axial_predominant", is_true),
        ("low_back_pain.predominant_pain_type", equals("nociceptive")),
    ),
    "ISASS-RN-04": all_of(("low_back_pain.nrs", at_least(6))),
    "ISASS-RN-05": all_of(("low_back_pain.odi_percent", at_least(21))),
    "ISASS-RN-06": all_of(("low_back_pain.quality_of_life_severely_impaired", is_true)),
    "ISASS-RN-07": all_of(("conservative_care.medication_outcome", equals("failed", "not_tolerated"))),
    "ISASS-RN-08": all_of(
        ("conservative_care.physical_therapy_outcome", equals("failed", "not_tolerated"))
    ),
    "ISASS-RN-09": any_of(
        ("multifidus_dysfunction.prone_instability_test", equals("positive")),
        ("multifidus_dysfunction.imaging", equals("atrophy_or_fatty_infiltration")),
    ),
    "ISASS-RN-10": all_of(("surgery.spine_surgery_indicated", is_false)),
    "ISASS-RN-11": all_of(("surgery.prior_spine_surgery_at_or_below_t8", is_false)),
    "ISASS-RN-12": all_of(("device.able_to_operate", is_true)),
    "ISASS-RN-13": all_of(("device.fit_for_implant_surgery", is_true)),
}

# Flags, each phrased so that True means "present".
FLAGS: dict[str, Rule] = {
    "TRIAL-BMI": all_of(("patient.bmi", above(35))),
    "TRIAL-AGE": all_of(("patient.age_years", above(75))),
    "TRIAL-CONSERVATIVE-DURATION": all_of(("conservative_care.duration_months", below(3))),
    "TRIAL-SCOLIOSIS": all_of(("other_findings.scoliosis", is_true)),
    "TRIAL-NEURO-DEFICIT": all_of(("other_findings.neurological_deficit", is_true)),
    "TRIAL-STENOSIS": all_of(("other_findings.stenosis_with_leg_pain", is_true)),
    "TRIAL-SCS-CANDIDATE": all_of(("other_findings.scs_candidate", is_true)),
}

CRITERION_STATUS = {True: "met", False: "not_met", None: "insufficient_information"}
FLAG_STATUS = {True: "present", False: "absent", None: "unknown"}
DECIDED = {"met", "not_met", "present", "absent"}


def lookup(case: dict, path: str) -> Any:
    """The documented value at a dotted path, or None when absent or null."""
    node: Any = case
    for key in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def kleene(rule: Rule, case: dict) -> tuple[bool | None, list[str]]:
    """Three-valued answer of a rule and the missing fields an unknown answer depends on
    (those of its unknown parts, in order, each once)."""
    answers = []
    for part in rule.parts:
        if isinstance(part, Rule):
            answers.append(kleene(part, case))
        else:
            path, predicate = part
            value = lookup(case, path)
            answers.append((None, [path]) if value is None else (predicate(value), []))
    truths = [truth for truth, _ in answers]
    decisive = False if rule.combine == "all" else True
    if decisive in truths:
        return decisive, []
    if None not in truths:
        return not decisive, []
    return None, list(dict.fromkeys(path for truth, missing in answers if truth is None for path in missing))


def expected_outcome(statuses: list[str]) -> str:
    if "not_met" in statuses:
        return "criteria_not_met"
    if "insufficient_information" in statuses:
        return "information_missing"
    return "all_criteria_met"


# --------------------------------------------------------------------------- cases

# Fixed values sit at and around each threshold; the arbitrary ones cover the whole range.
FIELD_VALUES: dict[str, st.SearchStrategy] = {
    "patient.age_years": st.sampled_from([0, 17, 18, 75, 76, 130]) | st.integers(0, 130),
    "patient.bmi": st.sampled_from([10, 34.99, 35, 35.0, 35.01, 100]) | st.floats(10, 100),
    "low_back_pain.duration_months": (
        st.sampled_from([0, 2.9, 2.999, 3, 3.0, 3.1]) | st.floats(0, 600) | st.integers(0, 600)
    ),
    "low_back_pain.mechanical": st.booleans(),
    "low_back_pain.axial_predominant": st.booleans(),
    "low_back_pain.predominant_pain_type": st.sampled_from(["nociceptive", "neuropathic", "mixed"]),
    "low_back_pain.nrs": (
        st.sampled_from([0, 5.9, 5.99, 6, 6.0, 6.1, 10]) | st.floats(0, 10) | st.integers(0, 10)
    ),
    "low_back_pain.odi_percent": (
        st.sampled_from([0, 20, 20.9, 21, 21.0, 21.1, 100]) | st.floats(0, 100) | st.integers(0, 100)
    ),
    "low_back_pain.quality_of_life_severely_impaired": st.booleans(),
    "low_back_pain.eq5d_index": st.floats(-1, 1),
    "conservative_care.medication_outcome": st.sampled_from(
        ["failed", "not_tolerated", "improved", "not_tried"]
    ),
    "conservative_care.physical_therapy_outcome": st.sampled_from(
        ["failed", "not_tolerated", "improved", "not_tried"]
    ),
    "conservative_care.duration_months": (
        st.sampled_from([0, 2.9, 2.999, 3, 3.0, 3.1]) | st.floats(0, 600) | st.integers(0, 600)
    ),
    "multifidus_dysfunction.prone_instability_test": st.sampled_from(
        ["positive", "negative", "not_performed"]
    ),
    "multifidus_dysfunction.imaging": st.sampled_from(
        ["atrophy_or_fatty_infiltration", "no_abnormality", "not_performed"]
    ),
    "surgery.spine_surgery_indicated": st.booleans(),
    "surgery.prior_spine_surgery_at_or_below_t8": st.booleans(),
    "device.able_to_operate": st.booleans(),
    "device.fit_for_implant_surgery": st.booleans(),
    "other_findings.scoliosis": st.booleans(),
    "other_findings.neurological_deficit": st.booleans(),
    "other_findings.stenosis_with_leg_pain": st.booleans(),
    "other_findings.scs_candidate": st.booleans(),
    "diagnosis_codes": st.lists(st.sampled_from(["M54.50", "M54.51", "M54.59", "M62.85"]), max_size=4),
}

# A documented value is drawn twice as often as "absent" or "null", so that fully
# documented criteria (three parts for ISASS-RN-03) turn up often.
FIELD_STATES = ("absent", "null", "value", "value")


def set_path(case: dict, path: str, value: Any) -> None:
    *sections, field = path.split(".")
    node = case
    for section in sections:
        node = node.setdefault(section, {})
    node[field] = value


@st.composite
def cases(draw, field_values: dict[str, st.SearchStrategy] = FIELD_VALUES, **fixed: Any) -> dict:
    """A valid case where every field of ``field_values`` is independently absent, null or a
    value, and a section may be left out altogether; ``fixed`` top-level fields (``policy``) added."""
    case: dict = {"external_id": "PROP-1", "service_date": SERVICE_DATE, **fixed}
    sections = sorted({path.split(".")[0] for path in field_values})
    omitted_sections = draw(st.sets(st.sampled_from(sections), max_size=2))
    for path, values in field_values.items():
        if path.split(".")[0] in omitted_sections:
            continue
        state = draw(st.sampled_from(FIELD_STATES))
        if state == "null":
            set_path(case, path, None)
        elif state == "value":
            set_path(case, path, draw(values))
    return case


def undocumented_fields(case: dict, field_values: dict = FIELD_VALUES) -> list[str]:
    return [path for path in field_values if lookup(case, path) is None]


def findings(result: dict) -> dict:
    """The parts of a result that depend on the case alone (not on when it was evaluated)."""
    return {key: result[key] for key in ("summary", "criteria", "flags", "missing_information")}


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)


# --------------------------------------------------------------------------- properties


def case_with(**sections) -> dict:
    return {"external_id": "EXAMPLE-1", "service_date": SERVICE_DATE, **sections}


@settings(PROPERTY_SETTINGS, max_examples=500)
@given(case=cases())
# The worked examples of the brief's "Three-valued logic" section.
@example(case=case_with(multifidus_dysfunction={"prone_instability_test": "positive"}))
@example(case=case_with(multifidus_dysfunction={"prone_instability_test": "negative"}))
@example(
    case=case_with(
        multifidus_dysfunction={"prone_instability_test": "negative", "imaging": "no_abnormality"}
    )
)
@example(case=case_with(multifidus_dysfunction={"prone_instability_test": "not_performed"}))
@example(case=case_with(low_back_pain={"mechanical": False}))
# The contract's example (all criteria met), and the same case with one fact missing.
@example(case=FULL_CASE)
@example(case={**FULL_CASE, "device": {"able_to_operate": None, "fit_for_implant_surgery": True}})
# Valid numbers that JSON writes in exponent form without a fraction ("1e-05", "2e+16").
@example(case=case_with(low_back_pain={"nrs": 1e-05}))
@example(case=case_with(conservative_care={"duration_months": 2e16}))
def test_engine_matches_kleene_oracle(evaluator, case):
    assert_matches_oracle(evaluator.evaluate(case), case, CRITERIA, FLAGS)


def assert_matches_oracle(result: dict, case: dict, criteria: dict[str, Rule], flags: dict[str, Rule]) -> None:
    """Every criterion's and flag's status and missing fields, the summary and the to-do list of
    ``result`` are those the oracle gives for ``case``."""
    assert [c["id"] for c in result["criteria"]] == list(criteria), "criteria in policy order"
    actual_criteria = {c["id"]: (c["status"], c["missing"]) for c in result["criteria"]}
    expected_criteria = {}
    for criterion_id, rule in criteria.items():
        truth, missing = kleene(rule, case)
        expected_criteria[criterion_id] = (CRITERION_STATUS[truth], missing)
    assert actual_criteria == expected_criteria

    actual_flags = {f["id"]: (f["status"], f["missing"]) for f in result["flags"]}
    expected_flags = {}
    for flag_id, rule in flags.items():
        truth, missing = kleene(rule, case)
        expected_flags[flag_id] = (FLAG_STATUS[truth], missing)
    assert actual_flags == expected_flags

    statuses = [status for status, _ in expected_criteria.values()]
    summary = result["summary"]
    assert summary["outcome"] == expected_outcome(statuses)
    assert (summary["met"], summary["not_met"], summary["insufficient_information"], summary["total"]) == (
        statuses.count("met"),
        statuses.count("not_met"),
        statuses.count("insufficient_information"),
        len(criteria),
    )

    union = []
    for _, missing in expected_criteria.values():
        union += [path for path in missing if path not in union]
    assert result["missing_information"] == union


@PROPERTY_SETTINGS
@given(case=cases(), data=st.data())
def test_documenting_a_field_only_changes_answers_that_named_it_missing(evaluator, case, data):
    assert_monotone(evaluator, case, data, FIELD_VALUES)


def assert_monotone(evaluator, case: dict, data, field_values: dict) -> None:
    """Monotonicity: a met/not_met criterion (or present/absent flag) never changes when a
    missing field gets a value; an insufficient one changes only if it named that field."""
    missing_fields = undocumented_fields(case, field_values)
    assume(missing_fields)
    path = data.draw(st.sampled_from(missing_fields), label="documented field")
    completed = copy.deepcopy(case)
    set_path(completed, path, data.draw(field_values[path], label="its value"))

    before = evaluator.evaluate(case)
    after = evaluator.evaluate(completed)

    answers_before = before["criteria"] + before["flags"]
    answers_after = after["criteria"] + after["flags"]
    for old, new in zip(answers_before, answers_after, strict=True):
        assert old["id"] == new["id"]
        if old["status"] in DECIDED or path not in old["missing"]:
            assert new["status"] == old["status"], f"{old['id']} changed when {path} was documented"


def same_value(reported: Any, documented: Any) -> bool:
    if isinstance(documented, bool):
        return reported is documented
    if isinstance(documented, (int, float)):
        is_number = isinstance(reported, (int, float)) and not isinstance(reported, bool)
        return is_number and reported == documented
    return reported == documented


@PROPERTY_SETTINGS
@given(case=cases())
def test_evidence_reports_documented_case_values_only(evaluator, case):
    result = evaluator.evaluate(case)
    for item in result["criteria"] + result["flags"]:
        for entry in item["evidence"]:
            documented = lookup(case, entry["field"])
            assert documented is not None, f"{item['id']}: evidence for undocumented {entry['field']}"
            assert same_value(entry["value"], documented), (item["id"], entry, documented)


@PROPERTY_SETTINGS
@given(case=cases())
def test_same_case_gives_same_findings(evaluator, case):
    original = copy.deepcopy(case)
    first = evaluator.evaluate(case)
    second = evaluator.evaluate(case)
    assert case == original, "evaluation must not modify the case"
    assert findings(first) == findings(second)
