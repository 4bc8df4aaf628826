"""The PAS mapping (service/fhir/pas) without HTTP: request Bundles in the IG's and the Inferno
kit's shapes in, the response Bundle the kit checks out."""

from __future__ import annotations

import copy
import datetime
import re
from pathlib import Path

import pytest
from fhir_support import example_bundle, example_case, nrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pas_support import (
    CPT_64568,
    KIT_CODE,
    NONCONFORMANT,
    claim_response,
    kit_decision_code_present,
    kit_unresolved,
    request_bundle,
    review_codes,
)

from service.evaluations.bundle import outcome_errors
from service.fhir.outcome import OperationOutcomeError
from service.fhir.parse import Located, validation_issues
from service.fhir.pas import constants as pas
from service.fhir.pas.clinical import clinical_entries, read_case
from service.fhir.pas.decision import (
    Determination,
    decided_claim_response,
    pended_or_decided,
)
from service.fhir.pas.policy_choice import choose_policy
from service.fhir.pas.request import read_request
from service.fhir.pas.response import pended_response


def valid_r4(bundle: dict) -> list:
    """The R4 problems of a response Bundle and of each of its resources (fhir.resources R4B)."""
    items = [Located(bundle, "Bundle"), *(Located(e["resource"], f"Bundle.entry[{i}].resource")
                                          for i, e in enumerate(bundle["entry"]))]
    return [issue for item in items for issue in validation_issues(item)]


NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)
ISASS = "isass-2023-restorative-neurostimulation"
ORDERS = {ISASS: [CPT_64568]}


def documentation() -> list[dict]:
    """The clinical resources of examples/bundle.json (everything but the order, patient and coverage)."""
    return [e["resource"] for e in example_bundle()["entry"]
            if e["resource"]["resourceType"] not in ("ServiceRequest", "Patient", "Coverage")]


def evaluate(evaluator, request):
    choice = choose_policy(request.items, ORDERS, ISASS)
    read = read_case(request, evaluator.dictionary, policy=choice.policy, sequences=choice.sequences)
    return choice, read, evaluator.evaluate(read.case, provenance=read.fhir.provenance)


@pytest.mark.parametrize("version, outcome", [(None, "queued"), ("2.0.1", "queued"), ("2.1.0", "queued"),
                                              ("2.2.0", "complete"), ("2.2.1", "complete")])
def test_a_documented_request_is_pended_as_the_kit_checks_a_pend(evaluator, version, outcome):
    request = read_request(request_bundle(*documentation(), version=version))
    choice, _, result = evaluate(evaluator, request)
    answer = pended_response(request, request_id="REQ-1", result=result, now=NOW, sequences=choice.sequences)

    assert result["summary"]["outcome"] == "all_criteria_met"
    assert answer["resourceType"] == "Bundle" and answer["type"] == "collection"
    assert answer["entry"][0]["resource"]["resourceType"] == "ClaimResponse"
    assert kit_decision_code_present(answer, "A4")
    assert not kit_decision_code_present(answer, "A1")
    assert kit_unresolved(answer) == []
    assert valid_r4(answer) == []
    response = claim_response(answer)
    assert response["outcome"] == outcome
    assert response["preAuthRef"] == "REQ-1"
    assert response["request"] == {"reference": "https://prior-auth.davinci.hl7.org/fhir/Claim/ReferralAuthorizationExample"}
    assert [item["itemSequence"] for item in response["item"]] == [1]
    assert response["identifier"] == request.claim.resource["identifier"]
    assert "communicationRequest" not in response  # nothing is missing
    assert ("identifier" in answer) == (version in ("2.2.0", "2.2.1"))
    copied = {e["fullUrl"] for e in answer["entry"][1:]}
    assert copied == {f"https://prior-auth.davinci.hl7.org/fhir/{p}" for p in
                      ("Patient/SubscriberExample", "Organization/InsurerExample", "Organization/UMOExample")}


def test_the_case_is_read_from_the_supporting_information_as_the_intake_reads_it(evaluator):
    request = read_request(request_bundle(*documentation()))
    _, read, result = evaluate(evaluator, request)
    expected = {**example_case(), "external_id": "111099", "priority": "standard",
                # the order's code, read by the intake since the review page shows the requested service
                "requested_service": [{"system": "http://www.ama-assn.org/go/cpt", "code": "64568"}]}
    assert read.case == expected
    nrs_evidence = next(e for c in result["criteria"] for e in c["evidence"] if e["field"] == "low_back_pain.nrs")
    assert nrs_evidence["source"] == {"reference": "Observation/pain-1", "date": "2026-10-02", "date_element": "effectiveDateTime"}
    assert read.fhir.expressions["external_id"] == "Bundle.entry[0].resource.identifier[0].value"


