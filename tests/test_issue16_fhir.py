"""Issue 16, the FHIR findings, played by a hostile client: padding (3), dates at the ends of the
calendar (6), two patients in one Bundle (8) and an invalid Bundle.type (14).

The work a padded Bundle costs is checked by what is done (resources validated, the strict JSON
reader run or not), never by timing: bench/fhir_intake.py --padding measures the time.
"""

from __future__ import annotations

import copy
import datetime
import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select

from fhir_support import ROOT, bmi, bundle, example_bundle, nrs, observation, order, patient, response
from service.evaluations.bundle import evaluate_bundle, read_bundle
from service.fhir import parse
from service.fhir.intake import MAX_READ, case_from_resources, one_patient
from service.fhir.outcome import OperationOutcomeError
from service.fhir.parse import MAX_ENTRIES, MAX_OBJECTS, Located, bundle_entries, read_json
from service.fhir.dates import moment
from service.store.tables import Evaluation

FHIR = {"Content-Type": "application/fhir+json"}
MIB = 1024 * 1024


def post_bundle(client, key, body):
    text = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/v1/evaluations", content=text, headers={**FHIR, "X-API-Key": key})


def stored(database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Evaluation))


def outcome(response, status: int = 422) -> list[dict]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]


@pytest.fixture
def validated(monkeypatch) -> list[str]:
    """The FHIRPath of every resource validated (the Bundle itself left out)."""
    seen: list[str] = []
    real = parse.validation_issues

    def counting(item):
        if item.path != "Bundle":
            seen.append(item.path)
        return real(item)

    monkeypatch.setattr(parse, "validation_issues", counting)
    return seen


def example_read_paths() -> list[str]:
    """The resources of the example Bundle that the evaluation reads (all but the Coverage; the
    ServiceRequest for its date)."""
    return [f"Bundle.entry[{i}].resource" for i, entry in enumerate(example_bundle()["entry"])
            if entry["resource"]["resourceType"] != "Coverage"]


# --- 3. padding costs what the mapper reads ------------------------------------------------------


