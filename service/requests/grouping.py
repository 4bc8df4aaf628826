"""A submission's request: which request an evaluation opens or resubmits, its clocks, and the
row that rides the evaluation's group commit.

The first submission of an ``external_id`` by an organization under a policy opens a request;
later ones are its resubmissions (store/requests.py's upsert counts them, reopens the request,
and keeps the newest as its latest). ``received_at`` is when the first was accepted; ``due_at``
is ``received_at`` + 72 hours (expedited) or + 7 calendar days (standard), CMS-0057-F's
timeframes, configurable (:class:`DueClock`).
"""

from __future__ import annotations

import datetime
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert

from service.settings import DEFAULT_DUE_HOURS_EXPEDITED, DEFAULT_DUE_HOURS_STANDARD, due_hours_from_env
from service.store.database import Database
from service.store.requests import request_upsert
from service.requests.ids import request_id

DEFAULT_PRIORITY = "standard"


@dataclass(frozen=True)
class DueClock:
    """Hours from a request's receipt to its due time, by priority."""

    expedited_hours: int = DEFAULT_DUE_HOURS_EXPEDITED
    standard_hours: int = DEFAULT_DUE_HOURS_STANDARD

    @classmethod
    def from_settings(cls, settings: Any) -> DueClock:
        return cls(settings.due_hours_expedited, settings.due_hours_standard)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DueClock:
        hours = due_hours_from_env(environ)
        return cls(hours["due_hours_expedited"], hours["due_hours_standard"])

    def due(self, received_at: datetime.datetime, priority: str) -> datetime.datetime:
        hours = self.expedited_hours if priority == "expedited" else self.standard_hours
        return received_at + datetime.timedelta(hours=hours)


@functools.cache
def clock_from_env() -> DueClock:
    """The clock of a caller that passes none (read once from the environment, as ``serve`` does)."""
    return DueClock.from_env()


def case_priority(case: Any) -> str:
    """A validated case's priority (``standard`` when it gives none)."""
    return (case.get("priority") if isinstance(case, dict) else None) or DEFAULT_PRIORITY


def request_of_result(db: Database, result: dict[str, Any], organization: str) -> str:
    """The id of the request that ``result`` (an evaluation not yet stored) opens or resubmits.
    Reads nothing but, once per database, the id secret."""
    return request_id(db, organization, result["policy"]["id"], result["external_id"])


def request_row(
    db: Database, rid: str, result: dict[str, Any], *, priority: str, organization: str, at: datetime.datetime,
    clock: DueClock | None = None,
) -> tuple[Insert, dict[str, Any]]:
    """The row of request ``rid`` that a submission (``result``, stored ``at``: its evaluation's
    ``created_at``) writes, to commit before the evaluation's own row, in the same transaction."""
    external_id, policy_id = result["external_id"], result["policy"]["id"]
    row = {
        "id": rid,
        "organization": organization,
        "external_id": external_id,
        "external_id_folded": external_id.casefold(),
        "policy_id": policy_id,
        "priority": priority,
        "received_at": at,
        "due_at": (clock or clock_from_env()).due(at, priority),
        "state": "open",
        "submissions": 1,
        "latest_evaluation_id": result["evaluation_id"],
        "latest_outcome": result["summary"]["outcome"],
        "latest_at": at,
    }
    return request_upsert(db.engine.dialect.name), row


def with_request_id(result: dict[str, Any], rid: str | None) -> dict[str, Any]:
    """The result naming its request (``request_id`` right after ``external_id``; null for an
    evaluation that opens none), before it is serialized, stored and returned."""
    named: dict[str, Any] = {}
    for name, value in result.items():
        named[name] = value
        if name == "external_id":
            named["request_id"] = rid
    return named
