"""Members, their standing per ladder, and the history of level changes."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos.state_json import assignment_json, assignment_of, state_json, state_of
from tierwise.db.repos.upsert import (
    BULK_MIN_ROWS,
    copy_json_rows,
    insert_ignore,
    pg_driver,
)
from tierwise.db.tables import Activity, Base, Member, MemberTier, Program, TierChange
from tierwise.domain.calendar import ensure_aware
from tierwise.domain.state import TierChange as Change
from tierwise.domain.state import TierState


@dataclass(frozen=True, slots=True)
class MemberRow:
    id: int
    uuid: str
    tenant_id: int
    external_id: str
    enrolled_at: datetime
    last_activity_at: datetime | None
    created_at: datetime


def _member(row: Row[Any]) -> MemberRow:
    return MemberRow(
        row.id,
        row.uuid,
        row.tenant_id,
        row.external_id,
        row.enrolled_at,
        row.last_activity_at,
        row.created_at,
    )


async def member_by_external_id(
    conn: AsyncConnection, tenant_id: int, external_id: str, *, lock: bool = False
) -> MemberRow | None:
    query = select(Member).where(Member.tenant_id == tenant_id, Member.external_id == external_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _member(row)


async def members_by_external_ids(
    conn: AsyncConnection, tenant_id: int, external_ids: Sequence[str], *, lock: bool = False
) -> dict[str, MemberRow]:
    query = (
        select(Member)
        .where(Member.tenant_id == tenant_id, Member.external_id.in_(list(external_ids)))
        .order_by(Member.id)
    )
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return {row.external_id: _member(row) for row in await conn.execute(query)}


async def members_by_ids(conn: AsyncConnection, member_ids: Sequence[int]) -> dict[int, MemberRow]:
    rows = await conn.execute(select(Member).where(Member.id.in_(list(member_ids))))
    return {row.id: _member(row) for row in rows}


async def add_members(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert members that do not exist yet (concurrent creators are tolerated)."""
    await insert_ignore(
        conn, Base.metadata.tables["members"], rows, keys=["tenant_id", "external_id"]
    )


async def set_last_activity(
    conn: AsyncConnection, values: dict[int, datetime], now: datetime
) -> None:
    for member_id, at in values.items():
        await conn.execute(
            update(Member).where(Member.id == member_id).values(last_activity_at=at, updated_at=now)
        )


async def set_enrolled_at(
    conn: AsyncConnection, member_id: int, enrolled_at: datetime, now: datetime
) -> None:
    await conn.execute(
        update(Member).where(Member.id == member_id).values(enrolled_at=enrolled_at, updated_at=now)
    )


# -- standing -----------------------------------------------------------------------------


def _state_of(
    level_key: str | None,
    achieved_at: datetime | None,
    cycle_start: datetime | None,
    expires_at: datetime | None,
    check_due_at: datetime | None,
    previous_level_key: str | None,
    assignment: dict[str, Any] | None,
    grace_until: datetime | None,
    credit: int,
) -> TierState:
    return TierState(
        level_key,
        achieved_at,
        cycle_start,
        expires_at,
        check_due_at,
        previous_level_key,
        None if assignment is None else assignment_of(assignment),
        grace_until,
        credit,
    )


def _state(row: Row[Any]) -> TierState:
    return TierState(
        level_key=row.level_key,
        achieved_at=row.achieved_at,
        cycle_start=row.cycle_start,
        expires_at=row.expires_at,
        check_due_at=row.check_due_at,
        previous_level_key=row.previous_level_key,
        assignment=assignment_of(row.assignment),
        grace_until=row.grace_until,
        credit=row.credit,
    )


