"""Migration 0006_requests groups the evaluations stored before it into requests: one per
(policy, external_id), received when the first was stored, its latest the newest; CDS Hooks
answers open none; results are left byte for byte as they were returned."""

from __future__ import annotations

import datetime
import json

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import insert, select

from service.store.database import MIGRATIONS_DIR, Database
from service.store.evaluations import RESULT_COLUMNS, result_text
from service.store.requests import Request
from service.store.tables import ApiKey, Evaluation, as_utc

BEFORE_REQUESTS = "0003_one_line"
UTC = datetime.UTC
# The evaluations table as it was before requests (no request_id), written as the service wrote it.
OLD_EVALUATIONS = sa.table("evaluations", *(sa.column(name) for name in (
    "id", "external_id", "policy_id", "policy_version", "key_id", "case_json", "result_json")),
    sa.column("created_at", sa.DateTime(timezone=True)))


def migrate_to(db: Database, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@pytest.fixture
def old_database(database_url):
    db = Database(database_url)
    migrate_to(db, BEFORE_REQUESTS)
    yield db
    db.dispose()


def result(evaluation_id: str, outcome: str) -> str:
    return json.dumps({"evaluation_id": evaluation_id, "summary": {"outcome": outcome}})


def test_stored_evaluations_are_grouped_into_requests(old_database):
    moment = datetime.datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    keys = [{"id": "0123456789abcdef", "role": "intake", "label": None, "secret_sha256": "0" * 64, "created_at": moment},
            {"id": "cds" + "a" * 29, "role": "intake", "label": "CDS Hooks client", "secret_sha256": "0" * 64,
             "created_at": moment}]
    stored = [  # (id, external_id, policy, key, minutes after `moment`, outcome)
        ("e1", "INTAKE-1", "isass", keys[0]["id"], 0, "information_missing"),
        ("e2", "INTAKE-1", "isass", keys[0]["id"], 30, "all_criteria_met"),
        ("e3", "INTAKE-1", "mp-623", keys[0]["id"], 10, "criteria_not_met"),
        ("e4", "INTAKE-2", "isass", keys[0]["id"], 5, None),  # a hand-made row without a summary
        ("e5", "hook-instance-1", "isass", keys[1]["id"], 1, "information_missing"),
    ]
    rows = [{"id": e, "external_id": x, "policy_id": p, "policy_version": "1.0.0", "key_id": k, "case_json": "{}",
             "result_json": result(e, o) if o else f'{{"evaluation_id":"{e}"}}',
             "created_at": moment + datetime.timedelta(minutes=m)} for e, x, p, k, m, o in stored]
    with old_database.engine.begin() as connection:
        connection.execute(insert(ApiKey.__table__), keys)
        connection.execute(insert(OLD_EVALUATIONS), rows)

    old_database.migrate()

    with old_database.session() as session:
        requests = {(r.policy_id, r.external_id): r for r in session.scalars(select(Request))}
        owners = dict(session.execute(select(Evaluation.id, Evaluation.request_id)).all())
        texts = {row[0]: result_text(*row[1:]) for row in session.execute(select(Evaluation.id, *RESULT_COLUMNS))}
    assert sorted(requests) == [("isass", "INTAKE-1"), ("isass", "INTAKE-2"), ("mp-623", "INTAKE-1")]
    first = requests["isass", "INTAKE-1"]
    assert (first.submissions, first.latest_evaluation_id, first.latest_outcome) == (2, "e2", "all_criteria_met")
    assert (first.organization, first.priority, first.state) == ("default", "standard", "open")
    assert as_utc(first.received_at) == moment
    assert as_utc(first.due_at) == moment + datetime.timedelta(days=7)
    assert requests["isass", "INTAKE-2"].latest_outcome is None
    assert owners == {"e1": first.id, "e2": first.id, "e3": requests["mp-623", "INTAKE-1"].id,
                      "e4": requests["isass", "INTAKE-2"].id, "e5": None}
    assert texts == {row["id"]: row["result_json"] for row in rows}


def test_a_later_submission_joins_the_request_the_migration_made(old_database, evaluator):
    from conftest import FULL_CASE
    from service.evaluations.submit import evaluate_and_store

    moment = datetime.datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    policy = FULL_CASE["policy"]
    with old_database.engine.begin() as connection:
        connection.execute(insert(ApiKey.__table__), [{"id": "0123456789abcdef", "role": "intake", "label": None,
                                                        "secret_sha256": "0" * 64, "created_at": moment}])
        connection.execute(insert(OLD_EVALUATIONS), [{
            "id": "old", "external_id": FULL_CASE["external_id"], "policy_id": policy, "policy_version": "1.0.0",
            "key_id": "0123456789abcdef", "case_json": "{}", "result_json": result("old", "criteria_not_met"),
            "created_at": moment}])
    old_database.migrate()

    evaluation_id, _ = evaluate_and_store(evaluator, old_database, FULL_CASE, "0123456789abcdef", organization="default")

    with old_database.session() as session:
        owners = dict(session.execute(select(Evaluation.id, Evaluation.request_id)).all())
        request = session.scalars(select(Request)).one()
    assert owners["old"] == owners[evaluation_id] == request.id
    assert (request.submissions, request.latest_evaluation_id) == (2, evaluation_id)
