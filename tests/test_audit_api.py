"""``GET /v1/audit``: auditors only, newest first by the one cursor pager, filtered, and as FHIR
R4 AuditEvents; the database refuses to change or delete a record; a record is never lost for a
request that succeeded."""

from __future__ import annotations

import datetime
import json

import pytest
import sqlalchemy.exc
from fastapi.testclient import TestClient
from fhir.resources.R4B.auditevent import AuditEvent
from sqlalchemy import delete, func, select, text, update

from service.audit.record import Access
from service.store.audit import AuditRecord
from service.store.keys import create_key
from service.store.tables import Evaluation

NDJSON = {"Accept": "application/fhir+ndjson"}


@pytest.fixture
def keys(database):
    return {role: create_key(database, role, organization=f"org-{role}")[1] for role in ("intake", "reviewer", "auditor")}


def auth(key, **more):
    return {"X-API-Key": key, **more}


def reads(client, keys, count):
    """``count`` reads of unknown evaluations, each its own record, oldest first."""
    for number in range(count):
        assert client.get(f"/v1/evaluations/missing-{number}", headers=auth(keys["intake"])).status_code == 404


def audit(client, keys, **query):
    response = client.get("/v1/audit", params=query, headers=auth(keys["auditor"]))
    assert response.status_code == 200, response.text
    return response.json()


def test_only_auditors_read_the_trail(client, keys):
    assert client.get("/v1/audit").status_code == 401
    assert client.get("/v1/audit", headers=auth(keys["intake"])).status_code == 403
    assert client.get("/v1/audit", headers=auth(keys["reviewer"])).status_code == 403
    assert client.get("/v1/audit", headers=auth(keys["auditor"])).status_code == 200


def test_pages_come_newest_first_and_never_repeat_or_skip(client, keys):
    reads(client, keys, 5)
    seen, cursor = [], None
    while True:
        page = audit(client, keys, limit=2, **({"cursor": cursor} if cursor else {}))
        seen += [e["resource_id"] for e in page["events"] if e["resource"] == "evaluation"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"missing-{n}" for n in range(4, -1, -1)]


def test_filters_by_actor_resource_and_time(client, keys, database):
    reads(client, keys, 3)
    intake_id = keys["intake"].split("_")[1]
    events = audit(client, keys, actor=intake_id)["events"]
    assert [e["resource_id"] for e in events] == ["missing-2", "missing-1", "missing-0"]
    assert {e["organization"] for e in events} == {"org-intake"}
    assert [e["resource_id"] for e in audit(client, keys, resource_id="missing-1")["events"]] == ["missing-1"]
    with database.session() as session:
        middle = session.scalar(select(AuditRecord.at).where(AuditRecord.resource_id == "missing-1"))
    since = middle.replace(tzinfo=datetime.UTC).isoformat()
    assert [e["resource_id"] for e in audit(client, keys, actor=intake_id, since=since)["events"]] == \
        ["missing-2", "missing-1"]
    assert [e["resource_id"] for e in audit(client, keys, actor=intake_id, until=since)["events"]] == ["missing-0"]
    assert audit(client, keys, since="2999-01-01")["events"] == []
    assert audit(client, keys, actor="nul\x00key")["events"] == []


@pytest.mark.parametrize("query, field", [({"cursor": "not-a-cursor"}, "query.cursor"),
                                          ({"since": "yesterday"}, "query.since"),
                                          ({"until": "2026-13-01"}, "query.until"),
                                          ({"limit": "0"}, "query.limit")])
