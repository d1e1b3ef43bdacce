"""The activity ledger, daily buckets and running totals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import pg_arrays
from tierwise.db.repos.upsert import BULK_MIN_ROWS, add_to, pg_driver
from tierwise.db.tables import (
    BUILTIN_COLUMNS,
    Activity,
    Base,
    Member,
    MemberDay,
    MemberTotal,
    MetricDay,
    MetricTotal,
)
from tierwise.db.types import UTCDateTime
from tierwise.domain.activity import ActivityType, Recorded
from tierwise.domain.activity_ids import ledger_id, shown_id
from tierwise.domain.calendar import start_of_day
from tierwise.domain.figures import DayActivities, MemberFigures


class Stored(NamedTuple):
    """A stored activity as a repeat of its idempotency key needs it (R12): the request
    hash, and the first answer, or (``result`` None) what rebuilds it."""

    request_hash: str
    """Empty for a usual purchase sent without a program id (written again from the row)."""
    result: dict[str, Any] | None
    uuid: str | None
    """Stored only by rows recorded before public ids were written from ``id``."""
    type: str
    member_external_id: str
    program_id: int
    idempotency_key: str
    occurred_at: datetime
    amount_minor: int | None
    effects: dict[str, Any]
    earn_rate: str | None
    currency: str | None
    id: int

    @property
    def public_id(self) -> str:
        return shown_id(self.uuid, self.id)


async def stored_by_keys(
    conn: AsyncConnection, tenant_id: int, keys: Sequence[str]
) -> dict[str, Stored]:
    """The stored activities of the keys already used, by key."""
    if not keys:
        return {}
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "asyncpg":
        # Usually the transaction's first statement (so it goes through SQLAlchemy, which
        # begins the transaction); the keys as one array parameter.
        found = await conn.execute(
            _STORED_PG, {"tenant_id": tenant_id, "keys": list(dict.fromkeys(keys))}
        )
        return {row[6]: Stored(*row) for row in found}
    rows = await conn.execute(
        select(
            Activity.request_hash,
            Activity.result,
            Activity.uuid,
            Activity.type,
            Member.external_id,
            Activity.program_id,
            Activity.idempotency_key,
            Activity.occurred_at,
            Activity.amount_minor,
            Activity.effects,
            Activity.earn_rate,
            Activity.currency,
            Activity.id,
        )
        .join(Member, Member.id == Activity.member_id)
        .where(Activity.tenant_id == tenant_id, Activity.idempotency_key.in_(list(keys)))
    )
    return {row[6]: Stored(*row) for row in rows}


_STORED_PG = text(
    "SELECT a.request_hash, a.result, a.uuid, a.type, m.external_id, a.program_id, "
    "a.idempotency_key, a.occurred_at, a.amount_minor, a.effects, a.earn_rate, a.currency, a.id "
    "FROM unnest(CAST(:keys AS text[])) AS k(key) CROSS JOIN LATERAL ("
    "SELECT * FROM activities "
    "WHERE tenant_id = :tenant_id AND idempotency_key = k.key LIMIT 1) AS a "
    "JOIN members AS m ON m.id = a.member_id"
).columns(occurred_at=UTCDateTime())
"""One unique-index probe per key, whatever the planner's statistics say (``= ANY`` over
a large array let a plan without statistics filter every row of the tenant instead). The
driver decodes the JSON columns itself."""


def _recorded(row: Any) -> Recorded:
    return Recorded(
        id=row.id,
        uuid=shown_id(row.uuid, row.id),
        member_id=row.member_id,
        program_id=row.program_id,
        type=ActivityType(row.type),
        occurred_at=row.occurred_at,
        amount_minor=row.amount_minor,
        effects=row.effects,
    )


async def recorded(
    conn: AsyncConnection,
    tenant_id: int,
    *,
    uuid: str | None = None,
    idempotency_key: str | None = None,
) -> Recorded | None:
    query = select(
        Activity.id,
        Activity.uuid,
        Activity.member_id,
        Activity.program_id,
        Activity.type,
        Activity.occurred_at,
        Activity.amount_minor,
        Activity.effects,
    ).where(Activity.tenant_id == tenant_id)
    if uuid is not None:
        found = ledger_id(uuid)
        query = query.where(Activity.uuid == uuid if found is None else Activity.id == found)
    else:
        query = query.where(Activity.idempotency_key == idempotency_key)
    row = (await conn.execute(query)).first()
    return None if row is None else _recorded(row)


async def returned_amount(conn: AsyncConnection, activity_id: int) -> int:
    """How much of a purchase earlier returns took back (as a positive amount); for any
    other activity, how many returns reversed it (a return of a non-purchase stores no
    amount and counts as one)."""
    value = (
        await conn.execute(
            select(func.coalesce(func.sum(func.coalesce(Activity.amount_minor, 1)), 0)).where(
                Activity.reverses_id == activity_id
            )
        )
    ).scalar_one()
    return int(value or 0)


async def add_activities(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(Activity), rows)


async def add_to_buckets(
    conn: AsyncConnection, day_rows: list[dict[str, Any]], total_rows: list[dict[str, Any]]
) -> None:
    """Add ``day_rows`` (member_id, program_id, metric, day, value) to the daily buckets and
    ``total_rows`` (the same without the day) to the running totals: the built-in metrics
    to ``member_days`` / ``member_totals``, one row per member (and day), the custom
    counters to ``metric_days`` / ``metric_totals``."""
    for rows, counters, builtins, keys in (
        (day_rows, MetricDay, MemberDay, ("member_id", "program_id", "day")),
        (total_rows, MetricTotal, MemberTotal, ("member_id", "program_id")),
    ):
        wide: dict[tuple[Any, ...], dict[str, Any]] = {}
        narrow: list[dict[str, Any]] = []
        for row in rows:
            metric = row["metric"]
            if metric not in BUILTIN_COLUMNS:
                narrow.append(row)
                continue
            key = tuple(row[k] for k in keys)
            found = wide.get(key)
            if found is None:
                found = wide[key] = {**dict(zip(keys, key, strict=True)), **_ZEROS}
            found[metric] += row["value"]
        await add_to(
            conn,
            Base.metadata.tables[builtins.__tablename__],
            [wide[k] for k in sorted(wide)],
            keys=keys,
            columns=BUILTIN_COLUMNS,
        )
        await add_to(
            conn,
            Base.metadata.tables[counters.__tablename__],
            narrow,
            keys=(*keys[:2], "metric", *keys[2:]),
        )


_ZEROS = dict.fromkeys(BUILTIN_COLUMNS, 0)


async def load_figures(
    conn: AsyncConnection,
    *,
    program_id: int,
    tz: ZoneInfo,
    metrics: set[str],
    members: dict[int, tuple[date | None, datetime | None]],
    with_totals: bool = True,
    day_metrics: set[str] | None = None,
) -> dict[int, MemberFigures]:
    """Figures of ``members`` ({member_id: (first day needed, last activity)}).

    Loads running totals and the daily buckets from each member's first needed day on
    (of ``day_metrics`` only, when given: the caller knows the others' are not read).
    """
    figures = {
        mid: MemberFigures(tz=tz, days_from=first, last_activity_at=last)
        for mid, (first, last) in members.items()
    }
    if not members or not metrics:
        return figures
    ids = list(members)
    firsts = [first for first, _ in members.values() if first is not None]
    if day_metrics is not None and not day_metrics:
        firsts = []
    day_wanted = sorted(metrics if day_metrics is None else day_metrics)
    driver = await pg_driver(conn) if len(ids) >= BULK_MIN_ROWS else None
    if driver is not None:
        # The same two reads, with the ids as one array parameter.
        wanted = sorted(metrics)
        totals: Iterable[Sequence[Any]] = (
            await driver.fetch(_TOTALS_PG, program_id, ids, wanted) if with_totals else ()
        )
        days: Iterable[Sequence[Any]] = (
            await driver.fetch(_DAYS_PG, program_id, ids, day_wanted, min(firsts)) if firsts else ()
        )
    else:
        totals = []
        if with_totals:
            wide = await conn.execute(
                select(
                    MemberTotal.member_id, *(MemberTotal.__table__.c[m] for m in BUILTIN_COLUMNS)
                ).where(MemberTotal.program_id == program_id, MemberTotal.member_id.in_(ids))
            )
            wanted_totals = sorted(metrics)
            totals = [(r[0], *mv) for r in wide for mv in unpivot(r, wanted_totals, 1)]
            totals += await conn.execute(
                select(MetricTotal.member_id, MetricTotal.metric, MetricTotal.value).where(
                    MetricTotal.program_id == program_id,
                    MetricTotal.member_id.in_(ids),
                    MetricTotal.metric.in_(sorted(metrics)),
                )
            )
        days = []
        if firsts:
            wide_days = await conn.execute(
                select(
                    MemberDay.member_id,
                    MemberDay.day,
                    *(MemberDay.__table__.c[m] for m in BUILTIN_COLUMNS),
                ).where(
                    MemberDay.program_id == program_id,
                    MemberDay.member_id.in_(ids),
                    MemberDay.day >= min(firsts),
                )
            )
            days = [
                (r[0], metric, r[1], value)
                for r in wide_days
                for metric, value in unpivot(r, day_wanted, 2)
            ]
            days += await conn.execute(
                select(MetricDay.member_id, MetricDay.metric, MetricDay.day, MetricDay.value).where(
                    MetricDay.program_id == program_id,
                    MetricDay.member_id.in_(ids),
                    MetricDay.metric.in_(day_wanted),
                    MetricDay.day >= min(firsts),
                )
            )
    for member_id, metric, value in totals:
        figures[member_id].totals[metric] = value
    for member_id, metric, day, value in days:
        figure = figures[member_id]
        if figure.days_from is not None and day >= figure.days_from:
            figure.days.setdefault(metric, {})[day] = value
    return figures


_UNPIVOT = (
    "CROSS JOIN LATERAL (VALUES "
    + ", ".join(f"('{m}', w.{m})" for m in BUILTIN_COLUMNS)
    + ") AS v(metric, value)"
)


def totals_sql(
    program: str, members: str, metrics: str, *, member: bool = True, no_day: bool = False
) -> str:
    """``SELECT [member_id,] metric, [NULL::date AS day,] value`` of the running totals of
    the metrics in the array ``metrics`` (SQL), for program ``program`` and the members
    whose ``member_id`` satisfies ``members`` (a condition's right-hand side, as
    ``= ANY($2::bigint[])``): the built-in metrics' columns, one row per metric, and the
    custom counters' rows. PostgreSQL."""
    head = "w.member_id, " if member else ""
    day = "NULL::date AS day, " if no_day else ""
    return (
        f"SELECT {head}v.metric, {day}v.value FROM member_totals w {_UNPIVOT} "
        f"WHERE w.program_id = {program} AND w.member_id {members} "
        f"AND v.metric = ANY({metrics}) "
        f"UNION ALL SELECT {head.replace('w.', '')}metric, {day}value FROM metric_totals "
        f"WHERE program_id = {program} AND member_id {members} AND metric = ANY({metrics})"
    )


def days_sql(program: str, members: str, metrics: str, first: str, *, member: bool = True) -> str:
    """``SELECT [member_id,] metric, day, value`` of the daily buckets from day ``first`` on,
    as ``totals_sql``."""
    head = "w.member_id, " if member else ""
    return (
        f"SELECT {head}v.metric, w.day, v.value FROM member_days w {_UNPIVOT} "
        f"WHERE w.program_id = {program} AND w.member_id {members} "
        f"AND w.day >= {first} AND v.metric = ANY({metrics}) "
        f"UNION ALL SELECT {head.replace('w.', '')}metric, day, value FROM metric_days "
        f"WHERE program_id = {program} AND member_id {members} AND metric = ANY({metrics}) "
        f"AND day >= {first}"
    )


_TOTALS_PG = totals_sql("$1", "= ANY($2::bigint[])", "$3::text[]")
_DAYS_PG = days_sql("$1", "= ANY($2::bigint[])", "$3::text[]", "$4")


def unpivot(row: Sequence[Any], wanted: Iterable[str], start: int) -> Iterable[tuple[str, int]]:
    """``(metric, value)`` of the wanted built-in metrics of a ``member_days`` /
    ``member_totals`` row whose metric columns begin at ``start``."""
    for metric in wanted:
        at = _COLUMN_AT.get(metric)
        if at is not None:
            yield metric, row[start + at]


_COLUMN_AT = {m: i for i, m in enumerate(BUILTIN_COLUMNS)}


async def load_day(
    conn: AsyncConnection, figures: MemberFigures, *, member_id: int, program_id: int, day: date
) -> None:
    """Give ``figures`` the single activities of one local ``day``."""
    from datetime import timedelta

    rows = await conn.execute(
        select(Activity.occurred_at, Activity.effects).where(
            Activity.member_id == member_id,
            Activity.program_id == program_id,
            Activity.occurred_at >= start_of_day(day, figures.tz),
            Activity.occurred_at < start_of_day(day + timedelta(days=1), figures.tz),
        )
    )
    figures.load_day(day, [(row[0], row[1]) for row in rows])


async def activities_in_days(
    conn: AsyncConnection,
    *,
    member_id: int,
    program_id: int,
    tz: ZoneInfo,
    first_day: date,
    last_day: date,
) -> list[tuple[datetime, dict[str, int]]]:
    """The stored activities (instant, effects) of one member and program on the local
    days ``first_day`` to ``last_day`` (both included), in time order: what a late
    activity reads to find the instants its windows may first hold at (R13)."""
    from datetime import timedelta

    rows = await conn.execute(
        select(Activity.occurred_at, Activity.effects)
        .where(
            Activity.member_id == member_id,
            Activity.program_id == program_id,
            Activity.occurred_at >= start_of_day(first_day, tz),
            Activity.occurred_at < start_of_day(last_day + timedelta(days=1), tz),
        )
        .order_by(Activity.occurred_at)
    )
    return [(row[0], row[1]) for row in rows]


# -- PostgreSQL: every write of a batch in one statement ---------------------------------

_NAMES = ", ".join(BUILTIN_COLUMNS)
_WIDE_TYPES = ("bigint", "bigint", "date", *(["bigint"] * len(BUILTIN_COLUMNS)))
_COUNTER_TYPES = ("bigint", "bigint", "text", "date", "bigint")


def _add_wide(table: str) -> str:
    return ", ".join(f"{m} = {table}.{m} + EXCLUDED.{m}" for m in BUILTIN_COLUMNS)


def bucket_writes(wide: str, counters: str) -> str:
    """CTEs (without the leading ``WITH``, each ending in a comma) adding day deltas to the
    buckets and the running totals: ``wide``, rows of ``member_days``' columns (one per
    member and day, the built-in metrics; see ``day_rows``), and ``counters``, rows of the
    custom counters' (member_id, program_id, metric, day, value). Rows are written in key
    order (every writer takes the rows' locks in that order)."""
    return f"""bd AS (
    INSERT INTO member_days (member_id, program_id, day, {_NAMES})
    SELECT member_id, program_id, day, {_NAMES} FROM {wide} ORDER BY 1, 2, 3
    ON CONFLICT (member_id, program_id, day) DO UPDATE SET {_add_wide("member_days")}
), bt AS (
    INSERT INTO member_totals (member_id, program_id, {_NAMES})
    SELECT member_id, program_id, {", ".join(f"sum({m})" for m in BUILTIN_COLUMNS)}
    FROM {wide} GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (member_id, program_id) DO UPDATE SET {_add_wide("member_totals")}
), cd AS (
    INSERT INTO metric_days (member_id, program_id, metric, day, value)
    SELECT member_id, program_id, metric, day, value FROM {counters} ORDER BY 1, 2, 3, 4
    ON CONFLICT (member_id, program_id, metric, day)
    DO UPDATE SET value = metric_days.value + EXCLUDED.value
), ct AS (
    INSERT INTO metric_totals (member_id, program_id, metric, value)
    SELECT member_id, program_id, metric, sum(value) FROM {counters}
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (member_id, program_id, metric)
    DO UPDATE SET value = metric_totals.value + EXCLUDED.value
),"""


ACTIVITY_COLUMNS = (
    "id",
    "member_id",
    "program_id",
    "type",
    "idempotency_key",
    "request_hash",
    "occurred_at",
    "amount_minor",
    "currency",
    "points",
    "counter",
    "reverses_id",
    "effects",
    "result",
    "earn_rate",
)
_ACTIVITY_TYPES = (
    "bigint",
    "bigint",
    "bigint",
    "text",
    "text",
    "text",
    "timestamptz",
    "bigint",
    "text",
    "bigint",
    "text",
    "bigint",
    "text",
    "text",
    "text",
)
LEDGER_COLUMNS = (*ACTIVITY_COLUMNS, "tenant_id", "recorded_at")
"""A new ledger row as the batch writes take it: ``ACTIVITY_COLUMNS`` (JSON as text),
then the tenant and the recording instant (the same for every row of a batch)."""
_FIRST = 3  # $1 tenant, $2 now; activity columns from $3


def _columns(rows: Sequence[Sequence[Any]], types: Sequence[str]) -> list[Any]:
    """``rows`` as one array argument per column of ``types`` (``pg_arrays.argument``;
    rows may be wider than ``types``: the columns after them are left out)."""
    columns = list(zip(*rows, strict=True)) or [() for _ in types]
    return [pg_arrays.argument(c, t) for c, t in zip(columns, types, strict=False)]


def _params(first: int, types: Sequence[str]) -> str:
    return ", ".join(pg_arrays.param(first + i, t) for i, t in enumerate(types))


def _delta_rows(first: int) -> str:
    """CTEs ``wd`` and ``cd_rows`` (see ``bucket_writes``) of the day deltas passed as
    arrays from parameter ``first`` on: ``member_days``' columns, then the counters'."""
    counters_at = first + len(_WIDE_TYPES)
    return f"""wd AS (
    SELECT * FROM unnest({_params(first, _WIDE_TYPES)})
    AS v(member_id, program_id, day, {_NAMES})
), cd_rows AS (
    SELECT * FROM unnest({_params(counters_at, _COUNTER_TYPES)})
    AS v(member_id, program_id, metric, day, value)
)"""


_LAST_TYPES = ("bigint", "timestamptz")
_WIDE_AT = _FIRST + len(ACTIVITY_COLUMNS)
_COUNTERS_AT = _WIDE_AT + len(_WIDE_TYPES)
_MEMBERS_AT = _COUNTERS_AT + len(_COUNTER_TYPES)

WRITE_BATCH_PG = f"""
WITH a AS (
    INSERT INTO activities (tenant_id, recorded_at, {", ".join(ACTIVITY_COLUMNS)})
    SELECT $1::bigint, $2::timestamptz, {
    ", ".join(f"v.{c}::json" if c in ("effects", "result") else f"v.{c}" for c in ACTIVITY_COLUMNS)
}
    FROM unnest({_params(_FIRST, _ACTIVITY_TYPES)}) AS v({", ".join(ACTIVITY_COLUMNS)})
), {_delta_rows(_WIDE_AT)}, {bucket_writes("wd", "cd_rows")[:-1]}
UPDATE members SET last_activity_at = v.at, updated_at = $2::timestamptz
FROM unnest({_params(_MEMBERS_AT, _LAST_TYPES)}) AS v(id, at)
WHERE members.id = v.id
"""


async def write_batch_pg(
    driver: Any,
    *,
    tenant_id: int,
    now: datetime,
    activities: Sequence[Sequence[Any]],
    wide: Sequence[Sequence[Any]],
    counters: Sequence[tuple[int, int, str, date, int]],
    last_activity: Sequence[tuple[int, datetime]],
) -> None:
    """Append ``activities`` (tuples in ``LEDGER_COLUMNS`` order, JSON as text, ids from
    ``reserve_ids``), add the day deltas (``wide`` and ``counters`` as ``day_rows`` gives
    them, in key order) to the buckets and the running totals, set the members' last
    activity — one statement, one round trip, every row set as one array per column.

    A clash on an idempotency key raises asyncpg's ``UniqueViolationError``."""
    await driver.execute(
        WRITE_BATCH_PG,
        tenant_id,
        now,
        *_columns(activities, _ACTIVITY_TYPES),  # without the tenant and recorded_at
        *_columns(wide, _WIDE_TYPES),
        *_columns(counters, _COUNTER_TYPES),
        *_columns(last_activity, _LAST_TYPES),
    )


# Many rows: COPY (binary, no per-value Python checks) into the ledger, then one
# statement applies the day deltas, passed as arrays (``day_rows``: a batch has one
# row per member and day, a few hundred per 1,000 purchases) and sets the last
# activities.

_APPLY_WIDE_AT = 4
_APPLY_DELTAS_PG = f"""
WITH {_delta_rows(_APPLY_WIDE_AT)}, {bucket_writes("wd", "cd_rows")[:-1]}
UPDATE members SET last_activity_at = v.at, updated_at = $3::timestamptz
FROM unnest({_params(1, _LAST_TYPES)}) AS v(id, at)
WHERE members.id = v.id
"""


def day_rows(
    pending: Iterable[tuple[int, int, Mapping[date, DayActivities]]],
) -> tuple[list[list[Any]], list[tuple[int, int, str, date, int]]]:
    """What the batch writes adds to the buckets, from each member's activities not yet
    stored (member, program, then the activities per local day; in (member, program)
    order): rows of ``member_days`` (member, program, day, then each built-in metric), one
    per member and day in key order, and the custom counters' rows (member, program,
    metric, day, value), summed, in key order."""
    width = len(BUILTIN_COLUMNS)
    wide: list[list[Any]] = []
    counters: dict[tuple[int, int, str, date], int] = {}
    for member_id, program_id, days in pending:
        for day in sorted(days):
            row: list[Any] | None = None
            for _, effects in days[day]:
                for metric, delta in effects.items():
                    column = _COLUMN_AT.get(metric)
                    if column is None:
                        key = (member_id, program_id, metric, day)
                        counters[key] = counters.get(key, 0) + delta
                        continue
                    if row is None:
                        row = [member_id, program_id, day, *([0] * width)]
                    row[3 + column] += delta
            if row is not None:
                wide.append(row)
    return wide, sorted((*key, value) for key, value in counters.items())


async def copy_batch_pg(
    driver: Any,
    *,
    tenant_id: int,
    now: datetime,
    activities: Sequence[Sequence[Any]],
    wide: Sequence[Sequence[Any]],
    counters: Sequence[tuple[int, int, str, date, int]],
    last_activity: Sequence[tuple[int, datetime]],
) -> None:
    """``write_batch_pg`` for many rows (``activities`` in ``LEDGER_COLUMNS`` order, with
    ``tenant_id`` and ``now`` in every row): ``COPY`` the activities into the ledger; one
    statement then adds the day deltas (the built-in metrics one row per member and day,
    ``day_rows``; the custom counters' rows), passed as arrays, to the buckets and the
    running totals and sets the last activities. Two round trips whatever the size.

    (The deltas went through ``COPY`` into temporary tables before: with one row per
    member and day, arrays cost the client less than the extra round trip, and the server
    no longer creates and, at every commit, empties the temporary tables.)"""
    await driver.copy_records_to_table("activities", records=activities, columns=LEDGER_COLUMNS)
    await driver.execute(
        _APPLY_DELTAS_PG,
        *_columns(last_activity, _LAST_TYPES),
        now,
        *_columns(wide, _WIDE_TYPES),
        *_columns(counters, _COUNTER_TYPES),
    )


_RESERVE_PG = (
    "SELECT string_agg(id::text, ',') FROM "
    "(SELECT nextval('activities_id_seq') AS id FROM generate_series(1, $1::int)) AS ids"
)
"""One row holding the ids as text, which ``orjson`` reads in C (one row per id cost a
record each). Not an ``int8[]``: asyncpg looks that type up in the catalog on each new
connection (its cache is emptied when the connection's instant codec is set), a query
that costs PostgreSQL about as much as a batch's ledger ``COPY``. Not ordered there (an
``ORDER BY`` in the aggregate sorted them for about half the statement's time): sorted
here, where they come nearly in order."""
_RESERVE = text("SELECT nextval('activities_id_seq') FROM generate_series(1, :count)")


async def reserve_ids(conn: AsyncConnection, driver: Any | None, count: int) -> list[int]:
    """``count`` new ledger ids, in increasing order, for rows this transaction writes: the
    public ids are written from them (``domain/activity_ids.py``) before the rows are.

    PostgreSQL: from the ledger's own sequence, as an insert without an id would take them
    (on ``driver``, the transaction's asyncpg connection, when there is one). SQLite: after
    the largest id so far; every transaction there begins ``BEGIN IMMEDIATE``, so no other
    writer comes between this read and the insert."""
    if count <= 0:
        return []
    if driver is not None:
        ids: list[int] = orjson.loads(f"[{await driver.fetchval(_RESERVE_PG, count)}]")
        ids.sort()
        return ids
    if conn.dialect.name == "postgresql":
        return list((await conn.execute(_RESERVE, {"count": count})).scalars())
    last = (await conn.execute(select(func.coalesce(func.max(Activity.id), 0)))).scalar_one()
    return list(range(last + 1, last + 1 + count))