def test_entries_the_claim_does_not_point_to_are_not_read(evaluator):
    bundle = request_bundle()
    stray = nrs(9, rid="stray")
    stray["subject"] = {"reference": "Patient/SubscriberExample"}
    bundle["entry"].append({"fullUrl": "https://prior-auth.davinci.hl7.org/fhir/Observation/stray", "resource": stray})
    request = read_request(bundle)
    assert "Observation" not in {e.type for e in clinical_entries(request)}
    _, read, _ = evaluate(evaluator, request)
    assert "low_back_pain" not in read.case


def test_a_request_missing_documentation_asks_for_the_evaluations_questionnaire(evaluator):
    request = read_request(request_bundle(nrs(7)))
    choice, _, result = evaluate(evaluator, request)
    answer = pended_response(request, request_id="REQ-2", result=result, now=NOW, sequences=choice.sequences)
    response = claim_response(answer)
    assert review_codes(answer) == ["A4"]
    [reference] = response["communicationRequest"]
    asking = next(e["resource"] for e in answer["entry"] if e["fullUrl"] == reference["reference"])
    assert asking["resourceType"] == "CommunicationRequest" and asking["status"] == "active"
    assert asking["identifier"] == [{"system": pas.CONTEXT_ID_SYSTEM, "value": result["evaluation_id"]}]
    assert [p["contentString"] for p in asking["payload"]] == ["102089-0"]
    assert asking["payload"][0]["extension"] == [{"url": pas.SERVICE_LINE_NUMBER, "valuePositiveInt": 1}]
    assert kit_unresolved(answer) == []
    assert valid_r4(answer) == []


@pytest.mark.parametrize("urgent, priority, expected", [
    (False, "normal", "standard"), (True, "normal", "expedited"), (False, "stat", "expedited"),
    (False, "urgent", "expedited"), (False, "deferred", "standard")])
def test_priority_comes_from_the_level_of_service_or_the_claims_priority(evaluator, urgent, priority, expected):
    request = read_request(request_bundle(urgent=urgent, priority=priority))
    assert request.priority == expected
    _, read, _ = evaluate(evaluator, request)
    assert read.case["priority"] == expected


def test_the_items_service_date_is_the_cases():
    request = read_request(request_bundle(serviced="2026-12-03"))
    assert request.items[0].serviced == "2026-12-03"


def test_the_kits_nonconformant_bundle_is_one_operation_outcome_400():
    with pytest.raises(OperationOutcomeError) as raised:
        read_request(copy.deepcopy(NONCONFORMANT))
    assert raised.value.status == 400
    outcome = raised.value.to_resource()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(i.get("expression") == ["Bundle.entry"] for i in outcome["issue"])


def _claim(bundle):
    return bundle["entry"][0]["resource"]


