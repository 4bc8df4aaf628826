"""Every request body of shared/crd-test-material (the Inferno Da Vinci CRD test kit's, the CRD
implementation guide's and the reference implementation's, as published and as adapted to
reach the ReActiv8 order; read in place) sent to the service, each answer held to the rules of
the Inferno CRD server tests, CDS Hooks 2.0 and CRD 2.0.1 / 2.1 / 2.2 (tests/crd_conformance.py),
on SQLite and PostgreSQL. docs/cds-hooks.md has the table of rules, sources and tests."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from cds_client import PUBLIC_URL, SELECT, SIGN, FhirServer, Signer, dead_url, unsigned_token
from cds_support import cds, cds_service, signer  # noqa: F401 (fixtures)
from crd_conformance import card_problems, discovery_problems, response_problems, update_problems
from crd_invariants import coverage_informations, values
from service.cds.coverage_information import CRD_TEMP
from api_fixtures import EVERY_ORGANIZATION
from service.store.evaluations import list_evaluation_results
from service.store.keys import create_key

MATERIAL = Path(__file__).resolve().parents[1].parent / "shared" / "crd-test-material"
TOKEN = "SAMPLE_TOKEN"  # the Inferno preset's fhirAuthorization


def material(name: str) -> dict[str, Any]:
    path = MATERIAL / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (shared/crd-test-material is not beside the checkout)")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def loopback():
    """{{LOOPBACK_FHIR}}: serves the Inferno fixture's Patient pat015 and Coverage cov015, empty
    searchsets otherwise, and records every request."""
    prefetch = material("adapted/a01_inferno_order-sign_devicerequest_cpt64568.json")["prefetch"]
    [coverage] = [e["resource"] for e in prefetch["coverage"]["entry"]]
    with FhirServer([prefetch["patient"], coverage], TOKEN, base_path="/r4") as server:
        yield server


@pytest.fixture
def dead() -> str:
    return dead_url("/r4")


@pytest.fixture
def fhir_servers(loopback, dead) -> list[str]:
    return [loopback.url, dead]


def inferno_token(signer: Signer, path: str, jku: str = "http://127.0.0.1:9/jwks.json", **claims: Any) -> str:
    """A token as the Inferno kit builds it (jwt_helper.rb): typ, kid and a jku header (never
    fetched: keys come from the clients file), ``aud`` as a list, plus ``tenant`` and ``sub``."""
    payload = signer.claims(path, **claims)
    payload["aud"] = [payload["aud"]] if isinstance(payload["aud"], str) else payload["aud"]
    payload.update(tenant="inferno", sub="inferno-crd-client")
    return jwt.encode(payload, signer.private, algorithm=signer.algorithm,
                      headers={"kid": signer.kid, "typ": "JWT", "jku": jku})


def send(cds: TestClient, body: dict, service: str):
    path = f"/cds-services/{service}"
    return cds.post(path, json=body, headers={"Authorization": f"Bearer {inferno_token(cds.signer, path)}"})


def prepared(name: str, loopback: FhirServer, dead: str) -> dict[str, Any]:
    """A body of the material, placeholders filled in; an adapted one gets a fresh hookInstance."""
    text = json.dumps(material(name)).replace("{{LOOPBACK_FHIR}}", loopback.url).replace("{{DEAD_FHIR}}", dead)
    body = json.loads(text)
    if name.startswith("adapted/"):
        body["hookInstance"] = str(uuid.uuid4())
    return body


def version_of(body: dict) -> str:
    return (body.get("extension") or {}).get("davinci-crd.requestedVersion") or "2.1"


def given_coverages(body: dict, loopback: FhirServer) -> set[str]:
    found = {f"Coverage/{r['id']}" for r in loopback.resources if r["resourceType"] == "Coverage"}
    coverage = (body.get("prefetch") or {}).get("coverage") or {}
    return found | {f"Coverage/{e['resource']['id']}" for e in coverage.get("entry", [])}


def checked_200(answer, body: dict, loopback: FhirServer) -> list[dict]:
    """Every rule a 200 is held to; returns the coverage-information updates."""
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert response_problems(result, body["hook"]) == []
    updates = [a for a in result.get("systemActions", []) if coverage_informations(a.get("resource", {}))]
    for update in updates:
        assert update_problems(update, body, version_of(body), given_coverages(body, loopback)) == []
    return updates


# --- the checker checks itself first -----------------------------------------------------------------


def test_the_checker_accepts_the_kit_s_and_the_ig_s_own_valid_answers():
    cards = material("original/inferno-crd-test-kit_valid_cards.json")
    assert [p for card in cards for p in card_problems(card)] == []
    kit_answer = material("original/inferno-crd-test-kit_crd_authorization_hook_response.json")
    assert response_problems(kit_answer, "appointment-book") == []
    ig_answer = material("original/crd-ig-2.2.1_CRDServiceResponse2.json")
    assert response_problems(ig_answer, "order-select") == []
    for name in ("crd-ig-2.2.1_discovery_cds-services.json", "inferno-crd-testkit_discovery_cds-services.json"):
        path = MATERIAL.parent / "fhir-examples" / name
        if path.is_file():
            assert discovery_problems(json.loads(path.read_text())) == [], name


@pytest.mark.parametrize("change, problem", [
    (lambda c: c.update(summary="x" * 140), "140"),
    (lambda c: c.update(indicator="hard-stop"), "indicator"),
    (lambda c: c["source"].pop("label"), "label"),
    (lambda c: c["source"].pop("topic"), "topic"),
    (lambda c: c.update(links=[{"label": "l", "url": "u", "type": "absolute", "appContext": "{}"}]), "appContext"),
    (lambda c: c.update(suggestions=[{"label": "s", "actions": []}]), "selectionBehavior"),
])
def test_the_checker_refuses_what_the_kit_refuses(change, problem):
    card = copy.deepcopy(material("original/inferno-crd-test-kit_valid_cards.json")[0])
    change(card)
    assert any(problem in p for p in card_problems(card))


def test_the_checker_refuses_an_order_sign_answer_without_system_actions():
    assert response_problems({"cards": []}, "order-sign") == ["systemActions is required on order-sign (Inferno)"]
    assert response_problems({"cards": []}, "order-select") == []


# --- discovery ------------------------------------------------------------------------------------


def test_discovery_passes_the_kit_s_checks_and_uses_only_cds_hooks_2_tokens(cds):
    document = cds.get("/cds-services").json()
    assert discovery_problems(document, simple_tokens_only=True) == []
    assert {s["hook"] for s in document["services"]} == {"order-sign", "order-select"}
    for service in document["services"]:
        assert service["extension"]["davinci-crd.version"] == ["2.0", "2.1", "2.2"]


def test_discovery_with_a_jwt_is_answered_too(cds):
    headers = {"Authorization": f"Bearer {inferno_token(cds.signer, '/cds-services')}"}
    assert cds.get("/cds-services", headers=headers).status_code == 200


# --- the unchanged bodies: answered before anything is read --------------------------------------------

UNCHANGED = [
    ("extracted/inferno_order-sign_1_DeviceRequest-devreq-015-e0250.json", SIGN),
    ("extracted/inferno_order-sign_2_ServiceRequest-servreq-g0180-1.json", SIGN),
    ("extracted/inferno_order-select_1_MedicationRequest-pat015-mr-azathioprine.json", SELECT),
    ("extracted/inferno_order-select_2_MedicationRequest-pat015-mr-methotrexate.json", SELECT),
    ("original/crd-ig-2.1.0_CRDServiceRequest2.json", SIGN),
    ("original/crd-ri_requestWithHydratedPrefetchBundle.json", SIGN),
]


@pytest.mark.parametrize("name, service", UNCHANGED)
def test_unchanged_bodies_get_no_coverage_information_and_nothing_is_read(cds, database, loopback, dead, name,
                                                                           service):
    body = prepared(name, loopback, dead)
    answer = send(cds, body, service)
    assert checked_200(answer, body, loopback) == []
    assert answer.json() == {"cards": [], "systemActions": []}
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []
    assert loopback.requests == []


def test_an_appointment_book_body_sent_to_the_order_sign_service_is_a_4xx(cds, loopback, dead):
    body = prepared("original/crd-ig-2.2.1_CRDServiceRequest4.json", loopback, dead)
    answer = send(cds, body, SIGN)
    assert 400 <= answer.status_code < 500 and answer.json()["resourceType"] == "OperationOutcome"


# --- the adapted bodies: the ReActiv8 order ---------------------------------------------------------------


def test_a01_device_request_gets_coverage_information_and_only_the_left_out_templates_are_read(
        cds, database, loopback, dead):
    body = prepared("adapted/a01_inferno_order-sign_devicerequest_cpt64568.json", loopback, dead)
    [update] = checked_200(send(cds, body, SIGN), body, loopback)
    assert update["resource"]["id"] == "devreq-015-e0250"
    [information] = coverage_informations(update["resource"])
    assert values(information, "coverage") == [{"reference": "Coverage/cov015"}]
    templates = cds.get("/cds-services").json()["services"][0]["prefetch"]
    expected = {"/r4/" + t.replace("{{context.patientId}}", "pat015")
                for key, t in templates.items() if key not in body["prefetch"]}
    assert {path for path, _ in loopback.requests} == expected
    assert {auth for _, auth in loopback.requests} == {f"Bearer {TOKEN}"}
    [stored] = list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results
    assert json.loads(stored)["evaluation_id"] == values(information, "coverage-assertion-id")[0]


def test_a02_an_order_dated_before_the_policy_gets_a_well_formed_answer(cds, loopback, dead):
    body = prepared("adapted/a02_inferno_order-sign_servicerequest_cpt64568_dated-2017.json", loopback, dead)
    assert checked_200(send(cds, body, SIGN), body, loopback) == []  # ISASS 2023 is in force from 2023-10-01


def test_a03_service_request_then_a12_signed_again_with_its_information_gets_no_update(
        cds, database, loopback, dead, client_questionnaire):
    body = prepared("adapted/a03_inferno_order-sign_servicerequest_cpt64568.json", loopback, dead)
    [update] = checked_200(send(cds, body, SIGN), body, loopback)
    assert update["resource"]["id"] == "servreq-g0180-1"
    [information] = coverage_informations(update["resource"])
    # resp-38: the documentation asked for comes with a questionnaire that resolves, with that url
    [canonical] = values(information, "questionnaire")
    questionnaire = client_questionnaire(canonical)
    assert questionnaire["resourceType"] == "Questionnaire" and questionnaire["url"] == canonical
    # "a12": the same order signed again, carrying what it was given: nothing new (CRD resp-35)
    again = copy.deepcopy(body)
    again["hookInstance"] = str(uuid.uuid4())
    again["context"]["draftOrders"]["entry"][0]["resource"] = update["resource"]
    answer = send(cds, again, SIGN)
    assert checked_200(answer, again, loopback) == []
    assert answer.json()["systemActions"] == []


def test_a04_order_select_updates_the_selected_service_request_without_asking_for_documentation(
        cds, loopback, dead):
    body = prepared("adapted/a04_inferno_order-select_medicationrequest_plus_selected_servicerequest_cpt64568.json",
                    loopback, dead)
    [update] = checked_200(send(cds, body, SELECT), body, loopback)
    assert update["resource"]["resourceType"] == "ServiceRequest"
    assert values(coverage_informations(update["resource"])[0], "doc-needed") == []


@pytest.mark.parametrize("name, service", [
    ("adapted/a05_inferno_order-select_servicerequest_cpt64568_not_selected.json", SELECT),  # hook-34
    ("adapted/a06_inferno_order-sign_servicerequest_cpt64568_config_coverage-info-false.json", SIGN),  # dev-14
    ("adapted/a11_inferno_order-sign_devicerequest_cpt64568_coverage-null.json", SIGN),  # found-32
])
def test_bodies_that_must_get_no_coverage_information(cds, database, loopback, dead, name, service):
    body = prepared(name, loopback, dead)
    assert checked_200(send(cds, body, service), body, loopback) == []
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []


def test_a07_crd_2_2_with_the_fhir_server_down_is_indeterminate_for_a_technical_reason(cds, database, loopback, dead):
    body = prepared("adapted/a07_inferno_order-sign_servicerequest_cpt64568_crd-2.2_fhir-server-down.json",
                    loopback, dead)
    [update] = checked_200(send(cds, body, SIGN), body, loopback)
    [information] = coverage_informations(update["resource"])
    assert values(information, "covered") == ["indeterminate"]
    [reason] = values(information, "reason")
    assert reason["coding"] == [{"system": CRD_TEMP, "code": "technical"}]  # resp-43, 2.2's CodeSystem/temp
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []


def test_a08_a_requested_version_not_offered_is_an_error(cds, database, loopback, dead):
    body = prepared("adapted/a08_inferno_order-sign_servicerequest_cpt64568_requested-version-1.1.json",
                    loopback, dead)
    answer = send(cds, body, SIGN)
    assert 400 <= answer.status_code < 500
    assert answer.json()["issue"][0]["expression"] == ["extension.davinci-crd.requestedVersion"]
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == [] and loopback.requests == []


def test_a09_no_coverage_prefetched_and_no_token_is_412(cds, loopback, dead):
    body = prepared("adapted/a09_crd-ri_order-sign_devicerequest_cpt64568_no-coverage-no-token.json", loopback, dead)
    answer = send(cds, body, SIGN)
    assert answer.status_code == 412
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_a10_coverage_is_searched_on_the_fhir_server(cds, loopback, dead):
    body = prepared("adapted/a10_inferno_order-sign_devicerequest_cpt64568_coverage-from-fhir-server.json",
                    loopback, dead)
    [update] = checked_200(send(cds, body, SIGN), body, loopback)
    assert values(coverage_informations(update["resource"])[0], "coverage") == [{"reference": "Coverage/cov015"}]
    assert ("/r4/Coverage?patient=pat015&status=active", f"Bearer {TOKEN}") in loopback.requests


REPEATABLE = ["adapted/a01_inferno_order-sign_devicerequest_cpt64568.json",
              "adapted/a03_inferno_order-sign_servicerequest_cpt64568.json",
              "adapted/a04_inferno_order-select_medicationrequest_plus_selected_servicerequest_cpt64568.json",
              "adapted/a10_inferno_order-sign_devicerequest_cpt64568_coverage-from-fhir-server.json"]


@pytest.mark.parametrize("name", REPEATABLE)
def test_every_answer_with_coverage_information_repeated_with_coverage_info_false_has_none(
        cds, loopback, dead, name):
    """Inferno's coverage_info_configuration_test: the request repeated with a fresh hookInstance
    and ``davinci-crd.configuration.coverage-info = false``: 200, no coverage information."""
    service = SELECT if "order-select" in name else SIGN
    body = prepared(name, loopback, dead)
    assert checked_200(send(cds, body, service), body, loopback)
    body["hookInstance"] = str(uuid.uuid4())
    body.setdefault("extension", {}).setdefault("davinci-crd.configuration", {})["coverage-info"] = False
    assert checked_200(send(cds, body, service), body, loopback) == []


def test_a_repeated_hook_instance_is_answered_again_from_the_one_evaluation(cds, database, loopback, dead):
    body = prepared("adapted/a03_inferno_order-sign_servicerequest_cpt64568.json", loopback, dead)
    first, second = send(cds, body, SIGN).json(), send(cds, body, SIGN).json()
    assert first == second
    assert len(list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results) == 1


# --- client tokens as the kit sends them -----------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ES384", "RS384"])
def test_inferno_shaped_tokens_are_admitted_and_their_jku_is_never_fetched(database, evaluator, tmp_path, loopback,
                                                                           algorithm):
    kit = Signer(algorithm)
    with cds_service(database, evaluator, tmp_path, kit, [loopback.url]) as client:
        path = f"/cds-services/{SIGN}"
        body = {"hook": "order-sign", "hookInstance": str(uuid.uuid4()),
                "context": {"patientId": "pat015", "draftOrders": {"resourceType": "Bundle", "entry": []}}}
        jku = f"{loopback.url}/jwks.json"  # a server that records every request
        token = inferno_token(kit, path, jku)
        assert client.post(path, json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        # A key offered by jku but not registered: refused, and the jku is not fetched either.
        stranger = Signer(algorithm, issuer=kit.issuer)
        token = inferno_token(stranger, path, jku)
        assert client.post(path, json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert loopback.requests == []


@pytest.mark.parametrize("forge", ["none", "HS384", "wrong-aud", "expired", "replayed"])
def test_tokens_the_kit_expects_refused_are_refused(cds, forge):
    path = f"/cds-services/{SIGN}"
    body = {"hook": "order-sign", "hookInstance": str(uuid.uuid4()),
            "context": {"patientId": "pat015", "draftOrders": {"resourceType": "Bundle", "entry": []}}}
    claims = cds.signer.claims(path)
    token = {
        "none": lambda: unsigned_token(claims, {"alg": "none", "typ": "JWT"}),
        "HS384": lambda: jwt.encode(claims, "a-shared-secret-of-sufficient-length-0123456789-abc", algorithm="HS384"),
        "wrong-aud": lambda: inferno_token(cds.signer, path, aud=f"{PUBLIC_URL}/cds-services/elsewhere"),
        "expired": lambda: inferno_token(cds.signer, path, iat=claims["iat"] - 400, exp=claims["iat"] - 100),
        "replayed": lambda: inferno_token(cds.signer, path, jti="used-once"),
    }[forge]()
    if forge == "replayed":
        assert cds.post(path, json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert cds.post(path, json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 401


@pytest.fixture
def client_questionnaire(cds, database):
    """Resolve a questionnaire canonical as a DTR client would: the public URL's path, fetched
    from the service behind its proxy prefix, with an intake key of the EHR's organization (the
    CDS client's: its iss; another organization's key would get a 404)."""
    _, secret = create_key(database, "intake", label="DTR client", organization=cds.signer.issuer)
    behind_proxy = TestClient(cds.app, base_url="https://payer.example", root_path="/criteria")

    def resolve(canonical: str) -> dict:
        assert canonical.startswith(PUBLIC_URL + "/")
        answer = behind_proxy.get("/criteria" + canonical[len(PUBLIC_URL):], headers={"X-API-Key": secret})
        assert answer.status_code == 200, answer.text
        return answer.json()

    return resolve
