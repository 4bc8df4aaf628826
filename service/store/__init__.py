"""Durable storage: evaluations, API keys, Idempotency-Key records and their migrations."""

# Every model joins Base.metadata on import, so that the schema the models describe is complete
# whichever module a caller imports first (tests compare it with the migrations).
from service.store import idempotency  # noqa: F401
