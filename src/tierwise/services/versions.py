"""Versioned ladder definitions: drafts, maker-checker approval, scheduled go-live (R24).

Every transition is checked by ``domain.versions.transition`` (a refused one is a 409 that
names it). Approval publishes at once, or at ``effective_at``; publishing makes the old
live version a snapshot and queues a go-live job that re-evaluates members (R25).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import programs as programs_repo
from tierwise.db.repos import tenants as tenants_repo
from tierwise.db.repos import versions as repo
from tierwise.db.repos.programs import LadderRow
from tierwise.db.repos.versions import VersionRow
from tierwise.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from tierwise.domain.ladder import Ladder
from tierwise.domain.versions import Action, VersionState, transition
from tierwise.services.programs import get_program
from tierwise.services.publishing import publish
from tierwise.services.runtime import Caller, Runtime


class ApproverIsAuthor(Forbidden):
    code = "approver_is_author"


@dataclass(frozen=True, slots=True)
class Published:
    version: VersionRow
    job_uuid: str | None


async def ladder_identity(
    rt: Runtime,
    conn: AsyncConnection,
    caller: Caller,
    program_id: int,
    key: str,
    *,
    create: bool = False,
) -> LadderRow:
    program = await get_program(conn, caller, program_id)
    rows = await programs_repo.ladders(
        conn, rt.definitions, tenant_id=caller.tenant_id, program_id=program.id, ladder_key=key
    )
    if rows:
        return rows[0]
    if not create:
        raise NotFound(f"no ladder {key!r} in program {program.id}", code="ladder_not_found")
    await programs_repo.add_ladder(
        conn,
        tenant_id=caller.tenant_id,
        program_id=program.id,
        uuid=str(uuid.uuid4()),
        key=key,
        now=rt.clock(),
    )
    rows = await programs_repo.ladders(
        conn, rt.definitions, tenant_id=caller.tenant_id, program_id=program.id, ladder_key=key
    )
    return rows[0]


async def _version(
    conn: AsyncConnection, ladder: LadderRow, number: int, *, lock: bool = False
) -> VersionRow:
    found = await repo.version(conn, ladder.id, number, lock=lock)
    if found is None:
        raise NotFound(f"ladder {ladder.key!r} has no version {number}", code="version_not_found")
    return found


async def create_draft(
    rt: Runtime, caller: Caller, program_id: int, definition: Ladder, *, key: str | None = None
) -> VersionRow:
    """A new draft beside the live version (or the first version of a new ladder)."""
    key = key or definition.key
    if definition.key != key:
        raise InvalidInput("a ladder's key cannot change", code="ladder_key_immutable", field="key")
    definition.validate_rules()
    async with rt.transaction() as conn:
        ladder = await ladder_identity(rt, conn, caller, program_id, key, create=True)
        open_one = await repo.open_version(conn, ladder.id)
        if open_one is not None:
            raise Conflict(
                f"ladder {key!r} already has an open draft (version {open_one.number}, "
                f"{open_one.state.value}); edit or delete it first",
                code="draft_exists",
                version=open_one.number,
            )
        _, number = await programs_repo.add_version(
            conn,
            tenant_id=caller.tenant_id,
            ladder_id=ladder.id,
            uuid=str(uuid.uuid4()),
            state=VersionState.DRAFT.value,
            definition=definition,
            actor=caller.actor,
            now=rt.clock(),
        )
        found = await _version(conn, ladder, number)
        await conn.commit()
    return found


async def update_draft(
    rt: Runtime, caller: Caller, program_id: int, key: str, number: int, definition: Ladder
) -> VersionRow:
    if definition.key != key:
        raise InvalidInput("a ladder's key cannot change", code="ladder_key_immutable", field="key")
    definition.validate_rules()
    async with rt.transaction() as conn:
        ladder = await ladder_identity(rt, conn, caller, program_id, key)
        found = await _version(conn, ladder, number, lock=True)
        state = transition(found.state, Action.EDIT)
        await repo.update_version(
            conn,
            found.id,
            {
                "state": state,
                "definition": definition,
                "updated_by": caller.actor,
                "updated_at": rt.clock(),
            },
        )
        found = await _version(conn, ladder, number)
        await conn.commit()
    return found


async def submit(rt: Runtime, caller: Caller, program_id: int, key: str, number: int) -> VersionRow:
    async with rt.transaction() as conn:
        ladder = await ladder_identity(rt, conn, caller, program_id, key)
        found = await _version(conn, ladder, number, lock=True)
        state = transition(found.state, Action.SUBMIT)
        now = rt.clock()
        await repo.update_version(
            conn, found.id, {"state": state, "submitted_by": caller.actor, "submitted_at": now}
        )
        found = await _version(conn, ladder, number)
        await conn.commit()
    return found


async def reject(
    rt: Runtime, caller: Caller, program_id: int, key: str, number: int, comment: str
) -> VersionRow:
    async with rt.transaction() as conn:
        ladder = await ladder_identity(rt, conn, caller, program_id, key)
        found = await _version(conn, ladder, number, lock=True)
        state = transition(found.state, Action.REJECT)
        await _check_reviewer(conn, caller, found)
        await repo.update_version(
            conn,
            found.id,
            {
                "state": state,
                "rejected_by": caller.actor,
                "rejected_at": rt.clock(),
                "rejection_comment": comment,
            },
        )
        found = await _version(conn, ladder, number)
        await conn.commit()
    return found


async def delete(rt: Runtime, caller: Caller, program_id: int, key: str, number: int) -> VersionRow:
    async with rt.transaction() as conn:
        ladder = await ladder_identity(rt, conn, caller, program_id, key)
        found = await _version(conn, ladder, number, lock=True)
        state = transition(found.state, Action.DELETE)
        await repo.update_version(
            conn, found.id, {"state": state, "updated_by": caller.actor, "updated_at": rt.clock()}
        )
        found = await _version(conn, ladder, number)
        await conn.commit()
    return found


async def _check_reviewer(conn: AsyncConnection, caller: Caller, found: VersionRow) -> None:
    """Maker-checker: a tenant may require that the reviewer is not the author."""
    tenant = await tenants_repo.tenant_by_id(conn, caller.tenant_id)
    if (
        tenant is not None
        and tenant.require_distinct_approver
        and caller.actor in {found.created_by, found.updated_by}
    ):
        raise ApproverIsAuthor(
            "this tenant requires the reviewer to be someone other than the draft's author"
        )


async def approve(
    rt: Runtime,
    caller: Caller,
    program_id: int,
    key: str,
    number: int,
    *,
    effective_at: datetime | None = None,
    apply_downgrades_now: bool = False,
) -> Published:
    """Approve a pending version: live now (queuing re-evaluation) or at ``effective_at``."""
    now = rt.clock()
    async with rt.transaction() as conn:
        ladder = await ladder_identity(rt, conn, caller, program_id, key)
        found = await _version(conn, ladder, number, lock=True)
        transition(found.state, Action.APPROVE)
        await _check_reviewer(conn, caller, found)
        audit = {
            "approved_by": caller.actor,
            "approved_at": now,
            "apply_downgrades_now": apply_downgrades_now,
            "effective_at": effective_at,
        }
        if effective_at is not None and effective_at > now:
            await repo.update_version(conn, found.id, {"state": VersionState.SCHEDULED, **audit})
            job_uuid = None
        else:
            await repo.update_version(conn, found.id, audit)
            job_uuid = await publish(rt, conn, caller.tenant_id, ladder, found.id)
        found = await _version(conn, ladder, number)
        await conn.commit()
    return Published(found, job_uuid)


async def activate_scheduled(
    rt: Runtime, as_of: datetime, tenant_id: int | None = None
) -> list[str]:
    """Publish every scheduled version whose ``effective_at`` has passed (R25); returns
    the go-live jobs queued."""
    jobs: list[str] = []
    async with rt.transaction() as conn:
        due = await repo.due_scheduled(conn, as_of, tenant_id)
        for tenant, ladder_id, version_id in due:
            rows = [
                row
                for row in await programs_repo.ladders(conn, rt.definitions, tenant_id=tenant)
                if row.id == ladder_id
            ]
            found = await repo.version_by_id(conn, version_id)
            assert found is not None
            transition(found.state, Action.GO_LIVE)
            jobs.append(await publish(rt, conn, tenant, rows[0], version_id))
        await conn.commit()
    return jobs


async def list_versions(rt: Runtime, caller: Caller, program_id: int, key: str) -> list[VersionRow]:
    async with rt.transaction() as conn:
        ladder = await ladder_identity(rt, conn, caller, program_id, key)
        return await repo.versions_of(conn, ladder.id)


async def read_version(
    rt: Runtime, caller: Caller, program_id: int, key: str, number: int
) -> VersionRow:
    async with rt.transaction() as conn:
        ladder = await ladder_identity(rt, conn, caller, program_id, key)
        return await _version(conn, ladder, number)
