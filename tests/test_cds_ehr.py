"""CDS Hooks without prefetch: the service reads the EHR's FHIR server (a real HTTP server on
loopback) with the call's token, inside the 5-second budget; slow, failing and refusing servers."""

from __future__ import annotations

import time
import uuid

import pytest

from cds_client import FhirServer, dead_url, reactiv8_order, searchset, with_order
from cds_support import (ALL_MET, COVERAGE, PATIENT, dtr, actions_of, cds, cds_service, check_action,  # noqa: F401
                         example, hook, outcome_of, signer)
from crd_invariants import coverage_informations, values
from api_fixtures import EVERY_ORGANIZATION
from service.store.evaluations import list_evaluation_results

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
TOKEN = "ehr-token"
BUDGET = 5.0


def ehr_resources() -> list[dict]:
    return [PATIENT, COVERAGE, dtr(ALL_MET, rid="qr-ehr")]


@pytest.fixture
def ehr():
    """The EHR's FHIR server on loopback, registered for the test client (with a dead one)."""
    with FhirServer(ehr_resources(), TOKEN) as server:
        yield server


@pytest.fixture
def dead():
    return dead_url()


@pytest.fixture
def fhir_servers(ehr, dead) -> list[str]:
    return [ehr.url, dead]


def request(fhir_server: str, *, prefetch: dict | None = None, version: str | None = None, token: str = TOKEN) -> dict:
    body = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_server,
        "fhirAuthorization": {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                              "scope": "user/Patient.read", "subject": "cds-service"},
        "context": {"userId": "Practitioner/1", "patientId": "123",
                    "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": reactiv8_order()}]}},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    if version:
        body["extension"] = {"davinci-crd.requestedVersion": version}
    return body


def timed(cds, body):
    started = time.monotonic()
    answer = hook(cds, body)
    return answer, time.monotonic() - started


def test_without_prefetch_everything_is_read_from_the_ehr_with_its_token(cds, database, ehr):
    body = request(ehr.url)
    [action] = actions_of(hook(cds, body))
    information = check_action(action, reactiv8_order())
    assert "13 of 13 criteria" in values(information, "reason")[0]["text"]
    assert values(information, "coverage") == [{"reference": "Coverage/cov-1"}]
    assert {auth for _, auth in ehr.requests} == {f"Bearer {TOKEN}"}
    paths = {path for path, _ in ehr.requests}
    assert "/fhir/Patient/123" in paths
    assert "/fhir/Coverage?patient=123&status=active" in paths
    assert "/fhir/QuestionnaireResponse?patient=123" in paths
    assert any(p.startswith("/fhir/Observation?patient=123&code=") and "72514-3" in p for p in paths)
    assert len(list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results) == 1


def test_only_what_prefetch_lacks_is_read(cds, ehr):
    actions_of(hook(cds, request(ehr.url, prefetch={"patient": PATIENT, "coverage": searchset(COVERAGE),
                                                    "conditions": None})))
    asked = {path.split("?")[0] for path, _ in ehr.requests}
    assert asked == {"/fhir/Observation", "/fhir/Procedure", "/fhir/QuestionnaireResponse"}


def test_a_real_inferno_request_with_a_reactiv8_order_reads_the_ehr(cds, ehr):
    ehr.token = "SAMPLE_TOKEN"
    body = with_order(example("inferno-crd-testkit_order_sign_hook_request.json"),
                      reactiv8_order(patient="123"), fhir_server=ehr.url)
    body["context"]["patientId"] = "123"
    [action] = actions_of(hook(cds, body))
    check_action(action, body["context"]["draftOrders"]["entry"][-1]["resource"])
    assert ehr.requests