async def states(
    conn: AsyncConnection, member_ids: Sequence[int], ladder_ids: Sequence[int]
) -> dict[tuple[int, int], TierState]:
    """Standing of each (member, ladder) that has one."""
    if not member_ids or not ladder_ids:
        return {}
    rows = await conn.execute(
        select(MemberTier).where(
            MemberTier.member_id.in_(list(member_ids)), MemberTier.ladder_id.in_(list(ladder_ids))
        )
    )
    return {(row.member_id, row.ladder_id): _state(row) for row in rows}


@dataclass(frozen=True, slots=True)
class DueStanding:
    """A standing claimed by the sweep, with what the rules need of its member."""

    id: int
    tenant_id: int
    member_id: int
    ladder_id: int
    state: TierState
    external_id: str
    enrolled_at: datetime
    last_activity_at: datetime | None


_DUE_COLUMNS = """
    t.id, t.tenant_id, t.member_id, t.ladder_id, t.level_key, t.achieved_at, t.cycle_start,
    t.expires_at, t.check_due_at, t.previous_level_key, t.assignment, t.grace_until,
    t.credit, m.external_id, m.enrolled_at, m.last_activity_at
"""


async def claim_due(
    conn: AsyncConnection,
    *,
    as_of: datetime,
    tenant_id: int | None,
    limit: int,
    exclude: Collection[int] = (),
) -> list[DueStanding]:
    """Lock and read up to ``limit`` standings due by ``as_of`` (earliest first), with
    their members, in one statement; ``exclude`` holds ``member_tiers`` ids to leave.

    On PostgreSQL rows another transaction holds are skipped (``FOR UPDATE SKIP
    LOCKED``), so concurrent sweeps never take the same standing. The member row is
    locked too: activities, assignments and go-live lock it before they read a
    standing, so a standing whose member is busy is left for the next run instead of
    being overwritten by, or overwriting, that transaction's change."""
    driver = await pg_driver(conn)
    if driver is not None:
        where = ["t.due_at <= $1"]
        args: list[Any] = [as_of, limit]
        if tenant_id is not None:
            args.append(tenant_id)
            where.append(f"t.tenant_id = ${len(args)}")
        if exclude:
            args.append(list(exclude))
            where.append(f"t.id <> ALL(${len(args)}::bigint[])")
        # Ordered by due_at alone, so the due_at index serves the order and the limit
        # however many standings share an instant.
        records = await driver.fetch(
            f"SELECT {_DUE_COLUMNS} FROM member_tiers t JOIN members m ON m.id = t.member_id "
            f"WHERE {' AND '.join(where)} ORDER BY t.due_at LIMIT $2 "
            "FOR UPDATE OF t, m SKIP LOCKED",
            *args,
        )
        rows: Sequence[Sequence[Any]] = records
    else:
        query = (
            select(
                MemberTier.id,
                MemberTier.tenant_id,
                MemberTier.member_id,
                MemberTier.ladder_id,
                MemberTier.level_key,
                MemberTier.achieved_at,
                MemberTier.cycle_start,
                MemberTier.expires_at,
                MemberTier.check_due_at,
                MemberTier.previous_level_key,
                MemberTier.assignment,
                MemberTier.grace_until,
                MemberTier.credit,
                Member.external_id,
                Member.enrolled_at,
                Member.last_activity_at,
            )
            .join(Member, Member.id == MemberTier.member_id)
            .where(MemberTier.due_at <= as_of)
            .order_by(MemberTier.due_at, MemberTier.id)
            .limit(limit)
        )
        if tenant_id is not None:
            query = query.where(MemberTier.tenant_id == tenant_id)
        if exclude:
            query = query.where(MemberTier.id.not_in(list(exclude)))
        rows = list(await conn.execute(query))
    return [
        DueStanding(
            r[0],
            r[1],
            r[2],
            r[3],
            _state_of(r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12]),
            r[13],
            r[14],
            r[15],
        )
        for r in rows
    ]