def test_finding_3_a_1_mib_bundle_of_empty_entries_is_refused_before_the_strict_reader_builds_it(monkeypatch):
    padded = example_bundle()
    padded["entry"] += [{}] * ((MIB - len(json.dumps(padded))) // 4)
    strict_reads = []
    monkeypatch.setattr(parse, "parse_json", lambda body: strict_reads.append(body))

    with pytest.raises(OperationOutcomeError) as error:
        read_json(json.dumps(padded).encode())

    [issue] = error.value.issues
    assert issue.code == "too-costly" and "none was" in issue.diagnostics
    assert strict_reads == []


def test_finding_3_more_entries_than_the_cap_are_refused_naming_bundle_entry_before_the_strict_reader(
        monkeypatch):
    padded = example_bundle()
    padded["entry"] += [{}] * (5 * MAX_ENTRIES)
    strict_reads = []
    monkeypatch.setattr(parse, "parse_json", lambda body: strict_reads.append(body))

    with pytest.raises(OperationOutcomeError) as error:
        read_json(json.dumps(padded).encode())

    [issue] = error.value.issues
    assert (issue.code, issue.expression) == ("too-costly", "Bundle.entry")
    assert f"{len(padded['entry'])} entries" in issue.diagnostics and str(MAX_ENTRIES) in issue.diagnostics
    assert strict_reads == []


def test_finding_3_a_body_opening_too_many_objects_is_refused_before_it_is_parsed(monkeypatch):
    padded = example_bundle()
    padded["entry"].append({"resource": {"resourceType": "Basic", "extension": [{}] * MAX_OBJECTS}})
    parsed = []
    monkeypatch.setattr(parse, "parse_json", lambda body: parsed.append(body))
    monkeypatch.setattr(parse.orjson, "loads", lambda body: parsed.append(body))

    with pytest.raises(OperationOutcomeError) as error:
        read_json(json.dumps(padded))

    [issue] = error.value.issues
    assert issue.code == "too-costly" and str(MAX_OBJECTS) in issue.diagnostics
    assert parsed == []


def test_finding_3_a_body_just_under_the_object_cap_is_read(evaluator):
    padded = example_bundle()
    padded["entry"].append({"resource": {"resourceType": "Basic", "extension": [{}] * (MAX_OBJECTS - 200)}})

    assert read_bundle(evaluator, read_json(json.dumps(padded))).case["low_back_pain"]["nrs"] == 7


def test_finding_3_the_padded_bundle_gets_an_operation_outcome_and_nothing_is_stored(client, database, intake_key):
    padded = example_bundle()
    padded["entry"] += [{}] * ((MIB - 20_000 - len(json.dumps(padded))) // 4)

    [issue] = outcome(post_bundle(client, intake_key, padded))

    assert issue["code"] == "too-costly"
    assert stored(database) == 0


def test_finding_3_entries_under_the_cap_that_are_not_read_are_not_validated(evaluator, validated):
    padded = example_bundle()
    unread = [{"resource": {"resourceType": "Basic", "id": f"pad-{i}", "code": {"text": "x" * 500}}} for i in range(300)]
    other_code = [{"resource": observation("8867-4", f"hr-{i}", "2026-10-02", valueInteger=70)} for i in range(300)]
    answers_nothing = [{"resource": {**response({}), "id": f"qr-{i}", "item": [{"linkId": "not-a-field"}] * 20}}
                       for i in range(100)]
    request_only = [{"request": {"method": "DELETE", "url": f"Basic/{i}"}} for i in range(100)]
    padded["entry"] += unread + other_code + answers_nothing + request_only + [{}] * 100
    assert len(padded["entry"]) <= MAX_ENTRIES

    _, result = evaluate_bundle(evaluator, padded)

    assert sorted(set(validated)) == sorted(example_read_paths())
    assert result["summary"] == evaluate_bundle(evaluator, example_bundle())[1]["summary"]


def test_finding_3_a_bundle_of_exactly_the_cap_is_read(evaluator):
    padded = example_bundle()
    padded["entry"] += [{}] * (MAX_ENTRIES - len(padded["entry"]))

    assert read_bundle(evaluator, padded).case["low_back_pain"]["nrs"] == 7


def test_finding_3_more_resources_read_than_the_cap_are_refused_saying_so_before_any_is_validated(
        evaluator, validated):
    many = bundle(patient(), *[nrs(5, rid=f"nrs-{i}") for i in range(MAX_READ + 1)])

    with pytest.raises(OperationOutcomeError) as error:
        read_bundle(evaluator, many)

    [issue] = error.value.issues
    assert issue.code == "too-costly" and f"{MAX_READ + 2} resources" in issue.diagnostics
    assert validated == []


def test_finding_3_entries_that_are_not_objects_are_named(evaluator):
    with pytest.raises(OperationOutcomeError) as error:
        bundle_entries({"resourceType": "Bundle", "type": "collection", "entry": [{}, 3, {"fullUrl": 4}]})

    assert [i.expression for i in error.value.issues] == ["Bundle.entry[1]", "Bundle.entry[2].fullUrl"]


# --- 6. every FHIR date and dateTime is read or refused, never a 500 ------------------------------

FINDING_6 = "0001-01-01T00:00:00+14:00"


def with_date(value: str, where: str) -> dict:
    """The example Bundle with ``value`` at one of the date elements the intake reads."""
    changed = example_bundle()
    resources = {entry["resource"].get("id"): entry["resource"] for entry in changed["entry"]}
    target, element = DATE_ELEMENTS[where]
    resource = resources[target]
    for name in element[:-1]:
        resource = resource.setdefault(name, {})
    resource[element[-1]] = value
    if where.startswith("effectivePeriod"):
        resources[target].pop("effectiveDateTime", None)
    if where == "onsetPeriod.start":
        resources[target].pop("onsetDateTime", None)
    if where == "occurrencePeriod.start":
        resources[target].pop("occurrenceDateTime", None)
    return changed


DATE_ELEMENTS = {
    "occurrenceDateTime": ("reactiv8-implant-1", ("occurrenceDateTime",)),
    "occurrencePeriod.start": ("reactiv8-implant-1", ("occurrencePeriod", "start")),
    "birthDate": ("pat-1", ("birthDate",)),
    "effectiveDateTime": ("pain-1", ("effectiveDateTime",)),
    "effectivePeriod.end": ("bmi-1", ("effectivePeriod", "end")),
    "issued": ("pain-1", ("issued",)),
    "onsetDateTime": ("lbp-1", ("onsetDateTime",)),
    "onsetPeriod.start": ("lbp-1", ("onsetPeriod", "start")),
    "recordedDate": ("lbp-1", ("recordedDate",)),
    "performedDateTime": ("pt-1", ("performedDateTime",)),
    "authored": ("odi-1", ("authored",)),
}

digits = lambda n, top: st.integers(0, top).map(lambda v: f"{v:0{n}d}")  # noqa: E731
offsets = st.one_of(st.just("Z"), st.tuples(st.sampled_from("+-"), digits(2, 15), digits(2, 59)).map(
    lambda t: f"{t[0]}{t[1]}:{t[2]}"))
years = st.one_of(st.sampled_from(["0000", "0001", "9999", "1970", "2026"]), digits(4, 9999))
fhir_dates = st.one_of(
    years,
    st.tuples(years, digits(2, 13)).map("-".join),
    st.tuples(years, digits(2, 13), digits(2, 32)).map("-".join),
    st.tuples(years, digits(2, 13), digits(2, 32), digits(2, 24), digits(2, 60), digits(2, 61),
              st.one_of(st.just(""), st.integers(1, 12).flatmap(lambda n: digits(n, 10 ** n - 1)).map(
                  lambda f: f".{f}")), offsets).map(
        lambda t: f"{t[0]}-{t[1]}-{t[2]}T{t[3]}:{t[4]}:{t[5]}{t[6]}{t[7]}"),
    st.text(alphabet="0123456789-+:TZ.", max_size=40),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=fhir_dates, where=st.sampled_from(sorted(DATE_ELEMENTS)))
def test_finding_6_any_date_string_anywhere_is_read_or_answered_with_an_operation_outcome(evaluator, value, where):
    try:
        evaluate_bundle(evaluator, with_date(value, where))
    except OperationOutcomeError as error:
        assert 400 <= error.status < 500 and error.issues


@pytest.mark.parametrize("value", [FINDING_6, "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59.999999999-12:00",
                                   "0001-01-01T00:00:00-12:00"])
def test_finding_6_datetimes_whose_utc_instant_leaves_years_1_to_9999_are_read(evaluator, value):
    read = read_bundle(evaluator, with_date(value, "effectiveDateTime"), service_date="9999-12-31")

    assert read.fhir.provenance["low_back_pain.nrs"]["date"] == value[:10]


def test_finding_6_the_instants_keep_their_order_across_the_ends_of_the_calendar():
    assert moment(FINDING_6)[1] < moment("0001-01-01T00:00:00Z")[1] < moment("0001-01-01T00:00:00-14:00")[1]
    assert moment("9999-12-31T23:59:59+14:00")[1] < moment("9999-12-31T23:59:59-14:00")[1]
    assert moment("2016-12-31T23:59:60Z")[1] == moment("2016-12-31T23:59:59Z")[1]  # a leap second


def test_finding_6_the_api_reads_the_finding_and_refuses_an_impossible_date_naming_it(client, database, intake_key):
    assert post_bundle(client, intake_key, with_date(FINDING_6, "effectiveDateTime")).status_code == 201

    issues = outcome(post_bundle(client, intake_key, with_date("2026-02-30", "effectiveDateTime")))
    assert issues[0]["expression"] == ["Bundle.entry[3].resource.effective.ofType(dateTime)"]
    issues = outcome(post_bundle(client, intake_key, with_date("0000-01-01T00:00:00Z", "occurrenceDateTime")))
    assert issues[0]["expression"] == ["Bundle.entry[0].resource.occurrence.ofType(dateTime)"]
    assert stored(database) == 1


def test_finding_6_the_api_answers_service_dates_at_the_ends_of_the_calendar_with_4xx_or_a_result(
        client, intake_key):
    for value in ("0001-01-01", "9999-12-31", FINDING_6):
        answer = post_bundle(client, intake_key, with_date(value, "occurrenceDateTime"))
        assert answer.status_code in (201, 422), answer.text
    for value in ("0001-01-01", "9999-12-31", "0000-01-01", "2026-02-30", FINDING_6):
        answer = client.post("/v1/evaluations", params={"service_date": value}, content=json.dumps(example_bundle()),
                             headers={**FHIR, "X-API-Key": intake_key})
        assert answer.status_code in (201, 422), answer.text
        if answer.status_code == 422:
            assert answer.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("value, status", [(FINDING_6, 0), ("9999-12-31T23:59:59-14:00", 0), ("2026-02-30", 2),
                                           ("0000-01-01T00:00:00Z", 2)])
def test_finding_6_the_cli_reads_or_refuses_a_date_without_a_traceback(tmp_path, value, status):
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(with_date(value, "effectiveDateTime")))

    run = subprocess.run([sys.executable, "-m", "service.cli", "evaluate", str(path)], capture_output=True,
                         cwd=ROOT, timeout=120)

    assert run.returncode == status, run.stderr
    assert b"Traceback" not in run.stderr
    if status:
        assert json.loads(run.stderr)["resourceType"] == "OperationOutcome"


def test_finding_6_an_unexpected_error_in_evaluate_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    from service import cli
    from service.engine.evaluation import Evaluator

    def broken(self, *args, **kwargs):
        raise OverflowError("date value out of range")

    monkeypatch.setattr(Evaluator, "evaluate", broken)
    path = tmp_path / "case.json"
    path.write_text((ROOT / "examples" / "case.json").read_text())

    status = cli.main(["evaluate", str(path)])

    err = capsys.readouterr().err
    assert status == cli.EXIT_FAILED
    assert err.count("\n") == 1 and "OverflowError" in err and "Traceback" not in err


# --- 8. one patient per Bundle, with or without ids -----------------------------------------------


def two_patients(*resources) -> list[str]:
    """The expressions of the issues refusing ``resources`` as more than one patient."""
    with pytest.raises(OperationOutcomeError) as error:
        one_patient(bundle_entries(bundle(*resources)))
    assert all(i.code == "business-rule" for i in error.value.issues)
    return [i.expression for i in error.value.issues]


def about(resource: dict, reference: dict | None) -> dict:
    changed = copy.deepcopy(resource)
    if reference is None:
        changed.pop("subject", None)
    else:
        changed["subject"] = reference
    return changed


def without_id(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k != "id"}


def test_finding_8_two_patients_without_ids_are_two_patients():
    assert two_patients(without_id(patient()), without_id(patient("1990-01-01"))) == ["Bundle.entry[1].resource"]


def test_finding_8_resources_naming_two_patients_without_any_patient_resource_are_refused():
    assert two_patients(nrs(7), about(bmi(30), {"reference": "Patient/pat-2"})) == [
        "Bundle.entry[1].resource.subject.reference"]


def test_finding_8_a_patient_without_id_and_resources_naming_another_are_refused():
    assert two_patients(without_id(patient()), nrs(7)) == ["Bundle.entry[1].resource.subject.reference"]


def test_finding_8_an_order_for_another_patient_is_refused(evaluator):
    other = about(order(), {"reference": "Patient/pat-2"})

    with pytest.raises(OperationOutcomeError) as error:
        read_bundle(evaluator, bundle(patient(), other, nrs(7)))

    assert "Patient/pat-2" in error.value.issues[0].diagnostics


def test_finding_8_patients_by_identifier_are_one_when_they_match_and_two_when_not():
    mrn = {"system": "urn:example:mrn", "value": "12345"}
    known = {**without_id(patient()), "identifier": [mrn]}
    same = about(nrs(7), {"identifier": mrn})
    other = about(bmi(30), {"identifier": {**mrn, "value": "99999"}})

    one_patient(bundle_entries(bundle(known, same)))
    assert two_patients(known, same, other) == ["Bundle.entry[2].resource.subject.identifier"]


def test_finding_8_urn_references_resolve_to_the_entry_they_name():
    entries = bundle(without_id(patient()), without_id(patient("1990-01-01")),
                     about(nrs(7), {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}))
    with pytest.raises(OperationOutcomeError):
        one_patient(bundle_entries(entries))

    one_patient(bundle_entries(bundle(without_id(patient()),
                                      about(nrs(7), {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}))))


def test_finding_8_one_patient_named_in_every_way_is_one_patient():
    absolute = about(bmi(30), {"reference": "https://ehr.example/fhir/Patient/pat-1/_history/3"})
    typed = about(nrs(7, rid="nrs-2"), {"reference": "Patient/pat-1", "type": "Patient"})
    group = about(nrs(6, rid="nrs-3"), {"reference": "Group/cohort-1"})
    unnamed = about(nrs(5, rid="nrs-4"), None)

    one_patient(bundle_entries(bundle(patient(), nrs(7), absolute, typed, group, unnamed)))


def test_finding_8_the_api_refuses_two_patients_naming_them_and_stores_nothing(client, database, intake_key):
    mixed = bundle(without_id(patient()), order(), nrs(7), about(bmi(31), {"reference": "Patient/pat-2"}))

    issues = outcome(post_bundle(client, intake_key, mixed))

    said = " ".join(issue["diagnostics"] for issue in issues)
    assert all(name in said for name in ("the Patient at Bundle.entry[0].resource", "Patient/pat-1", "Patient/pat-2"))
    assert stored(database) == 0


def test_finding_8_resources_handed_in_without_a_bundle_are_held_to_one_patient_too(evaluator):
    # What CDS Hooks hands over when prefetch.patient is null: no Patient, resources about two.
    with pytest.raises(OperationOutcomeError) as error:
        case_from_resources([nrs(7), about(bmi(31), {"reference": "Patient/other"})], evaluator.dictionary,
                            service_date=datetime.date(2026, 12, 1))

    assert error.value.issues[0].expression == "Observation.subject.reference"


def test_finding_8_located_items_without_full_urls_are_checked_by_their_references():
    items = [Located(nrs(7), "Observation"), Located(about(bmi(31), {"reference": "Patient/x"}), "Observation")]
    with pytest.raises(OperationOutcomeError):
        one_patient(items)


# --- 14. Bundle.type is one of R4's bundle types ---------------------------------------------------


@pytest.mark.parametrize("value", ["bogus", "Collection", "a b"])
def test_finding_14_a_bundle_with_an_invalid_type_is_refused_naming_bundle_type(client, database, intake_key, value):
    changed = {**example_bundle(), "type": value}

    issues = outcome(post_bundle(client, intake_key, changed))

    assert [i["expression"] for i in issues] == [["Bundle.type"]]
    assert issues[0]["code"] == "code-invalid"
    assert stored(database) == 0


def test_finding_14_a_bundle_without_a_type_is_refused_naming_bundle_type(evaluator):
    changed = {k: v for k, v in example_bundle().items() if k != "type"}

    with pytest.raises(OperationOutcomeError) as error:
        read_bundle(evaluator, changed)

    assert [i.expression for i in error.value.issues] == ["Bundle.type"]
