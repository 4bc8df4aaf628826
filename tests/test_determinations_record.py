"""Determinations (issue 19, item 1): the reviewer decides, the service records. Reviewer only, on
the latest submission, attested, denials with a specific reason and criteria, append-only (by the
database itself) with amendments, closing and reopening the request."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from requests_support import DENIAL_REASON, case, determine, request_row, submit
from api_fixtures import EVERY_ORGANIZATION
from service.determinations.record import latest_closing_determination, list_determinations


@pytest.fixture
def submitted(client, intake_key):
    return submit(client, intake_key, case("D-1", nrs=3))


def test_a_reviewer_s_determination_is_recorded_with_who_and_when(client, reviewer_key, database, submitted):
    answer = determine(client, reviewer_key, submitted["request_id"], submitted["evaluation_id"], "denied")

    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["outcome"] == "denied" and made["reason"] == DENIAL_REASON and made["criteria"] == ["ISASS-RN-04"]
    assert made["evaluation_id"] == submitted["evaluation_id"] and made["attestation"] is True
    assert made["reviewer"]["name"] == "reviewer tests" and made["recorded_at"].endswith("Z")
    assert answer.headers["location"].endswith(made["id"])
    assert request_row(database, submitted["request_id"]).state == "decided"


def test_only_a_reviewer_may_determine(client, intake_key, submitted):
    answer = determine(client, intake_key, submitted["request_id"], submitted["evaluation_id"])

    assert answer.status_code == 403
    assert client.get(f"/v1/requests/{submitted['request_id']}/determinations",
                      headers={"X-API-Key": intake_key}).json()["determinations"] == []


def test_a_determination_on_a_stale_submission_is_a_conflict(client, intake_key, reviewer_key, database, submitted):
    newer = submit(client, intake_key, case("D-1", nrs=8))

    stale = determine(client, reviewer_key, submitted["request_id"], submitted["evaluation_id"])
    assert stale.status_code == 409
    assert list_determinations(database, submitted["request_id"], EVERY_ORGANIZATION) == []
    assert determine(client, reviewer_key, submitted["request_id"], newer["evaluation_id"]).status_code == 201


def test_an_evaluation_of_another_request_is_refused(client, intake_key, reviewer_key, submitted):
    other = submit(client, intake_key, case("OTHER-1"))

    answer = determine(client, reviewer_key, submitted["request_id"], other["evaluation_id"])
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["evaluation_id"]


@pytest.mark.parametrize("outcome", ["denied", "partially_approved"])
@pytest.mark.parametrize("body, fields", [
    ({"reason": "Not met."}, ["reason"]),
    ({"reason": "     Criterion ISASS-RN-04 not met     "}, ["reason"]),  # 29 characters once unpadded
    ({"reason": None}, ["reason"]),
    ({"criteria": []}, ["criteria"]),
    ({"criteria": ["ISASS-RN-04", "NO-SUCH"]}, ["criteria[1]"]),
    ({"criteria": ["ISASS-RN-04", "ISASS-RN-04"]}, ["criteria[1]"]),
    ({"attestation": False}, ["attestation"]),
    ({"reason": "Not met.", "criteria": [], "attestation": False}, ["attestation", "reason", "criteria"]),
])
def test_a_denial_needs_a_specific_reason_criteria_and_attestation(client, reviewer_key, database, submitted,
                                                                   outcome, body, fields):
    answer = determine(client, reviewer_key, submitted["request_id"], submitted["evaluation_id"], outcome, **body)

    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == fields
    assert list_determinations(database, submitted["request_id"], EVERY_ORGANIZATION) == []
    assert request_row(database, submitted["request_id"]).state == "open"


@pytest.mark.parametrize("body, field", [
    ({"outcome": "covered"}, "outcome"), ({"attestation": "true"}, "attestation"), ({"extra": 1}, "extra"),
    ({"criteria": "ISASS-RN-04"}, "criteria"), ({"reason": "A reason\x00 with a NUL character in it."}, "reason"),
])
def test_a_malformed_determination_is_refused_naming_the_field(client, reviewer_key, submitted, body, field):
    sent = {"evaluation_id": submitted["evaluation_id"], "outcome": "approved", "attestation": True, **body}
    answer = client.post(f"/v1/requests/{submitted['request_id']}/determinations", json=sent,
                         headers={"X-API-Key": reviewer_key})

    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_other_outcomes_need_no_reason_and_leave_the_request_open(client, reviewer_key, database, submitted):
    for outcome in ("pended_for_information", "referred_to_physician_reviewer"):
        assert determine(client, reviewer_key, submitted["request_id"], submitted["evaluation_id"],
                         outcome).status_code == 201
    assert request_row(database, submitted["request_id"]).state == "open"
    assert latest_closing_determination(database, submitted["request_id"]) is None


def test_an_unknown_request_is_not_found(client, reviewer_key, submitted):
    assert determine(client, reviewer_key, "no-such-request", submitted["evaluation_id"]).status_code == 404
    assert client.get("/v1/requests/no-such-request/determinations",
                      headers={"X-API-Key": reviewer_key}).status_code == 404


def test_amendments_are_appended_and_listed_oldest_first(client, intake_key, reviewer_key, database, submitted):
    request_id, evaluation_id = submitted["request_id"], submitted["evaluation_id"]
    denied = determine(client, reviewer_key, request_id, evaluation_id, "denied").json()
    approved = determine(client, reviewer_key, request_id, evaluation_id, "approved", amends=denied["id"]).json()

    listed = client.get(f"/v1/requests/{request_id}/determinations", headers={"X-API-Key": intake_key}).json()
    assert listed == {"request_id": request_id, "determinations": [denied, approved]}
    assert approved["amends"] == denied["id"]
    assert latest_closing_determination(database, request_id) == approved


def test_an_amendment_names_a_determination_of_the_same_request(client, intake_key, reviewer_key, submitted):
    other = submit(client, intake_key, case("OTHER-1"))
    elsewhere = determine(client, reviewer_key, other["request_id"], other["evaluation_id"]).json()

    for amends in (elsewhere["id"], "no-such-determination"):
        answer = determine(client, reviewer_key, submitted["request_id"], submitted["evaluation_id"], amends=amends)
        assert answer.status_code == 422
        assert [e["field"] for e in answer.json()["errors"]] == ["amends"]


def test_a_new_submission_reopens_a_decided_request(client, intake_key, reviewer_key, database, submitted):
    request_id = submitted["request_id"]
    determine(client, reviewer_key, request_id, submitted["evaluation_id"], "denied")
    assert latest_closing_determination(database, request_id)["outcome"] == "denied"

    newer = submit(client, intake_key, case("D-1", nrs=8))
    assert request_row(database, request_id).state == "open"
    assert latest_closing_determination(database, request_id) is None
    assert latest_closing_determination(database, request_id, while_decided=False)["outcome"] == "denied"

    determine(client, reviewer_key, request_id, newer["evaluation_id"], "approved")
    assert request_row(database, request_id).state == "decided"


@pytest.mark.parametrize("statement", [
    "UPDATE determinations SET outcome = 'approved'",
    "UPDATE determinations SET reason = 'rewritten after the fact, which must never happen'",
    "DELETE FROM determinations",
])
def test_the_database_refuses_to_change_or_remove_a_determination(client, reviewer_key, database, submitted,
                                                                   statement):
    determine(client, reviewer_key, submitted["request_id"], submitted["evaluation_id"], "denied")

    with pytest.raises(DBAPIError, match="append-only"):
        with database.engine.begin() as connection:
            connection.execute(text(statement))
    assert [d["outcome"] for d in list_determinations(database, submitted["request_id"], EVERY_ORGANIZATION)] == ["denied"]


def test_postgresql_refuses_to_truncate_the_determinations(client, reviewer_key, database, submitted):
    if database.engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE is PostgreSQL's; SQLite's DELETE is refused above")
    determine(client, reviewer_key, submitted["request_id"], submitted["evaluation_id"])

    with pytest.raises(DBAPIError, match="append-only"):
        with database.engine.begin() as connection:
            connection.execute(text("TRUNCATE determinations"))


def test_no_result_field_carries_an_outcome_of_a_determination(client, intake_key, reviewer_key, submitted):
    determine(client, reviewer_key, submitted["request_id"], submitted["evaluation_id"], "denied")
    again = client.get(f"/v1/evaluations/{submitted['evaluation_id']}", headers={"X-API-Key": intake_key}).json()

    assert again == submitted
    assert not _outcome_values(again)


OUTCOMES = {"approved", "denied", "partially_approved", "pended_for_information", "referred_to_physician_reviewer"}


def _outcome_values(value) -> list:
    if isinstance(value, dict):
        return [found for item in value.values() for found in _outcome_values(item)]
    if isinstance(value, list):
        return [found for item in value for found in _outcome_values(item)]
    return [value] if value in OUTCOMES else []
