"""Reviewers' notes over the API (``/v1/evaluations/{id}/notes``), on SQLite and PostgreSQL:
append-only, reviewer keys only, checked field by field, stored with key id and time."""

import datetime

import pytest
import sqlalchemy.exc
from sqlalchemy import delete, func, select, update

from service.review.store import ReviewNote
from service.store.keys import create_key


def auth(key):
    return {"X-API-Key": key}


@pytest.fixture
def evaluation_id(client, intake_key, full_case):
    return client.post("/v1/evaluations", json=full_case, headers=auth(intake_key)).json()["evaluation_id"]


def notes_url(evaluation_id):
    return f"/v1/evaluations/{evaluation_id}/notes"


def stored_notes(database):
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(ReviewNote))


def test_a_note_is_stored_with_key_id_and_time_and_listed_oldest_first(client, database, evaluation_id):
    key_id, key = create_key(database, "reviewer", label="nurse")
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)

    first = client.post(notes_url(evaluation_id), json={"criterion": "ISASS-RN-09", "text": "Imaging report requested."}, headers=auth(key))
    second = client.post(notes_url(evaluation_id), json={"criterion": None, "text": "Whole case: peer-to-peer booked."}, headers=auth(key))
    listed = client.get(notes_url(evaluation_id), headers=auth(key))

    assert first.status_code == second.status_code == 201
    note = first.json()
    assert note["evaluation_id"] == evaluation_id
    assert (note["criterion"], note["text"], note["key_id"]) == ("ISASS-RN-09", "Imaging report requested.", key_id)
    assert first.headers["location"] == f"{notes_url(evaluation_id)}/{note['id']}"
    assert datetime.datetime.fromisoformat(note["created_at"].replace("Z", "+00:00")) >= before
    assert first.headers["cache-control"] == "no-store"
    assert listed.status_code == 200
    assert listed.headers["cache-control"] == "no-store"
    assert listed.json() == {"evaluation_id": evaluation_id, "notes": [note, second.json()]}
    assert second.json()["criterion"] is None


def test_criterion_may_be_left_out_for_a_note_on_the_whole_evaluation(client, reviewer_key, evaluation_id):
    response = client.post(notes_url(evaluation_id), json={"text": "General remark"}, headers=auth(reviewer_key))

    assert response.status_code == 201
    assert response.json()["criterion"] is None


def test_an_unknown_criterion_gets_422_naming_criterion_and_nothing_is_stored(client, database, reviewer_key, evaluation_id):
    response = client.post(notes_url(evaluation_id), json={"criterion": "ISASS-RN-99", "text": "x"}, headers=auth(reviewer_key))

    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "The note is invalid."
    assert [(e["field"], e["type"]) for e in body["errors"]] == [("criterion", "unknown_criterion")]
    assert "ISASS-RN-09" in body["errors"][0]["message"]
    assert stored_notes(database) == 0


@pytest.mark.parametrize(
    "body, fields",
    [
        ({"criterion": None, "text": ""}, ["text"]),
        ({"criterion": None, "text": "   \n\t"}, ["text"]),
        ({"criterion": None, "text": "x" * 4001}, ["text"]),
        ({"criterion": None, "text": "bad \x00 byte"}, ["text"]),
        ({"criterion": "TRIAL-BMI", "text": ""}, ["criterion", "text"]),  # flags are not criteria
        ({"criterion": None}, ["text"]),
        ({"criterion": 9, "text": "x"}, ["criterion"]),
        ({"criterion": None, "text": ["x"]}, ["text"]),
        ({"criterion": None, "text": "x", "author": "someone"}, ["author"]),
    ],
)
def test_a_bad_note_gets_422_naming_each_field(client, database, reviewer_key, evaluation_id, body, fields):
    response = client.post(notes_url(evaluation_id), json=body, headers=auth(reviewer_key))

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == fields
    assert stored_notes(database) == 0


def test_a_note_of_4000_characters_with_line_breaks_is_kept_exactly(client, reviewer_key, evaluation_id):
    text = ("Line one\r\n\tindented <b>&amp;</b> " + "é" * 4000)[:4000]
    assert len(text) == 4000

    response = client.post(notes_url(evaluation_id), json={"criterion": None, "text": text}, headers=auth(reviewer_key))

    assert response.status_code == 201
    assert client.get(notes_url(evaluation_id), headers=auth(reviewer_key)).json()["notes"][0]["text"] == text


def test_notes_need_a_reviewer_key(client, intake_key, evaluation_id):
    note = {"criterion": None, "text": "x"}

    assert client.post(notes_url(evaluation_id), json=note).status_code == 401
    assert client.get(notes_url(evaluation_id)).status_code == 401
    assert client.post(notes_url(evaluation_id), json=note, headers=auth(intake_key)).status_code == 403
    assert client.get(notes_url(evaluation_id), headers=auth(intake_key)).status_code == 403


def test_notes_on_an_unknown_evaluation_get_404(client, database, reviewer_key):
    for response in (
        client.post(notes_url("no-such-evaluation"), json={"criterion": None, "text": "x"}, headers=auth(reviewer_key)),
        client.get(notes_url("no-such-evaluation"), headers=auth(reviewer_key)),
    ):
        assert response.status_code == 404
        assert response.json() == {"detail": "No evaluation with this id."}
    assert stored_notes(database) == 0


def test_a_note_sent_as_something_other_than_json_is_refused(client, reviewer_key, evaluation_id):
    response = client.post(notes_url(evaluation_id), content="text=x", headers={**auth(reviewer_key), "Content-Type": "text/plain"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "headers.content-type"


def test_no_route_changes_or_removes_a_note(client, reviewer_key, evaluation_id):
    note_id = client.post(notes_url(evaluation_id), json={"text": "first"}, headers=auth(reviewer_key)).json()["id"]

    for method in ("PUT", "PATCH", "DELETE"):
        assert client.request(method, notes_url(evaluation_id), headers=auth(reviewer_key)).status_code == 405
        assert client.request(method, f"{notes_url(evaluation_id)}/{note_id}", headers=auth(reviewer_key)).status_code in (404, 405)
    assert [n["text"] for n in client.get(notes_url(evaluation_id), headers=auth(reviewer_key)).json()["notes"]] == ["first"]


def test_the_database_refuses_to_change_or_remove_a_note(client, database, reviewer_key, evaluation_id):
    client.post(notes_url(evaluation_id), json={"text": "as written"}, headers=auth(reviewer_key))

    for statement in (update(ReviewNote).values(text="rewritten"), delete(ReviewNote)):
        with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"):
            with database.transaction() as session:
                session.execute(statement)
    with database.session() as session:
        assert session.scalars(select(ReviewNote.text)).all() == ["as written"]


def test_migration_0002_review_downgrades_cleanly_and_upgrades_again(client, database, reviewer_key, evaluation_id):
    from sqlalchemy import inspect

    database.migrate("0001", down=True)
    assert not {"review_sessions", "review_notes"} & set(inspect(database.engine).get_table_names())

    database.migrate()

    assert {"review_sessions", "review_notes"} <= set(inspect(database.engine).get_table_names())
    assert client.post(notes_url(evaluation_id), json={"text": "after"}, headers=auth(reviewer_key)).status_code == 201
    with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"):
        with database.transaction() as session:
            session.execute(delete(ReviewNote))
