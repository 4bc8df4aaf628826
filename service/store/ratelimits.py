"""Rate-limit buckets every server sharing a PostgreSQL database counts in: one row a bucket.

Several ``serve`` hosts behind a load balancer must hold one limit between them (an API key's
requests a minute, a client address's sign-in attempts, a CDS client's calls), so on PostgreSQL
each bucket is a row of ``rate_buckets``, taken from by one statement (an upsert that refills
the bucket by the time passed, on the database's clock, and takes a token if there is one), run
outside a transaction on the driver path as the key check is. The table is UNLOGGED (migration
0009): a bucket is no record worth a disk flush, so a take commits without waiting for one (~55
µs of PostgreSQL's CPU and ~45 µs of the server's; a logged table waited ~2 ms for its flush, and
Redis cost the server ~85 µs through redis-py, measured). After a crash the buckets start full.

On SQLite (one process) buckets stay in the process's memory (service.web.ratelimit).
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Boolean, Float, String, bindparam, text
from sqlalchemy.orm import Mapped, mapped_column

from service.store.database import Database
from service.store.tables import Base

# Buckets that have filled up again are as good as new: dropped this often (seconds).
SWEEP_SECONDS = 60


class RateBucket(Base):
    __tablename__ = "rate_buckets"

    bucket: Mapped[str] = mapped_column(String(300), primary_key=True)  # "<limit>:<who>"
    tokens: Mapped[float] = mapped_column(Float)
    counted_at: Mapped[float] = mapped_column(Float)  # epoch seconds, the database's clock
    full_at: Mapped[float] = mapped_column(Float)  # when it will be full again
    granted: Mapped[bool] = mapped_column(Boolean)  # whether the last take got a token


# The bucket refilled by the time passed, capped at its capacity ("available"); a token taken
# from it if there is one. In SET, b.* are the values before this update.
_AVAILABLE = "LEAST(:capacity, b.tokens + GREATEST(0, EXTRACT(EPOCH FROM now()) - b.counted_at) * :rate)"
_TAKE = text(f"""
    INSERT INTO rate_buckets AS b (bucket, tokens, counted_at, full_at, granted)
    VALUES (:bucket, :capacity - 1, EXTRACT(EPOCH FROM now()), EXTRACT(EPOCH FROM now()) + 1 / :rate, true)
    ON CONFLICT (bucket) DO UPDATE SET
        tokens = {_AVAILABLE} - CASE WHEN {_AVAILABLE} >= 1 THEN 1 ELSE 0 END,
        granted = {_AVAILABLE} >= 1,
        full_at = EXTRACT(EPOCH FROM now())
                  + (:capacity - {_AVAILABLE} + CASE WHEN {_AVAILABLE} >= 1 THEN 1 ELSE 0 END) / :rate,
        counted_at = EXTRACT(EPOCH FROM now())
    RETURNING granted, tokens
""").bindparams(bindparam("bucket", type_=String()), bindparam("capacity", type_=Float()),
                bindparam("rate", type_=Float()))
_SWEEP = text("DELETE FROM rate_buckets WHERE full_at < EXTRACT(EPOCH FROM now())")


class SharedBuckets:
    """The buckets of a PostgreSQL database, for :class:`service.web.ratelimit.RateLimiter`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._swept = time.monotonic()
        self._lock = threading.Lock()

    def take(self, bucket: str, capacity: float, per_second: float) -> tuple[bool, float]:
        """Take a token from ``bucket``: whether there was one, and the tokens left."""
        self._sweep_now_and_then()
        granted, tokens = self.db.first(_TAKE, bucket=bucket, capacity=capacity, rate=per_second)
        return bool(granted), float(tokens)

    def _sweep_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._swept < SWEEP_SECONDS or not self._lock.acquire(blocking=False):
            return
        try:
            self._swept = now
            with self.db.engine.begin() as connection:
                connection.execute(_SWEEP)
        finally:
            self._lock.release()


def shared_buckets(db: Database) -> SharedBuckets | None:
    """The buckets every server counts in: PostgreSQL's; None on SQLite (one process)."""
    return SharedBuckets(db) if db.url.get_backend_name() == "postgresql" else None
