"""Versioned ladder definitions (R24), go-live jobs (R25), level counts (R26) and the
impact preview."""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, Field

from tierwise.api.auth import ProgramsApprove, ProgramsRead, ProgramsWrite, RuntimeDep
from tierwise.api.schemas import Strict
from tierwise.db.repos.versions import JobRow, VersionRow
from tierwise.domain.ladder import Ladder
from tierwise.services import golive
from tierwise.services import versions as service
from tierwise.services.runtime import Runtime

router = APIRouter(prefix="/v1/programs/{program_id}/ladders/{key}", tags=["versions"])

ProgramId = Path(ge=1, le=2**62)
Number = Path(ge=1, le=2**31)


class AuditOut(BaseModel):
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


class VersionOut(BaseModel):
    id: str
    ladder: str
    number: int
    state: str
    effective_at: datetime | None
    apply_downgrades_now: bool
    audit: AuditOut
    definition: Ladder
    job_id: str | None = Field(default=None, description="The go-live job, after approval")


class ApproveIn(Strict):
    effective_at: AwareDatetime | None = Field(
        default=None, description="Go live at this instant instead of now (R25)"
    )
    apply_downgrades_now: bool = Field(
        default=False, description="Move members down at once instead of at their next check"
    )
    wait: bool = Field(default=False, description="Answer only once re-evaluation is done")


class RejectIn(Strict):
    comment: str = Field(min_length=1, max_length=4000)


class JobOut(BaseModel):
    id: str
    kind: str
    state: str
    done: int
    total: int
    changes: dict[str, int]
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class CountsOut(BaseModel):
    ladder: str
    version: int | None
    computed_at: datetime | None
    levels: dict[str, int]


class MoveOut(BaseModel):
    member_id: str
    from_: str | None = Field(alias="from")
    to: str | None
    direction: str

    model_config = {"populate_by_name": True}


class PreviewOut(BaseModel):
    ladder: str
    version: int
    computed_at: datetime
    members: int
    per_level: dict[str, int] = Field(description="Members per level under this version")
    up: int
    down: int
    stay: int
    moves: dict[str, int] = Field(description="Counts per 'from->to' pair")
    sample: list[MoveOut]


def version_out(row: VersionRow, key: str, job_id: str | None = None) -> VersionOut:
    return VersionOut(
        id=row.uuid,
        ladder=key,
        number=row.number,
        state=row.state.value,
        effective_at=row.effective_at,
        apply_downgrades_now=row.apply_downgrades_now,
        audit=AuditOut(
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
        ),
        definition=row.definition,
        job_id=job_id,
    )