def _state_values(state: TierState) -> dict[str, Any]:
    return {
        "level_key": state.level_key,
        "previous_level_key": state.previous_level_key,
        "achieved_at": state.achieved_at,
        "cycle_start": state.cycle_start,
        "due_at": state.due_at,
        "expires_at": state.expires_at,
        "check_due_at": state.check_due_at,
        "grace_until": state.grace_until,
        "credit": state.credit,
        "assignment": assignment_json(state.assignment),
    }


async def save_states(
    conn: AsyncConnection,
    *,
    tenant_id: int,
    states: Sequence[tuple[int, int, TierState]],
    now: datetime,
    locked: Mapping[tuple[int, int], int] | None = None,
) -> None:
    """Insert or update many standings ``(member_id, ladder_id, state)`` in one statement
    per chunk (``INSERT … ON CONFLICT (member_id, ladder_id) DO UPDATE``).

    On PostgreSQL many standings go as one array per column (``unnest``) in a single
    statement; elsewhere, and for a few, as an ``executemany``. ``locked`` maps
    ``(member_id, ladder_id)`` to the ``member_tiers`` id of standings this transaction
    holds locked (so they exist): on PostgreSQL those are updated by id."""
    if not states:
        return
    driver = await pg_driver(conn) if len(states) >= BULK_MIN_ROWS else None
    if driver is not None:
        held = locked or {}
        by_id = [(held[(m, ladder)], st) for m, ladder, st in states if (m, ladder) in held]
        if by_id:
            await _update_states_pg(driver, by_id, now)
        if len(by_id) < len(states):
            rest = [x for x in states if (x[0], x[1]) not in held]
            await _save_states_pg(driver, tenant_id, rest, now)
        return
    rows = [
        {
            "tenant_id": tenant_id,
            "member_id": member_id,
            "ladder_id": ladder_id,
            "created_at": now,
            "updated_at": now,
            **_state_values(state),
        }
        for member_id, ladder_id, state in states
    ]
    await conn.execute(_STATE_UPSERTS[conn.dialect.name], rows)


def _state_upsert(dialect_insert: Any) -> Any:
    stmt = dialect_insert(Base.metadata.tables["member_tiers"])
    return stmt.on_conflict_do_update(
        index_elements=["member_id", "ladder_id"],
        set_={name: stmt.excluded[name] for name in (*_STATE_COLUMNS, "updated_at")},
    )


def _state_arrays(states: Iterable[TierState]) -> list[list[Any]]:
    """The standings' values as one list per column of ``_STATE_COLUMNS``."""
    level_key: list[Any] = []
    previous: list[Any] = []
    achieved: list[Any] = []
    cycle: list[Any] = []
    due: list[Any] = []
    expires: list[Any] = []
    check: list[Any] = []
    grace: list[Any] = []
    credit: list[Any] = []
    assignment: list[Any] = []
    for state in states:
        level_key.append(state.level_key)
        previous.append(state.previous_level_key)
        achieved.append(state.achieved_at)
        cycle.append(state.cycle_start)
        due.append(state.due_at)
        expires.append(state.expires_at)
        check.append(state.check_due_at)
        grace.append(state.grace_until)
        credit.append(state.credit)
        # As SQLAlchemy's JSON type writes it: None is the JSON ``null``.
        held = state.assignment
        assignment.append("null" if held is None else json.dumps(assignment_json(held)))
    return [level_key, previous, achieved, cycle, due, expires, check, grace, credit, assignment]


async def _save_states_pg(
    driver: Any, tenant_id: int, states: Sequence[tuple[int, int, TierState]], now: datetime
) -> None:
    await driver.execute(
        _SAVE_STATES_PG,
        tenant_id,
        now,
        [m for m, _, _ in states],
        [ladder for _, ladder, _ in states],
        *_state_arrays(s for _, _, s in states),
    )


async def _update_states_pg(
    driver: Any, states: Sequence[tuple[int, TierState]], now: datetime
) -> None:
    await driver.execute(
        _UPDATE_STATES_PG, now, [i for i, _ in states], *_state_arrays(s for _, s in states)
    )


