"""Two organizations share one service: nothing of one is visible to the other by any route.

Two organizations' intake keys, a reviewer and an auditor call every endpoint the app serves
(tests/route_walk.py reads them from the app, so an endpoint added later is walked too), with
the ids of the other organization's data and with ids nobody holds.
"""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from fhir_support import bundle
from route_walk import UNKNOWN_ID, call, endpoints, ids_of, unknown_ids
from service.store.keys import create_key

ALPHA, BETA = "org-alpha-7301", "org-beta-8402"
SHARED = "INTAKE-SHARED-1"
FHIR = {"Content-Type": "application/fhir+json"}
# Routes whose answer is the same to anyone, with nothing of any organization in it.
PUBLIC = {"/health", "/health/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
          "/review/static/review.css", "/static-offline-docs/{path}"}


def key(value):
    return {"X-API-Key": value}


@pytest.fixture
def world(client, database, full_case):
    """Each organization's intake key and data (both use the same external_id, and each has one
    only it uses), a reviewer and an auditor."""
    keys = {
        ALPHA: create_key(database, "intake", organization=ALPHA)[1],
        BETA: create_key(database, "intake", organization=BETA)[1],
        "reviewer": create_key(database, "reviewer", name="Dr. Walk")[1],
        "auditor": create_key(database, "auditor", organization="regulator")[1],
    }
    data = {}
    for org in (ALPHA, BETA):
        shared = client.post("/v1/evaluations", json={**full_case, "external_id": SHARED}, headers=key(keys[org]))
        own = client.post("/v1/evaluations", json={**full_case, "external_id": f"ONLY-{org}"}, headers=key(keys[org]))
        assert shared.status_code == own.status_code == 201
        data[org] = [shared.json(), own.json()]
    return keys, data


def markers(results):
    """What only this organization's data holds: its ids, its own external_id, its name."""
    found = {results[0]["submitter"]["organization"], results[1]["external_id"]}
    for result in results:
        found |= {value for name, value in result.items() if name.endswith("_id") and name != "external_id"
                  and isinstance(value, str)}
    return found


def seen(response) -> str:
    return response.text + json.dumps(dict(response.headers))


def same_answer(first, second, first_ids, second_ids) -> bool:
    """Byte for byte the same answer, but for the ids that were asked for (a dict of each)."""
    def masked(response, ids):
        content = response.content
        for asked_id in ids.values():
            content = content.replace(asked_id.encode(), b"ID") if isinstance(asked_id, str) else content
        # a sign-in form's one-time token differs between any two answers
        content = re.sub(rb'name="csrf_token" value="[^"]*"', b'name="csrf_token" value=""', content)
        return response.status_code, response.headers.get("content-type"), content
    return masked(first, first_ids) == masked(second, second_ids)


def test_every_result_names_its_submitter(world):
    _, data = world
    assert [r["submitter"] for r in data[ALPHA]] == [{"organization": ALPHA}] * 2
    assert [r["submitter"] for r in data[BETA]] == [{"organization": BETA}] * 2


@pytest.mark.parametrize("viewer, other", [(ALPHA, BETA), (BETA, ALPHA)])
def test_no_route_shows_an_intake_key_anything_of_another_organization(client, world, full_case, viewer, other):
    keys, data = world
    bodies = {("POST", "/v1/evaluations"): {**full_case, "external_id": SHARED},
              ("POST", "/v1/evaluations/{evaluation_id}/notes"): {"text": "walk"}}
    hidden = markers(data[other])
    walked = 0
    for endpoint in endpoints(client.app):
        if endpoint.template in PUBLIC:
            continue
        body = bodies.get((endpoint.method, endpoint.template))
        for result in data[other]:
            theirs = ids_of(result)
            nobody = unknown_ids(theirs)
            asked = call(client, endpoint, theirs, key(keys[viewer]), body)
            where = f"{endpoint.method} {endpoint.template} as {viewer}"
            shown = seen(asked)
            for asked_id in theirs.values():  # an id the path asked for, echoed (a sign-in's way back), is no leak
                shown = shown.replace(asked_id, "ID") if isinstance(asked_id, str) else shown
            assert not [m for m in hidden if m in shown], f"{where} shows {other}'s data: {asked.text[:300]}"
            if endpoint.parameters:
                unknown = call(client, endpoint, nobody, key(keys[viewer]), body)
                assert same_answer(asked, unknown, theirs, nobody), \
                    f"{where}: another organization's id answers otherwise than an unknown id"
            walked += 1
    assert walked > 10


