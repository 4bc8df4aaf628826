"""One request's audit record: what it did (``action``), to what (``resource``, ``resource_id``),
who did it (:class:`Actor`), from where, and how it ended (the HTTP status).

A route declares its :class:`Access` (``service.web.audit.audited``); the record is written once
the response's status is known, by the group-commit writer, before the response is sent. A write
that stores case data adds the record to its own transaction instead (:meth:`Access.rows`, then
:meth:`Access.committed`), so the data and its record are stored together or not at all.

Nothing here ever holds a case value: ids, names of keys and organizations, codes and numbers.
"""

from __future__ import annotations

import getpass
import os
import time
from dataclasses import dataclass
from typing import Any

from service.engine.ids import new_id
from service.store.audit import RESOURCE_ID_LENGTH, audit_row
from service.store.database import Database
from service.store.group_commit import Rows
from service.store.keys import KeyRecord
from service.store.tables import storable

ACTIONS = ("read", "search", "create", "sign-in", "sign-in-failed", "export")
RESOURCES = ("evaluation", "request", "determination", "note", "questionnaire", "audit", "metrics", "page")
CLIENT_IP_LENGTH = 64


@dataclass(frozen=True)
class Actor:
    """Who made a request: an API key (``key_id``, ``name``, ``role``), or a CDS Hooks client
    (``client``: its issuer, and the key id that stands for it); and their organization."""

    key_id: str | None
    name: str | None
    role: str | None
    organization: str | None
    client: str | None = None

    @classmethod
    def of_key(cls, key: KeyRecord) -> Actor:
        return cls(key.id, key.name or key.label, key.role, key.organization)

    @classmethod
    def of_cds_client(cls, key_id: str | None, issuer: str, organization: str | None) -> Actor:
        return cls(key_id, None, None, organization, client=issuer)

    @classmethod
    def operator(cls) -> Actor:
        """Whoever runs a command that reads case data (``rules impact``): the operating-system
        user, at the command line, over every organization."""
        try:
            user = getpass.getuser()
        except (OSError, KeyError):  # no name for this uid (a container's, say)
            user = f"uid {os.getuid()}"
        return cls(None, f"{user} (command line)"[:200], OPERATOR, None)


NOBODY = Actor(None, None, None, None)
OPERATOR = "operator"  # the role of a record made at the command line (no API key)


@dataclass
class Access:
    """The record one request will leave. ``resource_id`` and ``action`` may be settled by the
    route as it learns them (the id of what it created; a failed sign-in)."""

    action: str
    resource: str
    resource_id: str | None = None
    client_ip: str | None = None
    actor: Actor | None = None
    written: bool = False

    def __post_init__(self) -> None:
        if self.action not in ACTIONS or self.resource not in RESOURCES:
            raise ValueError(f"not an audited action and resource: {self.action!r} {self.resource!r}")

    def rows(self, status: int) -> Rows:
        """The record as rows to commit with the request's own write; call :meth:`committed`
        once that write has committed, so that the record is not written twice."""
        actor = self.actor or NOBODY
        return [audit_row(
            time_ordered_id(),
            actor_key_id=actor.key_id,
            actor_name=actor.name,
            actor_role=actor.role,
            actor_client=_bounded(actor.client, 512),
            organization=actor.organization,
            action=self.action,
            resource=self.resource,
            resource_id=_bounded(self.resource_id, RESOURCE_ID_LENGTH),
            status=status,
            client_ip=_bounded(self.client_ip, CLIENT_IP_LENGTH),
        )]

    def committed(self) -> None:
        self.written = True

    async def write(self, db: Database, status: int) -> None:
        """Commit the record by itself (group commit, waiting without blocking the event loop)."""
        if not self.written:
            await db.writer.commit_async(self.rows(status))
            self.written = True


def time_ordered_id() -> str:
    """A UUID version 7 (RFC 9562): the Unix time in milliseconds, then random bits (those of
    ``engine/ids.py``, which makes no system call per id). Records are appended in time order, so
    each commit adds to the last page of the table's key instead of a random one."""
    random_hex = new_id().replace("-", "")
    text = f"{time.time_ns() // 1_000_000:012x}7{random_hex[13:]}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:32]}"


def _bounded(value: Any, length: int) -> str | None:
    """What a client sent (an id in a path), as it can be stored: at most ``length`` characters."""
    if not isinstance(value, str) or not storable(value):
        return None
    return value[:length]
