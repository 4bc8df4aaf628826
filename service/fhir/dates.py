"""FHIR dates and dateTimes as the intake reads them, whatever their year or offset, and the spans
between days that fields count (completed months and years)."""

from __future__ import annotations

import calendar
import datetime
import re
from typing import Any

__all__ = ["completed_months", "completed_years", "moment"]


def moment(text: Any, latest: bool = False) -> tuple[datetime.date, datetime.timedelta] | None:
    """A FHIR date or dateTime as (its day, its instant as a sort key: the time since 0001-01-01T00:00Z,
    which may be negative); a partial date (2024, 2024-03) is its first day, or with ``latest`` its
    last day. None when absent or unreadable. Any valid FHIR dateTime is read, those whose UTC instant
    falls outside Python's years 1-9999 too (``0001-01-01T00:00:00+14:00``), and a leap second
    (``23:59:60``) is the second before it."""
    if not isinstance(text, str) or len(text) < 4:
        return None
    try:
        if len(text) == 4:
            day = datetime.date(int(text), 12 if latest else 1, 31 if latest else 1)
        elif len(text) == 7:
            year, month = int(text[:4]), int(text[5:7])
            day = datetime.date(year, month, calendar.monthrange(year, month)[1] if latest else 1)
        elif len(text) == 10:
            day = datetime.date.fromisoformat(text)
        else:
            leap = _LEAP_SECOND.search(text)
            if leap:
                text = text[:leap.start(1)] + "59" + text[leap.end(1):]
            instant = datetime.datetime.fromisoformat(text)
            offset = instant.utcoffset() or datetime.timedelta()
            # Local time minus the offset, as a span from year 1: no datetime outside years 1-9999
            # is ever made (astimezone would overflow near either end).
            since = instant.replace(tzinfo=None) - _EPOCH - offset
            return instant.date(), since
    except (ValueError, OverflowError):
        return None
    return day, datetime.datetime.combine(day, datetime.time()) - _EPOCH


_EPOCH = datetime.datetime(1, 1, 1)
_LEAP_SECOND = re.compile(r"T\d\d:\d\d:(60)")


def completed_months(start: datetime.date, end: datetime.date) -> int:
    months = (end.year - start.year) * 12 + end.month - start.month
    return months - (1 if end.day < start.day else 0)


def completed_years(birth: datetime.date, day: datetime.date) -> int:
    """Age in completed years on ``day``: a birthday on ``day`` counts."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