def test_a_search_answered_in_pages_is_read_to_the_end(cds, ehr):
    """Three DTR responses, one a page: the last one answers the NRS; all three pages are read."""
    first = dtr({k: v for k, v in ALL_MET.items() if k != "low_back_pain.nrs"}, rid="qr-a")
    later = [dtr({"low_back_pain.nrs": 2}, rid="qr-b", day="2026-11-21"),
             dtr({"low_back_pain.nrs": 8}, rid="qr-c", day="2026-11-22")]
    ehr.resources, ehr.page_size = [PATIENT, COVERAGE, first, *later], 1
    [action] = actions_of(hook(cds, request(ehr.url)))
    assert "13 of 13" in values(coverage_informations(action["resource"])[0], "reason")[0]["text"]
    assert sum("QuestionnaireResponse" in path for path, _ in ehr.requests) == 3


def test_a_slow_ehr_is_still_read_within_the_budget(cds, ehr):
    ehr.delay = 1.5  # each of the six reads; they run side by side
    answer, elapsed = timed(cds, request(ehr.url))
    [action] = actions_of(answer)
    assert "13 of 13" in values(coverage_informations(action["resource"])[0], "reason")[0]["text"]
    assert 1.5 <= elapsed < BUDGET


@pytest.mark.parametrize("version, expected", [("2.2", 200), ("2.1", 503), (None, 503)])
def test_an_ehr_too_slow_for_the_budget_is_a_technical_failure(cds, database, ehr, version, expected):
    ehr.delay = 8
    body = request(ehr.url, prefetch={"coverage": searchset(COVERAGE)}, version=version)
    answer, elapsed = timed(cds, body)
    assert elapsed < BUDGET
    check_failure(answer, expected, "did not answer")
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []


@pytest.mark.parametrize("version, expected", [("2.2", 200), (None, 412)])
def test_an_ehr_refusing_the_token_is_answered(cds, ehr, version, expected):
    answer = hook(cds, request(ehr.url, prefetch={"coverage": searchset(COVERAGE)}, version=version,
                               token="expired-token"))
    check_failure(answer, expected, "refused the access token")


@pytest.mark.parametrize("version, expected", [("2.2", 200), (None, 503)])
def test_an_ehr_that_is_down_is_a_technical_failure(cds, dead, version, expected):
    answer = hook(cds, request(dead, prefetch={"coverage": searchset(COVERAGE)}, version=version))
    check_failure(answer, expected, "could not be reached")


def test_an_ehr_failing_with_500_is_a_technical_failure(cds, ehr):
    ehr.status = 500
    check_failure(hook(cds, request(ehr.url, prefetch={"coverage": searchset(COVERAGE)})), 503, "HTTP 500")


def test_without_the_coverage_a_technical_failure_is_an_error_for_every_client(cds, ehr):
    ehr.status = 503
    outcome_of(hook(cds, request(ehr.url, version="2.2")), 503)


def check_failure(answer, expected: int, words: str) -> None:
    if expected != 200:
        outcome = outcome_of(answer, expected)
        assert words in outcome["issue"][0]["diagnostics"]
        return
    [action] = actions_of(answer)
    information = check_action(action, reactiv8_order(), "2.2")
    assert values(information, "covered") == ["indeterminate"]
    assert values(information, "pa-needed") == ["indeterminate"]
    [reason] = values(information, "reason")
    # CRD 2.2 resp-43: the technical reason of 2.2's own code system (issue 17, 3)
    assert reason["coding"] == [{"system": "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp", "code": "technical"}]
    assert words in reason["text"]


@pytest.mark.parametrize("registered, reads", [
    ([], False), (["https://ehr.example/fhir"], False), ("{origin}/other", False), ("{origin}", True),
    ("{origin}/fhir", True), ("{origin}/fhir/", True)])
def test_a_client_reads_only_from_its_registered_fhir_servers(database, evaluator, tmp_path, signer, registered, reads):
    with FhirServer(ehr_resources(), TOKEN) as ehr:
        prefixes = [registered.format(origin=ehr.origin)] if isinstance(registered, str) else registered
        with cds_service(database, evaluator, tmp_path, signer, prefixes) as client:
            answer = hook(client, request(ehr.url))
    if reads:
        actions_of(answer)
        assert ehr.requests
    else:
        assert outcome_of(answer, 400)["issue"][0]["expression"] == ["fhirServer"]
        assert ehr.requests == []
