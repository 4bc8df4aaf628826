"""The REST service through the real ASGI app and a real database (see api_fixtures.py)."""

import json
import logging
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from service.app import create_app
from service.policy.fields import load_dictionary
from service.store.keys import create_key, revoke_key
from service.store.evaluations import result_text as stored_result_text
from service.store.tables import Evaluation

POLICY_ID = "isass-2023-restorative-neurostimulation"
CRITERIA = [f"ISASS-RN-{number:02d}" for number in range(1, 14)]


def auth(key):
    return {"X-API-Key": key}


def post_case(client, key, case):
    return client.post("/v1/evaluations", json=case, headers=auth(key))


def stored_count(database):
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Evaluation))


def findings(result):
    return {name: result[name] for name in ("summary", "criteria", "flags", "missing_information")}


def test_health_needs_no_key(client):
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_an_evaluation_is_returned_with_201_and_matches_the_engine(client, intake_key, full_case, evaluator):
    response = post_case(client, intake_key, full_case)

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    result = response.json()
    assert response.headers["location"] == f"/v1/evaluations/{result['evaluation_id']}"
    assert result["external_id"] == full_case["external_id"]
    assert result["policy"]["id"] == POLICY_ID
    assert [criterion["id"] for criterion in result["criteria"]] == CRITERIA
    assert result["summary"]["outcome"] == "all_criteria_met"
    assert findings(result) == findings(evaluator.evaluate(full_case))


def test_the_case_and_result_are_stored_with_policy_version_and_key(client, database, full_case):
    key_id, key = create_key(database, "intake")

    result_text = post_case(client, key, full_case).text

    result = json.loads(result_text)
    with database.session() as session:
        row = session.get(Evaluation, result["evaluation_id"])
    assert (row.external_id, row.policy_id, row.policy_version, row.key_id) == (
        full_case["external_id"],
        POLICY_ID,
        result["policy"]["version"],
        key_id,
    )
    assert json.loads(row.case_json) == full_case
    assert stored_result_text(row.result_zstd, row.result_json_before_0008) == result_text


def test_a_stored_evaluation_is_served_back_byte_for_byte(client, intake_key, full_case):
    created = post_case(client, intake_key, full_case)

    fetched = client.get(created.headers["location"], headers=auth(intake_key))

    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "application/json"
    assert fetched.content == created.content


def test_an_unknown_evaluation_id_is_404(client, intake_key):
    for evaluation_id in ("0c7b1c1e-0000-4000-8000-000000000000", "nul%00inside"):
        response = client.get(f"/v1/evaluations/{evaluation_id}", headers=auth(intake_key))

        assert response.status_code == 404
        assert response.json() == {"detail": "No evaluation with this id."}


def test_reviewers_list_an_external_ids_evaluations_newest_first(client, intake_key, reviewer_key, full_case):
    created = []
    for nrs in (7, 3, 9):
        full_case["low_back_pain"]["nrs"] = nrs
        created.append(post_case(client, intake_key, full_case))
    post_case(client, intake_key, {**full_case, "external_id": "SOMEONE-ELSE"})

    response = client.get(
        "/v1/evaluations", params={"external_id": full_case["external_id"]}, headers=auth(reviewer_key)
    )

    assert response.status_code == 200
    listing = response.json()
    assert listing["external_id"] == full_case["external_id"]
    assert listing["evaluations"] == [r.json() for r in reversed(created)]
    for r in created:  # each result is embedded exactly as it was returned
        assert r.content in response.content


def test_listing_an_external_id_with_nothing_stored_is_empty(client, reviewer_key):
    response = client.get("/v1/evaluations", params={"external_id": "NOBODY"}, headers=auth(reviewer_key))

    assert response.status_code == 200
    assert response.json() == {"external_id": "NOBODY", "evaluations": [], "next_cursor": None}


def test_listing_without_external_id_names_the_missing_query_field(client, reviewer_key):
    response = client.get("/v1/evaluations", headers=auth(reviewer_key))

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["query.external_id"]


