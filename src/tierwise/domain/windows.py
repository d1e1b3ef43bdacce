"""Windows: the period over which a metric is summed (semantics §1).

A window resolves, for a given instant ``as_of``, to an interval ``[start, as_of]``
(``start`` is ``None`` for lifetime). Rolling windows count whole local days in the
program's zone: "rolling 30 days" on 2025-03-15 covers 2025-02-14 00:00 local to now,
i.e. today and the 29 days before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Self
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tierwise.domain.calendar import add_months, latest_occurrence, local_date, start_of_day


class WindowType(StrEnum):
    LIFETIME = "lifetime"
    ROLLING_DAYS = "rolling_days"
    ROLLING_MONTHS = "rolling_months"
    CALENDAR_YEAR = "calendar_year"
    FIXED_YEAR = "fixed_year"
    SINCE_TIER_START = "since_tier_start"
    ANNIVERSARY_YEAR = "anniversary_year"


class Window(BaseModel):
    """A metric window. ``days``/``months`` for rolling windows, ``month``/``day`` for
    a fixed year starting on that date."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: WindowType = WindowType.LIFETIME
    days: int | None = Field(default=None, ge=1, le=3660)
    months: int | None = Field(default=None, ge=1, le=120)
    month: int | None = Field(default=None, ge=1, le=12)
    day: int | None = Field(default=None, ge=1, le=31)

    @model_validator(mode="after")
    def _check_parameters(self) -> Self:
        needs = {
            WindowType.ROLLING_DAYS: ("days",),
            WindowType.ROLLING_MONTHS: ("months",),
            WindowType.FIXED_YEAR: ("month", "day"),
        }.get(self.type, ())
        for name in ("days", "months", "month", "day"):
            value = getattr(self, name)
            if name in needs and value is None:
                raise ValueError(f"window type {self.type.value!r} needs {name!r}")
            if name not in needs and value is not None:
                raise ValueError(f"window type {self.type.value!r} does not take {name!r}")
        return self

    def label(self) -> str:
        """Short human label, e.g. ``rolling_days(365)``."""
        match self.type:
            case WindowType.ROLLING_DAYS:
                return f"rolling_days({self.days})"
            case WindowType.ROLLING_MONTHS:
                return f"rolling_months({self.months})"
            case WindowType.FIXED_YEAR:
                return f"fixed_year({self.month:02d}-{self.day:02d})"
            case _:
                return self.type.value


LIFETIME = Window()


@dataclass(frozen=True, slots=True)
class Interval:
    """``[start, end]`` in UTC; ``start`` is ``None`` for "since the beginning"."""

    start: datetime | None
    end: datetime


def resolve(
    window: Window,
    *,
    as_of: datetime,
    tz: ZoneInfo,
    enrolled_at: datetime,
    tier_start: datetime | None,
) -> Interval:
    """The interval ``window`` covers at ``as_of`` for one member."""
    kind = window.type
    if kind is WindowType.SINCE_TIER_START:
        start = tier_start if tier_start is not None else enrolled_at
        return Interval(start=as_of if start > as_of else start, end=as_of)
    if kind is WindowType.ANNIVERSARY_YEAR:
        today = local_date(as_of, tz)
        enrolled = local_date(enrolled_at, tz)
        start = start_of_day(latest_occurrence(enrolled.month, enrolled.day, today), tz)
        start = max(start, enrolled_at)
        return Interval(start=as_of if start > as_of else start, end=as_of)
    # The other windows do not depend on the member: one computation per instant (for
    # UTC instants, as stored; an instant in another zone may be the same instant in a
    # different dress, so it is not looked up).
    if as_of.tzinfo is UTC:
        return _shared(window, as_of, tz)
    return _shared.__wrapped__(window, as_of, tz)


@lru_cache(maxsize=4096)
def _shared(window: Window, as_of: datetime, tz: ZoneInfo) -> Interval:
    today = local_date(as_of, tz)
    start: datetime | None
    match window.type:
        case WindowType.LIFETIME:
            start = None
        case WindowType.ROLLING_DAYS:
            assert window.days is not None
            start = start_of_day(today - timedelta(days=window.days - 1), tz)
        case WindowType.ROLLING_MONTHS:
            assert window.months is not None
            start = start_of_day(add_months(today, -window.months) + timedelta(days=1), tz)
        case WindowType.CALENDAR_YEAR:
            start = start_of_day(today.replace(month=1, day=1), tz)
        case WindowType.FIXED_YEAR:
            assert window.month is not None and window.day is not None
            start = start_of_day(latest_occurrence(window.month, window.day, today), tz)
        case _:  # pragma: no cover - member-specific windows are resolved by the caller
            raise ValueError(f"window {window.type} depends on the member")
    if start is not None and start > as_of:
        start = as_of
    return Interval(start=start, end=as_of)
