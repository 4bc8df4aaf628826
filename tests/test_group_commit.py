"""Group commit (service.store.database.GroupCommit): evaluations waiting together are committed
in one transaction, each caller is answered by its own commit's outcome, and the rows given
together are committed together. On SQLite and PostgreSQL."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from service.store.database import Evaluation, evaluation_row
from service.store.keys import create_key


def row(evaluation_id, key_id, external_id="X-1"):
    return evaluation_row(
        evaluation_id=evaluation_id, external_id=external_id, policy_id="p", policy_version="1",
        key_id=key_id, case_json="{}", result_json=f'{{"evaluation_id":"{evaluation_id}"}}',
    )


def stored_ids(database):
    with database.session() as session:
        return set(session.scalars(select(Evaluation.id)))


@pytest.fixture
def key_id(database):
    return create_key(database, "intake")[0]


@pytest.fixture
def held_writer(database):
    """Holds the writer's first transaction open until ``release()``, so that everything submitted
    meanwhile waits for the next commit; counts commits."""
    first_begun, release = threading.Event(), threading.Event()
    commits = []

    def on_begin(_connection):
        if not first_begun.is_set():
            first_begun.set()
            release.wait(30)

    event.listen(database.engine, "begin", on_begin)
    event.listen(database.engine, "commit", lambda _connection: commits.append(1))
    yield first_begun, release, commits
    release.set()
    event.remove(database.engine, "begin", on_begin)


def test_evaluations_waiting_together_share_one_commit(database, key_id, held_writer):
    first_begun, release, commits = held_writer
    first = database.writer.submit([row("first", key_id)])
    assert first_begun.wait(30)
    waiting = [database.writer.submit([row(f"e-{i}", key_id)]) for i in range(100)]
    assert not any(future.done() for future in waiting)  # none is answered before its commit
    release.set()
    for future in (first, *waiting):
        future.result(30)
    assert len(commits) == 2
    assert stored_ids(database) == {"first", *(f"e-{i}" for i in range(100))}


def test_one_failing_evaluation_in_a_batch_fails_alone(database, key_id, held_writer):
    first_begun, release, _ = held_writer
    blocker = database.writer.submit([row("blocker", key_id)])
    assert first_begun.wait(30)
    good = [database.writer.submit([row(f"ok-{i}", key_id)]) for i in range(5)]
    duplicate = database.writer.submit([row("blocker", key_id)])
    unknown_key = database.writer.submit([row("bad-key", "0123456789abcdef")])
    release.set()
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


def test_closing_commits_what_is_queued_and_a_later_submit_starts_a_new_writer(database, key_id, held_writer):
    first_begun, release, _ = held_writer
    futures = [database.writer.submit([row("a", key_id)])]
    assert first_begun.wait(30)
    futures.append(database.writer.submit([row("b", key_id)]))
    closing = threading.Thread(target=database.writer.close)
    closing.start()
    release.set()
    closing.join(30)
    assert all(future.result(0) is None for future in futures)
    database.writer.commit([row("c", key_id)])
    assert stored_ids(database) == {"a", "b", "c"}
