"""Programs, ladders, their versions and level identities."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.tables import Ladder as LadderTable
from tierwise.db.tables import LadderVersion, Level, Program
from tierwise.domain.ladder import Ladder
from tierwise.domain.program import Program as ProgramValue


def _program(row: Row[Any]) -> ProgramValue:
    return ProgramValue(
        id=row.id,
        uuid=row.uuid,
        tenant_id=row.tenant_id,
        name=row.name,
        time_zone=row.time_zone,
        currency=row.currency,
        earn_rate=row.earn_rate,
        is_default=row.is_default,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def programs_of(conn: AsyncConnection, tenant_id: int) -> list[ProgramValue]:
    rows = await conn.execute(
        select(Program).where(Program.tenant_id == tenant_id).order_by(Program.id)
    )
    return [_program(row) for row in rows]


async def program(conn: AsyncConnection, tenant_id: int, program_id: int) -> ProgramValue | None:
    row = (
        await conn.execute(
            select(Program).where(Program.tenant_id == tenant_id, Program.id == program_id)
        )
    ).first()
    return None if row is None else _program(row)


async def program_by_uuid(conn: AsyncConnection, tenant_id: int, uuid: str) -> ProgramValue | None:
    row = (
        await conn.execute(
            select(Program).where(Program.tenant_id == tenant_id, Program.uuid == uuid)
        )
    ).first()
    return None if row is None else _program(row)


async def default_program(conn: AsyncConnection, tenant_id: int) -> ProgramValue | None:
    row = (
        await conn.execute(
            select(Program)
            .where(Program.tenant_id == tenant_id)
            .order_by(Program.is_default.desc(), Program.id)
            .limit(1)
        )
    ).first()
    return None if row is None else _program(row)


async def add_program(
    conn: AsyncConnection,
    *,
    tenant_id: int,
    uuid: str,
    name: str,
    time_zone: str,
    currency: str,
    earn_rate: Decimal,
    is_default: bool,
    now: datetime,
) -> int:
    if is_default:
        await clear_default(conn, tenant_id)
    result = await conn.execute(
        insert(Program)
        .values(
            tenant_id=tenant_id,
            uuid=uuid,
            name=name,
            time_zone=time_zone,
            currency=currency,
            earn_rate=earn_rate,
            is_default=is_default,
            created_at=now,
            updated_at=now,
        )
        .returning(Program.id)
    )
    return int(result.scalar_one())


async def clear_default(conn: AsyncConnection, tenant_id: int) -> None:
    await conn.execute(
        update(Program)
        .where(Program.tenant_id == tenant_id, Program.is_default.is_(True))
        .values(is_default=False)
    )


async def update_program(conn: AsyncConnection, program_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(Program).where(Program.id == program_id).values(**values))


# -- ladders ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LadderRow:
    """A ladder's identity and its live definition (None before the first go-live)."""

    id: int
    uuid: str
    tenant_id: int
    program_id: int
    key: str
    live_version_id: int | None
    live_version_number: int | None
    definition: Ladder | None
    level_ids: dict[str, int]
    created_at: datetime
    updated_at: datetime


class DefinitionCache:
    """Parsed definitions by version id. A version's content never changes once it is
    live, so entries never go stale."""

    def __init__(self, size: int = 2048) -> None:
        self._items: dict[int, Ladder] = {}
        self._size = size

    def get(self, version_id: int, raw: dict[str, Any]) -> Ladder:
        found = self._items.get(version_id)
        if found is None:
            found = Ladder.model_validate(raw)
            if len(self._items) >= self._size:
                self._items.clear()
            self._items[version_id] = found
        return found


_LADDER_COLUMNS = (
    LadderTable.id,
    LadderTable.uuid,
    LadderTable.tenant_id,
    LadderTable.program_id,
    LadderTable.key,
    LadderTable.live_version_id,
    LadderVersion.number,
    LadderVersion.definition,
    LadderTable.created_at,
    LadderTable.updated_at,
)