def test_intake_keys_read_their_own_organization_s_data(client, world):
    keys, data = world
    for org in (ALPHA, BETA):
        for result in data[org]:
            for path in ("/v1/evaluations/{}", "/v1/evaluations/{}/questionnaire"):
                response = client.get(path.format(result["evaluation_id"]), headers=key(keys[org]))
                assert response.status_code == 200, (org, path, response.text)
        assert client.get(f"/v1/evaluations/{data[org][0]['evaluation_id']}", headers=key(keys[org])).json() \
            == data[org][0]


def test_answering_another_organization_s_questionnaire_is_the_404_of_an_unknown_one(client, world):
    keys, data = world
    theirs = data[BETA][0]["evaluation_id"]
    questionnaire = client.get(f"/v1/evaluations/{theirs}/questionnaire", headers=key(keys[BETA])).json()

    def answer(evaluation_id):
        qr = {"resourceType": "QuestionnaireResponse", "id": "qr-1", "status": "completed",
              "questionnaire": questionnaire["url"].replace(theirs, evaluation_id),
              "subject": {"reference": "Patient/pat-1"}, "authored": "2026-11-20",
              "item": [{"linkId": "low_back_pain", "item": [{"linkId": "low_back_pain.nrs",
                                                              "answer": [{"valueInteger": 9}]}]}]}
        return client.post("/v1/evaluations", content=json.dumps(bundle(qr, identifier=None)),
                           headers={**FHIR, **key(keys[ALPHA])})

    refused, unknown = answer(theirs), answer(UNKNOWN_ID)
    assert refused.status_code == 404 and refused.json()["resourceType"] == "OperationOutcome"
    assert same_answer(refused, unknown, {"evaluation_id": theirs}, {"evaluation_id": UNKNOWN_ID})
    assert client.get(f"/v1/evaluations?external_id={SHARED}", headers=key(keys["reviewer"])).json()["evaluations"] \
        == [data[BETA][0], data[ALPHA][0]]  # nothing stored under beta's reference


def test_reviewers_read_every_organization_and_one_external_id_names_two_requests(client, world):
    keys, data = world
    listed = client.get(f"/v1/evaluations?external_id={SHARED}", headers=key(keys["reviewer"])).json()
    assert [r["submitter"]["organization"] for r in listed["evaluations"]] == [BETA, ALPHA]
    for org in (ALPHA, BETA):
        for result in data[org]:
            response = client.get(f"/v1/evaluations/{result['evaluation_id']}", headers=key(keys["reviewer"]))
            assert response.json() == result


def test_an_auditor_reads_the_audit_trail_and_the_metrics_and_nothing_else(client, world):
    keys, data = world
    schema = client.get("/openapi.json").json()
    ids = ids_of(data[ALPHA][0])
    admitted, refused = [], 0
    for endpoint in endpoints(client.app):
        operation = schema["paths"].get(endpoint.template, {}).get(endpoint.method.lower(), {})
        if operation.get("x-required-role") is None:
            continue
        scopes = {scope for requirement in operation["security"] for scope in requirement.get("APIKeyHeader", [])}
        response = call(client, endpoint, ids, key(keys["auditor"]))
        if "auditor" in scopes:
            assert response.status_code == 200, endpoint
            admitted.append(endpoint.template)
        else:
            assert response.status_code == 403, (endpoint, response.status_code)
            refused += 1
    assert sorted(admitted) == ["/v1/audit", "/v1/metrics"] and refused >= 15
    assert client.get("/v1/audit", headers=key(keys[ALPHA])).status_code == 403
    assert client.get("/v1/audit", headers=key(keys["reviewer"])).status_code == 403


def test_the_review_page_shows_who_submitted(client, world):
    keys, data = world
    form = client.get("/review")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    signed = client.post("/review/sign-in", data={"key": keys["reviewer"], "csrf_token": token}, follow_redirects=False)
    assert signed.status_code == 303

    search = client.get(f"/review/evaluations?external_id={SHARED}")
    rows = re.findall(r"<tr>(.*?)</tr>", search.text, re.S)[1:]
    assert [ALPHA in row for row in rows] == [False, True] and [BETA in row for row in rows] == [True, False]
    summary = client.get(f"/review/evaluations/{data[ALPHA][1]['evaluation_id']}")
    assert re.search(rf"<dt>Submitted by</dt><dd>{ALPHA}</dd>", summary.text)


def test_an_auditor_or_intake_key_cannot_sign_in_to_the_review_page(client, world):
    keys, _ = world
    for holder in ("auditor", ALPHA):
        form = TestClient(client.app).get("/review")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        page = TestClient(client.app)
        page.cookies.update(form.cookies)
        refused = page.post("/review/sign-in", data={"key": keys[holder], "csrf_token": token}, follow_redirects=False)
        assert refused.status_code == 403, holder
