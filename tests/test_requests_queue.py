"""The work queue and one request over the API (issue 18, item 2): queue order (due_at
ascending), filters, paging, a request with its submissions, taking and releasing it, and what a
submission changed."""

from __future__ import annotations

import datetime

import pytest
from sqlalchemy import update

from requests_support import case, determine, submit
from service.requests.queue import QueueFilter, list_queue
from service.store.keys import create_key
from service.store.requests import Request
from service.store.tables import utc_now


def reviewer(database, label="Nurse Ann"):
    key_id, key = create_key(database, "reviewer", label=label)
    return key_id, {"X-API-Key": key}


def queue(client, headers, query="") -> list[str]:
    answer = client.get(f"/v1/requests?{query}", headers=headers)
    assert answer.status_code == 200, answer.text
    return [item["external_id"] for item in answer.json()["requests"]]


def set_due(database, request_id, hours_from_now: float) -> None:
    with database.write() as connection:
        connection.execute(update(Request).where(Request.id == request_id)
                           .values(due_at=utc_now() + datetime.timedelta(hours=hours_from_now)))


@pytest.fixture
def loaded(client, intake_key, database):
    """Four requests; due (hours from now): A 100, B 5, C 30 (expedited), D -2 (overdue)."""
    ids = {}
    for ref, hours, priority in (("A-1", 100, "standard"), ("B-1", 5, "standard"), ("C-1", 30, "expedited"),
                                 ("D-1", -2, "standard")):
        ids[ref] = submit(client, intake_key, case(ref, priority=priority))["request_id"]
        set_due(database, ids[ref], hours)
    return ids


def test_the_queue_lists_open_requests_most_urgent_first(client, database, loaded):
    _, headers = reviewer(database)
    answer = client.get("/v1/requests", headers=headers).json()

    assert [r["external_id"] for r in answer["requests"]] == ["D-1", "B-1", "C-1", "A-1"]
    assert answer["next_cursor"] is None
    first = answer["requests"][0]
    assert first["overdue"] is True and answer["requests"][1]["overdue"] is False
    assert set(first) >= {"request_id", "organization", "external_id", "policy", "priority", "received_at", "due_at",
                          "overdue", "assigned_to", "state", "submissions", "latest_evaluation_id", "latest_outcome"}
    assert (first["organization"], first["state"], first["submissions"], first["assigned_to"]) == ("default", "open", 1, None)
    assert first["latest_outcome"] == "all_criteria_met"


def test_the_queue_filters(client, database, loaded, reviewer_key):
    key_id, headers = reviewer(database)
    client.put(f"/v1/requests/{loaded['C-1']}/assignee", json={"assignee": "me"}, headers=headers)
    client.put(f"/v1/requests/{loaded['A-1']}/assignee", json={"assignee": "me"}, headers={"X-API-Key": reviewer_key})
    latest = client.get(f"/v1/requests/{loaded['B-1']}", headers=headers).json()["latest_evaluation_id"]
    assert determine(client, reviewer_key, loaded["B-1"], latest).status_code == 201

    assert queue(client, headers, "priority=expedited") == ["C-1"]
    assert queue(client, headers, "priority=standard") == ["D-1", "A-1"]
    assert queue(client, headers, "assigned=me") == ["C-1"]
    assert queue(client, headers, "assigned=none") == ["D-1"]
    assert queue(client, headers, "assigned=any") == ["D-1", "C-1", "A-1"]
    assert queue(client, headers, "overdue=true") == ["D-1"]
    assert queue(client, headers, "state=decided") == ["B-1"]
    assert queue(client, headers, "state=all") == ["D-1", "B-1", "C-1", "A-1"]
    assert queue(client, headers, "state=decided&overdue=true") == []
    assert queue(client, headers, "policy=isass-2023-restorative-neurostimulation&state=all") == ["D-1", "B-1", "C-1", "A-1"]
    assert queue(client, headers, "policy=another") == []


def test_the_reference_search_is_a_case_insensitive_prefix(client, intake_key, database):
    _, headers = reviewer(database)
    for ref in ("Straße-10", "STRASSE-11", "intake-2026-7", "INTAKE-2026-8", "INTAKE_X", "INTAKE%Y", "IN*Z", "IN?Q"):
        submit(client, intake_key, case(ref))

    assert sorted(queue(client, headers, "external_id=Intake-2026")) == ["INTAKE-2026-8", "intake-2026-7"]
    assert sorted(queue(client, headers, "external_id=strasse")) == ["STRASSE-11", "Straße-10"]
    assert queue(client, headers, "external_id=intake_") == ["INTAKE_X"]  # _ and % match only themselves
    assert queue(client, headers, "external_id=intake%25") == ["INTAKE%Y"]
    assert queue(client, headers, "external_id=in*") == ["IN*Z"]  # * and ? too (SQLite's GLOB)
    assert queue(client, headers, "external_id=in%3F") == ["IN?Q"]
    assert queue(client, headers, "external_id=x") == []


