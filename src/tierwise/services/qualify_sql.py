"""Set-based reads for re-evaluating many members at once (R25, impact preview).

On PostgreSQL a batch of members is read with their standing on one ladder in one
statement, and their figures (every ``(metric, window)`` a ladder reads) are summed by
the database in one aggregate per batch, instead of loading each member's daily buckets
into Python. Only what the SQL sums exactly is computed here:

- windows that do not depend on the member (lifetime, rolling days or months, calendar
  and fixed years), whose interval starts at a local midnight: whole daily buckets;
- members with no activity after the instant evaluated (``last_activity_at <= at``):
  a window's end then needs no single activities of its last day.

Everything else (member-specific windows, members with later activity) is measured by
the Python path (``measuring``), which the caller keeps as the reference. Elsewhere
(SQLite) the portable reads are used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos.activities import totals_sql
from tierwise.db.repos.members import MemberRow
from tierwise.db.repos.state_json import assignment_of
from tierwise.db.repos.upsert import pg_driver
from tierwise.db.tables import BUILTIN_COLUMNS
from tierwise.domain.calendar import local_date, start_of_day
from tierwise.domain.criteria import MeasureKey
from tierwise.domain.state import Assignment, TierState
from tierwise.domain.windows import WindowType, resolve

#: Windows whose interval is the same for every member at a given instant.
SHARED_WINDOWS = frozenset(
    {
        WindowType.LIFETIME,
        WindowType.ROLLING_DAYS,
        WindowType.ROLLING_MONTHS,
        WindowType.CALENDAR_YEAR,
        WindowType.FIXED_YEAR,
    }
)


@dataclass(frozen=True, slots=True)
class Batch:
    """Members in id order, the standings they hold on one ladder (members without one
    are absent) and, on PostgreSQL, the ``member_tiers`` ids of those standings."""

    members: list[MemberRow]
    states: dict[int, TierState]
    tier_ids: dict[int, int]


async def batch_pg(
    driver: Any, *, tenant_id: int, ladder_id: int, after_id: int, limit: int, lock: bool
) -> Batch:
    """The next ``limit`` members of the tenant after ``after_id`` with their standing on
    ``ladder_id``, in one statement on the asyncpg connection ``driver``; ``lock`` holds
    the member rows."""
    query = _BATCH_PG + (" FOR UPDATE OF m" if lock else "")
    rows = await driver.fetch(query, tenant_id, after_id, limit, ladder_id)
    members: list[MemberRow] = []
    states: dict[int, TierState] = {}
    tier_ids: dict[int, int] = {}
    for r in rows:
        member_id = r[0]
        members.append(MemberRow(member_id, r[1], tenant_id, r[2], r[3], r[4], r[5]))
        tier_id = r[6]
        if tier_id is None:
            continue
        tier_ids[member_id] = tier_id
        states[member_id] = TierState(
            r[7], r[8], r[9], r[10], r[11], r[12], _assignment(r[13]), r[14], r[15]
        )
    return Batch(members, states, tier_ids)


# ``t.member_id > $2`` repeats the members' bound for the standings, so that a merge join
# starts reading them at the cursor rather than at the first member (every batch would
# otherwise read all the standings before its own: quadratic in the number of members).
_BATCH_PG = """
SELECT m.id, m.uuid, m.external_id, m.enrolled_at, m.last_activity_at, m.created_at,
       t.id, t.level_key, t.achieved_at, t.cycle_start, t.expires_at, t.check_due_at,
       t.previous_level_key, t.assignment::text, t.grace_until, t.credit
FROM members m
LEFT JOIN member_tiers t ON t.member_id = m.id AND t.ladder_id = $4 AND t.member_id > $2
WHERE m.tenant_id = $1 AND m.id > $2
ORDER BY m.id
LIMIT $3
"""


def _assignment(raw: str | None) -> Assignment | None:
    """A stored assignment (JSON text; SQL or JSON null for none)."""
    return None if raw is None else assignment_of(orjson.loads(raw))


# -- sums ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SharedSpans:
    """For each measure key, the first local day summed (None: lifetime), and the last."""

    starts: dict[MeasureKey, date | None]
    end_day: date


def shared_spans(keys: Iterable[MeasureKey], tz: ZoneInfo, at: datetime) -> SharedSpans | None:
    """The day ranges of ``keys`` at ``at``, or None when one of them is not made of whole
    days shared by every member (then the Python path measures)."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    starts: dict[MeasureKey, date | None] = {}
    end_day = local_date(at, tz)
    for key in keys:
        window = key[1]
        if window.type not in SHARED_WINDOWS:
            return None
        # enrolled_at/tier_start are not read for shared windows.
        span = resolve(window, as_of=at, tz=tz, enrolled_at=at, tier_start=None)
        if span.start is None:
            starts[key] = None
            continue
        day = local_date(span.start, tz)
        if span.start != start_of_day(day, tz):
            return None
        starts[key] = day
    return SharedSpans(starts, end_day)


