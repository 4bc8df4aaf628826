"""Results written from per-pattern JSON templates (service/engine/result.py) are byte for byte
those of the reference: findings built as dicts and serialized (tests/reference_result.py, the
builder before), over the 20,000 cases of ../shared/bench/cases-20000.json.gz and over cases
with FHIR provenance, huge numbers and code lists."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from reference_result import ResultBuilder as ReferenceBuilder
from service.engine.evaluation import Evaluator, _documented
from service.json_output import json_bytes

BENCH_CASES = Path(__file__).parents[1].parent / "shared" / "bench" / "cases-20000.json.gz"
DETAILS = {"evaluation_id": "0b1c2d3e-0000-4000-8000-000000000000", "evaluated_at": "2026-12-05T10:00:00Z"}


def both(evaluator: Evaluator, payload: dict, provenance: dict | None = None,
         changed: dict | None = None) -> tuple[bytes, bytes, dict]:
    """The reference's bytes, ours, and our result read back as a dict (by Python's json when it
    holds an integer beyond 64 bits); ``changed`` values replace the case's after validation."""
    case, version, day = evaluator.parse(payload)
    compiled = evaluator._compiled[version.key]
    values = {**_documented(case, evaluator._sections), **(changed or {})}
    truths = compiled.node_truths(evaluator.engine.run(compiled.name, compiled.facts(values)))
    details = {**DETAILS, "service_date": day.isoformat(), "provenance": provenance}
    reference = ReferenceBuilder(version, evaluator.dictionary) if version.key not in _references else _references[version.key]
    _references[version.key] = reference
    expected = json_bytes(reference.build(case.external_id, values, truths, **details))
    built = evaluator._builders[version.key].build_json(case.external_id, values, truths, **details)
    assert built.exact == (b'"value":1000000000000000000000000000000' in expected)
    return expected, built.json, built.result()


_references: dict[str, ReferenceBuilder] = {}


@pytest.mark.skipif(not BENCH_CASES.exists(), reason=f"{BENCH_CASES} is not on this machine")
def test_the_20000_bench_cases_give_the_reference_bytes(evaluator):
    payloads = json.loads(gzip.decompress(BENCH_CASES.read_bytes()))
    assert len(payloads) == 20_000
    outcomes = set()
    for payload in payloads:
        expected, ours, result = both(evaluator, payload)
        assert ours == expected, payload["external_id"]
        assert json_bytes(result) == expected
        outcomes.add(result["summary"]["outcome"])
    assert outcomes == {"all_criteria_met", "criteria_not_met", "information_missing"}


def test_provenance_codes_and_odd_values_give_the_reference_bytes(evaluator, full_case):
    provenance = {"low_back_pain.nrs": {"reference": "Observation/nrs-1", "date": "2026-11-02"},
                  "low_back_pain.eq5d_index": {"reference": "Observation/\u00e9q5d\"\\", "date": "2026-11-02"},
                  "patient.bmi": {}}
    variants = [
        {},
        {"external_id": "Caf\u00e9 \u201cquoted\u201d \\ \"x\" \u2028 \U0001f600"},
        {"patient": {"age_years": 52, "bmi": 35.0}},
        {"low_back_pain": {**full_case["low_back_pain"], "eq5d_index": 1e-05}},
        {"low_back_pain": {**full_case["low_back_pain"], "eq5d_index": -0.0}},
        {"low_back_pain": {**full_case["low_back_pain"], "duration_months": 2e16}},
        {"diagnosis_codes": []},
        {"diagnosis_codes": ["M54.5", "G89.4", "M62.85"]},
    ]
    for variant in variants:
        for with_provenance in (None, provenance):
            expected, ours, result = both(evaluator, {**full_case, **variant}, with_provenance)
            assert ours == expected, variant
            assert json_bytes(result) == expected
            assert result == json.loads(expected)


def test_an_integer_beyond_64_bits_is_written_by_python_json_as_before(evaluator, full_case):
    """No field of the bundled dictionary holds one (a number field makes it a float), but an
    integer field without a maximum would: orjson cannot write it."""
    huge = {"low_back_pain.duration_months": 10**30}
    expected, ours, result = both(evaluator, full_case, changed=huge)
    assert b"1000000000000000000000000000000" in expected
    assert ours == expected
    evidence = [e for c in result["criteria"] for e in c["evidence"] if e["field"] == "low_back_pain.duration_months"]
    assert evidence and all(e["value"] == 10**30 for e in evidence)


def test_a_value_seen_before_is_written_as_when_new(evaluator, full_case):
    """Kept words and evidence are keyed by value: 7, 7.0 and 7.5 must not be mixed up."""
    for nrs in (7, 7.0, 7.5, 7, 7.0, 6.9999, 0, 0.0, -0.0):
        payload = {**full_case, "low_back_pain": {**full_case["low_back_pain"], "nrs": nrs}}
        expected, ours, _ = both(evaluator, payload)
        assert ours == expected, nrs


def test_a_result_naming_its_request_is_written_as_with_request_id_writes_it(evaluator, full_case):
    """A submission's result names its request (service/evaluations/submit.py): the member is
    put into the JSON after external_id, the bytes those of the dict with it, written again."""
    from service.evaluations.submit import naming_request
    from service.requests.grouping import with_request_id

    for external_id in ("INTAKE-1", 'Zoë "quoted" \\ \u2028 x'):
        evaluated = evaluator.evaluate_json({**full_case, "external_id": external_id})
        for rid in ("0f" * 16, None):
            assert naming_request(evaluated, rid) == json_bytes(with_request_id(evaluated.result(), rid))
    evaluated = evaluator.evaluate_json(full_case)
    notes = [{"note": "Zoë \u2028", "at": 1e-07}]
    noted = evaluated.with_member("intake_notes", notes).with_member("submitter", {"organization": "o"})
    assert noted.json == json_bytes({**evaluated.result(), "intake_notes": notes, "submitter": {"organization": "o"}})
    assert naming_request(noted, "r") == json_bytes(with_request_id(noted.result(), "r"))