ENDPOINTS = [
    ("POST", "/v1/evaluations"),
    ("GET", "/v1/evaluations/0c7b1c1e-0000-4000-8000-000000000000"),
    ("GET", "/v1/evaluations?external_id=X"),
    ("GET", "/v1/policies"),
    ("GET", f"/v1/policies/{POLICY_ID}"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize(
    "presented", [None, "", "not-a-key", "cc_0123456789abcdef_" + "A" * 43], ids=["missing", "empty", "malformed", "unknown"]
)
def test_every_endpoint_but_health_needs_a_known_key(client, method, path, presented, full_case):
    headers = {} if presented is None else auth(presented)

    response = client.request(method, path, json=full_case, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "A valid API key is required in the X-API-Key header."}


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_revoked_key_is_refused(client, database, method, path, full_case):
    key_id, key = create_key(database, "reviewer")
    revoke_key(database, key_id)

    assert client.request(method, path, json=full_case, headers=auth(key)).status_code == 401


def test_a_key_revoked_while_in_use_is_refused_on_its_very_next_request(client, database, full_case):
    # Revocation takes effect at once: PostgreSQL reads the key on every request; SQLite keeps it
    # until a key changes (store/key_changes.py; tests/test_key_changes.py).
    key_id, key = create_key(database, "intake")
    assert client.post("/v1/evaluations", json=full_case, headers=auth(key)).status_code == 201
    revoke_key(database, key_id)
    assert client.post("/v1/evaluations", json=full_case, headers=auth(key)).status_code == 401


@pytest.mark.parametrize(
    ("role", "method", "path", "status"),
    [
        ("intake", "POST", "/v1/evaluations", 201),
        ("intake", "GET", "/v1/evaluations/0c7b1c1e-0000-4000-8000-000000000000", 404),
        ("intake", "GET", "/v1/evaluations?external_id=X", 403),
        ("intake", "GET", "/v1/policies", 200),
        ("intake", "GET", f"/v1/policies/{POLICY_ID}", 200),
        ("reviewer", "POST", "/v1/evaluations", 201),
        ("reviewer", "GET", "/v1/evaluations/0c7b1c1e-0000-4000-8000-000000000000", 404),
        ("reviewer", "GET", "/v1/evaluations?external_id=X", 200),
        ("reviewer", "GET", "/v1/policies", 200),
        ("reviewer", "GET", f"/v1/policies/{POLICY_ID}", 200),
    ],
)
def test_roles_decide_what_a_key_may_do(client, database, role, method, path, status, full_case):
    _, key = create_key(database, role)

    response = client.request(method, path, json=full_case, headers=auth(key))

    assert response.status_code == status
    if status == 403:
        assert response.json() == {"detail": "This request needs a key with the reviewer role."}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda case: case["low_back_pain"].update(nrs=11), "low_back_pain.nrs"),
        (lambda case: case["patient"].update(age_years="52"), "patient.age_years"),
        (lambda case: case["conservative_care"].update(medication_outcome="maybe"), "conservative_care.medication_outcome"),
        (lambda case: case.update(favourite_colour="blue"), "favourite_colour"),
        (lambda case: case["device"].update(colour="blue"), "device.colour"),
        (lambda case: case.pop("external_id"), "external_id"),
        (lambda case: case.update(external_id="x" * 129), "external_id"),
        (lambda case: case.update(policy="no-such-policy"), "policy"),
        (lambda case: case.update(service_date="01/12/2026"), "service_date"),
        (lambda case: case.update(external_id="NUL\x00INSIDE"), "external_id"),
    ],
    ids=["range", "type", "enum", "unknown-field", "unknown-nested-field", "missing-external-id",
         "long-external-id", "unknown-policy", "bad-date", "nul-in-external-id"],
)
def test_an_invalid_case_gets_422_naming_the_field_and_nothing_is_stored(
    client, database, intake_key, full_case, change, field
):
    change(full_case)

    response = post_case(client, intake_key, full_case)

    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "The case is invalid."
    assert field in [error["field"] for error in body["errors"]]
    assert all(error["message"] for error in body["errors"])
    assert stored_count(database) == 0


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        (b'{"external_id": ', "application/json", "body"),
        (b"\xff\xfe\xfa", "application/json", "body"),
        (b"", "application/json", "body"),
        (b"[" * 100_000, "application/json", "body"),
        (b'{"external_id": "X"}', "text/plain", "headers.content-type"),
        (b"external_id=X", "application/x-www-form-urlencoded", "headers.content-type"),
        (b'["not", "a", "case"]', "application/json", "case"),
        (b'{"external_id": "X", "low_back_pain": {"nrs": NaN}}', "application/json", "low_back_pain.nrs"),
    ],
    ids=["truncated", "not-utf", "empty", "deeply-nested", "text", "form", "array", "nan"],
)
def test_a_body_that_is_not_a_json_case_gets_422(client, database, intake_key, body, content_type, field):
    response = client.post(
        "/v1/evaluations", content=body, headers={**auth(intake_key), "Content-Type": content_type}
    )

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert stored_count(database) == 0


FIELDS = load_dictionary(Path(__file__).resolve().parent.parent / "rules" / "fields.yaml").fields
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(path=st.sampled_from(["external_id", "policy", "service_date", *FIELDS]), value=JSON_VALUES)
def test_any_value_in_any_field_gets_201_or_a_422_naming_fields(client, intake_key, full_case, path, value):
    section, _, name = path.partition(".")
    if name:
        full_case.setdefault(section, {})[name] = value
    else:
        full_case[section] = value

    response = post_case(client, intake_key, full_case)

    assert response.status_code in (201, 422)
    if response.status_code == 422:
        assert all(error["field"] and error["message"] for error in response.json()["errors"])