def job_out(job: JobRow) -> JobOut:
    return JobOut(
        id=job.uuid,
        kind=job.kind,
        state=job.state,
        done=job.done,
        total=job.total,
        changes=job.changes,
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


def start_job(request: Request, rt: Runtime, job_uuid: str) -> None:
    """Run a go-live job in this process's background; a restart resumes it."""
    tasks: set[asyncio.Task[object]] = request.app.state.background
    task: asyncio.Task[object] = asyncio.create_task(golive.run_job(rt, job_uuid))
    tasks.add(task)
    task.add_done_callback(tasks.discard)


@router.get("/versions", response_model=list[VersionOut])
async def list_versions(
    rt: RuntimeDep, caller: ProgramsRead, key: str, program_id: int = ProgramId
) -> list[VersionOut]:
    return [version_out(v, key) for v in await service.list_versions(rt, caller, program_id, key)]


@router.post("/versions", status_code=201, response_model=VersionOut)
async def create_version(
    body: Ladder, rt: RuntimeDep, caller: ProgramsWrite, key: str, program_id: int = ProgramId
) -> VersionOut:
    """A new draft beside the live version (creates the ladder if it is new)."""
    return version_out(await service.create_draft(rt, caller, program_id, body, key=key), key)


@router.get("/versions/{number}", response_model=VersionOut)
async def read_version(
    rt: RuntimeDep,
    caller: ProgramsRead,
    key: str,
    program_id: int = ProgramId,
    number: int = Number,
) -> VersionOut:
    return version_out(await service.read_version(rt, caller, program_id, key, number), key)


@router.put("/versions/{number}", response_model=VersionOut)
async def update_version(
    body: Ladder,
    rt: RuntimeDep,
    caller: ProgramsWrite,
    key: str,
    program_id: int = ProgramId,
    number: int = Number,
) -> VersionOut:
    return version_out(await service.update_draft(rt, caller, program_id, key, number, body), key)


@router.delete("/versions/{number}", response_model=VersionOut)
async def delete_version(
    rt: RuntimeDep,
    caller: ProgramsWrite,
    key: str,
    program_id: int = ProgramId,
    number: int = Number,
) -> VersionOut:
    return version_out(await service.delete(rt, caller, program_id, key, number), key)


@router.post("/versions/{number}/submit", response_model=VersionOut)
async def submit_version(
    rt: RuntimeDep,
    caller: ProgramsWrite,
    key: str,
    program_id: int = ProgramId,
    number: int = Number,
) -> VersionOut:
    return version_out(await service.submit(rt, caller, program_id, key, number), key)


@router.post("/versions/{number}/approve", response_model=VersionOut)
async def approve_version(
    body: ApproveIn,
    request: Request,
    rt: RuntimeDep,
    caller: ProgramsApprove,
    key: str,
    program_id: int = ProgramId,
    number: int = Number,
) -> VersionOut:
    published = await service.approve(
        rt,
        caller,
        program_id,
        key,
        number,
        effective_at=body.effective_at,
        apply_downgrades_now=body.apply_downgrades_now,
    )
    if published.job_uuid is not None:
        if body.wait:
            await golive.run_job(rt, published.job_uuid)
        else:
            start_job(request, rt, published.job_uuid)
    return version_out(published.version, key, published.job_uuid)


@router.post("/versions/{number}/reject", response_model=VersionOut)
async def reject_version(
    body: RejectIn,
    rt: RuntimeDep,
    caller: ProgramsApprove,
    key: str,
    program_id: int = ProgramId,
    number: int = Number,
) -> VersionOut:
    return version_out(await service.reject(rt, caller, program_id, key, number, body.comment), key)


@router.get("/versions/{number}/preview", response_model=PreviewOut)
async def preview_version(
    rt: RuntimeDep,
    caller: ProgramsRead,
    key: str,
    program_id: int = ProgramId,
    number: int = Number,
    sample: int = Query(default=20, ge=0, le=500),
) -> PreviewOut:
    """Impact of this version on today's members, changing nothing."""
    found = await golive.preview(rt, caller, program_id, key, number, sample_size=sample)
    return PreviewOut.model_validate(
        {
            "ladder": found.ladder,
            "version": found.version,
            "computed_at": found.computed_at,
            "members": found.members,
            "per_level": found.per_level,
            "up": found.up,
            "down": found.down,
            "stay": found.stay,
            "moves": found.moves,
            "sample": found.sample,
        }
    )


@router.get("/counts", response_model=CountsOut)
async def level_counts(
    rt: RuntimeDep,
    caller: ProgramsRead,
    key: str,
    program_id: int = ProgramId,
    refresh: bool = Query(default=False),
) -> CountsOut:
    """R26: members per level of the live version, with when they were counted."""
    found = await golive.level_counts(rt, caller, program_id, key, refresh=refresh)
    return CountsOut(
        ladder=found.ladder,
        version=found.version,
        computed_at=found.computed_at,
        levels=found.counts,
    )


jobs_router = APIRouter(prefix="/v1/jobs", tags=["versions"])


@jobs_router.get("/{job_id}", response_model=JobOut)
async def read_job(job_id: str, rt: RuntimeDep, caller: ProgramsRead) -> JobOut:
    return job_out(await golive.read_job(rt, caller, job_id))
