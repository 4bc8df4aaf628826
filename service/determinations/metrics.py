"""The CMS-0057-F figures, from the records: ``GET /v1/metrics`` and ``coverage-criteria metrics``.

For the requests received in a period (``from`` and ``to`` inclusive, UTC days), per priority and
overall (shared/contract.md, "Audit trail and metrics"):

- ``received``; ``determined``: how many requests' latest closing determination is ``approved``,
  ``denied`` or ``partially_approved`` (a request counts once, by its latest one);
- ``percent_approved``, ``percent_denied``: of those determined, 0-100, one decimal (null when
  none was determined);
- ``mean_hours_to_determination``, ``median_hours_to_determination``: from ``received_at`` to
  the request's first closing determination, two decimals (null when none);
- ``decided_late``: requests whose first closing determination came after their ``due_at``;
- ``open``, ``overdue``: requests open now, and those of them past their ``due_at`` now.
"""

from __future__ import annotations

import csv
import datetime
import io
import statistics
from typing import Any

from sqlalchemy import select

from service.store.database import Database
from service.store.determinations import CLOSING, Determination
from service.store.requests import PRIORITIES, Request
from service.store.tables import as_utc, utc_now

CSV_COLUMNS = ("scope", "from", "to", "received", *CLOSING, "percent_approved", "percent_denied",
               "mean_hours_to_determination", "median_hours_to_determination", "decided_late", "open", "overdue")


def metrics(db: Database, start: datetime.date, end: datetime.date,
            now: datetime.datetime | None = None) -> dict[str, Any]:
    """``{"from", "to", "overall": M, "by_priority": {"standard": M, "expedited": M}}`` for the
    requests received from ``start`` to ``end`` (inclusive)."""
    now = now or utc_now()
    since = datetime.datetime.combine(start, datetime.time(), datetime.UTC)
    until = datetime.datetime.combine(end, datetime.time.max, datetime.UTC)  # (no day after 9999-12-31)
    received = (Request.received_at >= since) & (Request.received_at <= until)
    with db.session() as session:
        requests = session.execute(
            select(Request.id, Request.priority, Request.received_at, Request.due_at, Request.state).where(received)
        ).all()
        closing = session.execute(
            select(Determination.request_id, Determination.outcome, Determination.recorded_at)
            .join(Request, Request.id == Determination.request_id)
            .where(received, Determination.outcome.in_(CLOSING))
            .order_by(Determination.recorded_at, Determination.id)
        ).all()
    first: dict[str, datetime.datetime] = {}
    latest: dict[str, str] = {}
    for request_id, outcome, recorded_at in closing:
        first.setdefault(request_id, as_utc(recorded_at))
        latest[request_id] = outcome
    figures = {"overall": _Figures(), **{priority: _Figures() for priority in PRIORITIES}}
    for row in requests:
        for scope in ("overall", row.priority):
            figures[scope].add(row, first.get(row.id), latest.get(row.id), now)
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "overall": figures["overall"].result(),
        "by_priority": {priority: figures[priority].result() for priority in PRIORITIES},
    }


class _Figures:
    def __init__(self) -> None:
        self.received = self.decided_late = self.open = self.overdue = 0
        self.determined = dict.fromkeys(CLOSING, 0)
        self.hours: list[float] = []

    def add(self, row: Any, first_closed: datetime.datetime | None, outcome: str | None,
            now: datetime.datetime) -> None:
        received_at, due_at = as_utc(row.received_at), as_utc(row.due_at)
        self.received += 1
        if outcome is not None:
            self.determined[outcome] += 1
        if first_closed is not None:
            self.hours.append((first_closed - received_at).total_seconds() / 3600)
            self.decided_late += first_closed > due_at
        if row.state == "open":
            self.open += 1
            self.overdue += due_at < now

    def result(self) -> dict[str, Any]:
        decided = sum(self.determined.values())
        return {
            "received": self.received,
            "determined": dict(self.determined),
            "percent_approved": round(100 * self.determined["approved"] / decided, 1) if decided else None,
            "percent_denied": round(100 * self.determined["denied"] / decided, 1) if decided else None,
            "mean_hours_to_determination": round(statistics.fmean(self.hours), 2) if self.hours else None,
            "median_hours_to_determination": round(statistics.median(self.hours), 2) if self.hours else None,
            "decided_late": self.decided_late,
            "open": self.open,
            "overdue": self.overdue,
        }


def metrics_csv(figures: dict[str, Any]) -> str:
    """The figures as CSV: a header, then one line each for overall, standard and expedited (an
    empty cell where the JSON has null)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    scopes = [("overall", figures["overall"]), *figures["by_priority"].items()]
    for scope, m in scopes:
        values = {"scope": scope, "from": figures["from"], "to": figures["to"], **m, **m["determined"]}
        writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])
    return out.getvalue()
