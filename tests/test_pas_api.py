"""Da Vinci PAS through the real app and a real database (SQLite and PostgreSQL): ``$submit`` and
``$inquire`` with request Bundles in the IG's and the Inferno kit's shapes (tests/pas_support.py)."""

from __future__ import annotations

import copy
import datetime
import json

import pytest
from dtr_support import GOOD, fetch_package
from dtr_support import respond as dtr_respond
from fhir_support import bmi, condition, nrs, odi_response, procedure
from pas_support import (
    AUTHOR,
    KIT_CODE,
    NONCONFORMANT,
    claim_response,
    kit_decision_code_present,
    kit_unresolved,
    request_bundle,
    review_codes,
)
from sqlalchemy import select
from test_fhir_questionnaire import fields_asked

from service.fhir.outcome import OperationOutcomeError
from service.fhir.parse import Located, validation_issues
from service.fhir_api.claim_inquire import inquire_claim
from service.store.tables import Evaluation

FHIR = {"Content-Type": "application/fhir+json"}
SUBMIT, INQUIRE = "/fhir/Claim/$submit", "/fhir/Claim/$inquire"


def post(client, key, path, body):
    text = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, content=text, headers={**FHIR, "X-API-Key": key})


def stored(database) -> list[tuple[str, dict]]:
    with database.session() as session:
        rows = session.execute(select(Evaluation.external_id, Evaluation.case_json).order_by(Evaluation.created_at))
        return [(external_id, json.loads(case)) for external_id, case in rows]


def partial_documentation() -> list[dict]:
    """Facts a chart holds before the payer's questionnaire: what the FHIR intake reads by code."""
    return [bmi(31.2), nrs(7), condition("M54.50", "lbp", onset="2024-10-01", recorded="2024-10-01"),
            procedure("91251008", "pt", "2025-06-01", outcome="385671000"), odi_response([3, 2, 3, 2, 2, 2, 3, 2, 1, 2])]


