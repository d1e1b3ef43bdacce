"""Lifecycle operations: manual assignment (R20, R21), level at an instant (R22), and
running the sweep (R15) for the caller's tenant."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, Field

from tierwise.api.auth import MembersRead, RuntimeDep, SweepsRun, TiersWrite
from tierwise.api.schemas import Instant, Strict
from tierwise.domain.state import AssignmentMode
from tierwise.services import assignments as assignment_service
from tierwise.services import status as status_service
from tierwise.services import sweep as sweep_service
from tierwise.services.golive import run_job
from tierwise.services.versions import activate_scheduled

router = APIRouter(tags=["lifecycle"])

MemberId = Path(
    min_length=1, max_length=128, pattern=r"^[^\x00]*$", description="Your id for the member"
)


class AssignmentIn(Strict):
    level: str = Field(min_length=1, max_length=64, description="Key of an assignable level")
    mode: AssignmentMode = Field(
        default=AssignmentMode.PIN,
        description="pin: held, no automatic moves; floor: upgrades still happen, never "
        "below it; one_shot: set now, normal rules from the next activity",
    )
    reason: str = Field(min_length=1, max_length=500)
    ladder: str | None = Field(default=None, max_length=64, description="Needed if several")
    program_id: int | None = Field(default=None, ge=1, le=2**62)
    expires_at: Instant | None = None


class StandingOut(BaseModel):
    member_id: str
    ladder: str | None
    level: str | None
    achieved_at: datetime | None
    expires_at: datetime | None
    assignment_mode: str | None
    assigned_at: datetime | None
    assignment_expires_at: datetime | None


class LevelAtOut(BaseModel):
    ladder: str
    level: str | None
    since: datetime | None
    change_id: str | None


class LevelsAtOut(BaseModel):
    member_id: str
    at: datetime
    ladders: list[LevelAtOut]


class SweepIn(Strict):
    as_of: AwareDatetime | None = Field(default=None, description="Default: now")


class SweepOut(BaseModel):
    as_of: datetime
    standings: int = Field(description="Standings that were due and handled")
    events: int = Field(description="Checks, grace ends and assignment expiries handled")
    changes: dict[str, int] = Field(description="Level changes by kind")


@router.post("/v1/members/{member_id}/assignments", status_code=201, response_model=StandingOut)
async def assign_level(
    body: AssignmentIn, rt: RuntimeDep, caller: TiersWrite, member_id: str = MemberId
) -> StandingOut:
    state = await assignment_service.assign(
        rt,
        caller,
        member_id,
        level_key=body.level,
        mode=body.mode,
        reason=body.reason,
        ladder_key=body.ladder,
        program_id=body.program_id,
        expires_at=body.expires_at,
    )
    assignment = state.assignment
    return StandingOut(
        member_id=member_id,
        ladder=body.ladder,
        level=state.level_key,
        achieved_at=state.achieved_at,
        expires_at=state.expires_at,
        assignment_mode=assignment.mode.value if assignment else None,
        assigned_at=assignment.assigned_at if assignment else None,
        assignment_expires_at=assignment.expires_at if assignment else None,
    )


@router.delete("/v1/members/{member_id}/assignments", response_model=StandingOut)
async def remove_assignment(
    rt: RuntimeDep,
    caller: TiersWrite,
    member_id: str = MemberId,
    ladder: str | None = Query(default=None, max_length=64),
    program_id: int | None = Query(default=None, ge=1, le=2**62),
    reason: str = Query(default="assignment removed", max_length=500),
) -> StandingOut:
    state = await assignment_service.unassign(
        rt, caller, member_id, ladder_key=ladder, program_id=program_id, reason=reason
    )
    return StandingOut(
        member_id=member_id,
        ladder=ladder,
        level=state.level_key,
        achieved_at=state.achieved_at,
        expires_at=state.expires_at,
        assignment_mode=None,
        assigned_at=None,
        assignment_expires_at=None,
    )


@router.get("/v1/members/{member_id}/level-at", response_model=LevelsAtOut)
async def level_at(
    rt: RuntimeDep,
    caller: MembersRead,
    at: AwareDatetime,
    member_id: str = MemberId,
    ladder: str | None = Query(default=None, max_length=64),
    program_id: int | None = Query(default=None, ge=1, le=2**62),
) -> LevelsAtOut:
    """R22: the level the member held at instant ``at``, from the history."""
    member, found = await status_service.level_at(
        rt, caller, member_id, at=at, program_id=program_id, ladder_key=ladder
    )
    return LevelsAtOut(
        member_id=member.external_id,
        at=at,
        ladders=[
            LevelAtOut(
                ladder=item.ladder.key,
                level=item.level.key if item.level else None,
                since=item.since,
                change_id=item.change.uuid if item.change else None,
            )
            for item in found
        ],
    )


@router.post("/v1/sweeps", response_model=SweepOut)
async def run_sweep(body: SweepIn, rt: RuntimeDep, caller: SweepsRun) -> SweepOut:
    """Handle every standing of your tenant that fell due by ``as_of`` (R15). Safe to run
    twice and to run late."""
    as_of = body.as_of or rt.clock()
    for job in await activate_scheduled(rt, as_of, caller.tenant_id):
        await run_job(rt, job)  # R25: scheduled versions go live as the sweep passes them
    summary = await sweep_service.sweep(rt, as_of=as_of, tenant_id=caller.tenant_id)
    return SweepOut(
        as_of=summary.as_of,
        standings=summary.standings,
        events=summary.events,
        changes=summary.changes,
    )