_STATE_COLUMNS = (
    "level_key",
    "previous_level_key",
    "achieved_at",
    "cycle_start",
    "due_at",
    "expires_at",
    "check_due_at",
    "grace_until",
    "credit",
    "assignment",
)

# Built once: building ``excluded`` on every call was 8 % of a single activity's CPU.
_STATE_UPSERTS = {
    "postgresql": _state_upsert(postgresql.insert),
    "sqlite": _state_upsert(sqlite.insert),
}

_STATE_TYPES = {
    "level_key": "text",
    "previous_level_key": "text",
    "achieved_at": "timestamptz",
    "cycle_start": "timestamptz",
    "due_at": "timestamptz",
    "expires_at": "timestamptz",
    "check_due_at": "timestamptz",
    "grace_until": "timestamptz",
    "credit": "bigint",
    "assignment": "text",
}


def _arrays(first: int) -> str:
    """``$first::text[], …``: one array parameter per state column."""
    return ", ".join(
        f"${first + i}::{_STATE_TYPES[name]}[]" for i, name in enumerate(_STATE_COLUMNS)
    )


_SAVE_STATES_PG = f"""
INSERT INTO member_tiers (tenant_id, member_id, ladder_id, {", ".join(_STATE_COLUMNS)},
                          created_at, updated_at)
SELECT $1::bigint, s.member_id, s.ladder_id, {
    ", ".join(f"s.{n}::json" if n == "assignment" else f"s.{n}" for n in _STATE_COLUMNS)
}, $2::timestamptz, $2::timestamptz
FROM unnest($3::bigint[], $4::bigint[], {_arrays(5)})
     AS s(member_id, ladder_id, {", ".join(_STATE_COLUMNS)})
ON CONFLICT (member_id, ladder_id) DO UPDATE SET {
    ", ".join(f"{n} = EXCLUDED.{n}" for n in (*_STATE_COLUMNS, "updated_at"))
}
"""
_UPDATE_STATES_PG = f"""
UPDATE member_tiers AS t SET {
    ", ".join(f"{n} = s.{n}::json" if n == "assignment" else f"{n} = s.{n}" for n in _STATE_COLUMNS)
}, updated_at = $1::timestamptz
FROM unnest($2::bigint[], {_arrays(3)}) AS s(id, {", ".join(_STATE_COLUMNS)})
WHERE t.id = s.id
"""


# -- history ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChangeRow:
    id: int
    uuid: str
    ladder_id: int
    change: Change
    activity_id: int | None
    recorded_at: datetime
    state_after: TierState | None = None
    """The standing this change left (None for rows written before it was kept)."""


CHANGE_COLUMNS = (
    "uuid",
    "tenant_id",
    "member_id",
    "ladder_id",
    "from_level_key",
    "to_level_key",
    "kind",
    "source",
    "activity_id",
    "actor",
    "reason",
    "occurred_at",
    "recorded_at",
    "state_after",
)


