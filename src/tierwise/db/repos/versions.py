"""Ladder versions (R24), go-live jobs (R25) and level counts (R26)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.tables import Job, LadderCount, LadderVersion, MemberTier
from tierwise.domain.ladder import Ladder
from tierwise.domain.versions import OPEN_STATES, VersionState


@dataclass(frozen=True, slots=True)
class VersionRow:
    id: int
    uuid: str
    ladder_id: int
    number: int
    state: VersionState
    definition: Ladder
    created_by: str | None
    created_at: datetime
    updated_by: str | None
    updated_at: datetime
    submitted_by: str | None
    submitted_at: datetime | None
    approved_by: str | None
    approved_at: datetime | None
    rejected_by: str | None
    rejected_at: datetime | None
    rejection_comment: str | None
    effective_at: datetime | None
    apply_downgrades_now: bool


def _version(row: Any) -> VersionRow:
    return VersionRow(
        id=row.id,
        uuid=row.uuid,
        ladder_id=row.ladder_id,
        number=row.number,
        state=VersionState(row.state),
        definition=Ladder.model_validate(row.definition),
        created_by=row.created_by,
        created_at=row.created_at,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
        submitted_by=row.submitted_by,
        submitted_at=row.submitted_at,
        approved_by=row.approved_by,
        approved_at=row.approved_at,
        rejected_by=row.rejected_by,
        rejected_at=row.rejected_at,
        rejection_comment=row.rejection_comment,
        effective_at=row.effective_at,
        apply_downgrades_now=row.apply_downgrades_now,
    )


async def versions_of(conn: AsyncConnection, ladder_id: int) -> list[VersionRow]:
    rows = await conn.execute(
        select(LadderVersion)
        .where(LadderVersion.ladder_id == ladder_id)
        .order_by(LadderVersion.number)
    )
    return [_version(row) for row in rows]


async def version(
    conn: AsyncConnection, ladder_id: int, number: int, *, lock: bool = False
) -> VersionRow | None:
    query = select(LadderVersion).where(
        LadderVersion.ladder_id == ladder_id, LadderVersion.number == number
    )
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _version(row)


async def version_by_id(conn: AsyncConnection, version_id: int) -> VersionRow | None:
    row = (await conn.execute(select(LadderVersion).where(LadderVersion.id == version_id))).first()
    return None if row is None else _version(row)


async def open_version(conn: AsyncConnection, ladder_id: int) -> VersionRow | None:
    row = (
        await conn.execute(
            select(LadderVersion).where(
                LadderVersion.ladder_id == ladder_id,
                LadderVersion.state.in_([s.value for s in OPEN_STATES]),
            )
        )
    ).first()
    return None if row is None else _version(row)


async def update_version(conn: AsyncConnection, version_id: int, values: dict[str, Any]) -> None:
    if "state" in values and isinstance(values["state"], VersionState):
        values = {**values, "state": values["state"].value}
    if "definition" in values and isinstance(values["definition"], Ladder):
        values = {**values, "definition": values["definition"].model_dump(mode="json")}
    await conn.execute(update(LadderVersion).where(LadderVersion.id == version_id).values(**values))


async def due_scheduled(
    conn: AsyncConnection, as_of: datetime, tenant_id: int | None = None
) -> list[tuple[int, int, int]]:
    """``(tenant_id, ladder_id, version_id)`` of scheduled versions whose time has come."""
    query = (
        select(LadderVersion.tenant_id, LadderVersion.ladder_id, LadderVersion.id)
        .where(
            LadderVersion.state == VersionState.SCHEDULED.value, LadderVersion.effective_at <= as_of
        )
        .order_by(LadderVersion.effective_at)
    )
    if tenant_id is not None:
        query = query.where(LadderVersion.tenant_id == tenant_id)
    return [(r[0], r[1], r[2]) for r in await conn.execute(query)]


# -- jobs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobRow:
    id: int
    uuid: str
    tenant_id: int
    kind: str
    ladder_id: int
    version_id: int
    state: str
    total: int
    done: int
    cursor: int
    apply_downgrades_now: bool
    changes: dict[str, int]
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


def _job(row: Any) -> JobRow:
    return JobRow(
        id=row.id,
        uuid=row.uuid,
        tenant_id=row.tenant_id,
        kind=row.kind,
        ladder_id=row.ladder_id,
        version_id=row.version_id,
        state=row.state,
        total=row.total,
        done=row.done,
        cursor=row.cursor,
        apply_downgrades_now=row.apply_downgrades_now,
        changes=dict(row.changes),
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


async def add_job(conn: AsyncConnection, **values: Any) -> int:
    result = await conn.execute(insert(Job).values(**values).returning(Job.id))
    return int(result.scalar_one())


async def job(
    conn: AsyncConnection,
    *,
    job_id: int | None = None,
    uuid: str | None = None,
    tenant_id: int | None = None,
    lock: bool = False,
) -> JobRow | None:
    query = select(Job)
    if job_id is not None:
        query = query.where(Job.id == job_id)
    if uuid is not None:
        query = query.where(Job.uuid == uuid)
    if tenant_id is not None:
        query = query.where(Job.tenant_id == tenant_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _job(row)


async def unfinished_jobs(conn: AsyncConnection) -> list[JobRow]:
    rows = await conn.execute(
        select(Job).where(Job.state.in_(["pending", "running"])).order_by(Job.id)
    )
    return [_job(row) for row in rows]


async def update_job(conn: AsyncConnection, job_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(Job).where(Job.id == job_id).values(**values))


# -- counts -------------------------------------------------------------------------------


async def count_levels(conn: AsyncConnection, ladder_id: int) -> dict[str, int]:
    rows = await conn.execute(
        select(MemberTier.level_key, func.count())
        .where(MemberTier.ladder_id == ladder_id)
        .group_by(MemberTier.level_key)
    )
    return {(key if key is not None else ""): int(n) for key, n in rows}


async def save_counts(
    conn: AsyncConnection, ladder_id: int, version_id: int, counts: dict[str, int], now: datetime
) -> None:
    found = (
        await conn.execute(select(LadderCount.ladder_id).where(LadderCount.ladder_id == ladder_id))
    ).first()
    values = {"version_id": version_id, "counts": counts, "computed_at": now}
    if found is None:
        await conn.execute(insert(LadderCount).values(ladder_id=ladder_id, **values))
    else:
        await conn.execute(
            update(LadderCount).where(LadderCount.ladder_id == ladder_id).values(**values)
        )


async def counts(
    conn: AsyncConnection, ladder_id: int
) -> tuple[dict[str, int], datetime, int] | None:
    row = (
        await conn.execute(select(LadderCount).where(LadderCount.ladder_id == ladder_id))
    ).first()
    return None if row is None else (dict(row.counts), row.computed_at, row.version_id)