def assert_one_outcome(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"]
    assert not validation_issues(Located(outcome, "OperationOutcome"))
    return outcome


@pytest.mark.parametrize("version, outcome", [("2.0.1", "queued"), ("2.2.1", "complete")])
def test_a_conformant_request_is_pended_stored_and_passes_the_kits_checks(client, intake_key, database,
                                                                         version, outcome):
    response = post(client, intake_key, SUBMIT, request_bundle(*partial_documentation(), version=version, urgent=True))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.headers["cache-control"] == "no-store"
    answer = response.json()
    assert answer["entry"][0]["resource"]["resourceType"] == "ClaimResponse"
    assert kit_decision_code_present(answer, "A4") and review_codes(answer) == ["A4"]
    assert kit_unresolved(answer) == []
    assert claim_response(answer)["outcome"] == outcome
    [(external_id, case)] = stored(database)
    assert external_id == "111099"
    assert case["priority"] == "expedited" and case["policy"] == "isass-2023-restorative-neurostimulation"
    assert case["low_back_pain"]["nrs"] == 7


@pytest.mark.parametrize("body", [NONCONFORMANT, "{not json", {"resourceType": "Claim"}],
                         ids=["kit nonconformant", "unparseable", "not a bundle"])
def test_a_malformed_request_is_one_operation_outcome_400_and_nothing_is_stored(client, intake_key, database, body):
    assert_one_outcome(post(client, intake_key, SUBMIT, copy.deepcopy(body)), 400)
    assert stored(database) == []


def test_a_value_the_case_refuses_is_400_naming_its_element_and_nothing_is_stored(client, intake_key, database):
    outcome = assert_one_outcome(post(client, intake_key, SUBMIT, request_bundle(nrs(15))), 400)
    assert any("value.ofType(integer)" in e for i in outcome["issue"] for e in i.get("expression", []))
    long_reference = request_bundle(identifier="X" * 200)
    outcome = assert_one_outcome(post(client, intake_key, SUBMIT, long_reference), 400)
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[0].resource.identifier[0].value"]
    assert stored(database) == []


def test_a_request_no_policy_reviews_is_422_and_nothing_is_stored(client, intake_key, database):
    outcome = assert_one_outcome(post(client, intake_key, SUBMIT, request_bundle(code=KIT_CODE)), 422)
    assert outcome["issue"][0]["code"] == "not-supported"
    assert stored(database) == []


def test_submit_needs_an_intake_key_sent_either_way_and_refusals_are_operation_outcomes(client, intake_key, database):
    body = json.dumps(request_bundle(identifier="PA-KEY-1"))
    assert assert_one_outcome(client.post(SUBMIT, content=body, headers=FHIR), 401)["issue"][0]["code"] == "login"
    assert client.post(SUBMIT, content=body, headers={**FHIR, "Authorization": f"Bearer {intake_key}"}).status_code == 200
    assert [external_id for external_id, _ in stored(database)] == ["PA-KEY-1"]


def test_missing_documentation_is_asked_for_through_dtr_and_the_answers_come_back_as_a_resubmission(
        client, intake_key, reviewer_key, database):
    first = post(client, intake_key, SUBMIT, request_bundle(*partial_documentation(), identifier="PA-RFI-1")).json()
    response = claim_response(first)
    request_id = response["preAuthRef"]
    asking = next(e["resource"] for e in first["entry"] if e["fullUrl"] == response["communicationRequest"][0]["reference"])
    assert [p["contentString"] for p in asking["payload"]] == ["102089-0"]
    context = asking["identifier"][0]["value"]

    # The context is the evaluation id: the DTR package for it asks exactly what is missing.
    evaluation = client.get(f"/v1/evaluations/{context}", headers={"X-API-Key": intake_key}).json()
    assert evaluation["external_id"] == "PA-RFI-1" and evaluation["summary"]["outcome"] == "information_missing"
    package = fetch_package(client, intake_key, context=context)
    questionnaire = package["entry"][0]["resource"]
    asked = set(fields_asked(questionnaire))
    assert set(evaluation["missing_information"]) <= asked and "low_back_pain.nrs" not in asked

    # The provider resubmits the request with the completed questionnaire in supportingInfo.
    answers = dtr_respond(questionnaire, {path: GOOD[path] for path in asked})
    again = post(client, intake_key, SUBMIT, request_bundle(answers, identifier="PA-RFI-1", referenced=(AUTHOR,)))
    assert again.status_code == 200, again.text
    second = claim_response(again.json())
    assert second["preAuthRef"] == request_id  # the same request, resubmitted
    assert review_codes(again.json()) == ["A4"] and "communicationRequest" not in second
    assert [external_id for external_id, _ in stored(database)] == ["PA-RFI-1", "PA-RFI-1"]
    latest = client.get("/v1/evaluations", params={"external_id": "PA-RFI-1"},
                        headers={"X-API-Key": reviewer_key}).json()["evaluations"][0]
    assert latest["summary"]["outcome"] == "all_criteria_met" and latest["missing_information"] == []
    evidence = {e["field"]: e for c in latest["criteria"] for e in c["evidence"]}
    assert evidence["low_back_pain.nrs"]["source"]["reference"] == "Observation/nrs-1"  # kept from the first
    assert evidence["low_back_pain.mechanical"]["source"]["information_origin"] == "manual"  # the DTR answer


def test_inquire_answers_pended_while_no_reviewer_has_decided(client, intake_key):
    submitted = claim_response(post(client, intake_key, SUBMIT, request_bundle(nrs(7), identifier="PA-INQ-1")).json())
    for version, outcome in (("2.0.1", "queued"), ("2.2.1", "complete")):
        response = post(client, intake_key, INQUIRE, request_bundle(identifier="PA-INQ-1", version=version))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert kit_decision_code_present(answer, "A4") and review_codes(answer) == ["A4"]
        assert kit_unresolved(answer) == []
        inquired = claim_response(answer)
        assert inquired["preAuthRef"] == submitted["preAuthRef"] and inquired["outcome"] == outcome


def test_only_the_submitting_organization_may_inquire(client, intake_key, database, evaluator):
    post(client, intake_key, SUBMIT, request_bundle(nrs(7), identifier="PA-INQ-2"))
    body = json.dumps(request_bundle(identifier="PA-INQ-2")).encode()
    assert review_codes(inquire_claim(evaluator, database, body, "default")) == ["A4"]
    with pytest.raises(OperationOutcomeError) as another:
        inquire_claim(evaluator, database, body, "another-organization")
    unknown = assert_one_outcome(post(client, intake_key, INQUIRE, request_bundle(identifier="PA-NONE")), 404)
    assert another.value.status == 404 and another.value.to_resource()["issue"] == unknown["issue"]
    assert_one_outcome(post(client, intake_key, INQUIRE, NONCONFORMANT), 400)


# --- the whole flow: pended, asked through DTR, answered, resubmitted, decided by a reviewer, inquired ---

DECISIONS = {
    "approved": ("A1", "All criteria are met on the resubmitted documentation.", []),
    "denied": ("A3", ("Not certified: the ODI of 12 % is below the 30 % disability the policy requires "
                      "(ISASS-RN-05, citing the ISASS 2023 candidate profile)."), ["ISASS-RN-05"]),
}


@pytest.mark.parametrize("outcome", DECISIONS)
def test_pended_asked_answered_resubmitted_then_the_reviewers_decision_is_inquired(client, intake_key, reviewer_key,
                                                                                  outcome):
    code, reason, criteria = DECISIONS[outcome]
    identifier = f"PA-FLOW-{outcome}"
    facts = partial_documentation() if outcome == "approved" else \
        [*partial_documentation()[:4], odi_response([1, 0, 1, 0, 1, 0, 1, 0, 1, 1])]
    first = post(client, intake_key, SUBMIT, request_bundle(*facts, identifier=identifier)).json()
    response = claim_response(first)
    request_id = response["preAuthRef"]
    asking = next(e["resource"] for e in first["entry"] if e["fullUrl"] == response["communicationRequest"][0]["reference"])
    questionnaire = fetch_package(client, intake_key, context=asking["identifier"][0]["value"])["entry"][0]["resource"]
    answers = dtr_respond(questionnaire, {path: GOOD[path] for path in fields_asked(questionnaire)})
    resubmission = request_bundle(answers, identifier=identifier, referenced=(AUTHOR,))

    again = claim_response(post(client, intake_key, SUBMIT, resubmission).json())
    assert again["preAuthRef"] == request_id and "communicationRequest" not in again
    reviewer = {"X-API-Key": reviewer_key}
    request = client.get(f"/v1/requests/{request_id}", headers=reviewer).json()
    assert request["submissions"] == 2 and request["state"] == "open"
    assert request["external_id"] == identifier and request["priority"] == "standard"

    pended = post(client, intake_key, INQUIRE, request_bundle(identifier=identifier)).json()
    assert review_codes(pended) == ["A4"]  # nobody has decided yet

    decided = client.post(f"/v1/requests/{request_id}/determinations", headers=reviewer, json={
        "evaluation_id": request["latest_evaluation_id"], "outcome": outcome, "reason": reason,
        "criteria": criteria, "attestation": True})
    assert decided.status_code == 201, decided.text
    for version in ("2.0.1", "2.2.1"):
        answer = post(client, intake_key, INQUIRE, request_bundle(identifier=identifier, version=version))
        assert answer.status_code == 200, answer.text
        assert kit_decision_code_present(answer.json(), code) and review_codes(answer.json()) == [code]
        assert kit_unresolved(answer.json()) == []
        final = claim_response(answer.json())
        assert final["preAuthRef"] == request_id and final["outcome"] == "complete"
        assert final["processNote"] == [{"number": 1, "type": "display", "text": reason}]
        reviewed = [e for e in final.get("extension", []) if e["url"].endswith("/extension-claimResponseReviewer")]
        assert [e["extension"] for e in reviewed] == ([[{"url": "wasHumanReviewedFlag", "valueBoolean": True}]]
                                                      if version == "2.2.1" else [])

    # A new submission reopens the request: pended again until a reviewer decides on it.
    post(client, intake_key, SUBMIT, resubmission)
    assert review_codes(post(client, intake_key, INQUIRE, request_bundle(identifier=identifier)).json()) == ["A4"]


def test_an_urgent_claim_opens_an_expedited_request_received_when_submit_was_accepted(client, intake_key, reviewer_key):
    before = datetime.datetime.now(datetime.UTC)
    answer = post(client, intake_key, SUBMIT, request_bundle(nrs(7), identifier="PA-URGENT-1", urgent=True)).json()
    after = datetime.datetime.now(datetime.UTC)
    request = client.get(f"/v1/requests/{claim_response(answer)['preAuthRef']}", headers={"X-API-Key": reviewer_key}).json()
    assert request["priority"] == "expedited"
    received = datetime.datetime.fromisoformat(request["received_at"])
    assert before - datetime.timedelta(seconds=1) <= received <= after + datetime.timedelta(seconds=1)
    due = datetime.datetime.fromisoformat(request["due_at"])
    assert due - received == datetime.timedelta(hours=72)