def test_the_queue_pages_with_a_cursor_without_repeating_or_skipping(client, intake_key, database):
    _, headers = reviewer(database)
    ids = [submit(client, intake_key, case(f"P-{n}"))["request_id"] for n in range(7)]
    same_due = utc_now() + datetime.timedelta(hours=1)
    with database.write() as connection:  # equal due times too: the id breaks the tie
        connection.execute(update(Request).where(Request.id.in_(ids[:4])).values(due_at=same_due))

    seen, cursor = [], None
    while True:
        answer = client.get("/v1/requests?limit=3" + (f"&cursor={cursor}" if cursor else ""), headers=headers).json()
        seen += [r["request_id"] for r in answer["requests"]]
        assert len(answer["requests"]) <= 3
        cursor = answer["next_cursor"]
        if cursor is None:
            break
    whole = [r["request_id"] for r in client.get("/v1/requests?limit=500", headers=headers).json()["requests"]]
    assert seen == whole and sorted(seen) == sorted(ids)
    assert whole[:4] == sorted(ids[:4])


@pytest.mark.parametrize("query, field", [("cursor=not-a-cursor", "query.cursor"), ("limit=0", "query.limit"),
                                          ("state=closed", "query.state"), ("assigned=someone", "query.assigned"),
                                          ("priority=urgent", "query.priority")])
def test_bad_queue_queries_are_refused_naming_the_parameter(client, database, query, field):
    _, headers = reviewer(database)
    answer = client.get(f"/v1/requests?{query}", headers=headers)

    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_the_queue_is_for_reviewers(client, intake_key):
    assert client.get("/v1/requests", headers={"X-API-Key": intake_key}).status_code == 403
    assert client.get("/v1/requests").status_code == 401


def test_a_request_lists_its_submissions_newest_first_and_its_determinations(client, intake_key, database, reviewer_key):
    first = submit(client, intake_key, case("R-1"))
    second = submit(client, intake_key, case("R-1", nrs=3))
    request_id = first["request_id"]
    made = determine(client, reviewer_key, request_id, second["evaluation_id"], "pended_for_information").json()

    detail = client.get(f"/v1/requests/{request_id}", headers={"X-API-Key": intake_key}).json()

    assert detail["submissions"] == 2 and detail["latest_evaluation_id"] == second["evaluation_id"]
    assert detail["evaluations"] == [
        {"evaluation_id": second["evaluation_id"], "submission": 2, "evaluated_at": second["evaluated_at"],
         "outcome": "criteria_not_met"},
        {"evaluation_id": first["evaluation_id"], "submission": 1, "evaluated_at": first["evaluated_at"],
         "outcome": "all_criteria_met"},
    ]
    assert detail["determinations"] == [made] and detail["latest_determination"] == made


def test_an_intake_key_reads_only_its_own_organization_s_requests(client, intake_key, database, evaluator):
    from service.evaluations.submit import evaluate_and_store
    from service.requests.queue import request_of_evaluation

    key_id = create_key(database, "intake")[0]
    evaluation_id, _ = evaluate_and_store(evaluator, database, case("ELSEWHERE-1"), key_id, organization="elsewhere")
    theirs = request_of_evaluation(database, evaluation_id)
    _, headers = reviewer(database)

    assert client.get(f"/v1/requests/{theirs}", headers={"X-API-Key": intake_key}).status_code == 404
    assert client.get(f"/v1/requests/{theirs}/determinations", headers={"X-API-Key": intake_key}).status_code == 404
    assert client.get(f"/v1/requests/{theirs}", headers=headers).json()["organization"] == "elsewhere"
    assert client.get("/v1/requests/no-such-request", headers=headers).status_code == 404


