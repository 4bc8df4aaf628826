"""Durable storage, near the ground: nothing here imports another room of the service.

- ``tables``: the shared tables (API keys, evaluations, Idempotency-Key records) and the clock;
- ``requests``: the requests table (and the upsert a submission writes it with);
- ``determinations``: reviewers' determinations, append-only;
- ``database``: engine, sessions, migrations, the driver-level statements of the hot path
  (compiled once each by ``driver_sql``);
- ``group_commit``: one writer thread committing every waiting evaluation together;
- ``evaluations``: evaluations stored and read back byte for byte;
- ``idempotency``: Idempotency-Key claims and records;
- ``keys``: API keys, their roles and organizations;
- ``tenancy``: who may read what: the one filter every read of case data takes;
- ``audit``: the audit trail's append-only table;
- ``paging``: the one cursor pager;
- ``ratelimits``: rate-limit buckets every server sharing a PostgreSQL database counts in.
"""

# Every model joins Base.metadata on import, so that the schema the models describe is complete
# whichever module a caller imports first (tests compare it with the migrations).
from service.store import audit, determinations, ratelimits, requests, tables  # noqa: F401