@FUZZ
@given(payload=JSON_VALUES)
def test_any_json_document_gets_201_or_422(client, intake_key, payload):
    assert post_case(client, intake_key, payload).status_code in (201, 422)


def test_a_json_media_type_with_charset_is_accepted(client, intake_key, full_case):
    response = client.post(
        "/v1/evaluations",
        content=json.dumps(full_case).encode(),
        headers={**auth(intake_key), "Content-Type": "application/json; charset=utf-8"},
    )

    assert response.status_code == 201


def test_a_body_declared_too_large_gets_413(client, database, intake_key, settings):
    response = client.post(
        "/v1/evaluations",
        content=b" " * (settings.max_body_bytes + 1),
        headers={**auth(intake_key), "Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert stored_count(database) == 0


def test_a_streamed_body_that_grows_too_large_gets_413(client, database, intake_key, settings):
    def chunks():  # no Content-Length: sent chunked, so only counting the bytes can stop it
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b" " * 65536

    response = client.post(
        "/v1/evaluations", content=chunks(), headers={**auth(intake_key), "Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert stored_count(database) == 0


def test_a_service_date_with_no_policy_version_in_force_is_422(client, intake_key, full_case):
    full_case["service_date"] = "1999-01-01"

    response = post_case(client, intake_key, full_case)

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["service_date"]


def test_policies_lists_each_policy_with_its_versions(client, intake_key, evaluator):
    response = client.get("/v1/policies", headers=auth(intake_key))

    assert response.status_code == 200
    policies = response.json()["policies"]
    assert POLICY_ID in [policy["id"] for policy in policies]
    assert policies == evaluator.policies()
    assert all(policy["versions"] for policy in policies)


def test_a_policy_shows_each_criterions_requirement_logic_and_citations(client, intake_key):
    response = client.get(f"/v1/policies/{POLICY_ID}", headers=auth(intake_key))

    assert response.status_code == 200
    policy = response.json()
    assert policy["id"] == POLICY_ID
    for version in policy["versions"]:
        assert [criterion["id"] for criterion in version["criteria"]] == CRITERIA
        for criterion in version["criteria"]:
            assert criterion["requirement"] and criterion["logic"] and criterion["citations"]


def test_an_unknown_policy_is_404(client, intake_key):
    response = client.get("/v1/policies/no-such-policy", headers=auth(intake_key))

    assert response.status_code == 404
    assert response.json() == {"detail": "No policy with id 'no-such-policy'."}


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/v1/nothing-here", 404), ("DELETE", "/v1/policies", 405)]
)
def test_unknown_routes_and_methods_answer_in_json(client, method, path, status):
    response = client.request(method, path)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert "detail" in response.json()


def test_an_unexpected_failure_is_a_json_500(settings, database, intake_key, full_case):
    class BrokenEvaluator:
        def evaluate(self, payload):
            raise RuntimeError("engine fault")

    with TestClient(create_app(settings, BrokenEvaluator()), raise_server_exceptions=False) as client:
        response = post_case(client, intake_key, full_case)

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error."}
    assert stored_count(database) == 0


def test_openapi_docs_describe_the_endpoints_and_the_case(client):
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()

    assert {"/v1/evaluations", "/v1/evaluations/{evaluation_id}", "/v1/policies", "/v1/policies/{policy_id}", "/health"} <= set(schema["paths"])
    case_schema = schema["components"]["schemas"]["Case"]
    assert "low_back_pain" in case_schema["properties"]
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


def test_each_request_logs_one_line_without_case_contents(client, database, full_case, caplog):
    key_id, key = create_key(database, "reviewer")
    full_case["external_id"] = "SECRET-REFERENCE-4711"

    with caplog.at_level(logging.INFO, logger="service.access"):
        post_case(client, key, full_case)
        client.get("/v1/evaluations", params={"external_id": "SECRET-REFERENCE-4711"}, headers=auth(key))
        client.get("/v1/policies")

    lines = [record.getMessage() for record in caplog.records if record.name == "service.access"]
    assert len(lines) == 3
    assert lines[0].startswith(f"POST /v1/evaluations 201 key={key_id} ")
    assert lines[1].startswith(f"GET /v1/evaluations 200 key={key_id} ")
    assert lines[2].startswith("GET /v1/policies 401 key=- ")
    assert all(line.endswith("ms") for line in lines)
    assert not any("SECRET-REFERENCE" in line or "nociceptive" in line for line in lines)


def test_concurrent_submissions_all_succeed_and_are_all_stored(client, database, intake_key, full_case):
    def submit(number):
        return post_case(client, intake_key, {**full_case, "external_id": f"CONCURRENT-{number}"})

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(submit, range(80)))

    assert [r.status_code for r in responses] == [201] * 80
    assert stored_count(database) == 80
    for number, r in enumerate(responses):
        assert r.json()["external_id"] == f"CONCURRENT-{number}"
        assert client.get(r.headers["location"], headers=auth(intake_key)).content == r.content
