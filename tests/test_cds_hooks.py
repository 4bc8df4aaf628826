"""CDS Hooks in the Da Vinci CRD shape: discovery, the order hooks on real requests, the
coverage-information answer checked against CRD 2.0.1, 2.1.0 and 2.2, feedback."""

from __future__ import annotations

import copy
import json
import shutil
import time
import uuid

import pytest
import yaml

from cds_client import CPT, POLICY, PUBLIC_URL, SELECT, SIGN, reactiv8_order, searchset, with_order
from cds_support import (ALL_MET, COVERAGE, PATIENT, dtr, ROOT, actions_of, cds, check_action, example, hook,  # noqa: F401
                         fhir_servers, outcome_of, signer, version_of)
from crd_invariants import assertion_ids_consistent, coverage_informations, values, violations
from service.cds.coverage_information import CRD_TEMP
from service.cds.discovery import services
from service.policy.rules import RuleError, load_catalog
from api_fixtures import EVERY_ORGANIZATION
from service.store.evaluations import get_evaluation_result, list_evaluation_results

def minimal_request(*orders: dict, hook_name: str = "order-sign", prefetch: dict | None = None, **extra) -> dict:
    body = {
        "hook": hook_name,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": "123",
                    "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": o} for o in orders]}},
        "prefetch": {"patient": PATIENT, "coverage": searchset(COVERAGE)} if prefetch is None else prefetch,
        **extra,
    }
    if hook_name == "order-select":
        body["context"]["selections"] = [f"{o['resourceType']}/{o['id']}" for o in orders]
    return body


# --- discovery ---------------------------------------------------------------------------------


def test_discovery_offers_order_sign_and_order_select_for_the_policy_with_order_codes(cds):
    document = cds.get("/cds-services").json()
    by_id = {s["id"]: s for s in document["services"]}
    assert set(by_id) == {SIGN, SELECT}
    assert by_id[SIGN]["hook"] == "order-sign" and by_id[SELECT]["hook"] == "order-select"
    for service in by_id.values():
        assert set(service["prefetch"]) == {"patient", "coverage", "observations", "conditions", "procedures",
                                            "questionnaireResponses"}
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        assert service["prefetch"]["coverage"] == "Coverage?patient={{context.patientId}}&status=active"
        options = service["extension"]["davinci-crd.configuration-options"]
        assert {o["code"]: o["type"] for o in options} == {"coverage-info": "boolean"}
        assert f"{CPT}|64568" in service["description"]
        # Observations are asked for by the codes rules/fields.yaml reads them by (NRS, BMI, ODI).
        observations = service["prefetch"]["observations"]
        assert observations.startswith("Observation?patient={{context.patientId}}&code=")
        for code in ("72514-3", "39156-5", "97909-6"):
            assert f"http://loinc.org|{code}" in observations


