"""Enrolling members explicitly (activity also enrols them on first sight)."""

from __future__ import annotations

import uuid
from datetime import datetime

from tierwise.db.repos import members as repo
from tierwise.db.repos import programs as programs_repo
from tierwise.db.repos.members import MemberRow
from tierwise.domain.errors import Conflict
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.standing import Standings


async def enrol(
    rt: Runtime, caller: Caller, external_id: str, enrolled_at: datetime
) -> tuple[MemberRow, bool]:
    """Create the member (placing them on every floor, R4) or change the enrolment date of
    one without activity. Returns the member and whether it was created."""
    now = rt.clock()
    async with rt.transaction() as conn:
        found = await repo.member_by_external_id(conn, caller.tenant_id, external_id, lock=True)
        if found is not None:
            if found.enrolled_at == enrolled_at:
                return found, False
            if found.last_activity_at is not None:
                raise Conflict(
                    "the enrolment date cannot change once the member has activity",
                    code="member_has_activity",
                    field="enrolled_at",
                )
            await repo.set_enrolled_at(conn, found.id, enrolled_at, now)
            member = await repo.member_by_external_id(conn, caller.tenant_id, external_id)
            assert member is not None
            await conn.commit()
            return member, False
        await repo.add_members(
            conn,
            [
                {
                    "uuid": str(uuid.uuid4()),
                    "tenant_id": caller.tenant_id,
                    "external_id": external_id,
                    "enrolled_at": enrolled_at,
                    "last_activity_at": None,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        member = await repo.member_by_external_id(conn, caller.tenant_id, external_id, lock=True)
        assert member is not None
        programs = await programs_repo.programs_of(conn, caller.tenant_id)
        ladders = await programs_repo.ladders(conn, rt.definitions, tenant_id=caller.tenant_id)
        by_program = {
            p.id: [r for r in ladders if r.program_id == p.id and r.definition] for p in programs
        }
        standings = Standings(rt, conn, caller.tenant_id, now)
        await standings.load(
            [(member.id, external_id, enrolled_at, p) for p in programs], by_program
        )
        await standings.flush()
        await conn.commit()
    return member, True


async def read(rt: Runtime, caller: Caller, external_id: str) -> MemberRow:
    from tierwise.services.status import find_member

    async with rt.transaction() as conn:
        return await find_member(conn, caller, external_id)
