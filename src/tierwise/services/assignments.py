"""Manual level assignment and its removal (R20, R21)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import activities as ledger
from tierwise.db.repos import programs as programs_repo
from tierwise.db.repos.members import MemberRow
from tierwise.db.repos.programs import LadderRow
from tierwise.domain.errors import InvalidInput, NotFound
from tierwise.domain.evaluation import qualified_level
from tierwise.domain.ladder import Ladder, Level
from tierwise.domain.lifecycle import enter
from tierwise.domain.program import Program
from tierwise.domain.state import (
    Assignment,
    AssignmentMode,
    ChangeKind,
    ChangeSource,
    TierChange,
    TierState,
)
from tierwise.services import measuring
from tierwise.services.programs import get_program
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.standing import Standings
from tierwise.services.status import find_member


async def _ladder(
    rt: Runtime, conn: AsyncConnection, caller: Caller, program: Program, key: str | None
) -> LadderRow:
    rows = [
        row
        for row in await programs_repo.ladders(
            conn, rt.definitions, tenant_id=caller.tenant_id, program_id=program.id
        )
        if row.definition is not None and (key is None or row.key == key)
    ]
    if not rows:
        raise NotFound(f"no ladder {key!r} in program {program.id}", code="ladder_not_found")
    if key is None and len(rows) > 1:
        raise InvalidInput(
            "the program has several ladders: name one", code="ladder_required", field="ladder"
        )
    return rows[0]


async def _standings(
    rt: Runtime,
    conn: AsyncConnection,
    caller: Caller,
    member: MemberRow,
    program: Program,
    row: LadderRow,
    now: datetime,
) -> Standings:
    standings = Standings(rt, conn, caller.tenant_id, now)
    await standings.load(
        [(member.id, member.external_id, member.enrolled_at, program)], {program.id: [row]}
    )
    return standings


async def assign(
    rt: Runtime,
    caller: Caller,
    external_id: str,
    *,
    level_key: str,
    mode: AssignmentMode,
    reason: str,
    ladder_key: str | None = None,
    program_id: int | None = None,
    expires_at: datetime | None = None,
) -> TierState:
    """R20: put a member on an assignable level by hand."""
    now = rt.clock()
    if expires_at is not None and expires_at <= now:
        raise InvalidInput(
            "the assignment's expiry must be in the future",
            code="expiry_in_past",
            field="expires_at",
        )
    async with rt.transaction() as conn:
        member = await find_member(conn, caller, external_id)
        program = await get_program(conn, caller, program_id)
        row = await _ladder(rt, conn, caller, program, ladder_key)
        ladder = row.definition
        assert ladder is not None
        level = ladder.level(level_key)
        if level is None:
            raise InvalidInput(
                f"ladder {row.key!r} has no level {level_key!r}",
                code="unknown_level",
                field="level",
            )
        if not level.is_assignable:
            raise InvalidInput(
                f"level {level_key!r} cannot be assigned by hand",
                code="level_not_assignable",
                field="level",
            )
        standings = await _standings(rt, conn, caller, member, program, row, now)
        state = standings.get(member.id, row.id)
        assignment = Assignment(
            level_key=level.key,
            mode=mode,
            reason=reason,
            actor=caller.actor,
            assigned_at=now,
            expires_at=expires_at,
        )
        if state.level_key == level.key:
            new_state = replace(state, assignment=assignment, grace_until=None)
        else:
            new_state = enter(
                ladder,
                state,
                level,
                now,
                tz=program.tz,
                enrolled_at=member.enrolled_at,
                last_activity_at=member.last_activity_at,
            )
            new_state = replace(new_state, assignment=assignment)
        change = TierChange(
            from_level=state.level_key,
            to_level=level.key,
            kind=ChangeKind.ASSIGNED,
            at=now,
            source=ChangeSource.MANUAL,
            reason=reason,
            actor=caller.actor,
        )
        standings.change(member.id, row, new_state, change, member.external_id)
        await standings.flush()
        await conn.commit()
    return new_state


async def unassign(
    rt: Runtime,
    caller: Caller,
    external_id: str,
    *,
    ladder_key: str | None = None,
    program_id: int | None = None,
    reason: str = "assignment removed",
) -> TierState:
    """R21: remove the assignment and re-evaluate the member on their figures at once."""
    now = rt.clock()
    async with rt.transaction() as conn:
        member = await find_member(conn, caller, external_id)
        program = await get_program(conn, caller, program_id)
        row = await _ladder(rt, conn, caller, program, ladder_key)
        ladder = row.definition
        assert ladder is not None
        standings = await _standings(rt, conn, caller, member, program, row, now)
        state = standings.get(member.id, row.id)
        if state.assignment is None:
            raise NotFound("the member has no assignment on this ladder", code="no_assignment")
        target = await _qualified(conn, ladder, program, member, state, now)
        released = replace(state, assignment=None)
        # R21: re-evaluated at once; the level (even the same one) starts a new cycle now,
        # so no check from before the assignment is left pending.
        new_state = enter(
            ladder,
            released,
            target,
            now,
            tz=program.tz,
            enrolled_at=member.enrolled_at,
            last_activity_at=member.last_activity_at,
        )
        change = TierChange(
            from_level=state.level_key,
            to_level=new_state.level_key,
            kind=ChangeKind.REMOVED,
            at=now,
            source=ChangeSource.MANUAL,
            reason=reason,
            actor=caller.actor,
        )
        standings.change(member.id, row, new_state, change, member.external_id)
        await standings.flush()
        await conn.commit()
    return new_state


async def _qualified(
    conn: AsyncConnection,
    ladder: Ladder,
    program: Program,
    member: MemberRow,
    state: TierState,
    at: datetime,
) -> Level | None:
    spans = measuring.intervals(
        ladder.measure_keys(),
        program,
        at=at,
        enrolled_at=member.enrolled_at,
        tier_start=state.cycle_start or state.achieved_at,
    )
    first = measuring.first_day_needed(spans.values(), program, member.last_activity_at)
    figures = (
        await ledger.load_figures(
            conn,
            program_id=program.id,
            tz=program.tz,
            metrics={k[0] for k in spans},
            members={member.id: (first, member.last_activity_at)},
        )
    )[member.id]
    measures = await measuring.measure(
        conn, figures, spans, member_id=member.id, program_id=program.id
    )
    return qualified_level(ladder, measures)
