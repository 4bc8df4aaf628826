"""A token bucket per API key: on average ``per_minute`` requests a minute, in bursts of up to as many.

Buckets live in the process, so with ``serve --workers N`` each worker keeps its own: a key may
make up to N times the limit. Only authenticated keys get a bucket, so their number is bounded;
a limiter keyed by something unbounded (the review page's sign-in, by client address) passes
``max_buckets``, and beyond it buckets that have filled up again (as good as new) are dropped.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_buckets: int | None = None
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60
        self._clock = clock
        self.max_buckets = max_buckets
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when counted)
        self._lock = threading.Lock()

    def retry_after(self, key_id: str) -> int:
        """Take a token for ``key_id``: 0 if it had one, else whole seconds until it will."""
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
            return max(1, math.ceil((1 - tokens) / self.refill_per_second))

    def _drop_full_buckets(self, now: float) -> None:
        self._buckets = {
            key: (tokens, counted_at)
            for key, (tokens, counted_at) in self._buckets.items()
            if tokens + (now - counted_at) * self.refill_per_second < self.capacity
        }