def test_a_policy_without_order_codes_offers_no_service(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    policy = rules / POLICY / "1.0.0" / "policy.yaml"
    data = yaml.safe_load(policy.read_text())
    assert data.pop("orders")
    policy.write_text(yaml.safe_dump(data, sort_keys=False))
    assert services(load_catalog(rules)) == {}


@pytest.mark.parametrize("orders, problem", [
    ([{"system": "cpt", "code": "64568"}], "system"),
    ([{"system": CPT, "code": "64568"}, {"system": CPT, "code": "64568"}], "twice"),
    ([{"system": CPT}], "code"),
])
def test_order_codes_are_checked(tmp_path, orders, problem):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    policy = rules / POLICY / "1.0.0" / "policy.yaml"
    data = yaml.safe_load(policy.read_text())
    data["orders"] = orders
    policy.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(RuleError, match=problem):
        load_catalog(rules)


# --- the real requests ---------------------------------------------------------------------------

REAL_REQUESTS = [
    ("crd-ig-2.1.0_order-sign-request_servicerequest.json", SIGN),
    ("crd-ig-2.2.1_order-sign-request_servicerequest.json", SIGN),
    ("crd-ig-2.2.1_order-sign-request_no-prefetch.json", SIGN),
    ("inferno-crd-testkit_order_sign_hook_request.json", SIGN),
    ("inferno-crd-testkit_order_select_hook_request.json", SELECT),
    ("crd-ri_order-sign-request_devicerequest_legacy.json", SIGN),
]


@pytest.mark.parametrize("name, service", REAL_REQUESTS)
def test_real_requests_without_an_order_of_the_policy_get_no_answer_and_store_nothing(cds, database, name, service):
    request = example(name)
    assert hook(cds, request, service).json() == {"cards": [], "systemActions": []}
    assert list_evaluation_results(database, EVERY_ORGANIZATION, request["hookInstance"]).results == []


@pytest.mark.parametrize("name", ["crd-ig-2.1.0_order-sign-request_servicerequest.json",
                                  "crd-ig-2.2.1_order-sign-request_servicerequest.json"])
def test_real_requests_with_a_reactiv8_order_get_coverage_information(cds, database, name):
    order = reactiv8_order()
    request = with_order(example(name), order)
    [action] = actions_of(hook(cds, request))
    information = check_action(action, order, version_of(request))
    assert values(information, "coverage") == [{"reference": "Coverage/COV1"}]
    assert values(information, "covered") == ["conditional"]
    assert values(information, "pa-needed") == ["conditional"]
    assert values(information, "info-needed") == ["OTH"]
    assert "decided by the payer" in values(information, "reason")[0]["text"]
    # Nothing clinical was sent beyond the patient: criteria are undocumented, so DTR is asked for.
    assert values(information, "doc-needed") == ["clinical"]
    assert values(information, "doc-purpose") == ["withpa"]
    [assertion_id] = values(information, "coverage-assertion-id")
    assert values(information, "questionnaire") == [f"{PUBLIC_URL}/v1/evaluations/{assertion_id}/questionnaire"]
    stored = json.loads(get_evaluation_result(database, EVERY_ORGANIZATION, assertion_id))
    assert stored["external_id"] == request["hookInstance"]
    assert stored["policy"]["id"] == POLICY
    assert values(information, "date") == [time.strftime("%Y-%m-%d", time.gmtime())]


def test_each_matching_order_gets_its_own_evaluation_and_the_others_are_left_alone(cds, database):
    first, second = reactiv8_order("r8-a"), reactiv8_order("r8-b")
    other = {**reactiv8_order("other"), "code": {"coding": [{"system": CPT, "code": "99213"}]}}
    active = {**reactiv8_order("signed"), "status": "active"}
    actions = actions_of(hook(cds, minimal_request(first, other, second, active)))
    assert [a["resource"]["id"] for a in actions] == ["r8-a", "r8-b"]
    ids = [values(coverage_informations(a["resource"])[0], "coverage-assertion-id")[0] for a in actions]
    assert len(set(ids)) == 2


def test_a_device_request_coded_for_the_policy_matches(cds):
    device = {"resourceType": "DeviceRequest", "id": "dev-1", "status": "draft", "intent": "original-order",
              "codeCodeableConcept": {"coding": [{"system": CPT, "code": "64568"}]},
              "subject": {"reference": "Patient/123"}}
    [action] = actions_of(hook(cds, minimal_request(device)))
    check_action(action, device)


def test_every_criterion_documented_asks_for_no_documentation(cds):
    order = reactiv8_order()
    prefetch = {"patient": PATIENT, "coverage": searchset(COVERAGE),
                "questionnaireResponses": searchset(dtr(ALL_MET, day="2026-11-20"))}
    [action] = actions_of(hook(cds, minimal_request(order, prefetch=prefetch)))
    information = check_action(action, order)
    assert "13 of 13 criteria" in values(information, "reason")[0]["text"]
    for url in ("doc-needed", "doc-purpose", "questionnaire"):
        assert values(information, url) == []


def test_real_observations_in_prefetch_are_evaluated_and_cited(cds, database):
    """The real NRS Observation (valueInteger 7) of shared/fhir-examples, in prefetch for its
    patient: the stored evaluation reads it and its evidence names the resource."""
    nrs = example("fhirems_Observation-ex-ems-pain-score.json")
    patient_id = nrs["subject"]["reference"].split("/")[1]
    patient = {**PATIENT, "id": patient_id}
    prefetch = {"patient": patient, "coverage": searchset(COVERAGE), "observations": searchset(nrs)}
    body = minimal_request(reactiv8_order(patient=patient_id), prefetch=prefetch)
    body["context"]["patientId"] = patient_id
    [action] = actions_of(hook(cds, body))
    [assertion_id] = values(check_action(action, reactiv8_order(patient=patient_id)), "coverage-assertion-id")
    stored = json.loads(get_evaluation_result(database, EVERY_ORGANIZATION, assertion_id))
    evidence = {e["field"]: e for c in stored["criteria"] for e in c["evidence"]}
    assert evidence["low_back_pain.nrs"]["value"] == 7
    assert evidence["low_back_pain.nrs"]["source"]["reference"] == f"Observation/{nrs['id']}"
    assert evidence["patient.age_years"]["source"]["reference"] == f"Patient/{patient_id}"


def test_a_prefetched_patient_other_than_the_context_s_is_refused(cds, database):
    body = minimal_request(reactiv8_order(), prefetch={"patient": {**PATIENT, "id": "someone-else"},
                                                       "coverage": searchset(COVERAGE)})
    assert outcome_of(hook(cds, body), 400)["issue"][0]["expression"] == ["prefetch.patient"]
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []


def test_data_about_another_patient_is_refused(cds, database):
    prefetch = {"patient": PATIENT, "coverage": searchset(COVERAGE),
                "observations": searchset(example("fhirems_Observation-ex-ems-pain-score.json"))}
    body = minimal_request(reactiv8_order(), prefetch=prefetch)
    outcome = outcome_of(hook(cds, body), 400)
    assert outcome["issue"][0]["expression"] == ["Observation.subject.reference"]
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []


def test_a_criterion_not_met_is_named_in_the_reason(cds):
    order = reactiv8_order()
    answers = {**ALL_MET, "low_back_pain.nrs": 3}
    prefetch = {"patient": PATIENT, "coverage": searchset(COVERAGE),
                "questionnaireResponses": searchset(dtr(answers))}
    [action] = actions_of(hook(cds, minimal_request(order, prefetch=prefetch)))
    reason = values(check_action(action, order), "reason")[0]["text"]
    assert "12 of 13" in reason and "not met: Severe pain" in reason
    assert values(coverage_informations(action["resource"])[0], "covered") == ["conditional"]


def test_order_select_never_asks_for_documentation(cds):
    order = reactiv8_order()
    [action] = actions_of(hook(cds, minimal_request(order, hook_name="order-select"), SELECT))
    information = check_action(action, order)
    assert values(information, "doc-needed") == [] and values(information, "questionnaire") == []


def test_order_select_answers_only_for_selected_orders(cds):
    body = minimal_request(reactiv8_order("r8-a"), reactiv8_order("r8-b"), hook_name="order-select")
    body["context"]["selections"] = ["ServiceRequest/r8-b"]
    assert [a["resource"]["id"] for a in actions_of(hook(cds, body, SELECT))] == ["r8-b"]


def test_signing_again_an_order_that_carries_its_coverage_information_gets_no_update(cds, database):
    """CRD resp-35: no update unless something changed (issue 17, 6); nothing is stored either."""
    order = reactiv8_order()
    first = actions_of(hook(cds, minimal_request(order)))[0]["resource"]
    again = minimal_request(first)
    answer = hook(cds, again)
    assert answer.json() == {"cards": [], "systemActions": []}
    assert list_evaluation_results(database, EVERY_ORGANIZATION, again["hookInstance"]).results == []


def test_coverage_information_that_changed_replaces_the_one_the_order_carries(cds):
    first = actions_of(hook(cds, minimal_request(reactiv8_order())))[0]["resource"]
    prefetch = {"patient": PATIENT, "coverage": searchset(COVERAGE),
                "questionnaireResponses": searchset(dtr(ALL_MET, day="2026-11-20"))}
    [action] = actions_of(hook(cds, minimal_request(first, prefetch=prefetch)))
    information = check_action(action, first)
    assert "13 of 13" in values(information, "reason")[0]["text"]
    assert len(coverage_informations(action["resource"])) == 1


def test_coverage_information_for_another_coverage_is_kept_beside_the_new_one(cds):
    first = actions_of(hook(cds, minimal_request(reactiv8_order())))[0]["resource"]
    other = copy.deepcopy(first)
    for part in other["extension"][0]["extension"]:
        if part["url"] == "coverage":
            part["valueReference"] = {"reference": "Coverage/other-plan"}
        if part["url"] == "coverage-assertion-id":
            part["valueString"] = "other-payer-assertion"
    [action] = actions_of(hook(cds, minimal_request(other)))
    check_action(action, other)
    assert len(coverage_informations(action["resource"])) == 2
    assert assertion_ids_consistent(action["resource"])


def test_a_repeated_hook_instance_with_the_same_orders_stores_one_evaluation(cds, database):
    """Issue 17, 8: the same call again (a client's retry) gets the same answer, nothing new stored."""
    body = minimal_request(reactiv8_order())
    first, second = actions_of(hook(cds, body)), actions_of(hook(cds, body))
    assert first == second
    assert len(list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results) == 1
    # Another order under the same hookInstance is another evaluation.
    body["context"]["draftOrders"]["entry"].append({"resource": reactiv8_order("r8-second")})
    assert len(actions_of(hook(cds, body))) == 2
    assert len(list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results) == 2


def test_a_client_that_turns_coverage_information_off_gets_none(cds, database):
    body = minimal_request(reactiv8_order(), extension={"davinci-crd.configuration": {"coverage-info": False}})
    assert actions_of(hook(cds, body)) == []
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []


def test_the_wrong_hook_is_refused(cds):
    body = minimal_request(reactiv8_order(), hook_name="order-select")
    outcome = outcome_of(hook(cds, body, SIGN), 400)
    assert outcome["issue"][0]["expression"] == ["hook"]


@pytest.mark.parametrize("coverage", [None, searchset()], ids=["null", "empty"])
def test_no_coverage_is_no_coverage_information_and_no_error(cds, database, coverage):
    """Issue 17, 2: missing business data is not an HTTP error (CRD 2.2 found-32)."""
    body = minimal_request(reactiv8_order(), prefetch={"patient": PATIENT, "coverage": coverage})
    answer = hook(cds, body)
    assert answer.status_code == 200 and answer.json() == {"cards": [], "systemActions": []}
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []


def test_of_several_coverages_the_one_the_order_names_is_used(cds, database):
    second = {**COVERAGE, "id": "cov-2"}
    prefetch = {"patient": PATIENT, "coverage": searchset(COVERAGE, second)}
    body = minimal_request(reactiv8_order(), prefetch=prefetch)
    outcome = outcome_of(hook(cds, body), 400)
    assert outcome["issue"][0]["expression"] == ["prefetch.coverage"]
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []
    order = reactiv8_order(insurance=[{"reference": "Coverage/cov-2"}])
    [action] = actions_of(hook(cds, minimal_request(order, prefetch=prefetch)))
    assert values(check_action(action, order), "coverage") == [{"reference": "Coverage/cov-2"}]


def test_no_coverage_and_no_way_to_read_one_is_412(cds, database):
    """Issue 17, 1: CDS Hooks' 412 when required data can be neither prefetched nor read."""
    body = minimal_request(reactiv8_order(), prefetch={"patient": PATIENT})
    outcome = outcome_of(hook(cds, body), 412)
    assert outcome["issue"][0]["expression"] == ["prefetch.coverage"]
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []


@pytest.mark.parametrize("requested", ["1.1", "3.0", "2", "2.2.x", 2.2, ["2.2"], ""])
def test_a_crd_version_the_service_does_not_offer_is_an_error(cds, database, requested):
    """Issue 17, 4: CRD 2.2 says an unsupported requestedVersion SHALL get an error, not an answer."""
    body = minimal_request(reactiv8_order(), extension={"davinci-crd.requestedVersion": requested})
    outcome = outcome_of(hook(cds, body), 422)
    assert outcome["issue"][0]["expression"] == ["extension.davinci-crd.requestedVersion"]
    assert outcome["issue"][0]["code"] == "not-supported"
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []


@pytest.mark.parametrize("requested, category", [("2.2", True), ("2.2.1", True), ("2.1", False), ("2.0", False),
                                                 (None, False)])
def test_the_answer_has_the_shape_of_the_crd_version_asked_for(cds, requested, category):
    """Issue 17, 5: info-needed = OTH comes with a detail saying what is needed; CRD 2.2 wants a
    category in it, which 2.0.1 and 2.1 do not define."""
    extension = {} if requested is None else {"extension": {"davinci-crd.requestedVersion": requested}}
    order = reactiv8_order()
    [action] = actions_of(hook(cds, minimal_request(order, **extension)))
    information = check_action(action, order, requested or "2.1")
    [detail] = [p for p in information["extension"] if p["url"] == "detail"]
    inner = {p["url"]: p for p in detail["extension"]}
    assert ("category" in inner) is category
    assert inner["code"]["valueCodeableConcept"]["coding"] == [{"system": CRD_TEMP, "code": "instructions"}]
    assert "questionnaire" in inner["value"]["valueString"]


@pytest.mark.parametrize("mutate, where", [
    (lambda b: b.pop("context"), "context"),
    (lambda b: b["context"].pop("patientId"), "context.patientId"),
    (lambda b: b.update(hookInstance=""), "hookInstance"),
    (lambda b: b["context"].update(draftOrders={"resourceType": "Patient"}), "context.draftOrders"),
])
def test_a_malformed_request_gets_an_operation_outcome_naming_the_field(cds, mutate, where):
    body = minimal_request(reactiv8_order())
    mutate(body)
    outcome = outcome_of(hook(cds, body), 400)
    assert outcome["issue"][0]["expression"] == [where]


@pytest.mark.parametrize("content, where", [
    (b"{not json", None),
    (b'{"hook": "order-sign", "hook": "order-select"}', ["hook"]),
    (b"[" * 100_000, None),
])
def test_a_body_that_is_not_readable_json_is_refused(cds, content, where):
    path = f"/cds-services/{SIGN}"
    answer = cds.post(path, content=content, headers={**cds.signer.headers(path), "Content-Type": "application/json"})
    assert outcome_of(answer, 400)["issue"][0].get("expression") == where


def test_an_invalid_clinical_resource_is_refused_with_its_expression(cds, database):
    # An NRS of 15 recorded in the chart is refused; the same number as a questionnaire answer is
    # not read and named in the result (tests/test_dtr_responses.py), the other answers are read.
    bad = {"resourceType": "Observation", "id": "nrs-bad", "status": "final", "subject": {"reference": "Patient/123"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
           "effectiveDateTime": "2026-11-20", "valueInteger": 15}
    body = minimal_request(reactiv8_order(), prefetch={"patient": PATIENT, "coverage": searchset(COVERAGE),
                                                       "observations": searchset(bad)})
    outcome = outcome_of(hook(cds, body), 400)
    assert "nrs" in json.dumps(outcome)
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []


def test_a_hook_instance_that_cannot_be_an_external_id_is_refused(cds, database):
    body = minimal_request(reactiv8_order())
    body["hookInstance"] = "abc\u202edef"
    outcome = outcome_of(hook(cds, body), 400)
    assert outcome["issue"][0]["expression"] == ["hookInstance"]


def test_an_order_dated_before_the_policy_is_in_force_gets_no_answer(cds):
    order = reactiv8_order(occurrenceDateTime="2020-01-15")
    assert actions_of(hook(cds, minimal_request(order))) == []


def test_an_unknown_service_is_not_found(cds):
    assert hook(cds, minimal_request(reactiv8_order()), "no-such-service").status_code == 404


# --- the invariants are live ---------------------------------------------------------------------


def test_the_invariant_checks_catch_what_they_should():
    """A real answer from Inferno's kit breaks 2.0.1 q2 (no pa-needed); the IG's own 2.2.1 example
    keeps every 2.2 invariant; an indeterminate without a reason breaks 2.2 q9."""
    inferno = example("inferno-crd-testkit_coverage_info_system_action_conditional.json")
    [information] = coverage_informations(inferno["resource"])
    assert "q2" in violations(information, "2.0.1")
    ig = example("crd-ig-2.2.1_order-sign-response_systemaction-only.json")
    [information] = coverage_informations(ig["systemActions"][0]["resource"])
    assert violations(information, "2.2") == []
    broken = copy.deepcopy(information)
    broken["extension"] = [e for e in broken["extension"] if e["url"] != "reason"]
    for part in broken["extension"]:
        if part["url"] == "covered":
            part["valueCode"] = "indeterminate"
    assert "q9" in violations(broken, "2.2")


# --- feedback ------------------------------------------------------------------------------------


def test_feedback_is_stored(cds, database):
    from service.cds.store import list_feedback

    path = f"/cds-services/{SIGN}/feedback"
    item = {"card": "9368d37b-283f-44a0-93ea-547cebab93ed", "outcome": "overridden",
            "overrideReason": {"reason": {"code": "reason-code-provided-by-service", "system": "http://example.org/cds-services/fhir/CodeSystem/override-reasons"},
                               "userComment": "Clinician comment"},
            "outcomeTimestamp": "2026-11-22T14:33:44Z"}
    answer = cds.post(path, json={"feedback": [item]}, headers=cds.signer.headers(path))
    assert answer.status_code == 200, answer.text
    [stored] = list_feedback(database, SIGN)
    assert {k: v for k, v in stored.items() if k != "client"} == item
    assert stored["client"].startswith("cds")


@pytest.mark.parametrize("body", [{"feedback": [{"card": "x", "outcome": "ignored", "outcomeTimestamp": "t"}]},
                                  {"feedback": []}, {"nothing": 1}])
def test_bad_feedback_is_refused_and_not_stored(cds, database, body):
    from service.cds.store import list_feedback

    path = f"/cds-services/{SIGN}/feedback"
    outcome_of(cds.post(path, json=body, headers=cds.signer.headers(path)), 400)
    assert list_feedback(database, SIGN) == []
