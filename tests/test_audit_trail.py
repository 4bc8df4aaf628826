"""Every access to case data leaves exactly one audit record per request, and no record holds a
case value: a walk of every endpoint and page the app serves (tests/route_walk.py), as each
kind of caller, counting the records each request leaves."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from route_walk import call, endpoints, ids_of
from service.store.audit import AuditRecord
from service.store.keys import create_key

EXTERNAL_ID = "CASE-EXT-5150"
NOTE = "NOTE-TEXT-4471 the reviewer wrote this"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def records(database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(AuditRecord))


def all_records(database) -> list[dict]:
    with database.session() as session:
        return [row._asdict() for row in session.execute(select(*AuditRecord.__table__.c))]


def leaves(value) -> set[str]:
    """Every value of a case, as text."""
    if isinstance(value, dict):
        return set().union(*(leaves(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(leaves(v) for v in value)) if value else set()
    return {json.dumps(value) if not isinstance(value, str) else value}


def sign_in(client: TestClient, key: str):
    token = CSRF.search(client.get("/review").text).group(1)
    return client.post("/review/sign-in", data={"key": key, "csrf_token": token}, follow_redirects=False)


@pytest.fixture
def trail(client, database, full_case):
    keys = {role: create_key(database, role, name=f"{role} person")[1] for role in ("intake", "reviewer", "auditor")}
    case = {**full_case, "external_id": EXTERNAL_ID}
    result = client.post("/v1/evaluations", json=case, headers={"X-API-Key": keys["intake"]}).json()
    note = client.post(f"/v1/evaluations/{result['evaluation_id']}/notes", json={"text": NOTE},
                       headers={"X-API-Key": keys["reviewer"]})
    assert note.status_code == 201
    browser = TestClient(client.app)
    assert sign_in(browser, keys["reviewer"]).status_code == 303
    return keys, case, result, browser


def test_every_endpoint_and_page_returning_case_data_leaves_exactly_one_record_per_request(client, database, trail):
    keys, case, result, browser = trail
    ids = ids_of(result)
    bodies = {("POST", "/v1/evaluations"): case, ("POST", "/v1/evaluations/{evaluation_id}/notes"): {"text": NOTE}}
    callers = [("no key", client, {}), ("intake", client, {"X-API-Key": keys["intake"]}),
               ("reviewer", client, {"X-API-Key": keys["reviewer"]}), ("auditor", client, {"X-API-Key": keys["auditor"]}),
               ("reviewer's session", browser, {})]
    case_markers = (EXTERNAL_ID, NOTE, result["evaluation_id"])
    left: dict[tuple[str, str], set[int]] = {}
    with_case_data = set()
    for endpoint in endpoints(client.app):
        if endpoint.template == "/review/sign-out":
            continue  # would end the session the walk goes on with; sign-in and -out are tested below
        for name, holder, headers in callers:
            before = records(database)
            response = call(holder, endpoint, ids, headers, bodies.get((endpoint.method, endpoint.template)))
            added = records(database) - before
            where = f"{endpoint.method} {endpoint.template} as {name}: {response.status_code}"
            assert added in (0, 1), f"{where} left {added} records"
            left.setdefault((endpoint.method, endpoint.template), set()).add(added)
            if response.status_code < 400 and any(m in response.text for m in case_markers):
                with_case_data.add((endpoint.method, endpoint.template))
                assert added == 1, f"{where} returned case data without a record"
    # An audited endpoint is audited whoever calls and however it answers: never 0 one time, 1 the next.
    assert {route: counts for route, counts in left.items() if len(counts) > 1} == {}
    audited = {route for route, counts in left.items() if counts == {1}}
    assert with_case_data <= audited
    assert {("GET", "/v1/evaluations/{evaluation_id}"), ("GET", "/v1/evaluations/{evaluation_id}/questionnaire"),
            ("GET", "/v1/evaluations"), ("POST", "/v1/evaluations"), ("GET", "/v1/evaluations/{evaluation_id}/notes"),
            ("POST", "/v1/evaluations/{evaluation_id}/notes"), ("GET", "/review/evaluations"),
            ("GET", "/review/evaluations/{evaluation_id}"), ("POST", "/review/evaluations/{evaluation_id}/notes"),
            ("GET", "/v1/audit"), ("POST", "/review/sign-in")} <= audited
    assert not {("GET", "/health"), ("GET", "/v1/policies"), ("GET", "/openapi.json")} & audited

    values = leaves({k: v for k, v in case.items() if k not in ("policy", "service_date")}) | {NOTE}
    stored = all_records(database)
    assert [(r, field) for r in stored for field, value in r.items() if str(value) in values] == []
    assert not [text for text in (EXTERNAL_ID, NOTE) if text in json.dumps(stored, default=str)]


def test_a_record_names_who_did_what_to_which_id_with_the_status(client, database, trail):
    keys, _, result, browser = trail
    reviewer_id = keys["reviewer"].split("_")[1]
    client.get(f"/v1/evaluations/{result['evaluation_id']}", headers={"X-API-Key": keys["reviewer"]})
    browser.get(f"/review/evaluations/{result['evaluation_id']}")
    client.get("/v1/evaluations/no-such-id", headers={"X-API-Key": keys["intake"]})
    client.get(f"/v1/evaluations/{result['evaluation_id']}")

    events = client.get("/v1/audit?limit=4", headers={"X-API-Key": keys["auditor"]}).json()["events"]
    newest_first = [(e["action"], e["resource"], e["resource_id"], e["status"], e["actor"]) for e in events]
    assert newest_first == [
        ("read", "evaluation", result["evaluation_id"], 401, None),
        ("read", "evaluation", "no-such-id", 404, {"key_id": keys["intake"].split("_")[1], "name": "intake person",
                                                    "role": "intake"}),
        ("read", "page", result["evaluation_id"], 200, {"key_id": reviewer_id, "name": "reviewer person",
                                                        "role": "reviewer"}),
        ("read", "evaluation", result["evaluation_id"], 200, {"key_id": reviewer_id, "name": "reviewer person",
                                                              "role": "reviewer"}),
    ]
    assert {e["organization"] for e in events[1:]} == {"default"} and events[0]["organization"] is None
    assert all(e["client_ip"] == "testclient" for e in events)


def test_an_evaluation_and_its_record_are_stored_together(client, database, trail):
    keys, case, _, _ = trail
    created = client.post("/v1/evaluations", json=case, headers={"X-API-Key": keys["intake"]})
    record = all_records(database)
    mine = [r for r in record if r["resource_id"] == created.json()["evaluation_id"]]
    assert [(r["action"], r["resource"], r["status"]) for r in mine] == [("create", "evaluation", 201)]


def test_a_fhir_bundle_and_a_retried_post_leave_one_record_each_naming_the_evaluation(client, database, trail):
    from fhir_support import bundle, nrs, order, patient

    keys, case, _, _ = trail
    intake = {"X-API-Key": keys["intake"]}
    fhir = client.post("/v1/evaluations", content=json.dumps(bundle(order(), patient(), nrs(7))),
                       headers={**intake, "Content-Type": "application/fhir+json"})
    retried = [client.post("/v1/evaluations", json=case, headers={**intake, "Idempotency-Key": "retry-1"})
               for _ in range(2)]
    assert fhir.status_code == 201 and [r.status_code for r in retried] == [201, 201]

    events = client.get("/v1/audit?limit=3", headers={"X-API-Key": keys["auditor"]}).json()["events"][::-1]
    assert [(e["action"], e["resource_id"], e["status"]) for e in events] == [
        ("create", fhir.json()["evaluation_id"], 201),
        ("create", retried[0].json()["evaluation_id"], 201),
        ("create", retried[0].json()["evaluation_id"], 201),  # the first answer again, read once more
    ]


def test_signing_in_and_failing_to_are_recorded(client, database, trail):
    keys, _, _, _ = trail
    for presented in (keys["reviewer"], keys["intake"], "cc_0123456789abcdef_" + "x" * 43):
        sign_in(TestClient(client.app), presented)
    events = client.get("/v1/audit?limit=3", headers={"X-API-Key": keys["auditor"]}).json()["events"][::-1]
    assert [(e["action"], e["resource"], e["status"]) for e in events] == [
        ("sign-in", "page", 303), ("sign-in-failed", "page", 403), ("sign-in-failed", "page", 401)]
    assert [e["actor"] and e["actor"]["role"] for e in events] == ["reviewer", "intake", None]


def test_a_cds_hooks_call_is_recorded_with_its_client(cds, database):  # noqa: F811
    from cds_client import ISSUER, reactiv8_order
    from cds_support import COVERAGE, PATIENT, hook

    body = {"hook": "order-sign", "hookInstance": "6a3e0c6e-9f0a-4a3b-9a51-1d2c1f1b0c02",
            "context": {"userId": "Practitioner/1", "patientId": "123",
                        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": reactiv8_order()}]}},
            "prefetch": {"patient": PATIENT, "coverage": COVERAGE}}
    assert hook(cds, body).status_code == 200
    (record,) = all_records(database)
    assert (record["action"], record["resource"], record["status"]) == ("create", "evaluation", 200)
    assert (record["actor_client"], record["organization"], record["actor_key_id"]) == \
        (ISSUER, ISSUER, record["actor_key_id"]) and record["actor_key_id"].startswith("cds")


from cds_support import cds, fhir_servers, signer  # noqa: E402,F401 - the CDS Hooks service fixture