async def add_changes(conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Append history rows, each a tuple in ``CHANGE_COLUMNS`` order (see ``change_row``)."""

    def encoded(encode: Callable[[Any], Any]) -> Iterator[tuple[Any, ...]]:
        for row in rows:
            after = row[-1]
            yield (*row[:-1], None if after is None else encode(after))

    await copy_json_rows(
        conn, Base.metadata.tables["tier_changes"], CHANGE_COLUMNS, len(rows), encoded
    )


def change_row(
    *,
    uuid: str,
    tenant_id: int,
    member_id: int,
    ladder_id: int,
    change: Change,
    activity_id: int | None,
    now: datetime,
    state_after: TierState | None = None,
) -> tuple[Any, ...]:
    return (
        uuid,
        tenant_id,
        member_id,
        ladder_id,
        change.from_level,
        change.to_level,
        change.kind._value_,
        change.source._value_,
        activity_id,
        change.actor,
        change.reason,
        change.at,
        now,
        None if state_after is None else state_json(state_after),
    )


async def history(
    conn: AsyncConnection,
    member_id: int,
    ladder_ids: Sequence[int],
    *,
    until: datetime | None = None,
    limit: int = 500,
) -> list[ChangeRow]:
    """Level changes, oldest first (ties broken by the order they were recorded)."""
    from tierwise.domain.state import ChangeKind, ChangeSource

    query = select(TierChange).where(
        TierChange.member_id == member_id, TierChange.ladder_id.in_(list(ladder_ids))
    )
    if until is not None:
        query = query.where(TierChange.occurred_at <= until)
    query = query.order_by(TierChange.occurred_at.desc(), TierChange.id.desc()).limit(limit)
    rows = list(await conn.execute(query))
    rows.reverse()
    return [
        ChangeRow(
            id=row.id,
            uuid=row.uuid,
            ladder_id=row.ladder_id,
            change=Change(
                from_level=row.from_level_key,
                to_level=row.to_level_key,
                kind=ChangeKind(row.kind),
                at=row.occurred_at,
                source=ChangeSource(row.source),
                reason=row.reason,
                actor=row.actor,
            ),
            activity_id=row.activity_id,
            recorded_at=row.recorded_at,
            state_after=None if row.state_after is None else state_of(row.state_after),
        )
        for row in rows
    ]


async def upgrade_caused_by(
    conn: AsyncConnection, member_id: int, activity_id: int
) -> ChangeRow | None:
    """The upgrade that activity ``activity_id`` caused, if any (R13)."""
    from tierwise.domain.state import ChangeKind, ChangeSource

    row = (
        await conn.execute(
            select(TierChange)
            .where(
                TierChange.member_id == member_id,
                TierChange.activity_id == activity_id,
                TierChange.kind == ChangeKind.UPGRADED.value,
            )
            .order_by(TierChange.id.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    return ChangeRow(
        id=row.id,
        uuid=row.uuid,
        ladder_id=row.ladder_id,
        change=Change(
            from_level=row.from_level_key,
            to_level=row.to_level_key,
            kind=ChangeKind(row.kind),
            at=row.occurred_at,
            source=ChangeSource(row.source),
            reason=row.reason,
            actor=row.actor,
        ),
        activity_id=row.activity_id,
        recorded_at=row.recorded_at,
    )


# For set-based writers elsewhere (the sweep's one-statement batch write).
STATE_COLUMNS = _STATE_COLUMNS
STATE_TYPES = _STATE_TYPES


def state_rows(states: Iterable[tuple[int, TierState]]) -> Iterator[tuple[Any, ...]]:
    """``(key, *values in STATE_COLUMNS order)`` per ``(key, state)``; the assignment as
    JSON text, as SQLAlchemy's JSON type writes it (None is the JSON ``null``)."""
    dumps = json.dumps
    for key, state in states:
        held = state.assignment
        yield (
            key,
            state.level_key,
            state.previous_level_key,
            state.achieved_at,
            state.cycle_start,
            state.due_at,
            state.expires_at,
            state.check_due_at,
            state.grace_until,
            state.credit,
            "null" if held is None else dumps(assignment_json(held)),
        )


async def last_activity_until(
    conn: AsyncConnection, tenant_id: int, member_id: int, at: datetime
) -> datetime | None:
    """The instant of the member's latest activity (in any program of the tenant, as
    ``members.last_activity_at`` counts them) that occurred at or before ``at``. One
    backward step of the (member, program, occurred_at) index per program, whatever the
    member's history."""
    latest = (
        select(Activity.occurred_at)
        .where(
            Activity.member_id == member_id,
            Activity.program_id == Program.id,
            Activity.occurred_at <= at,
        )
        .order_by(Activity.occurred_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    found = await conn.scalar(select(func.max(latest)).where(Program.tenant_id == tenant_id))
    return ensure_aware(found) if found is not None else None