def test_a_reviewer_takes_and_releases_a_request(client, intake_key, database):
    request_id = submit(client, intake_key, case("T-1"))["request_id"]
    ann_id, ann = reviewer(database, "Nurse Ann")
    bob_id, bob = reviewer(database, "Nurse Bob")
    path = f"/v1/requests/{request_id}/assignee"

    taken = client.put(path, json={"assignee": "me"}, headers=ann)
    assert taken.status_code == 200
    assert taken.json()["assigned_to"] == {"key_id": ann_id, "name": "Nurse Ann"}
    assert client.put(path, json={"assignee": "me"}, headers=ann).status_code == 200  # again: still hers
    refused = client.put(path, json={"assignee": "me"}, headers=bob)
    assert refused.status_code == 409 and "Nurse Ann" in refused.json()["detail"]
    assert client.put(path, json={"assignee": None}, headers=bob).json()["assigned_to"] is None
    assert client.put(path, json={"assignee": "me"}, headers=bob).json()["assigned_to"]["key_id"] == bob_id


@pytest.mark.parametrize("body, status", [({"assignee": "someone"}, 422), ({}, 422), ({"assignee": "me", "x": 1}, 422)])
def test_a_bad_assignee_is_refused(client, intake_key, database, body, status):
    request_id = submit(client, intake_key, case("T-1"))["request_id"]
    _, headers = reviewer(database)

    answer = client.put(f"/v1/requests/{request_id}/assignee", json=body, headers=headers)
    assert answer.status_code == status


def test_assigning_is_for_reviewers_and_known_requests(client, intake_key, database):
    request_id = submit(client, intake_key, case("T-1"))["request_id"]
    _, headers = reviewer(database)

    assert client.put(f"/v1/requests/{request_id}/assignee", json={"assignee": "me"},
                      headers={"X-API-Key": intake_key}).status_code == 403
    assert client.put("/v1/requests/nope/assignee", json={"assignee": "me"}, headers=headers).status_code == 404


def test_what_a_resubmission_changed(client, intake_key, database):
    first = submit(client, intake_key, case("W-1"))
    changed = case("W-1", nrs=3, scoliosis=True, priority="expedited")
    del changed["patient"]["bmi"]
    second = submit(client, intake_key, changed)
    _, headers = reviewer(database)

    answer = client.get(f"/v1/evaluations/{second['evaluation_id']}/changes", headers=headers).json()
    assert answer["previous_evaluation_id"] == first["evaluation_id"]
    assert answer["request_id"] == first["request_id"]
    assert answer["fields"] == [
        {"path": "low_back_pain.nrs", "before": 7, "after": 3},
        {"path": "other_findings.scoliosis", "before": False, "after": True},
        {"path": "patient.bmi", "before": 31.2, "after": None},
        {"path": "priority", "before": None, "after": "expedited"},
    ]
    assert {"id": "ISASS-RN-04", "before": "met", "after": "not_met"} in answer["criteria"]
    assert all(c["before"] != c["after"] for c in answer["criteria"] + answer["flags"])
    moved = {c["id"] for c in answer["criteria"]}
    assert moved == {c["id"] for c in second["criteria"] if c["status"] != "met"}


def test_a_first_submission_changed_nothing(client, intake_key, database):
    first = submit(client, intake_key, case("W-1"))
    _, headers = reviewer(database)

    answer = client.get(f"/v1/evaluations/{first['evaluation_id']}/changes", headers=headers).json()
    assert answer == {"evaluation_id": first["evaluation_id"], "request_id": first["request_id"],
                      "previous_evaluation_id": None, "fields": [], "criteria": [], "flags": []}
    assert client.get("/v1/evaluations/nope/changes", headers=headers).status_code == 404
    assert client.get(f"/v1/evaluations/{first['evaluation_id']}/changes",
                      headers={"X-API-Key": intake_key}).status_code == 403


def test_the_queue_function_takes_the_time_it_is_asked_at(client, intake_key, database):
    """The review page passes its own clock; overdue follows it."""
    submit(client, intake_key, case("O-1"))
    key_id, _ = reviewer(database)
    later = utc_now() + datetime.timedelta(days=8)

    page = list_queue(database, QueueFilter(overdue=True), viewer_key_id=key_id, now=later)
    assert [r["external_id"] for r in page.results] == ["O-1"] and page.results[0]["overdue"] is True
    assert list_queue(database, QueueFilter(overdue=True), viewer_key_id=key_id).results == []


def test_a_filter_holding_a_nul_finds_nothing(client, intake_key, database):
    submit(client, intake_key, case("N-1"))
    _, headers = reviewer(database)

    assert queue(client, headers, "policy=a%00b") == []
    assert queue(client, headers, "external_id=N%00") == []
    assert client.get("/v1/requests/a%00b", headers=headers).status_code == 404
