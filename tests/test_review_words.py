"""How the review page words times, evidence dates and the printout's header (service/review/words.py
and render.py), in process."""

import datetime
import shutil

import pytest

from conftest import POLICY_DIR, with_dictionary
from service.policy.rules import RuleError, load_catalog
from service.review import words
from service.review.render import css_string, print_style

NOW = datetime.datetime(2026, 12, 5, 14, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize("value, expected", [
    ("2026-12-05T13:59:30Z", "just now"),
    ("2026-12-05T13:48:00Z", "12 min ago"),
    ("2026-12-05T11:00:00Z", "3 h ago"),
    ("2026-12-04T14:00:01Z", "23 h ago"),
    ("2026-12-02T13:00:00Z", "3 days ago"),
    ("2026-12-05T19:30:00Z", "in 5 h"),
    ("2026-12-12T14:00:00Z", "in 7 days"),
    ("2026-12-05T15:00:00+01:00", "just now"),  # another zone, the same instant
    ("not a time", "not a time"),
])
def test_relative_times(value, expected):
    assert words.relative(value, NOW) == expected


def test_moments_are_to_the_second_in_utc_with_the_zone_said():
    assert words.moment("2026-11-22T03:19:14Z") == "22 Nov 2026, 03:19:14 UTC"
    assert words.moment("2026-11-22T04:19:14+01:00") == "22 Nov 2026, 03:19:14 UTC"
    assert words.moment(None) == "—"


@pytest.mark.parametrize("day, months, expected", [
    ("2026-12-01", 12, "2025-12-01"),
    ("2026-03-31", 1, "2026-02-28"),
    ("2024-03-31", 1, "2024-02-29"),
    ("2026-01-15", 13, "2024-12-15"),
])
def test_months_before(day, months, expected):
    assert words.months_before(datetime.date.fromisoformat(day), months).isoformat() == expected


@pytest.mark.parametrize("source, kind", [
    ({"reference": "Condition/c", "date_element": "onsetDateTime"}, "onset"),
    ({"reference": "Condition/c", "date_element": "onsetPeriod.start"}, "onset"),
    ({"reference": "Condition/c", "date_element": "recordedDate"}, "recorded"),
    ({"reference": "Observation/o", "date_element": "effectivePeriod.end"}, "observed"),
    ({"reference": "Observation/o", "date_element": "issued"}, "issued"),
    ({"reference": "Procedure/p", "date_element": "performedDateTime"}, "performed"),
    ({"reference": "Patient/p", "date_element": "birthDate"}, "born"),
    ({"reference": "QuestionnaireResponse/q", "date_element": "authored"}, "answered"),
    # results stored before date_element: by resource type where the type says it, else "dated"
    ({"reference": "Observation/o"}, "observed"),
    ({"reference": "Patient/p"}, "born"),
    ({"reference": "Condition/c"}, "dated"),
])
def test_what_an_evidence_date_is(source, kind):
    assert words.date_kind(source) == kind


@pytest.fixture(scope="module")
def default_words(evaluator):
    return words.ResultWords(evaluator.catalog)


def result_on(service_date):
    return {"service_date": service_date, "policy": {"id": "isass-2023-restorative-neurostimulation", "version": "1.0.0"}}


def test_evidence_older_than_twelve_months_before_the_service_date_is_old(default_words):
    result = result_on("2026-12-01")

    old = default_words.evidence_date(result, {"reference": "Procedure/p", "date": "2025-11-30", "date_element": "performedDateTime"})
    recent = default_words.evidence_date(result, {"reference": "Procedure/p", "date": "2025-12-01", "date_element": "performedDateTime"})
    born = default_words.evidence_date(result, {"reference": "Patient/p", "date": "1950-01-01", "date_element": "birthDate"})

    assert (old.kind, old.day, old.old, old.limit_months) == ("performed", "30 Nov 2025", True, 12)
    assert recent.old is False
    assert born.old is False
    assert default_words.evidence_date(result, {"reference": "Observation/o"}) is None


def test_a_policy_may_allow_older_evidence(tmp_path):
    rules = with_dictionary(tmp_path / "rules")
    folder = rules / POLICY_DIR.parent.name / POLICY_DIR.name
    shutil.copytree(POLICY_DIR, folder)
    policy = folder / "policy.yaml"
    policy.write_text(policy.read_text().replace("\nsources:", "\nevidence_max_age_months: 24\n\nsources:", 1))
    catalog = load_catalog(rules)
    phrased = words.ResultWords(catalog)

    dated = phrased.evidence_date(result_on("2026-12-01"), {"reference": "Procedure/p", "date": "2025-06-01"})

    assert (dated.old, dated.limit_months) == (False, 24)
    assert phrased.evidence_date(result_on("2026-12-01"), {"reference": "Procedure/p", "date": "2024-11-30"}).old is True
    policy.write_text(policy.read_text().replace("evidence_max_age_months: 24", "evidence_max_age_months: 0"))
    with pytest.raises(RuleError, match="evidence_max_age_months"):
        load_catalog(rules)


def test_the_information_to_request_names_what_waits_for_each_field():
    result = {
        "missing_information": ["surgery.spine_surgery_indicated"],
        "criteria": [{"id": "ISASS-RN-10", "status": "insufficient_information", "missing": ["surgery.spine_surgery_indicated"]}],
        "flags": [
            {"id": "TRIAL-BMI", "status": "unknown", "missing": ["patient.bmi"]},
            {"id": "TRIAL-AGE", "status": "absent", "missing": []},
        ],
    }

    assert words.information_to_request(result) == [
        ("surgery.spine_surgery_indicated", ["ISASS-RN-10"]),
        ("patient.bmi", ["TRIAL-BMI"]),
    ]
    assert words.flags_by_status(result) == {"present": [], "unknown": ["TRIAL-BMI"], "absent": ["TRIAL-AGE"]}


def test_the_requested_service_in_words():
    case = {"requested_service": [
        {"system": "http://www.ama-assn.org/go/cpt", "code": "64568", "display": "Neurostimulator implant"},
        {"system": "urn:payer:codes", "code": "RN-1"},
    ]}
    assert words.requested_service(case) == ["CPT 64568: Neurostimulator implant", "urn:payer:codes RN-1"]
    assert words.requested_service({}) == []


def test_css_strings_hold_no_character_that_could_end_them():
    assert css_string("INTAKE-2026/000123") == "INTAKE-2026/000123"
    escaped = css_string('a"b\\c</style>\n;}')
    assert escaped == "a\\000022b\\00005cc\\00003c/style\\00003e\\00000a\\00003b\\00007d"
    assert print_style("R-1", "5 Dec 2026, 14:00:00 UTC", "A4").startswith("@page { size: A4; @top-left { content: \"R-1 ")