def exact_in_sql(member: MemberRow, at: datetime) -> bool:
    """Whether the SQL sums are exact for ``member`` at ``at`` (no activity after it)."""
    last = member.last_activity_at
    return last is None or last <= at


async def sums(
    conn: AsyncConnection,
    *,
    program_id: int,
    spans: SharedSpans,
    keys: Sequence[MeasureKey],
    member_ids: Sequence[int],
) -> dict[int, tuple[int, ...]] | None:
    """The measures ``keys`` (all in ``spans``) of ``member_ids`` (ascending), as one
    tuple of values per member in the order of ``keys``, summed in PostgreSQL: daily
    buckets from each window's first day to ``spans.end_day``, running totals for
    lifetime windows. None off PostgreSQL."""
    driver = await pg_driver(conn)
    if driver is None:
        return None
    zeros = (0,) * len(keys)
    if not member_ids or not keys:
        return dict.fromkeys(member_ids, zeros)
    low, high = member_ids[0], member_ids[-1]
    lifetime = [i for i, k in enumerate(keys) if spans.starts[k] is None]
    windowed = [i for i, k in enumerate(keys) if spans.starts[k] is not None]
    wide = [i for i in windowed if keys[i][0] in BUILTIN_COLUMNS]
    narrow = [i for i in windowed if keys[i][0] not in BUILTIN_COLUMNS]
    wanted = set(member_ids)
    found: dict[int, list[int]] = {}
    for part in (wide, narrow):
        if not part:
            continue
        rows = await _windowed(driver, program_id, spans, keys, part, low, high, wide=part is wide)
        if len(part) == len(keys):
            # The common case (every key a built-in metric over a window): the row is the tuple.
            done = {r[0]: tuple(r)[1:] for r in rows if r[0] in wanted}
            return {m: done.get(m, zeros) for m in member_ids}
        for row in rows:
            if row[0] in wanted:
                values = found.get(row[0]) or found.setdefault(row[0], list(zeros))
                for j, i in enumerate(part, start=1):
                    values[i] = row[j]
    if lifetime:
        metrics = sorted({keys[i][0] for i in lifetime})
        rows = await driver.fetch(_TOTALS_PG, program_id, low, high, metrics)
        for member_id, metric, value in rows:
            if member_id in wanted:
                values = found.get(member_id) or found.setdefault(member_id, list(zeros))
                for i in lifetime:
                    if keys[i][0] == metric:
                        values[i] = value
    return {m: tuple(found[m]) if m in found else zeros for m in member_ids}


async def _windowed(
    driver: Any,
    program_id: int,
    spans: SharedSpans,
    keys: Sequence[MeasureKey],
    part: list[int],
    low: int,
    high: int,
    *,
    wide: bool,
) -> list[Any]:
    """Per member between ``low`` and ``high``: ``(member_id, sum of each key of part)``,
    the built-in metrics' from ``member_days`` (``wide``), the custom counters' from
    ``metric_days``."""
    args: list[Any] = [program_id, low, high]
    args.append(min(d for i in part if (d := spans.starts[keys[i]]) is not None))
    args.append(spans.end_day)
    columns = []
    for i in part:
        args.append(spans.starts[keys[i]])
        if wide:
            columns.append(
                f"COALESCE(sum({keys[i][0]}) FILTER (WHERE day >= ${len(args)}::date), 0)::bigint"
            )
        else:
            args.append(keys[i][0])
            columns.append(
                f"COALESCE(sum(value) FILTER (WHERE day >= ${len(args) - 1}::date "
                f"AND metric = ${len(args)}::text), 0)::bigint"
            )
    table = "member_days" if wide else "metric_days"
    if not wide:
        args.append(sorted({keys[i][0] for i in part}))
    only = "" if wide else f"AND metric = ANY(${len(args)}::text[]) "
    rows: list[Any] = await driver.fetch(
        f"SELECT member_id, {', '.join(columns)} FROM {table} "
        "WHERE program_id = $1 AND member_id BETWEEN $2 AND $3 "
        f"{only}AND day >= $4::date AND day <= $5::date "
        "GROUP BY member_id",
        *args,
    )
    return rows


_TOTALS_PG = totals_sql("$1", "BETWEEN $2 AND $3", "$4::text[]")
