"""A uniform batch of the group commit (every item: its request's row, its evaluation's, its
audit record) written in one SQLite statement through a temporary view (service.store.fanout):
the same rows as the statement-per-table path, all or nothing per item, and nothing another
connection or a migration sees. On SQLite and PostgreSQL (where the batch goes the usual way)."""

import datetime
import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from service.audit.record import Access, Actor
from service.requests.grouping import request_row
from service.store.audit import AuditRecord
from service.store.database import Database
from service.store.evaluations import evaluation_row, result_text
from service.store.group_commit import GroupCommit
from service.store.keys import create_key, KeyRecord
from service.store.requests import Request
from service.store.tables import Evaluation, utc_now


def submission(db: Database, key: KeyRecord, evaluation_id: str, external_id: str, outcome: str,
               at: datetime.datetime) -> list:
    """The rows a stored POST commits: its request's (an upsert), its evaluation's, its audit record."""
    result = {"evaluation_id": evaluation_id, "external_id": external_id,
              "policy": {"id": "isass-2023-restorative-neurostimulation"}, "summary": {"outcome": outcome}}
    rid = f"req-{external_id}"
    access = Access("create", "evaluation", resource_id=evaluation_id, actor=Actor.of_key(key))
    return [
        request_row(db, rid, result, priority="standard", organization="default", at=at),
        evaluation_row(evaluation_id=evaluation_id, external_id=external_id, policy_id=result["policy"]["id"],
                       policy_version="1.0.0", key_id=key.id, organization="default", case_json="{}",
                       result_json=f'{{"evaluation_id":"{evaluation_id}","outcome":"{outcome}"}}', request_id=rid,
                       created_at=at),
        *access.rows(201),
    ]


@pytest.fixture
def key(database):
    key_id = create_key(database, "intake")[0]
    return KeyRecord(key_id, "intake", None, "default")


def held(database):
    """A group commit whose first transaction waits until ``release`` is set, so that what is
    submitted meanwhile is committed as one batch; records each batch's ``uniform``."""
    first_begun, release, uniform = threading.Event(), threading.Event(), []

    def insert(by_table, is_uniform=False):
        if not first_begun.is_set():
            first_begun.set()
            release.wait(30)
        uniform.append(is_uniform)
        database.insert_rows(by_table, is_uniform)

    group = GroupCommit(insert)
    group.first_begun, group.release, group.uniform = first_begun, release, uniform
    return group


def test_a_uniform_batch_stores_every_row_and_counts_resubmissions(database, key):
    writer = held(database)
    try:
        at = utc_now()
        first = writer.submit(submission(database, key, "e-0", "X-0", "criteria_not_met", at))
        assert writer.first_begun.wait(30)
        waiting = [writer.submit(submission(database, key, f"e-{i}", f"X-{i % 5}", "all_criteria_met",
                                            at + datetime.timedelta(seconds=i)))
                   for i in range(1, 21)]
        writer.release.set()
        for future in (first, *waiting):
            assert future.result(30) is None
    finally:
        writer.release.set()
        writer.close()
    assert writer.uniform == [True, True]
    if database.url.get_backend_name() == "sqlite":  # written through a view, made once
        assert len(database._fanouts_made) == 1
    with database.session() as session:
        requests = {r.id: r for r in session.scalars(select(Request))}
        evaluations = dict(session.execute(select(Evaluation.id, Evaluation.result_zstd)).all())
        records = session.scalars(select(AuditRecord.resource_id).where(AuditRecord.action == "create")).all()
    assert set(evaluations) == {f"e-{i}" for i in range(21)}
    assert result_text(evaluations["e-7"], "") == '{"evaluation_id":"e-7","outcome":"all_criteria_met"}'
    assert sorted(records) == sorted(evaluations)
    # X-0 was submitted 5 times (e-0, e-5, e-10, e-15, e-20), the others 4 times each
    assert {rid: r.submissions for rid, r in requests.items()} == {
        "req-X-0": 5, "req-X-1": 4, "req-X-2": 4, "req-X-3": 4, "req-X-4": 4}
    assert requests["req-X-0"].latest_evaluation_id == "e-20"
    assert requests["req-X-0"].latest_outcome == "all_criteria_met"


def test_an_item_that_fails_fails_alone_and_leaves_nothing(database, key):
    at = utc_now()
    database.writer.commit(submission(database, key, "taken", "T-1", "all_criteria_met", at))
    writer = held(database)
    try:
        blocker = writer.submit(submission(database, key, "blocker", "B-1", "all_criteria_met", at))
        assert writer.first_begun.wait(30)
        good = writer.submit(submission(database, key, "good", "G-1", "all_criteria_met", at))
        duplicate = writer.submit(submission(database, key, "taken", "NEW-1", "all_criteria_met", at))
        writer.release.set()
        assert blocker.result(30) is None and good.result(30) is None
        with pytest.raises(IntegrityError):
            duplicate.result(30)
    finally:
        writer.release.set()
        writer.close()
    with database.session() as session:
        assert session.scalar(select(Request.id).where(Request.id == "req-NEW-1")) is None  # its request row too
        assert set(session.scalars(select(Evaluation.id))) == {"taken", "blocker", "good"}
        assert session.scalar(select(AuditRecord.id).where(AuditRecord.resource_id == "taken")) is not None


def test_the_view_is_the_writers_own_and_migrations_do_not_see_it(database, key):
    database.writer.commit(submission(database, key, "before", "M-1", "all_criteria_met", utc_now()))
    if database.url.get_backend_name() == "sqlite":
        with database.engine.connect() as connection:  # another connection: no temporary objects
            assert connection.execute(text("SELECT count(*) FROM sqlite_temp_master")).scalar() == 0
    database.migrate("0009_audit", down=True)  # tables rebuilt and renamed while the writer holds its view
    database.migrate()
    database.writer.commit(submission(database, key, "after", "M-1", "criteria_not_met", utc_now()))
    with database.session() as session:
        assert session.scalar(select(Request.submissions).where(Request.id == "req-M-1")) == 2


def test_a_shape_one_statement_cannot_write_goes_a_statement_a_table(database, key):
    """An INSERT binding more than its row's values (none does today) is not fanned out: its
    batches are written as before, not refused."""
    from sqlalchemy import literal

    from service.store.fanout import Fanouts
    from service.store.driver_sql import DriverSql

    table = Evaluation.__table__
    odd = DriverSql(table.insert().values(external_id=literal("x") + table.c.external_id), database.engine.dialect,
                    ("id",))
    assert Fanouts().of([odd, odd]) is None
    database.writer.commit(submission(database, key, "plain", "P-1", "all_criteria_met", utc_now()))
    with database.session() as session:
        assert session.scalar(select(Evaluation.id).where(Evaluation.id == "plain")) == "plain"
