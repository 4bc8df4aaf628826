"""Rate-limit buckets in PostgreSQL (service/store/ratelimits.py): one bucket however many
processes take from it, refilled by the database's clock, swept once full; in the process on SQLite."""

import time

import pytest
from sqlalchemy import func, select, text

from service.store.database import Database
from service.store.ratelimits import RateBucket, SharedBuckets, shared_buckets
from service.web.ratelimit import RateLimiter


def test_sqlite_keeps_its_buckets_in_the_process(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        assert shared_buckets(db) is None
    finally:
        db.dispose()


def test_processes_sharing_a_database_take_from_one_bucket(database_url, database):
    if database.url.get_backend_name() != "postgresql":
        pytest.skip("buckets are shared on PostgreSQL only (SQLite: the test above)")
    other = Database(database_url)  # as another server's connection pool
    try:
        here, there = (RateLimiter(4, name="api-key", shared=shared_buckets(db)) for db in (database, other))
        assert [limiter.retry_after("k1") for limiter in (here, there, here, there)] == [0] * 4
        assert here.retry_after("k1") == there.retry_after("k1") == 15  # a token a 15 s
        assert RateLimiter(4, name="cds-hooks", shared=shared_buckets(other)).retry_after("k1") == 0  # its own bucket
        assert here.retry_after("k2") == 0
    finally:
        other.dispose()


def test_a_bucket_refills_by_the_time_passed_and_full_ones_are_swept(database):
    if database.url.get_backend_name() != "postgresql":
        pytest.skip("buckets are shared on PostgreSQL only")
    buckets = SharedBuckets(database)
    limiter = RateLimiter(120, name="fast", shared=buckets)  # 2 tokens a second
    assert all(limiter.retry_after("k") == 0 for _ in range(120))
    assert limiter.retry_after("k") == 1
    time.sleep(0.6)
    assert limiter.retry_after("k") == 0
    with database.engine.begin() as connection:  # as if a minute had passed
        connection.execute(text("UPDATE rate_buckets SET full_at = full_at - 3600, counted_at = counted_at - 3600"))
    buckets._swept = 0.0
    assert RateLimiter(120, name="other", shared=buckets).retry_after("x") == 0  # sweeps first
    with database.session() as session:
        assert session.scalars(select(RateBucket.bucket)).all() == ["other:x"]
        assert session.scalar(select(func.count()).select_from(RateBucket)) == 1
