"""A token bucket per API key (or client, or client address): on average ``per_minute`` requests
a minute, in bursts of up to as many.

With ``shared`` buckets (PostgreSQL's, service.store.ratelimits) every server and worker process
sharing the database counts in the same bucket, so the limit holds across them all; the
limiter's ``name`` keeps its buckets apart from other limiters'. Without (SQLite: one process),
buckets live in the process. There, only authenticated keys get a bucket, so their number is
bounded; a limiter keyed by something unbounded (the review page's sign-in, by client address)
passes ``max_buckets``, and beyond it buckets that have filled up again (as good as new) are
dropped; shared buckets are swept so by the database.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol


class Buckets(Protocol):
    def take(self, bucket: str, capacity: float, per_second: float) -> tuple[bool, float]: ...


class RateLimiter:
    def __init__(
        self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_buckets: int | None = None,
        *, name: str = "requests", shared: Buckets | None = None,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60
        self._clock = clock
        self.max_buckets = max_buckets
        self.name = name
        self.shared = shared
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when counted)
        self._lock = threading.Lock()

    def retry_after(self, key_id: str) -> int:
        """Take a token for ``key_id``: 0 if it had one, else whole seconds until it will."""
        if self.shared is not None:
            granted, tokens = self.shared.take(f"{self.name}:{key_id}", self.capacity, self.refill_per_second)
            return 0 if granted else self._wait(tokens)
        with self._lock:
            now = self._clock()
            tokens, counted_at = self._buckets.get(key_id, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - counted_at) * self.refill_per_second)
            if self.max_buckets is not None and key_id not in self._buckets and len(self._buckets) >= self.max_buckets:
                self._drop_full_buckets(now)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0
            self._buckets[key_id] = (tokens, now)
            return self._wait(tokens)

    def _wait(self, tokens: float) -> int:
        return max(1, math.ceil((1 - tokens) / self.refill_per_second))

    def _drop_full_buckets(self, now: float) -> None:
        self._buckets = {
            key: (tokens, counted_at)
            for key, (tokens, counted_at) in self._buckets.items()
            if tokens + (now - counted_at) * self.refill_per_second < self.capacity
        }
