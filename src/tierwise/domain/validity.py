"""Validity: when a held level expires and when its check is due (R14, R15).

Pure functions, no clock and no I/O. Every instant going in must be timezone-aware;
every instant coming out is in UTC. Calendar boundaries (month arithmetic, "the end of
the day", anniversaries, year ends) are computed in the program's zone ``tz``.

Conventions:

- ``expiry`` is the last whole second a level is valid (e.g. 23:59:59 local). A level
  held from ``tier_start`` is valid on ``[tier_start, expiry + 1 second)``, and a
  renewed level starts its next cycle at ``next_cycle_start(expiry) = expiry + 1 s``.
- Calendar-based validities (anniversary, fixed date, calendar year, fixed year) end at
  the end of a local day. A level reached in the very last second of its period
  therefore gets an expiry equal to (or, with sub-second starts, a fraction of a second
  before) its start; its check is still due at the period boundary, after the start.
- ``fixed_months`` works on the naive local wall-clock time of the start: the date moves
  by N calendar months (clamped to the month's last day), the time of day is kept, the
  result is localised in ``tz`` and one second is subtracted from that instant. A target
  wall-clock time that falls in a DST gap is resolved with ``fold=0`` (it lands after
  the gap); an ambiguous one (DST fall-back) resolves to its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from tierwise.domain.calendar import (
    ONE_SECOND,
    add_months,
    end_of_day,
    ensure_aware,
    last_day_of_month,
    local_date,
    next_occurrence,
)
from tierwise.domain.ladder import CheckSchedule, Validity, ValidityType

__all__ = ["check_due_at", "expiry_of", "next_cycle_start"]

ONE_DAY = timedelta(days=1)


def expiry_of(
    validity: Validity,
    *,
    tier_start: datetime,
    enrolled_at: datetime,
    tz: ZoneInfo,
    last_activity_at: datetime | None = None,
) -> datetime | None:
    """The last instant (UTC, aware) the level is valid, or None when it never expires.

    R14. ``tier_start`` is when the member entered the level (an upgrade restarts it),
    ``enrolled_at`` the member's enrolment (for anniversaries), ``last_activity_at`` the
    member's latest activity (for inactivity validity).
    """
    kind = validity.type
    if kind is ValidityType.NONE:
        return None  # never expires (``_expiry`` is not asked)
    if (
        kind is not ValidityType.ENROLMENT_ANNIVERSARY
        and kind is not ValidityType.INACTIVITY
        and tier_start.tzinfo is UTC
    ):
        # Depends on the start alone: computed once per (validity, start, zone).
        return _shared_expiry(validity, tier_start, tz)
    return _expiry(validity, tier_start, enrolled_at, tz, last_activity_at)


@lru_cache(maxsize=8192)
def _shared_expiry(validity: Validity, tier_start: datetime, tz: ZoneInfo) -> datetime | None:
    return _expiry(validity, tier_start, tier_start, tz, None)


def _expiry(
    validity: Validity,
    tier_start: datetime,
    enrolled_at: datetime,
    tz: ZoneInfo,
    last_activity_at: datetime | None,
) -> datetime | None:
    start = ensure_aware(tier_start)
    start_day = local_date(start, tz)
    match validity.type:
        case ValidityType.FIXED_MONTHS:
            return _fixed_months_expiry(start, _need(validity.months, "months"), tz)
        case ValidityType.ENROLMENT_ANNIVERSARY:
            enrolled_day = local_date(ensure_aware(enrolled_at), tz)
            day = _first_occurrence(
                enrolled_day.month, enrolled_day.day, start_day, validity.min_stay_months
            )
            return end_of_day(day, tz)
        case ValidityType.FIXED_DATE:
            day = _first_occurrence(
                _need(validity.month, "month"),
                _need(validity.day, "day"),
                start_day,
                validity.min_stay_months,
            )
            return end_of_day(day, tz)
        case ValidityType.CALENDAR_YEAR:
            period_last_day = date(start_day.year, 12, 31)
            return end_of_day(_extended(period_last_day, validity.extend_months), tz)
        case ValidityType.FIXED_YEAR:
            next_period_start = next_occurrence(
                _need(validity.month, "month"), _need(validity.day, "day"), start_day
            )
            period_last_day = next_period_start - ONE_DAY
            return end_of_day(_extended(period_last_day, validity.extend_months), tz)
        case ValidityType.INACTIVITY:
            days = _need(validity.inactivity_days, "inactivity_days")
            reference = start
            if last_activity_at is not None:
                reference = max(start, ensure_aware(last_activity_at))
            return reference + timedelta(days=days) - ONE_SECOND
    raise ValueError(f"unknown validity type {validity.type!r}")  # pragma: no cover


def check_due_at(expiry: datetime, schedule: CheckSchedule, tz: ZoneInfo) -> datetime:
    """The instant the check of a level expiring at `expiry` becomes due.

    R15. ``daily``: the second after the expiry. ``month_end``: the first instant of the
    local month after the expiry's local month (the level is checked when the month in
    which it expires is over).
    """
    if expiry.tzinfo is UTC:
        return _shared_check_due_at(expiry, schedule, tz)
    return _check_due_at(expiry, schedule, tz)


def _check_due_at(expiry: datetime, schedule: CheckSchedule, tz: ZoneInfo) -> datetime:
    instant = ensure_aware(expiry)
    match schedule:
        case CheckSchedule.DAILY:
            return instant + ONE_SECOND
        case CheckSchedule.MONTH_END:
            month_end = last_day_of_month(local_date(instant, tz))
            return end_of_day(month_end, tz) + ONE_SECOND
    raise ValueError(f"unknown check schedule {schedule!r}")  # pragma: no cover


_shared_check_due_at = lru_cache(maxsize=8192)(_check_due_at)


def next_cycle_start(expiry: datetime) -> datetime:
    """Start of the next validity cycle after a renewal at `expiry`: expiry + 1 second.

    R16: a renewed level's new cycle begins right after the old one's last second.
    """
    return ensure_aware(expiry) + ONE_SECOND


# -- helpers ---------------------------------------------------------------------------


def _need(value: int | None, name: str) -> int:
    """A parameter the validity type requires (``Validity`` already enforces this)."""
    if value is None:
        raise ValueError(f"validity parameter {name!r} is missing")
    return value


def _fixed_months_expiry(start: datetime, months: int, tz: ZoneInfo) -> datetime:
    """R14 ``fixed_months``: local wall-clock start + N months, localised, minus 1 second."""
    local = start.astimezone(tz)
    target_day = add_months(local.date(), months)
    end = datetime.combine(target_day, local.time().replace(fold=0), tzinfo=tz)
    return end.astimezone(UTC) - ONE_SECOND


def _first_occurrence(month: int, day: int, start_day: date, min_stay_months: int | None) -> date:
    """The first (month, day) strictly after ``start_day``; with a minimum stay, the
    first one on or after ``start_day`` + ``min_stay_months`` months (Feb 29 clamps)."""
    if min_stay_months is None:
        return next_occurrence(month, day, start_day)
    earliest = add_months(start_day, min_stay_months)
    return next_occurrence(month, day, earliest - ONE_DAY)


def _extended(period_last_day: date, extend_months: int | None) -> date:
    """The period's last day, or with ``extend_months`` = K the last day of the month
    K months after it (Dec 31 + 3 → Mar 31)."""
    if extend_months is None:
        return period_last_day
    return last_day_of_month(add_months(period_last_day, extend_months))
