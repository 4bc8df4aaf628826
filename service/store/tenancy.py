"""Who may read what: the one place that decides it (contract, "Organizations").

Every read of case data takes the caller and passes its query through :func:`visible_to`: an
``intake`` caller sees only its own organization's rows; ``reviewer`` and ``auditor`` callers see
every organization's. A row of another organization is thereby exactly as absent as an unknown
id, so the faces answer both with the same 404, byte for byte, without deciding anything
themselves. A caller is a :class:`~service.store.keys.KeyRecord` (an API key, or a CDS Hooks
client's key), or anything with the same two attributes.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy import Select

# Roles that read every organization; every other role reads only its own.
READS_EVERY_ORGANIZATION = frozenset({"reviewer", "auditor"})

Query = TypeVar("Query", bound=Select)


class Caller(Protocol):
    @property
    def role(self) -> str: ...

    @property
    def organization(self) -> str: ...


def reads_every_organization(caller: Caller) -> bool:
    return caller.role in READS_EVERY_ORGANIZATION


def visible_to(caller: Caller, query: Query, organization: Any) -> Query:
    """``query`` restricted to the rows ``caller`` may read, ``organization`` being the column
    that says whose a row is (``Evaluation.organization``, a request's, …)."""
    if reads_every_organization(caller):
        return query
    return query.where(organization == caller.organization)
