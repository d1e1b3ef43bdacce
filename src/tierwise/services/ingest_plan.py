"""A ladder's upgrade rules compiled for the activity path's quick checks.

Recording an activity asks, per ladder, "does the member now qualify above their
level?" — almost always "no". ``decide_upgrade`` answers it from a dict keyed by
``(metric, Window)`` pairs, where every look-up hashes a pydantic model; a batch of 1,000
asks it thousands of times. A :class:`Plan` answers the same question from a list of
integers, in the order of its keys (``Plan.target``: the level ``decide_upgrade`` would
move the member to, or None), so the caller skips the general path whenever the answer
is "no", and takes the level from the plan when it is "yes" (a unit test compares the
two on random ladders, standings and sums).

:meth:`Plan.values` reads the window sums straight from ``MemberFigures`` for the common
case: every window either the lifetime or one that starts at a local midnight shared by
all members (rolling days or months, calendar or fixed year), read at an instant no
earlier than the member's latest activity (so no window edge falls inside a day). In any
other case it returns None and the caller measures the general way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from tierwise.domain.calendar import local_date, start_of_day
from tierwise.domain.criteria import COMPARE, MeasureKey, Mode, Operator
from tierwise.domain.figures import MemberFigures
from tierwise.domain.ladder import Ladder, Level, ValidityType
from tierwise.domain.lifecycle import validity_of
from tierwise.domain.state import AssignmentMode, TierState
from tierwise.domain.windows import Window, WindowType, resolve

_SHARED = frozenset(
    {
        WindowType.ROLLING_DAYS,
        WindowType.ROLLING_MONTHS,
        WindowType.CALENDAR_YEAR,
        WindowType.FIXED_YEAR,
    }
)

Check = tuple[int, Callable[[int, int], bool], int]
"""``(key index, comparison, threshold)`` of one criterion: ``comparison(value, threshold)``
is ``Criterion.holds`` for its operator (the ``operator`` module's C function)."""

_PIN = AssignmentMode.PIN
_UPWARD = frozenset({Operator.GE, Operator.GT})


@dataclass(frozen=True, slots=True)
class Plan:
    ladder: Ladder
    keys: tuple[MeasureKey, ...]
    metrics: tuple[str, ...]
    windows: tuple[Window | None, ...]
    """Per key: None for the lifetime, else a shared window."""
    simple: bool
    """Every window is the lifetime or a shared one (``values`` can answer)."""
    levels: tuple[tuple[Level, bool, tuple[Check, ...]], ...]
    """Levels with an attain rule, in reverse ladder order (a ladder keeps its levels by
    rank, so the highest first): ``(level, all?, checks)``."""
    floor: Level | None
    ranks: dict[str, int]
    by_key: dict[str, Level]
    """``ladder.level(key)`` of every level."""
    inactivity: frozenset[str]
    """Levels whose validity is ``inactivity`` (an activity restarts their clock)."""
    monotone: bool
    """Every attain criterion asks for at least a threshold (``>=`` or ``>``): sums that
    only grow can lift a member at some point only if they lift it at the end."""

    def target(self, values: list[int], state: TierState) -> Level | None:
        """The level ``decide_upgrade`` moves the member up to, with ``values`` the sums of
        ``keys`` (in order); None when it does not move the member (R9, R10, R20)."""
        assignment = state.assignment
        if assignment is not None and assignment.mode is _PIN:
            return None
        current = 0 if state.level_key is None else self.ranks.get(state.level_key, 0)
        floor = self.floor
        settled = floor is None or floor.rank <= current
        for level, all_of, checks in self.levels:  # the highest rank first
            if settled and level.rank <= current:
                return None  # no level from here on, nor the floor, is above the member's
            holds = all_of
            for i, compare, threshold in checks:
                if compare(values[i], threshold) is not all_of:
                    holds = not all_of
                    break
            if holds:  # the highest level the member qualifies for (R3)
                return level if level.rank > current else None
        return None if settled else floor


def compile_plan(ladder: Ladder, keys: frozenset[MeasureKey]) -> Plan:
    ordered = tuple(sorted(keys, key=lambda k: (k[0], k[1].label())))
    index = {key: i for i, key in enumerate(ordered)}
    levels = []
    monotone = True
    for level in ladder.levels:
        if level.attain is None:
            continue
        checks = tuple(
            (index[c.key], COMPARE[c.operator], c.threshold) for c in level.attain.criteria
        )
        levels.append((level, level.attain.mode is Mode.ALL, checks))
        monotone = monotone and all(c.operator in _UPWARD for c in level.attain.criteria)
    windows: list[Window | None] = []
    simple = True
    for _, window in ordered:
        if window.type is WindowType.LIFETIME:
            windows.append(None)
        else:
            windows.append(window)
            simple = simple and window.type in _SHARED
    return Plan(
        ladder=ladder,
        keys=ordered,
        metrics=tuple(k[0] for k in ordered),
        windows=tuple(windows),
        simple=simple,
        levels=tuple(reversed(levels)),
        floor=ladder.floor,
        ranks={level.key: level.rank for level in reversed(ladder.levels)},
        by_key={level.key: level for level in reversed(ladder.levels)},
        inactivity=frozenset(
            level.key
            for level in ladder.levels
            if validity_of(ladder, level).type is ValidityType.INACTIVITY
        ),
        monotone=monotone,
    )


_PLANS: dict[tuple[int, frozenset[MeasureKey]], Plan] = {}


def plan_for(ladder: Ladder, keys: frozenset[MeasureKey]) -> Plan:
    """The plan of ``ladder`` over ``keys`` (which hold all its attain rules' keys),
    compiled once per (immutable) definition object."""
    found = _PLANS.get((id(ladder), keys))
    if found is not None and found.ladder is ladder:
        return found
    plan = compile_plan(ladder, keys)
    if len(_PLANS) >= 4096:
        _PLANS.clear()
    _PLANS[(id(ladder), keys)] = plan
    return plan


class Starts:
    """First days of shared windows, per local day: ``(start instant, start day)``, or
    None when the window does not start at a local midnight strictly before the day's
    instants (the general path then measures)."""

    def __init__(self) -> None:
        self._found: dict[tuple[int, ZoneInfo, date], tuple[Window, datetime, date] | None] = {}
        self._plans: dict[tuple[int, ZoneInfo, date], tuple[Plan, datetime, list[date | None]]] = {}

    def first_day(self, window: Window, tz: ZoneInfo, day: date, at: datetime) -> date | None:
        key = (id(window), tz, day)
        if key in self._found:
            found = self._found[key]
        else:
            found = None
            interval = resolve(window, as_of=at, tz=tz, enrolled_at=at, tier_start=None)
            start = interval.start
            if start is not None and start < at:
                start_day = local_date(start, tz)
                if start == start_of_day(start_day, tz):
                    found = (window, start, start_day)
            self._found[key] = found
        if found is None or found[0] is not window or not found[1] < at:
            return None
        return found[2]

    def values(
        self, plan: Plan, figures: MemberFigures, tz: ZoneInfo, at: datetime, day: date
    ) -> list[int] | None:
        """The sums of ``plan.keys`` at ``at`` (on local ``day``), or None when the
        quick path does not apply."""
        if not plan.simple:
            return None
        last = figures.last_activity_at
        if last is not None and last > at:
            return None
        key = (id(plan), tz, day)
        firsts = self._plans.get(key)
        if firsts is None or firsts[0] is not plan or not firsts[1] < at:
            firsts = self._firsts(plan, tz, day, at)
            if firsts is None:
                return None
            self._plans[key] = firsts
        out: list[int] = []
        totals = figures.totals
        for metric, first in zip(plan.metrics, firsts[2], strict=True):
            if first is None:
                out.append(totals.get(metric, 0))
            else:
                out.append(figures.range_sum(metric, first, day))
        return out

    def _firsts(
        self, plan: Plan, tz: ZoneInfo, day: date, at: datetime
    ) -> tuple[Plan, datetime, list[date | None]] | None:
        """Per key of ``plan`` the first day its window reads on ``day`` (None for the
        lifetime), with the latest window start (instants after it may share them)."""
        firsts: list[date | None] = []
        latest = datetime.min.replace(tzinfo=at.tzinfo)
        for window in plan.windows:
            if window is None:
                firsts.append(None)
                continue
            first = self.first_day(window, tz, day, at)
            if first is None:
                return None
            found = self._found[(id(window), tz, day)]
            assert found is not None
            latest = max(latest, found[1])
            firsts.append(first)
        return plan, latest, firsts