MALFORMED = {
    "claim not first": (lambda b: b["entry"].reverse(), "Bundle.entry[0].resource"),
    "use claim": (lambda b: _claim(b).update(use="claim"), "Bundle.entry[0].resource.use"),
    "no identifier": (lambda b: _claim(b).pop("identifier"), "Bundle.entry[0].resource.identifier"),
    "no items": (lambda b: _claim(b).pop("item"), "Bundle.entry[0].resource.item"),
    "item without code": (lambda b: _claim(b)["item"][0].pop("productOrService"),
                          "Bundle.entry[0].resource.item[0].productOrService"),
    "coverage missing": (lambda b: b["entry"].pop(3), "Bundle.entry[0].resource.insurance[0].coverage.reference"),
    "patient missing, reached through coverage": (
        lambda b: (_claim(b).update(patient={"reference": "Patient/SubscriberExample"}), b["entry"].pop(4)),
        "Bundle.entry[0].resource.patient.reference"),
    "entry without fullUrl": (lambda b: b["entry"][1].pop("fullUrl"), "Bundle.entry[1].fullUrl"),
    "entry with request": (lambda b: b["entry"][1].update(request={"method": "POST", "url": "Organization"}),
                           "Bundle.entry[1].request"),
    "transaction": (lambda b: b.update(type="transaction"), "Bundle.type"),
    "no timestamp": (lambda b: b.pop("timestamp"), "Bundle.timestamp"),
    "invalid claim": (lambda b: _claim(b).update(created="yesterday"), "Bundle.entry[0].resource.created"),
    "not a bundle": (lambda b: b.update(resourceType="Claim"), "Bundle"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_request_is_400_naming_the_element(name):
    bundle = request_bundle(nrs(7))
    change, expression = MALFORMED[name]
    change(bundle)
    with pytest.raises(OperationOutcomeError) as raised:
        read_request(bundle)
    assert raised.value.status == 400
    assert expression in [i.expression for i in raised.value.issues], raised.value.issues


def test_a_reference_to_a_urn_entry_resolves_and_one_to_nothing_does_not():
    bundle = request_bundle(nrs(7))
    bundle["entry"][4]["fullUrl"] = "urn:uuid:5e4d3c2b-0000-4000-8000-000000000001"
    _claim(bundle)["patient"] = {"reference": "urn:uuid:5e4d3c2b-0000-4000-8000-000000000001"}
    read_request(bundle)  # Coverage's relative Patient/SubscriberExample falls back to type and id
    _claim(bundle)["patient"] = {"reference": "urn:uuid:5e4d3c2b-0000-4000-8000-000000000002"}
    with pytest.raises(OperationOutcomeError):
        read_request(bundle)


def test_no_policy_listing_the_items_codes_is_422_not_supported():
    request = read_request(request_bundle(code=KIT_CODE))  # the kit's own item: X12 1365 "Consultation"
    with pytest.raises(OperationOutcomeError) as raised:
        choose_policy(request.items, ORDERS, ISASS)
    assert raised.value.status == 422
    assert raised.value.issues[0].code == "not-supported"
    assert raised.value.issues[0].expression == "Bundle.entry[0].resource.item[0].productOrService"


def test_items_of_different_policies_are_refused_and_a_tie_goes_to_the_default():
    bundle = request_bundle()
    second = copy.deepcopy(_claim(bundle)["item"][0])
    second.update(sequence=2, productOrService={"coding": [{"system": "urn:other", "code": "X"}]})
    _claim(bundle)["item"].append(second)
    request = read_request(bundle)
    with pytest.raises(OperationOutcomeError) as raised:
        choose_policy(request.items, {ISASS: [CPT_64568], "other": [("urn:other", "X")]}, ISASS)
    assert raised.value.status == 422 and "different policies" in raised.value.issues[0].diagnostics
    both = {ISASS: [CPT_64568], "other": [CPT_64568]}
    assert choose_policy(request.items, both, ISASS).policy == ISASS
    assert choose_policy(request.items, {ISASS: [CPT_64568]}, None).sequences == (1,)
    with pytest.raises(OperationOutcomeError):
        choose_policy(request.items, both, None)


# --- the reviewer's outcome -------------------------------------------------------------------------

def determination(outcome: str, **extra) -> Determination:
    return Determination.from_record({
        "id": "DET-1", "outcome": outcome, "reason": "ODI 44 % and NRS 7 documented; all criteria met.",
        "recorded_at": "2026-11-26T09:00:00Z", "reviewer": {"key_id": "0123456789abcdef", "name": "R. Nurse", **extra}})


@pytest.mark.parametrize("outcome, code", [("approved", "A1"), ("denied", "A3"), ("partially_approved", "A6")])
@pytest.mark.parametrize("version", [None, "2.2.1"])
def test_the_reviewers_outcome_becomes_its_review_action_with_the_reason(outcome, code, version):
    request = read_request(request_bundle(version=version))
    answer = pended_or_decided(request, [("REQ-3", determination(outcome, npi="1234567893"))], now=NOW)
    assert kit_decision_code_present(answer, code) and review_codes(answer) == [code]
    assert kit_unresolved(answer) == []
    assert valid_r4(answer) == []
    response = claim_response(answer)
    assert response["outcome"] == "complete"
    assert response["processNote"] == [{"number": 1, "type": "display",
                                        "text": "ODI 44 % and NRS 7 documented; all criteria met."}]
    assert response["meta"]["profile"] == [pas.CLAIM_INQUIRY_RESPONSE]
    if version == "2.2.1":
        assert response["extension"] == [{"url": pas.CLAIM_RESPONSE_REVIEWER, "extension": [
            {"url": "wasHumanReviewedFlag", "valueBoolean": True},
            {"url": "reviewerNPI", "valueIdentifier": {"system": pas.NPI, "value": "1234567893"}}]}]
    else:
        assert "extension" not in response


def test_without_a_determination_the_inquiry_is_pended():
    for version, outcome in ((None, "queued"), ("2.2.1", "complete")):
        request = read_request(request_bundle(version=version))
        answer = pended_or_decided(request, [("REQ-4", None)], now=NOW)
        assert review_codes(answer) == ["A4"] and claim_response(answer)["outcome"] == outcome


def test_an_inquiry_matching_two_requests_answers_both_in_one_bundle():
    request = read_request(request_bundle())
    answer = pended_or_decided(request, [("REQ-A", None), ("REQ-B", determination("denied"))], now=NOW)
    responses = [e["resource"] for e in answer["entry"] if e["resource"]["resourceType"] == "ClaimResponse"]
    assert [(r["preAuthRef"], r["item"][0]["adjudication"][0]["extension"][0]["extension"][0]
             ["valueCodeableConcept"]["coding"][0]["code"]) for r in responses] == [("REQ-A", "A4"), ("REQ-B", "A3")]
    assert kit_unresolved(answer) == []


def test_the_kits_2_2_0_inquiry_answer_is_wrapped_in_parameters():
    request = read_request(request_bundle(version="2.2.0"))
    answer = pended_or_decided(request, [("REQ-5", None)], now=NOW)
    assert answer["resourceType"] == "Parameters" and answer["parameter"][0]["name"] == "return"


@pytest.mark.parametrize("outcome", ["pended_for_information", "referred_to_physician_reviewer", "covered"])
def test_only_closing_determinations_make_a_decided_response(outcome):
    with pytest.raises(ValueError):
        determination(outcome)
    request = read_request(request_bundle())
    with pytest.raises(TypeError):
        decided_claim_response(request, {"outcome": "approved"}, request_id="R", now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("supporting", [(), (nrs(7),), tuple(documentation())])
def test_the_engine_alone_only_ever_pends(evaluator, supporting):
    request = read_request(request_bundle(*supporting))
    choice, _, result = evaluate(evaluator, request)
    answer = pended_response(request, request_id="R", result=result, now=NOW, sequences=choice.sequences)
    assert review_codes(answer) == ["A4"]


def test_a1_a3_and_a6_are_written_only_by_the_decision_module():
    service = Path(__file__).resolve().parent.parent / "service"
    writers = {path.relative_to(service).as_posix() for path in service.rglob("*.py")
               if re.search(r"""["'](A1|A3|A6)["']""", path.read_text())}
    assert writers == {"fhir/pas/constants.py", "fhir/pas/decision.py"}


# --- any damage is an OperationOutcome, never a crash ------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=12)
    | st.sampled_from(["Patient/SubscriberExample", "urn:uuid:x", "#c", "2026-02-30", "2026-11-20T10:00:00Z",
                       "0001-01-01T00:00:00+14:00"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6)


def _paths(value, path=()):
    yield path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _paths(child, (*path, key))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_damage_to_a_request_is_an_operation_outcome(evaluator, data):
    bundle = request_bundle(*documentation()[:3], version=data.draw(st.sampled_from([None, "2.2.1"])))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(bundle) if p]
        path = data.draw(st.sampled_from(paths))
        holder = bundle
        for key in path[:-1]:
            holder = holder[key]
        if data.draw(st.booleans()) and isinstance(holder, dict):
            holder.pop(path[-1])
        else:
            holder[path[-1]] = data.draw(JSON_VALUES)
    try:
        request = read_request(bundle)
        choice = choose_policy(request.items, ORDERS, ISASS)
        read = read_case(request, evaluator.dictionary, policy=choice.policy, sequences=choice.sequences)
        with outcome_errors(read):
            result = evaluator.evaluate(read.case, provenance=read.fhir.provenance)
        answer = pended_response(request, request_id="R", result=result, now=NOW, sequences=choice.sequences)
    except OperationOutcomeError as error:
        assert error.status in (400, 422) and error.issues
        return
    assert review_codes(answer) == ["A4"] * len(request.items)
