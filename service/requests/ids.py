"""Request ids: the HMAC-SHA-256 of (organization, policy, external_id) under a secret kept in
the database, written as a UUID (version 8, RFC 9562's custom layout).

Known before anything is stored, so the result can name its request when it is first returned
(it is then served byte for byte), and two first submissions of one request made at once, by
two threads or two worker processes, compute the same id: no lookup on the hot path, no race.
Keyed, so an id in a URL or a log line cannot be turned back into the intake reference by trying
likely ones. The secret is made by migration ``0006_requests`` and read once per database.
"""

from __future__ import annotations

import weakref

from sqlalchemy import select

from service.store.database import Database
from service.store.requests import RequestIdSecret, make_request_id

_secrets: weakref.WeakKeyDictionary[Database, bytes] = weakref.WeakKeyDictionary()


def request_id(db: Database, organization: str, policy_id: str, external_id: str) -> str:
    return make_request_id(_secret(db), organization, policy_id, external_id)


def _secret(db: Database) -> bytes:
    secret = _secrets.get(db)
    if secret is None:
        with db.session() as session:
            stored = session.scalar(select(RequestIdSecret.secret).where(RequestIdSecret.id == 1))
        if stored is None:
            raise RuntimeError("the database has no request id secret: run the migrations")
        secret = _secrets[db] = bytes.fromhex(stored)
    return secret
