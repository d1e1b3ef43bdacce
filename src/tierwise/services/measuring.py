"""Loading a member's figures and measuring a ladder's criteria at an instant."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import activities as ledger
from tierwise.domain.calendar import local_date
from tierwise.domain.criteria import MeasureKey
from tierwise.domain.figures import MemberFigures
from tierwise.domain.ladder import Ladder
from tierwise.domain.program import Program
from tierwise.domain.windows import Interval, resolve

_KEYS: dict[int, tuple[Ladder, frozenset[MeasureKey]]] = {}


def keys_of(ladder: Ladder) -> frozenset[MeasureKey]:
    """``ladder.measure_keys()``, computed once per (immutable) definition object."""
    found = _KEYS.get(id(ladder))
    if found is not None and found[0] is ladder:
        return found[1]
    keys = frozenset(ladder.measure_keys())
    if len(_KEYS) >= 4096:
        _KEYS.clear()
    _KEYS[id(ladder)] = (ladder, keys)
    return keys


def intervals(
    keys: Iterable[MeasureKey],
    program: Program,
    *,
    at: datetime,
    enrolled_at: datetime,
    tier_start: datetime | None,
) -> dict[MeasureKey, Interval]:
    return intervals_in(program.tz, keys, at=at, enrolled_at=enrolled_at, tier_start=tier_start)


def intervals_in(
    tz: ZoneInfo,
    keys: Iterable[MeasureKey],
    *,
    at: datetime,
    enrolled_at: datetime,
    tier_start: datetime | None,
) -> dict[MeasureKey, Interval]:
    """``intervals`` for a program in zone ``tz``."""
    return {
        key: resolve(key[1], as_of=at, tz=tz, enrolled_at=enrolled_at, tier_start=tier_start)
        for key in keys
    }


def first_day_needed(
    spans: Iterable[Interval], program: Program, last_activity_at: datetime | None
) -> date | None:
    """The earliest daily bucket any of ``spans`` reads (None: running totals suffice)."""
    return first_day_in(program.tz, spans, last_activity_at)


def first_day_in(
    tz: ZoneInfo, spans: Iterable[Interval], last_activity_at: datetime | None
) -> date | None:
    """``first_day_needed`` for a program in zone ``tz``."""
    days: list[date] = []
    for span in spans:
        if span.start is not None:
            days.append(local_date(span.start, tz))
        elif last_activity_at is not None and last_activity_at > span.end:
            days.append(local_date(span.end, tz))
    return min(days) if days else None


async def measure(
    conn: AsyncConnection,
    figures: MemberFigures,
    spans: dict[MeasureKey, Interval],
    *,
    member_id: int,
    program_id: int,
) -> dict[MeasureKey, int]:
    """Sum every ``(metric, window)`` over its interval, loading boundary days on demand."""
    for day in sorted(figures.partial_days(spans.values())):
        await ledger.load_day(conn, figures, member_id=member_id, program_id=program_id, day=day)
    return figures.measures(spans)