def test_bad_queries_name_their_parameter(client, keys, query, field):
    response = client.get("/v1/audit", params=query, headers=auth(keys["auditor"]))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_as_ndjson_each_line_is_a_fhir_r4_audit_event_and_the_next_page_is_linked(client, keys, database):
    reads(client, keys, 3)
    create = TestClient(client.app)
    response = client.get("/v1/audit?limit=2", headers=auth(keys["auditor"], **NDJSON))
    assert response.status_code == 200 and response.headers["content-type"] == "application/fhir+ndjson"
    lines = response.text.splitlines()
    assert len(lines) == 2 and response.text.endswith("\n")
    events = [AuditEvent.model_validate(json.loads(line)) for line in lines]  # R4(B) AuditEvent, validated
    assert [e.entity[0].what.identifier.value for e in events] == ["missing-2", "missing-1"]
    assert events[0].action == "R" and events[0].outcome == "4" and events[0].outcomeDesc == "HTTP 404"
    assert events[0].agent[0].who.identifier.value == keys["intake"].split("_")[1]
    assert events[0].agent[1].who.identifier.value == "org-intake"
    link = response.headers["link"]
    assert link.startswith("</v1/audit?") and link.endswith('>; rel="next"')
    following = create.get(link[1:link.index(">")], headers=auth(keys["auditor"], **NDJSON))
    assert [json.loads(line)["entity"][0]["what"]["identifier"]["value"] for line in following.text.splitlines()] \
        == ["missing-0"]
    exports = audit(client, keys, actor=keys["auditor"].split("_")[1])["events"]
    assert [e["action"] for e in exports] == ["export", "export"]  # the trail read as NDJSON is an export


def test_the_database_refuses_to_change_or_delete_a_record(client, keys, database):
    reads(client, keys, 1)
    for statement in (update(AuditRecord).values(status=200), update(AuditRecord).values(actor_key_id=None),
                      delete(AuditRecord)):
        with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"):
            with database.transaction() as session:
                session.execute(statement)
    if database.url.get_backend_name() == "postgresql":
        with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"):
            with database.transaction() as session:
                session.execute(text("TRUNCATE audit_events"))
    with database.session() as session:
        assert session.scalars(select(AuditRecord.status)).all() == [404]


def test_a_success_whose_record_cannot_be_stored_is_not_sent(client, keys, database, full_case, monkeypatch):
    created = client.post("/v1/evaluations", json=full_case, headers=auth(keys["intake"])).json()

    async def unavailable(self, db, status):
        raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(Access, "write", unavailable)
    response = client.get(f"/v1/evaluations/{created['evaluation_id']}", headers=auth(keys["intake"]))

    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert created["external_id"] not in response.text and "criteria" not in response.text


def test_an_evaluation_whose_record_cannot_be_stored_is_not_stored_either(client, keys, database, full_case,
                                                                        monkeypatch):
    def broken(self, status):  # a record the database refuses (no action): the batch fails as one
        return [(AuditRecord.__table__, {"id": "x" * 36, "at": datetime.datetime.now(datetime.UTC), "action": None,
                                         "resource": "evaluation", "status": status})]

    monkeypatch.setattr(Access, "rows", broken)
    with TestClient(client.app, raise_server_exceptions=False) as failing:
        response = failing.post("/v1/evaluations", json=full_case, headers=auth(keys["intake"]))
    assert response.status_code == 500
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Evaluation)) == 0


def test_an_unexpected_error_is_recorded_as_a_500(client, keys, database, monkeypatch):
    import service.api.routers.evaluations as routes

    def fails(*_args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(routes, "get_evaluation_result", fails)
    with TestClient(client.app, raise_server_exceptions=False) as failing:
        assert failing.get("/v1/evaluations/any", headers=auth(keys["intake"])).status_code == 500
    (event,) = audit(client, keys)["events"]
    assert (event["resource_id"], event["status"]) == ("any", 500)


@pytest.mark.parametrize("idempotency", [None, "retry-1"])
def test_the_record_stored_with_an_evaluation_names_who_sent_it(client, keys, full_case, idempotency):
    headers = auth(keys["intake"], **({"Idempotency-Key": idempotency} if idempotency else {}))
    created = client.post("/v1/evaluations", json=full_case, headers=headers)
    assert created.status_code == 201, created.text

    [event] = [e for e in audit(client, keys)["events"]
               if e["action"] == "create" and e["resource"] == "evaluation"]
    assert event["resource_id"] == created.json()["evaluation_id"]
    assert event["actor"]["key_id"] == keys["intake"].split("_")[1]
    assert event["actor"]["role"] == "intake" and event["organization"] == "org-intake"
