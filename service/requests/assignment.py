"""A reviewer takes a request, or releases it: ``PUT /v1/requests/{id}/assignee``.

Taking is refused (Conflict) while another reviewer holds the request, so two reviewers who click
"take" at once do not both believe it is theirs; releasing is open to any reviewer (a colleague
may be away). Each is one conditional UPDATE: no read-then-write race, no lock to upgrade.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, or_, select, update

from service.errors import Conflict, NotFound
from service.requests.people import name_column
from service.requests.queue import get_request
from service.store.database import Database
from service.store.keys import KeyRecord
from service.store.requests import Request
from service.store.tables import ApiKey, storable, utc_now

NO_SUCH_REQUEST = "No request with this id."


def set_assignee(db: Database, request_id: str, assignee: str | None, *, by: KeyRecord) -> dict[str, Any]:
    """Assign the request to the reviewer ``by`` (``assignee`` = ``"me"``) or to nobody (None);
    returns the request as :func:`~service.requests.queue.get_request` gives it to ``by``.
    NotFound for an unknown id; Conflict when another reviewer holds it."""
    by_key_id = by.id
    if assignee not in ("me", None):
        raise ValueError("assignee must be 'me' or None")
    if not storable(request_id):
        raise NotFound(NO_SUCH_REQUEST)
    now = utc_now()
    with db.write() as connection:
        if assignee == "me":
            changed = connection.execute(
                update(Request)
                .where(Request.id == request_id,
                       or_(Request.assigned_key_id.is_(None), Request.assigned_key_id == by_key_id))
                .values(assigned_key_id=by_key_id,
                        assigned_at=case((Request.assigned_key_id.is_(None), now), else_=Request.assigned_at))
            ).rowcount
        else:
            changed = connection.execute(
                update(Request).where(Request.id == request_id).values(assigned_key_id=None, assigned_at=None)
            ).rowcount
        if not changed:
            holder = connection.execute(
                select(Request.assigned_key_id, name_column())
                .outerjoin(ApiKey, ApiKey.id == Request.assigned_key_id).where(Request.id == request_id)
            ).first()
    if changed:
        return get_request(db, request_id, by)
    if holder is None:
        raise NotFound(NO_SUCH_REQUEST)
    raise Conflict(f"This request is assigned to {holder[1] or holder[0]}; they (or any reviewer) "
                   "may release it first.")
