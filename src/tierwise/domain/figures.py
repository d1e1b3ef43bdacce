"""A member's metric figures for one program, and window sums over them.

Sums never scan a member's whole history: lifetime sums come from running totals and
windowed sums from daily buckets inside the window. Only a window edge that falls inside
a day (a tier start at 14:05, or an ``as_of`` earlier than the member's latest activity)
needs that one day's activities, which the caller loads on request (``partial_days``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from tierwise.domain.activity import Effects
from tierwise.domain.calendar import local_date, start_of_day
from tierwise.domain.criteria import MeasureKey
from tierwise.domain.windows import Interval

DayActivities = list[tuple[datetime, Effects]]


def _interval_days(interval: Interval, tz: ZoneInfo) -> tuple[date | None, bool, date]:
    """``(start day, whether the start falls inside it, end day)`` of ``interval``."""
    end_day = local_date(interval.end, tz)
    if interval.start is None:
        return None, False, end_day
    start_day = local_date(interval.start, tz)
    return start_day, interval.start != start_of_day(start_day, tz), end_day


_shared_days = lru_cache(maxsize=8192)(_interval_days)


def span_days(interval: Interval, tz: ZoneInfo) -> tuple[date | None, bool, date]:
    """``(start day, whether the start falls inside it, end day)`` of ``interval``, as the
    figures count them."""
    # Intervals of UTC instants (as stored) are shared by many members: computed once.
    if interval.end.tzinfo is UTC and (interval.start is None or interval.start.tzinfo is UTC):
        return _shared_days(interval, tz)
    return _interval_days(interval, tz)


@dataclass
class MemberFigures:
    """Totals and daily buckets loaded for one member and program.

    ``days`` holds every bucket on or after ``days_from`` (all of them when it is None).
    ``day_activities`` holds, for the days loaded, every activity of that day.
    """

    tz: ZoneInfo
    totals: dict[str, int] = field(default_factory=dict)
    days: dict[str, dict[date, int]] = field(default_factory=dict)
    days_from: date | None = None
    last_activity_at: datetime | None = None
    day_activities: dict[date, DayActivities] = field(default_factory=dict)
    _pending: dict[date, DayActivities] = field(default_factory=dict)
    _prefix: dict[str, tuple[int, list[date], list[int]]] = field(
        default_factory=dict, repr=False, compare=False
    )
    version: int = field(default=0, compare=False)
    """Counts the in-memory changes (``apply``), for callers that keep sums across them."""
    """Per metric: ``(bucket count, days ascending, running sums)``, built on the first
    sum and kept up to date by ``apply`` (rebuilt when the buckets change otherwise)."""

    # -- what must be loaded ----------------------------------------------------------

    def _edges(self, interval: Interval) -> tuple[date | None, bool, date, bool]:
        last = self.last_activity_at
        end_partial = last is not None and last > interval.end
        return (*span_days(interval, self.tz), end_partial)

    def partial_days(self, intervals: Iterable[Interval]) -> set[date]:
        """Days whose single activities are needed to sum ``intervals`` exactly."""
        needed: set[date] = set()
        for interval in intervals:
            start_day, start_partial, end_day, end_partial = self._edges(interval)
            if start_partial and start_day is not None:
                needed.add(start_day)
            if end_partial:
                needed.add(end_day)
        return needed - self.day_activities.keys()

    def load_day(self, day: date, activities: DayActivities) -> None:
        """Record the stored activities of ``day`` (pending in-memory ones are merged)."""
        self.day_activities[day] = list(activities) + self._pending.get(day, [])

    # -- sums -------------------------------------------------------------------------

    def _sums(self, metric: str) -> tuple[list[date], list[int]]:
        """The metric's bucket days in order and their running sums (``sums[i]`` is the
        sum of the first ``i`` buckets)."""
        buckets = self.days.get(metric)
        if not buckets:
            return [], [0]
        cached = self._prefix.get(metric)
        if cached is not None and cached[0] == len(buckets):
            return cached[1], cached[2]
        days = sorted(buckets)
        sums = [0] * (len(days) + 1)
        running = 0
        for i, day in enumerate(days, 1):
            running += buckets[day]
            sums[i] = running
        self._prefix[metric] = (len(days), days, sums)
        return days, sums

    def range_sum(self, metric: str, first: date | None, last: date | None) -> int:
        """The sum of the metric's loaded buckets from day ``first`` to day ``last``
        (both included; None: unbounded on that side)."""
        days, sums = self._sums(metric)
        lo = 0 if first is None else bisect_left(days, first)
        hi = len(days) if last is None else bisect_right(days, last)
        return sums[hi] - sums[lo] if hi > lo else 0

    def value(self, metric: str, interval: Interval) -> int:
        start_day, start_partial, end_day, end_partial = self._edges(interval)
        if start_day is None:
            total = self.totals.get(metric, 0)
            if not end_partial:
                return total
            later = self.range_sum(metric, end_day + timedelta(days=1), None)
            later += self._day_sum(metric, end_day, after=interval.end)
            return total - later
        first = start_day + timedelta(days=1) if start_partial else start_day
        last = end_day - timedelta(days=1) if end_partial else end_day
        total = self.range_sum(metric, first, last)
        assert interval.start is not None
        if start_day == end_day:
            if start_partial or end_partial:
                total += self._day_sum(metric, start_day, since=interval.start, until=interval.end)
            return total
        if start_partial:
            total += self._day_sum(metric, start_day, since=interval.start)
        if end_partial:
            total += self._day_sum(metric, end_day, until=interval.end)
        return total

    def measures(self, intervals: dict[MeasureKey, Interval]) -> dict[MeasureKey, int]:
        return {key: self.value(key[0], interval) for key, interval in intervals.items()}

    def _day_sum(
        self,
        metric: str,
        day: date,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        after: datetime | None = None,
    ) -> int:
        total = 0
        for occurred_at, effects in self.day_activities[day]:
            if since is not None and occurred_at < since:
                continue
            if until is not None and occurred_at > until:
                continue
            if after is not None and occurred_at <= after:
                continue
            total += effects.get(metric, 0)
        return total

    # -- in-memory updates ------------------------------------------------------------

    def pending_sums(self) -> dict[tuple[str, date], int]:
        """Per ``(metric, day)``, the sum of the effects added by ``apply`` (what is to be
        added to the stored buckets)."""
        out: dict[tuple[str, date], int] = {}
        for day, activities in self._pending.items():
            sums: dict[str, int] = {}
            for _, effects in activities:
                for metric, delta in effects.items():
                    sums[metric] = sums.get(metric, 0) + delta
            for metric, value in sums.items():
                out[(metric, day)] = value
        return out

    @property
    def pending(self) -> dict[date, DayActivities]:
        """Per local day, the activities added by ``apply`` (not to be changed)."""
        return self._pending

    def apply(self, occurred_at: datetime, effects: Effects) -> None:
        """Add an activity not yet stored, so later evaluations in a batch see it."""
        self.apply_on(local_date(occurred_at, self.tz), occurred_at, effects)

    def apply_on(self, day: date, occurred_at: datetime, effects: Effects) -> None:
        """``apply`` for a caller that knows the activity's local ``day`` already."""
        totals = self.totals
        all_days = self.days
        prefix = self._prefix
        for metric, delta in effects.items():
            totals[metric] = totals.get(metric, 0) + delta
            bucket = all_days.get(metric)
            if bucket is None:
                bucket = all_days[metric] = {}
            old = bucket.get(day)
            bucket[day] = delta if old is None else old + delta
            cached = prefix.get(metric)
            if cached is None:
                continue
            count, days, sums = cached
            if old is not None and count == len(bucket) and days and days[-1] == day:
                sums[-1] += delta  # the latest day grew: only its running sum moves
            elif old is None and count + 1 == len(bucket) and (not days or days[-1] < day):
                days.append(day)  # a new latest day
                sums.append(sums[-1] + delta)
                prefix[metric] = (count + 1, days, sums)
            else:
                del prefix[metric]
        self.version += 1
        entry = (occurred_at, effects)
        pending = self._pending.get(day)
        if pending is None:
            self._pending[day] = [entry]
        else:
            pending.append(entry)
        if day in self.day_activities:
            self.day_activities[day].append(entry)
        if self.last_activity_at is None or occurred_at > self.last_activity_at:
            self.last_activity_at = occurred_at