async def ladders(
    conn: AsyncConnection,
    cache: DefinitionCache,
    *,
    tenant_id: int,
    program_id: int | None = None,
    ladder_key: str | None = None,
) -> list[LadderRow]:
    """Ladders of a tenant (optionally one program, one key), with live definitions."""
    query = (
        select(*_LADDER_COLUMNS)
        .outerjoin(LadderVersion, LadderVersion.id == LadderTable.live_version_id)
        .where(LadderTable.tenant_id == tenant_id)
        .order_by(LadderTable.id)
    )
    if program_id is not None:
        query = query.where(LadderTable.program_id == program_id)
    if ladder_key is not None:
        query = query.where(LadderTable.key == ladder_key)
    rows = (await conn.execute(query)).all()
    if not rows:
        return []
    level_rows = await conn.execute(
        select(Level.ladder_id, Level.key, Level.id).where(
            Level.ladder_id.in_([row.id for row in rows])
        )
    )
    level_ids: dict[int, dict[str, int]] = {}
    for ladder_id, key, level_id in level_rows:
        level_ids.setdefault(ladder_id, {})[key] = level_id
    return [
        LadderRow(
            id=row.id,
            uuid=row.uuid,
            tenant_id=row.tenant_id,
            program_id=row.program_id,
            key=row.key,
            live_version_id=row.live_version_id,
            live_version_number=row.number,
            definition=None
            if row.live_version_id is None
            else cache.get(row.live_version_id, row.definition),
            level_ids=level_ids.get(row.id, {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ]


async def add_ladder(
    conn: AsyncConnection, *, tenant_id: int, program_id: int, uuid: str, key: str, now: datetime
) -> int:
    result = await conn.execute(
        insert(LadderTable)
        .values(
            tenant_id=tenant_id,
            program_id=program_id,
            uuid=uuid,
            key=key,
            live_version_id=None,
            created_at=now,
            updated_at=now,
        )
        .returning(LadderTable.id)
    )
    return int(result.scalar_one())


async def ensure_levels(
    conn: AsyncConnection,
    *,
    tenant_id: int,
    ladder_id: int,
    keys: list[str],
    uuids: list[str],
    now: datetime,
) -> None:
    """Give every level key of a ladder a stable integer id (kept across versions)."""
    existing = set(
        (await conn.execute(select(Level.key).where(Level.ladder_id == ladder_id))).scalars()
    )
    rows = [
        {
            "tenant_id": tenant_id,
            "ladder_id": ladder_id,
            "key": key,
            "uuid": uuid,
            "created_at": now,
        }
        for key, uuid in zip(keys, uuids, strict=True)
        if key not in existing
    ]
    if rows:
        await conn.execute(insert(Level), rows)


async def add_version(
    conn: AsyncConnection,
    *,
    tenant_id: int,
    ladder_id: int,
    uuid: str,
    state: str,
    definition: Ladder,
    actor: str,
    now: datetime,
) -> tuple[int, int]:
    """Store a new version; returns ``(id, number)``."""
    number = (
        await conn.execute(
            select(LadderVersion.number)
            .where(LadderVersion.ladder_id == ladder_id)
            .order_by(LadderVersion.number.desc())
            .limit(1)
        )
    ).scalar()
    next_number = (number or 0) + 1
    result = await conn.execute(
        insert(LadderVersion)
        .values(
            tenant_id=tenant_id,
            ladder_id=ladder_id,
            uuid=uuid,
            number=next_number,
            state=state,
            definition=definition.model_dump(mode="json"),
            created_by=actor,
            created_at=now,
            updated_by=actor,
            updated_at=now,
            apply_downgrades_now=False,
        )
        .returning(LadderVersion.id)
    )
    return int(result.scalar_one()), next_number


async def set_version_state(
    conn: AsyncConnection, version_id: int, state: str, values: dict[str, Any] | None = None
) -> None:
    await conn.execute(
        update(LadderVersion)
        .where(LadderVersion.id == version_id)
        .values(state=state, **(values or {}))
    )


async def set_live(conn: AsyncConnection, ladder_id: int, version_id: int, now: datetime) -> None:
    await conn.execute(
        update(LadderTable)
        .where(LadderTable.id == ladder_id)
        .values(live_version_id=version_id, updated_at=now)
    )
