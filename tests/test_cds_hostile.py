"""Issue 16, CDS Hooks side: the hostile client's findings, one test (or a few) each, named after
the finding. The EHR is a real HTTP server on loopback; the service is the real app."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import tracemalloc
import uuid

import jwt
import pytest

from cds_client import ISSUER, SIGN, FhirServer, Signer, reactiv8_order, searchset
from cds_support import (ALL_MET, COVERAGE, PATIENT, actions_of, cds, cds_service, dtr,  # noqa: F401
                         hook, outcome_of, signer)
from crd_invariants import coverage_informations, values
from service.cds import hooks
from service.cds.auth import Client, ClientRegistry
from service.cds.discovery import services
from service.cds.request import MAX_ORDERS, parse_request
from service.cds.routes import DISCOVERY_PER_MINUTE, FEEDBACK_PER_MINUTE
from service.cds.store import list_feedback
from service.fhir.intake import case_from_resources
from api_fixtures import EVERY_ORGANIZATION
from service.store.evaluations import list_evaluation_results
from service.web.ratelimit import RateLimiter

PATH = f"/cds-services/{SIGN}"
TOKEN = "ehr-token"
OTHER_PATIENT = "someone-else"


@pytest.fixture
def ehr():
    with FhirServer([PATIENT, COVERAGE, dtr(ALL_MET, rid="qr-ehr")], TOKEN) as server:
        yield server


@pytest.fixture
def elsewhere():
    """Another server on the same host: never to be called with the EHR's token."""
    with FhirServer([PATIENT, COVERAGE], TOKEN, base_path="/admin") as server:
        yield server


@pytest.fixture
def fhir_servers(ehr) -> list[str]:
    return [ehr.url]


