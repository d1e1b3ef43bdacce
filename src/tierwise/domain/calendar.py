"""Calendar arithmetic in a program's time zone (R14, R27).

Instants are aware ``datetime`` values (stored in UTC); calendar boundaries such as
"midnight", "the first of January" or "the anniversary" are computed in the program's
IANA zone and converted back to instants. Month arithmetic clamps to the month's last
day, so Feb 29 anniversaries fall on Feb 28 in non-leap years.
"""

from __future__ import annotations

import calendar as _cal
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ONE_SECOND = timedelta(seconds=1)


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; raises ``ValueError`` for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def ensure_aware(instant: datetime) -> datetime:
    """Reject naive datetimes: every instant must carry its offset."""
    if instant.tzinfo is UTC:
        return instant
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("instant must include a time zone offset")
    return instant.astimezone(UTC)


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    """The calendar day ``instant`` falls on in ``tz``."""
    return instant.astimezone(tz).date()


def start_of_day(day: date, tz: ZoneInfo) -> datetime:
    """The instant (UTC) at which local ``day`` begins in ``tz``."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def end_of_day(day: date, tz: ZoneInfo) -> datetime:
    """The last second (23:59:59 local) of ``day`` in ``tz``, as a UTC instant."""
    return start_of_day(day + timedelta(days=1), tz) - ONE_SECOND


def clamp_day(year: int, month: int, day: int) -> date:
    """``date(year, month, day)`` with ``day`` clamped to the month's length."""
    return date(year, month, min(day, _cal.monthrange(year, month)[1]))


def add_months(day: date, months: int, *, anchor_day: int | None = None) -> date:
    """``day`` moved by ``months`` calendar months, clamped to the month's last day.

    ``anchor_day`` keeps the original day-of-month across repeated additions
    (Jan 31 + 1 month = Feb 28/29, + 2 months = Mar 31).
    """
    index = day.year * 12 + (day.month - 1) + months
    year, month0 = divmod(index, 12)
    return clamp_day(year, month0 + 1, anchor_day if anchor_day is not None else day.day)


def last_day_of_month(day: date) -> date:
    return clamp_day(day.year, day.month, 31)


def latest_occurrence(month: int, day: int, on_or_before: date) -> date:
    """The most recent (month, day) on or before ``on_or_before``, clamping Feb 29."""
    candidate = clamp_day(on_or_before.year, month, day)
    if candidate > on_or_before:
        candidate = clamp_day(on_or_before.year - 1, month, day)
    return candidate


def next_occurrence(month: int, day: int, after: date) -> date:
    """The first (month, day) strictly after ``after``, clamping Feb 29."""
    candidate = clamp_day(after.year, month, day)
    if candidate <= after:
        candidate = clamp_day(after.year + 1, month, day)
    return candidate
