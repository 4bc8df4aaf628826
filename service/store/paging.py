"""One cursor pager for every paged list (evaluations, the work queue; the audit trail and review
search build on it): by (a timestamp, an id), newest first or soonest first, an opaque cursor
holding the position of the last row handed out, one format and one error (:class:`InvalidCursor`)."""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, literal, tuple_
from sqlalchemy.orm import Session

from service.store.tables import as_utc, storable


class InvalidCursor(ValueError):
    """A paging cursor this service did not hand out."""


@dataclass(frozen=True)
class Page:
    results: list[Any]
    next_cursor: str | None  # None on the last page


def newest_first(session: Session, query: Select, moment: Any, row_id: Any, limit: int, cursor: str | None) -> Page:
    """Run ``query`` (whose rows carry ``moment`` and ``row_id`` columns) newest first, ``limit``
    rows at a time, after the position ``cursor`` names. Ordered by the moment, then the id, so
    that rows of the same microsecond keep one order and a page never repeats or skips one."""
    return _paged(session, query, moment, row_id, limit, cursor, descending=True)


def soonest_first(session: Session, query: Select, moment: Any, row_id: Any, limit: int, cursor: str | None) -> Page:
    """Like :func:`newest_first`, earliest moment first (the work queue: the soonest due first)."""
    return _paged(session, query, moment, row_id, limit, cursor, descending=False)


def _paged(session: Session, query: Select, moment: Any, row_id: Any, limit: int, cursor: str | None,
           descending: bool) -> Page:
    if cursor is not None:
        after_moment, after_id = decode_cursor(cursor)
        # A row value, which both databases match with the index (an OR of the two parts is
        # scanned from the start of the list on SQLite: a deep page cost as much as all before it).
        position, after = tuple_(moment, row_id), tuple_(literal(after_moment, moment.type), literal(after_id))
        query = query.where(position < after if descending else position > after)
    order = (moment.desc(), row_id.desc()) if descending else (moment.asc(), row_id.asc())
    rows = session.execute(query.order_by(*order).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    return Page(rows, encode_cursor(getattr(last, moment.key), getattr(last, row_id.key)) if last else None)


def encode_cursor(moment: datetime.datetime, row_id: str) -> str:
    position = json.dumps([as_utc(moment).isoformat(), row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime.datetime, str]:
    try:
        moment, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        when = datetime.datetime.fromisoformat(moment)
    except (ValueError, TypeError) as error:  # binascii.Error, JSON, unpacking and dates are ValueErrors
        raise InvalidCursor("not a cursor this service handed out") from error
    if when.tzinfo is None or not isinstance(row_id, str) or not storable(row_id):
        raise InvalidCursor("not a cursor this service handed out")
    return when, row_id
