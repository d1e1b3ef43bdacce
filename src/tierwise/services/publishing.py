"""Making a ladder version live (R24, R25): shared by approval, scheduled go-live and
the one-step publish of ``POST/PUT …/ladders``."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import programs as programs_repo
from tierwise.db.repos import versions as repo
from tierwise.db.repos.programs import LadderRow
from tierwise.db.tables import Member
from tierwise.domain.versions import VersionState
from tierwise.services.runtime import Runtime


async def publish(
    rt: Runtime, conn: AsyncConnection, tenant_id: int, ladder: LadderRow, version_id: int
) -> str:
    """Make ``version_id`` live (the previous live one becomes a snapshot) and queue the
    go-live job. Runs inside the caller's transaction."""
    now = rt.clock()
    found = await repo.version_by_id(conn, version_id)
    assert found is not None
    keys = [level.key for level in found.definition.levels]
    await programs_repo.ensure_levels(
        conn,
        tenant_id=tenant_id,
        ladder_id=ladder.id,
        keys=keys,
        uuids=[str(uuid.uuid4()) for _ in keys],
        now=now,
    )
    if ladder.live_version_id is not None and ladder.live_version_id != version_id:
        await repo.update_version(conn, ladder.live_version_id, {"state": VersionState.SNAPSHOT})
    await repo.update_version(conn, version_id, {"state": VersionState.LIVE})
    await programs_repo.set_live(conn, ladder.id, version_id, now)
    job_uuid = str(uuid.uuid4())
    total = (
        await conn.execute(
            select(func.count()).select_from(Member).where(Member.tenant_id == tenant_id)
        )
    ).scalar_one()
    await repo.add_job(
        conn,
        uuid=job_uuid,
        tenant_id=tenant_id,
        kind="go_live",
        ladder_id=ladder.id,
        version_id=version_id,
        state="pending",
        total=int(total),
        done=0,
        cursor=0,
        apply_downgrades_now=found.apply_downgrades_now,
        changes={},
        error=None,
        created_at=now,
        updated_at=now,
        finished_at=None,
    )
    return job_uuid