def call(fhir_server: str, *, prefetch: dict | None = None, version: str | None = None, patient: str = "123",
         orders: list[dict] | None = None) -> dict:
    body = {
        "hook": "order-sign", "hookInstance": str(uuid.uuid4()), "fhirServer": fhir_server,
        "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                              "scope": "user/*.read", "subject": "cds-service"},
        "context": {"userId": "Practitioner/1", "patientId": patient,
                    "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": o} for o in orders or [reactiv8_order(patient=patient)]]}},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    if version:
        body["extension"] = {"davinci-crd.requestedVersion": version}
    return body


def prefetched(prefetch: dict, **options) -> dict:
    """A call that gives no way to read the EHR: prefetch only."""
    body = call("http://127.0.0.1:1/fhir", prefetch=prefetch, **options)
    del body["fhirServer"], body["fhirAuthorization"]
    return body


def reason_of(answer) -> str:
    [action] = actions_of(answer)
    return values(coverage_informations(action["resource"])[-1], "reason")[0]["text"]


# --- 1. The FHIR-server allow-list was a string prefix ----------------------------------------------


@pytest.mark.parametrize("trick", [
    "{origin}@127.0.0.1:{other}/fhir",  # userinfo: the registered prefix as the user name
    "{origin}/fhir/../admin",
    "{origin}/fhirEVIL",
    "{origin}/fhir/%2e%2e/admin",
    "{origin}/fhir%2F..%2Fadmin",
    "{origin}/fhir/..\\admin",
    "http://127.0.0.1:{other}/fhir",  # the right path on another port
])
def test_f1_fhir_server_allow_list_is_matched_by_parsed_url_not_string_prefix(cds, ehr, elsewhere, trick):
    fhir_server = trick.format(origin=ehr.origin, other=elsewhere.origin.rsplit(":", 1)[1])
    answer = hook(cds, call(fhir_server))
    assert answer.status_code == 400, answer.text
    assert answer.json()["issue"][0]["expression"] == ["fhirServer"]
    assert ehr.requests == [] and elsewhere.requests == []


def test_f1_paging_links_leaving_the_registered_server_are_not_followed(cds, ehr, elsewhere):
    """A next link to another path of the same host (or another host) is refused, the EHR's token
    goes nowhere else, and the answer says which pages were not read."""
    ehr.resources = [PATIENT, COVERAGE, dtr({"low_back_pain.nrs": 7}, rid="qr-a"), dtr({}, rid="qr-b")]
    ehr.page_size = 1
    for target in (f"{elsewhere.url}/QuestionnaireResponse?patient=123&_page=1", f"{ehr.origin}/admin/x"):
        original = ehr.answer

        def answer(path, authorization, original=original, target=target):
            status, body = original(path, authorization)
            for link in body.get("link", []):
                link["url"] = target
            return status, body

        ehr.answer = answer
        text = reason_of(hook(cds, call(ehr.url)))
        assert "questionnaireResponses: a next page outside the registered FHIR server (not followed)" in text
        ehr.answer = original
    assert elsewhere.requests == []
    assert all(path.startswith("/fhir/") for path, _ in ehr.requests)


@pytest.mark.parametrize("fhir_server", ["http://[::1", "http://127.0.0.1:99999/fhir", "ftp://127.0.0.1/fhir",
                                         "not a url", "http:///fhir", "http://127.0.0.1/fhir#x", "x" * 3000])
def test_f6_a_malformed_fhir_server_is_a_4xx_naming_it(cds, database, fhir_server):
    body = call(fhir_server)
    outcome = outcome_of(hook(cds, body), 400)
    assert outcome["issue"][0]["expression"] == ["fhirServer"]
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []


# --- 4. Unbounded CDS work ----------------------------------------------------------------------------


def test_f4_six_hundred_orders_and_fifteen_hundred_observations_are_capped_and_said(cds, database):
    """Under 1 MiB, once 66 s of work: MAX_ORDERS orders are checked, a card names the others,
    the Observations over the cap are said in each reason. (Its time: bench/cds_hooks.py --hostile.)"""
    orders = [reactiv8_order(f"r8-{i}") for i in range(600)]
    observations = [{"resourceType": "Observation", "id": f"o{i}", "status": "final",
                     "subject": {"reference": "Patient/123"}, "effectiveDateTime": "2026-01-01",
                     "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]}, "valueInteger": i % 10}
                    for i in range(1500)]
    body = prefetched(orders=orders, prefetch={
        "patient": PATIENT, "coverage": searchset(COVERAGE), "observations": searchset(*observations),
        "conditions": None, "procedures": None, "questionnaireResponses": None})
    assert len(json.dumps(body)) < 1024 * 1024
    answer = hook(cds, body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert len(result["systemActions"]) == MAX_ORDERS
    [card] = result["cards"]
    assert card["summary"].startswith(f"{600 - MAX_ORDERS} orders of this policy not checked")
    assert len(card["summary"]) <= 140 and card["indicator"] == "info" and card["source"]["label"]
    assert "r8-20" in card["detail"] and "r8-599" not in card["detail"]  # ten named, then "and N more"
    text = values(coverage_informations(result["systemActions"][0]["resource"])[0], "reason")[0]["text"]
    assert "observations: resources after the first 1,000 (500 more)" in text
    assert len(list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"], limit=100).results) == MAX_ORDERS


def test_f4_the_five_second_budget_counts_from_the_call_and_leaves_late_orders_unchecked(database, evaluator):
    """When the budget is spent (here: the call arrived 4.9 s ago), no order is begun: they are
    named in a card, nothing is stored."""
    request = parse_request(prefetched({"patient": PATIENT, "coverage": searchset(COVERAGE)}))

    async def run_sync(function, *args):
        return function(*args)

    context = hooks.HookContext(
        public_url="https://payer.example", client=Client(ISSUER, ()), key_id="cds-test",
        started=time.monotonic() - 4.9,
        evaluate=lambda *a: pytest.fail("evaluated after the budget"),
        evaluate_and_store=lambda *a: pytest.fail("stored after the budget"),
        previous=lambda claim: None,
        map_case=lambda resources, day: case_from_resources(resources, evaluator.dictionary, service_date=day),
        run_sync=run_sync,
    )
    answer = asyncio.run(hooks.answer(request, services(evaluator.catalog)[SIGN], context))
    assert answer.body["systemActions"] == []
    [card] = answer.body["cards"]
    assert "ServiceRequest/reactiv8-1" in card["detail"]


def test_f4_feedback_is_rate_limited_per_client(cds, database):
    # The service's own limiter with a stopped clock: no refill while the test runs, however slowly.
    cds.app.state.cds.feedback_limiter = RateLimiter(FEEDBACK_PER_MINUTE, clock=lambda: 0.0)
    item = {"card": str(uuid.uuid4()), "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}],
            "outcomeTimestamp": "2026-12-05T10:00:00Z"}
    statuses = []
    for _ in range(FEEDBACK_PER_MINUTE + 2):
        path = f"{PATH}/feedback"
        statuses.append(cds.post(path, json={"feedback": [item]}, headers=cds.signer.headers(path)).status_code)
    assert statuses[:FEEDBACK_PER_MINUTE] == [200] * FEEDBACK_PER_MINUTE
    assert statuses[FEEDBACK_PER_MINUTE:] == [429, 429]
    assert len(list_feedback(database, SIGN)) == FEEDBACK_PER_MINUTE


def test_f4_feedback_has_a_size_limit(cds, database):
    item = {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-12-05T10:00:00Z",
            "overrideReason": {"userComment": "x" * 70_000}}
    path = f"{PATH}/feedback"
    answer = cds.post(path, json={"feedback": [item]}, headers=cds.signer.headers(path))
    assert outcome_of(answer, 413)["issue"][0]["code"] == "too-long"
    assert list_feedback(database, SIGN) == []


def test_f4_hooks_and_discovery_are_rate_limited_too(database, evaluator, tmp_path, signer):
    with cds_service(database, evaluator, tmp_path, signer, [], rate_limit_per_minute=3) as client:
        body = prefetched({"patient": PATIENT, "coverage": searchset(COVERAGE)})
        body["context"]["draftOrders"]["entry"] = []
        statuses = [hook(client, {**body, "hookInstance": str(uuid.uuid4())}).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        client.app.state.cds.discovery_limiter = RateLimiter(DISCOVERY_PER_MINUTE, clock=lambda: 0.0)
        discovery = [client.get("/cds-services").status_code for _ in range(DISCOVERY_PER_MINUTE + 1)]
        assert discovery == [200] * DISCOVERY_PER_MINUTE + [429]


# --- 5. EHR answers had no size cap; deep JSON gave a 500 ----------------------------------------------


def test_f5_a_150_mib_ehr_answer_is_cut_off_without_holding_it(cds, ehr):
    """The Observation search answers 150 MiB: the service stops reading at 2 MiB, says so, and
    answers with what it has; Python's allocations stay far below 100 MiB."""
    def huge(path):
        if not path.startswith("/fhir/Observation"):
            return None
        chunk = b" " * (1024 * 1024)
        return 200, {}, (chunk for _ in range(150))  # no Content-Length: the cut is the service's own

    ehr.raw = huge
    tracemalloc.start()
    try:
        answer = hook(cds, call(ehr.url))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "observations: the EHR's answer was over 2 MiB" in reason_of(answer)
    assert peak < 100 * 1024 * 1024, peak


def test_f5_all_ehr_answers_of_one_call_together_are_capped(cds, ehr):
    """Every search answers 1.9 MiB a page (under the cap for one answer) and the Observations
    have a second page: past 8 MiB for the call the rest is cut, and said."""
    def padded(link: str | None = None) -> bytes:
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [], "padding": "x" * int(1.9 * 1024 * 1024)}
        if link:
            bundle["link"] = [{"relation": "next", "url": link}]
        return json.dumps(bundle).encode()

    def answer(path: str):
        if path.startswith("/fhir/Observation?") and "_page=2" not in path:
            return 200, {}, [padded(f"{ehr.url}/Observation?patient=123&_page=2")]
        if any(path.startswith(f"/fhir/{kind}?") for kind in ("Observation", "Condition", "Procedure",
                                                               "QuestionnaireResponse")):
            return 200, {}, [padded()]
        return None

    ehr.raw = answer
    prefetch = {"patient": PATIENT, "coverage": searchset(COVERAGE)}
    text = reason_of(hook(cds, call(ehr.url, prefetch=prefetch)))
    assert "observations: pages after the first, over the 8 MiB one call reads" in text
    assert sum("_page=2" in path for path, _ in ehr.requests) == 1


def test_f5_a_declared_length_over_the_cap_is_not_read_at_all(cds, ehr):
    ehr.raw = lambda path: (200, {"Content-Length": str(150 * 1024 * 1024)}, [b"{}"]) if "Procedure" in path else None
    assert "procedures: the EHR's answer was over 2 MiB" in reason_of(hook(cds, call(ehr.url)))


@pytest.mark.parametrize("depth", [100, 5000])
@pytest.mark.parametrize("version, status", [("2.2", 200), (None, 503)])
def test_f5_deeply_nested_json_from_the_ehr_is_a_technical_failure_not_a_500(cds, ehr, depth, version, status):
    nested = b'{"resourceType": "Bundle", "entry": ' + b"[" * depth + b"]" * depth + b"}"
    ehr.raw = lambda path: (200, {"Content-Length": str(len(nested))}, [nested]) if "Condition" in path else None
    answer = hook(cds, call(ehr.url, prefetch={"coverage": searchset(COVERAGE)}, version=version))
    assert answer.status_code == status, answer.text
    if status == 200:
        [action] = actions_of(answer)
        assert values(coverage_informations(action["resource"])[0], "covered") == ["indeterminate"]


def test_f5_a_compressed_answer_is_refused_not_expanded(cds, ehr):
    ehr.raw = lambda path: (200, {"Content-Encoding": "gzip", "Content-Length": "2"}, [b"{}"]) if "Patient" in path else None
    outcome = outcome_of(hook(cds, call(ehr.url, prefetch={"coverage": searchset(COVERAGE)})), 503)
    assert "compressed" in outcome["issue"][0]["diagnostics"]


def test_f5_a_deeply_nested_hook_body_is_a_400(cds):
    body = call("http://127.0.0.1:1/fhir")
    body["context"]["draftOrders"]["entry"][0]["resource"]["note"] = json.loads("[" * 500 + "]" * 500)
    outcome = outcome_of(hook(cds, body), 400)
    assert "nested" in outcome["issue"][0]["diagnostics"]


# --- 6. 500s for malformed tokens ----------------------------------------------------------------------


@pytest.mark.parametrize("exp", ["9999999999", "soon", None, True, [1], 1e400])
def test_f6_a_jwt_whose_exp_is_not_a_number_is_401(cds, signer, exp):
    claims = signer.claims(PATH, exp=exp)
    if exp is None:
        claims["exp"] = None
    token = jwt.encode(claims, signer.private, algorithm="ES384", headers={"kid": signer.kid, "typ": "JWT"})
    answer = cds.post(PATH, json={}, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401, answer.text


@pytest.mark.parametrize("header", [b"Bearer \xc3\xa9t\xc3\xa9", b"Bearer abc.d\xe9f.ghi", b"Bearer " + b"a" * 9000,
                                    b"Bearer a.b", b"Bearer \x7f.\x7f.\x7f"])
def test_f6_a_non_ascii_or_malformed_bearer_token_is_401(cds, header):
    answer = cds.post(PATH, json={}, headers={"Authorization": header})
    assert answer.status_code == 401, answer.text


@pytest.mark.parametrize("token", ["tok\u00e9n", "two words", "x" * 5000])
def test_f6_an_ehr_access_token_that_cannot_be_a_header_is_a_400(cds, ehr, token):
    body = call(ehr.url)
    body["fhirAuthorization"]["access_token"] = token
    outcome = outcome_of(hook(cds, body), 400)
    assert outcome["issue"][0]["expression"] == ["fhirAuthorization.access_token"]
    assert ehr.requests == []


def test_f6_an_order_dated_at_the_edge_of_the_calendar_is_answered(cds):
    order = reactiv8_order(occurrenceDateTime="0001-01-01T00:00:00+14:00")
    body = prefetched({"patient": None, "coverage": searchset(COVERAGE)}, orders=[order])
    assert actions_of(hook(cds, body)) == []  # no version of the policy is in force in the year 1
    body = prefetched({"patient": PATIENT, "coverage": searchset(COVERAGE)}, orders=[order])
    assert outcome_of(hook(cds, body), 400)["issue"][0]["expression"] == ["Patient.birthDate"]


def test_f6_an_observation_dated_at_the_edge_of_the_calendar_is_a_4xx_or_read(cds):
    nrs = {**observation("o1", "123"), "effectiveDateTime": "0001-01-01T00:00:00+14:00"}
    body = prefetched({"patient": PATIENT, "coverage": searchset(COVERAGE), "observations": searchset(nrs)})
    answer = hook(cds, body)
    assert answer.status_code == 200 or (400 <= answer.status_code < 500
                                         and answer.json()["resourceType"] == "OperationOutcome")


# --- 7. JWT checks looser than documented ----------------------------------------------------------------


def test_f7_a_token_issued_30_days_ago_is_refused(cds, signer):
    now = int(time.time())
    answer = cds.post(PATH, json={}, headers=signer.headers(PATH, iat=now - 30 * 86400, exp=now + 60))
    assert answer.status_code == 401
    assert "issued more than 300 seconds ago" in answer.json()["detail"]


@pytest.mark.parametrize("audience, status", [
    (["{endpoint}"], 200),  # the Inferno kit's shape
    (["{endpoint}", "https://other.example/cds-services/x"], 401),
    (["https://other.example/cds-services/x"], 401),
    ([], 401),
])
def test_f7_an_aud_list_must_name_only_this_endpoint(cds, signer, audience, status):
    endpoint = f"https://payer.example/criteria{PATH}"
    body = prefetched({})
    body["context"]["draftOrders"]["entry"] = []
    aud = [a.format(endpoint=endpoint) for a in audience]
    assert hook_with(cds, body, signer.token(PATH, aud=aud)).status_code == status


def hook_with(cds, body: dict, token: str):
    return cds.post(PATH, json=body, headers={"Authorization": f"Bearer {token}"})


# --- 8. Two patients merged into one case ----------------------------------------------------------------


def observation(rid: str, patient: str | None) -> dict:
    found = {"resourceType": "Observation", "id": rid, "status": "final", "effectiveDateTime": "2026-01-01",
             "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]}, "valueInteger": 8}
    if patient is not None:
        found["subject"] = {"reference": f"Patient/{patient}"}
    return found


@pytest.mark.parametrize("patient, observations, where", [
    (None, [observation("o1", "123"), observation("o2", OTHER_PATIENT)], "Observation.subject.reference"),
    (None, [observation("o1", None)], "Observation.subject"),
    (PATIENT, [observation("o1", None)], "Observation.subject"),
    ({"resourceType": "Patient", "birthDate": "1950-01-01"}, [], "prefetch.patient"),
    (searchset(PATIENT, {**PATIENT, "id": OTHER_PATIENT}), [], "prefetch.patient"),
])
def test_f8_one_patient_per_call_even_without_ids_or_a_prefetched_patient(cds, database, patient, observations,
                                                                            where):
    body = prefetched({"patient": patient, "coverage": searchset(COVERAGE), "observations": searchset(*observations)})
    outcome = outcome_of(hook(cds, body), 400)
    assert outcome["issue"][0]["expression"] == [where]
    assert list_evaluation_results(database, EVERY_ORGANIZATION, body["hookInstance"]).results == []


def test_f8_an_order_about_another_patient_is_refused(cds):
    body = prefetched({"patient": PATIENT, "coverage": searchset(COVERAGE)}, orders=[reactiv8_order(patient=OTHER_PATIENT)])
    assert outcome_of(hook(cds, body), 400)["issue"][0]["expression"] == ["context.draftOrders"]


# --- 10. Patient ids in httpx's log lines ------------------------------------------------------------


def test_f10_no_log_line_carries_the_patient_id_at_any_level(cds, ehr, caplog):
    patient = "pat-secret-4711"
    ehr.resources = [{**PATIENT, "id": patient}, {**COVERAGE, "beneficiary": {"reference": f"Patient/{patient}"}}]
    with caplog.at_level(logging.DEBUG):
        answer = hook(cds, call(ehr.url, patient=patient))
    assert answer.status_code == 200, answer.text
    assert any(record.name == "httpx" for record in caplog.records)  # httpx did log its requests
    assert not [record.getMessage() for record in caplog.records if patient in record.getMessage()]


# --- the client's organization (contract "Organizations") -----------------------------------------------


def test_a_client_s_organization_is_its_iss_unless_the_clients_file_names_one():
    key = Signer("ES384").jwk
    registry = ClientRegistry.from_dict({"clients": [
        {"iss": "https://ehr-a.example", "jwks": {"keys": [key]}},
        {"iss": "https://ehr-b.example", "jwks": {"keys": [key]}, "organization": "Hospital B"},
    ]})
    assert registry.clients["https://ehr-a.example"].organization == "https://ehr-a.example"
    assert registry.clients["https://ehr-b.example"].organization == "Hospital B"
    with pytest.raises(ValueError, match="organization"):
        ClientRegistry.from_dict({"clients": [{"iss": "x", "jwks": {"keys": [key]}, "organization": ""}]})


@pytest.mark.parametrize("prefix", ["https://user@ehr.example/fhir", "https://ehr.example/fhir/../x",
                                    "https://ehr.example/%2e%2e", "file:///etc", "https://ehr.example/fhir?q=1"])
def test_a_registered_fhir_server_must_be_a_plain_base_url(prefix):
    with pytest.raises(ValueError, match="fhirServers"):
        ClientRegistry.from_dict({"clients": [{"iss": "x", "jwks": {"keys": [Signer("ES384").jwk]},
                                               "fhirServers": [prefix]}]})
