"""Members, their standing per ladder, and the history of level changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos.upsert import insert_ignore
from tierwise.db.tables import Base, Member, MemberTier, TierChange
from tierwise.domain.state import Assignment, AssignmentMode, TierState
from tierwise.domain.state import TierChange as Change


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


def _assignment(raw: dict[str, Any] | None) -> Assignment | None:
    if raw is None:
        return None
    return Assignment(
        level_key=raw["level_key"],
        mode=AssignmentMode(raw["mode"]),
        reason=raw["reason"],
        actor=raw["actor"],
        assigned_at=datetime.fromisoformat(raw["assigned_at"]),
        expires_at=None
        if raw.get("expires_at") is None
        else datetime.fromisoformat(raw["expires_at"]),
    )


def _assignment_json(value: Assignment | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {
        "level_key": value.level_key,
        "mode": value.mode.value,
        "reason": value.reason,
        "actor": value.actor,
        "assigned_at": value.assigned_at.isoformat(),
        "expires_at": None if value.expires_at is None else value.expires_at.isoformat(),
    }


def _state(row: Row[Any]) -> TierState:
    return TierState(
        level_key=row.level_key,
        achieved_at=row.achieved_at,
        cycle_start=row.cycle_start,
        expires_at=row.expires_at,
        check_due_at=row.check_due_at,
        previous_level_key=row.previous_level_key,
        assignment=_assignment(row.assignment),
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
        "assignment": _assignment_json(state.assignment),
    }


async def save_states(
    conn: AsyncConnection,
    *,
    tenant_id: int,
    states: Sequence[tuple[int, int, TierState]],
    now: datetime,
) -> None:
    """Insert or update many standings ``(member_id, ladder_id, state)`` in one statement
    per chunk (``INSERT … ON CONFLICT (member_id, ladder_id) DO UPDATE``)."""
    if not states:
        return
    table = Base.metadata.tables["member_tiers"]
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
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
    stmt = dialect_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["member_id", "ladder_id"],
        set_={name: stmt.excluded[name] for name in (*_STATE_COLUMNS, "updated_at")},
    )
    await conn.execute(stmt, rows)


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


# -- history ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChangeRow:
    id: int
    uuid: str
    ladder_id: int
    change: Change
    activity_id: int | None
    recorded_at: datetime


async def add_changes(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(TierChange), rows)


def change_row(
    *,
    uuid: str,
    tenant_id: int,
    member_id: int,
    ladder_id: int,
    change: Change,
    activity_id: int | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "tenant_id": tenant_id,
        "member_id": member_id,
        "ladder_id": ladder_id,
        "from_level_key": change.from_level,
        "to_level_key": change.to_level,
        "kind": change.kind.value,
        "source": change.source.value,
        "activity_id": activity_id,
        "actor": change.actor,
        "reason": change.reason,
        "occurred_at": change.at,
        "recorded_at": now,
    }


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
