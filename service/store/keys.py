"""API keys: ``cc_<key id>_<secret>``, shown once; only the SHA-256 of the secret is stored.

Each key belongs to one organization (``default`` unless made with another) and holds one role:

- ``intake``: submits evaluations and reads its own organization's;
- ``reviewer``: everything an ``intake`` key may, for every organization, and the reviewer's work
  (lists by ``external_id``, notes, the review page);
- ``auditor``: the audit trail and the metrics of every organization, nothing else.

What a key may read is decided by ``store/tenancy.py``.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update

from service.store.database import Database
from service.store.tables import DEFAULT_ORGANIZATION, ORGANIZATION_LENGTH, ApiKey, as_utc, utc_now
from service.store.tenancy import reads_every_organization

ROLES = ("intake", "reviewer", "auditor")
# What each role may do, by the role names routes ask for.
GRANTS = {"intake": frozenset({"intake"}), "reviewer": frozenset({"intake", "reviewer"}),
          "auditor": frozenset({"auditor"})}
MAX_LABEL_LENGTH = 200
MAX_NAME_LENGTH = 200
_KEY_BY_ID = select(
    ApiKey.id, ApiKey.role, ApiKey.label, ApiKey.secret_sha256, ApiKey.revoked_at, ApiKey.organization, ApiKey.name
).where(ApiKey.id == bindparam("key_id"))
_KEY_PATTERN = re.compile(r"cc_(?P<key_id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class KeyRecord:
    """An authenticated key: the caller every read of case data takes (``store/tenancy.py``)."""

    id: str
    role: str
    label: str | None
    organization: str
    name: str | None = None  # the reviewer's name as notes, determinations and printouts show it

    def has_role(self, *admitted: str) -> bool:
        """Whether this key may do what any of the ``admitted`` roles may."""
        return not GRANTS[self.role].isdisjoint(admitted)

    @property
    def reads_every_organization(self) -> bool:
        return reads_every_organization(self)


def roles_granting(role: str) -> list[str]:
    """The roles whose keys may do what ``role`` may (``reviewer`` -> reviewer)."""
    return [held for held in ROLES if role in GRANTS[held]]


def create_key(db: Database, role: str, label: str | None = None, organization: str = DEFAULT_ORGANIZATION,
               name: str | None = None) -> tuple[str, str]:
    """Store a new key and return ``(key_id, plaintext)``; the plaintext cannot be recovered later."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if label is not None and len(label) > MAX_LABEL_LENGTH:
        raise ValueError(f"label must be at most {MAX_LABEL_LENGTH} characters")
    if name is not None and not (0 < len(name) <= MAX_NAME_LENGTH and name.isprintable() and name.strip() == name):
        raise ValueError(f"name must be 1 to {MAX_NAME_LENGTH} printable characters, without leading or trailing spaces")
    if not valid_organization(organization):
        raise ValueError(f"organization must be 1 to {ORGANIZATION_LENGTH} visible characters, without spaces")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    with db.transaction() as session:
        session.add(ApiKey(id=key_id, role=role, label=label, secret_sha256=_digest(secret), created_at=utc_now(),
                           organization=organization, name=name))
    return key_id, f"cc_{key_id}_{secret}"


def valid_organization(organization: object) -> bool:
    """1-128 visible characters (a name, or a CDS client's issuer URL): nothing that could hide
    one organization behind another on a screen or in a log."""
    return (isinstance(organization, str) and 0 < len(organization) <= ORGANIZATION_LENGTH
            and organization.isprintable() and not any(ch.isspace() for ch in organization))


def list_keys(db: Database) -> list[dict[str, Any]]:
    """Every key, oldest first, without its hash; timestamps as ISO 8601 UTC strings."""
    with db.session() as session:
        keys = session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))
        return [
            {
                "id": key.id,
                "role": key.role,
                "organization": key.organization,
                "name": key.name,
                "label": key.label,
                "created_at": _iso(key.created_at),
                "revoked_at": _iso(key.revoked_at) if key.revoked_at else None,
            }
            for key in keys
        ]


def revoke_key(db: Database, key_id: str) -> bool:
    """Revoke an active key; False when there is no such key or it was already revoked."""
    with db.transaction() as session:
        revoked = session.execute(
            update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utc_now())
        )
        done = revoked.rowcount == 1
    if done and db.key_changes is not None:  # committed: every process drops the keys it keeps
        db.key_changes.bump()
    return done


def authenticate(db: Database, presented: str | None) -> KeyRecord | None:
    """The active key matching ``presented``; None when it is missing, malformed, unknown or revoked."""
    match = _KEY_PATTERN.fullmatch(presented or "")
    if match is None:
        return None
    # A plain indexed select (~11 µs; the ORM took ~300 µs), kept on SQLite until a key changes
    # (store/key_changes.py): a revoked key stops working at once either way.
    key_id = match["key_id"]
    changes = db.key_changes
    if changes is None:
        key = db.first(_KEY_BY_ID, key_id=key_id)
    elif (key := changes.kept(key_id)) is None:
        key = changes.read(key_id, lambda: db.first(_KEY_BY_ID, key_id=key_id))
    if key is None:
        return None
    key_id, role, label, secret_sha256, revoked_at, organization, name = key
    if revoked_at is not None or not hmac.compare_digest(secret_sha256, _digest(match["secret"])):
        return None
    return KeyRecord(id=key_id, role=role, label=label, organization=organization, name=name)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _iso(moment: datetime.datetime) -> str:
    return as_utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")
