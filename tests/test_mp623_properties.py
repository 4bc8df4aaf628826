"""Property-based checks of MP-623 against an independent Kleene oracle.

The oracle below is written from the domain brief's MP-623 table (/work/shared/domain.md, "A
second policy: a payer's published criteria") and the contract's new fields; it does not look at
rules/ or service/. The Kleene machinery (the oracle's evaluation, the case strategy, the checks)
is that of tests/test_kleene_properties.py, which checks ISASS the same way.
"""

from hypothesis import example, given
from hypothesis import strategies as st

from test_kleene_properties import (
    FIELD_VALUES,
    FLAGS,
    PROPERTY_SETTINGS,
    SERVICE_DATE,
    all_of,
    any_of,
    assert_matches_oracle,
    assert_monotone,
    at_least,
    cases,
    equals,
    is_false,
    is_true,
)

POLICY = "mp-623-peripheral-nerve-stimulation"
FAILED_OR_NOT_TOLERATED = equals("failed", "not_tolerated")
FAILED_UNSUITABLE_OR_CONTRAINDICATED = equals("failed", "not_tolerated", "contraindicated")

# Criteria, in the brief's order, each phrased so that True means "met".
CRITERIA = {
    "MP-623-1": all_of(
        ("patient.age_years", at_least(18)),
        any_of(
            ("multifidus_dysfunction.prone_instability_test", equals("positive")),
            ("multifidus_dysfunction.imaging", equals("atrophy_or_fatty_infiltration")),
            ("multifidus_dysfunction.electromyography", equals("positive")),
        ),
        ("conservative_care.medication_outcome", FAILED_OR_NOT_TOLERATED),
        ("conservative_care.physical_therapy_outcome", FAILED_OR_NOT_TOLERATED),
        ("surgery.spine_surgery_indicated", is_false),
        ("device.able_to_operate", is_true),
        ("device.fit_for_implant_surgery", is_true),
    ),
    "MP-623-2": all_of(("low_back_pain.duration_months", at_least(3))),
    "MP-623-3": all_of(
        ("conservative_care.medication_outcome", FAILED_UNSUITABLE_OR_CONTRAINDICATED),
        ("conservative_care.physical_therapy_outcome", FAILED_UNSUITABLE_OR_CONTRAINDICATED),
        ("conservative_care.psychological_therapy_outcome", FAILED_UNSUITABLE_OR_CONTRAINDICATED),
        ("surgery.spine_surgery_indicated", is_false),
    ),
    "MP-623-4": any_of(
        ("multifidus_dysfunction.electromyography", equals("positive")),
        ("multifidus_dysfunction.imaging", equals("atrophy_or_fatty_infiltration")),
    ),
    "MP-623-5": all_of(("provider.facilities_and_follow_up_available", is_true)),
    "MP-623-6": any_of(
        ("stimulation_trial.outcome", equals("successful")),
        ("stimulation_trial.intraoperative_multifidus_contraction", is_true),
    ),
}

OUTCOMES = st.sampled_from(["failed", "not_tolerated", "improved", "not_tried", "contraindicated"])
MP623_FIELD_VALUES = {
    **FIELD_VALUES,
    "conservative_care.medication_outcome": OUTCOMES,
    "conservative_care.physical_therapy_outcome": OUTCOMES,
    "conservative_care.psychological_therapy_outcome": OUTCOMES,
    "multifidus_dysfunction.electromyography": st.sampled_from(["positive", "negative", "not_performed"]),
    "provider.facilities_and_follow_up_available": st.booleans(),
    "stimulation_trial.outcome": st.sampled_from(["successful", "unsuccessful", "not_performed"]),
    "stimulation_trial.intraoperative_multifidus_contraction": st.booleans(),
}


def mp623_case(**sections) -> dict:
    return {"external_id": "EXAMPLE-1", "policy": POLICY, "service_date": SERVICE_DATE, **sections}


@PROPERTY_SETTINGS
@given(case=cases(MP623_FIELD_VALUES, policy=POLICY))
# The brief's logic on this policy: one multifidus finding is enough for item 1; a contraindicated
# medication satisfies item 3 but not the labeling; a positive prone test is not objective evidence.
@example(case=mp623_case(multifidus_dysfunction={"electromyography": "positive"}))
@example(case=mp623_case(multifidus_dysfunction={"prone_instability_test": "negative"}))
@example(case=mp623_case(conservative_care={"medication_outcome": "contraindicated"}))
@example(case=mp623_case(multifidus_dysfunction={"prone_instability_test": "positive", "electromyography": "negative"}))
@example(case=mp623_case(stimulation_trial={"outcome": "not_performed"}))
def test_engine_matches_kleene_oracle(evaluator, case):
    result = evaluator.evaluate(case)
    assert result["policy"]["id"] == POLICY
    assert_matches_oracle(result, case, CRITERIA, FLAGS)


@PROPERTY_SETTINGS
@given(case=cases(MP623_FIELD_VALUES, policy=POLICY), data=st.data())
def test_documenting_a_field_only_changes_answers_that_named_it_missing(evaluator, case, data):
    assert_monotone(evaluator, case, data, MP623_FIELD_VALUES)
