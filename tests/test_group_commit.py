"""Group commit (service.store.database.GroupCommit): evaluations waiting together are committed
in one transaction, each caller is answered by its own commit's outcome, and the rows given
together are committed together. On SQLite and PostgreSQL."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from service.store.evaluations import evaluation_row, result_text
from service.store.group_commit import GroupCommit
from service.store.tables import Evaluation
from service.store.keys import create_key


def row(evaluation_id, key_id, external_id="X-1"):
    return evaluation_row(
        evaluation_id=evaluation_id, external_id=external_id, policy_id="p", policy_version="1",
        key_id=key_id, organization="default", case_json="{}", result_json=f'{{"evaluation_id":"{evaluation_id}"}}',
    )


def stored_ids(database):
    with database.session() as session:
        return set(session.scalars(select(Evaluation.id)))


@pytest.fixture
def key_id(database):
    return create_key(database, "intake")[0]


@pytest.fixture
def writer(database):
    """A group commit on the test database whose first transaction is held until ``release`` is
    set, so that everything submitted meanwhile waits for the next commit; counts transactions."""
    first_begun, release = threading.Event(), threading.Event()
    transactions = []

    def held_insert(by_table, uniform=False):
        if not first_begun.is_set():
            first_begun.set()
            release.wait(30)
        transactions.append(sum(len(rows) for rows in by_table.values()))
        database.insert_rows(by_table, uniform)

    group = GroupCommit(held_insert)
    group.first_begun, group.release, group.transactions = first_begun, release, transactions
    yield group
    release.set()
    group.close()


def test_evaluations_waiting_together_share_one_commit(database, key_id, writer):
    first = writer.submit([row("first", key_id)])
    assert writer.first_begun.wait(30)
    waiting = [writer.submit([row(f"e-{i}", key_id)]) for i in range(100)]
    assert not any(future.done() for future in waiting)  # none is answered before its commit
    writer.release.set()
    for future in (first, *waiting):
        future.result(30)
    assert writer.transactions == [1, 100]
    assert stored_ids(database) == {"first", *(f"e-{i}" for i in range(100))}


def test_a_batch_compresses_each_result_into_its_own_row(database, key_id, writer):
    """The writer compresses a whole batch's results in one call (service.store.compressed):
    each row still holds its own result, whatever the order and sizes."""
    first = writer.submit([row("first", key_id)])
    assert writer.first_begun.wait(30)
    results = {f"c-{i}": f'{{"evaluation_id":"c-{i}","padding":"{"é" * (i * 37)}"}}' for i in range(50)}
    waiting = [writer.submit([evaluation_row(
        evaluation_id=evaluation_id, external_id="X-1", policy_id="p", policy_version="1", key_id=key_id,
        organization="default", case_json="{}", result_json=text if i % 2 else text.encode(),
    )]) for i, (evaluation_id, text) in enumerate(results.items())]
    writer.release.set()
    for future in (first, *waiting):
        future.result(30)
    assert writer.transactions == [1, 50]
    with database.session() as session:
        stored = dict(session.execute(select(Evaluation.id, Evaluation.result_zstd)
                                      .where(Evaluation.id.in_(results))).all())
    assert {evaluation_id: result_text(frame, "") for evaluation_id, frame in stored.items()} == results
    assert all(bytes(frame).startswith(b"\x28\xb5\x2f\xfd") for frame in stored.values())  # zstd frames


def test_one_failing_evaluation_in_a_batch_fails_alone(database, key_id, writer):
    blocker = writer.submit([row("blocker", key_id)])
    assert writer.first_begun.wait(30)
    good = [writer.submit([row(f"ok-{i}", key_id)]) for i in range(5)]
    duplicate = writer.submit([row("blocker", key_id)])
    unknown_key = writer.submit([row("bad-key", "0123456789abcdef")])
    writer.release.set()
    blocker.result(30)
    for future in good:
        assert future.result(30) is None
    with pytest.raises(IntegrityError):
        duplicate.result(30)
    with pytest.raises(IntegrityError):
        unknown_key.result(30)
    assert stored_ids(database) == {"blocker", *(f"ok-{i}" for i in range(5))}


def test_rows_given_together_are_committed_together_or_not_at_all(database, key_id):
    database.writer.commit([row("existing", key_id)])
    with pytest.raises(IntegrityError):
        database.writer.commit([row("new", key_id), row("existing", key_id)])
    assert stored_ids(database) == {"existing"}


def test_many_threads_each_learn_their_own_row_is_stored(database, key_id):
    def store(number):
        database.writer.commit([row(f"t-{number}", key_id, external_id=f"X-{number}")])
        with database.session() as session:  # durable and visible once commit() has returned
            return session.scalar(select(func.count()).where(Evaluation.id == f"t-{number}"))

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert list(pool.map(store, range(400))) == [1] * 400


def test_closing_commits_what_is_queued_and_a_later_commit_starts_a_new_writer(database, key_id, writer):
    futures = [writer.submit([row("a", key_id)])]
    assert writer.first_begun.wait(30)
    futures.append(writer.submit([row("b", key_id)]))
    closing = threading.Thread(target=writer.close)
    closing.start()
    writer.release.set()
    closing.join(30)
    assert all(future.result(0) is None for future in futures)
    writer.commit([row("c", key_id)])
    assert stored_ids(database) == {"a", "b", "c"}


def test_waiters_on_an_event_loop_each_get_their_own_outcome(database, key_id, writer):
    async def main():
        first = asyncio.ensure_future(writer.commit_async([row("loop-first", key_id)]))
        await asyncio.get_running_loop().run_in_executor(None, writer.first_begun.wait, 30)
        waiting = [asyncio.ensure_future(writer.commit_async([row(f"loop-{i}", key_id)])) for i in range(50)]
        duplicate = asyncio.ensure_future(writer.commit_async([row("loop-first", key_id)]))
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in waiting)
        writer.release.set()
        await first
        await asyncio.gather(*waiting)
        with pytest.raises(IntegrityError):
            await duplicate

    asyncio.run(main())
    assert stored_ids(database) == {"loop-first", *(f"loop-{i}" for i in range(50))}
    assert writer.transactions[:2] == [1, 51]


def test_rows_of_several_tables_are_inserted_parents_first_in_one_transaction(database):
    from service.store.tables import ApiKey, utc_now

    def key_row(key_id):
        return ApiKey.__table__, {"id": key_id, "role": "intake", "label": None, "secret_sha256": "0" * 64,
                                  "created_at": utc_now(), "revoked_at": None}

    database.writer.commit([key_row("aaaaaaaaaaaaaaaa"), row("with-new-key", "aaaaaaaaaaaaaaaa")])
    assert stored_ids(database) == {"with-new-key"}
    with pytest.raises(IntegrityError):  # the evaluation fails (duplicate id): the new key is not kept either
        database.writer.commit([key_row("bbbbbbbbbbbbbbbb"), row("with-new-key", "bbbbbbbbbbbbbbbb")])
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.id == "bbbbbbbbbbbbbbbb")) == 0


def test_a_batch_is_inserted_in_dependency_order_whatever_order_its_items_came_in(database, key_id, writer):
    """An item may refer to a parent row of another item of the same batch, queued after it;
    rows of one table may leave out different columns."""
    from service.store.idempotency import IdempotencyClaim
    from service.store.tables import utc_now

    blocker = writer.submit([row("blocker", key_id)])
    assert writer.first_begun.wait(30)
    claim = IdempotencyClaim(key_id, "child-first", "0" * 64)
    child = writer.submit([claim.row("parent", utc_now())])  # the record before its evaluation
    parent = writer.submit([row("parent", key_id)])
    table, fewer = row("fewer-columns", key_id)
    fewer.pop("result_zstd")  # a nullable column left out: its own insert
    other = writer.submit([(table, fewer)])
    writer.release.set()
    for future in (blocker, child, parent, other):
        assert future.result(30) is None
    assert writer.transactions == [1, 3]
    assert stored_ids(database) == {"blocker", "parent", "fewer-columns"}
    assert claim.previous(database).evaluation_id == "parent"


def test_an_idempotency_key_recorded_meanwhile_fails_only_its_own_item(database, key_id, writer):
    from service.store.idempotency import IdempotencyClaim
    from service.store.tables import utc_now

    claim = IdempotencyClaim(key_id, "raced", "0" * 64)
    blocker = writer.submit([row("blocker", key_id)])
    assert writer.first_begun.wait(30)
    first = writer.submit([row("first", key_id), claim.row("first", utc_now())])
    second = writer.submit([row("second", key_id), claim.row("second", utc_now())])
    bystander = writer.submit([row("bystander", key_id)])
    writer.release.set()
    for future in (blocker, first, bystander):
        assert future.result(30) is None
    with pytest.raises(IntegrityError):
        second.result(30)
    assert stored_ids(database) == {"blocker", "first", "bystander"}  # "second" not stored without its record
    assert claim.previous(database).evaluation_id == "first"
