"""Programs and ladders."""

from __future__ import annotations

from fastapi import APIRouter, Path

from tierwise.api.auth import ProgramsRead, ProgramsWrite, RuntimeDep
from tierwise.api.schemas import LadderOut, ProgramIn, ProgramOut, ProgramPatch
from tierwise.db.repos.programs import LadderRow
from tierwise.domain.errors import InvalidInput
from tierwise.domain.ladder import Ladder
from tierwise.domain.program import Program
from tierwise.services import programs as service

router = APIRouter(prefix="/v1/programs", tags=["programs"])

ProgramId = Path(ge=1, le=2**62, description="Integer program id")
LadderKey = Path(min_length=1, max_length=64, pattern=r"^[^\x00]*$", description="Ladder key")


def program_out(program: Program) -> ProgramOut:
    return ProgramOut(
        id=program.id,
        uuid=program.uuid,
        name=program.name,
        time_zone=program.time_zone,
        currency=program.currency,
        earn_rate=str(program.earn_rate),
        is_default=program.is_default,
        created_at=program.created_at,
        updated_at=program.updated_at,
    )


def ladder_out(row: LadderRow) -> LadderOut:
    return LadderOut(
        id=row.id,
        uuid=row.uuid,
        program_id=row.program_id,
        key=row.key,
        version=row.live_version_number,
        level_ids=row.level_ids,
        definition=row.definition,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.post("", status_code=201, response_model=ProgramOut)
async def create_program(body: ProgramIn, rt: RuntimeDep, caller: ProgramsWrite) -> ProgramOut:
    spec = service.ProgramSpec(
        name=body.name,
        time_zone=body.time_zone,
        currency=body.currency,
        earn_rate=body.earn_rate,
        is_default=body.is_default,
    )
    return program_out(await service.create_program(rt, caller, spec))


@router.get("", response_model=list[ProgramOut])
async def list_programs(rt: RuntimeDep, caller: ProgramsRead) -> list[ProgramOut]:
    return [program_out(p) for p in await service.list_programs(rt, caller)]


@router.get("/{program_id}", response_model=ProgramOut)
async def read_program(
    rt: RuntimeDep, caller: ProgramsRead, program_id: int = ProgramId
) -> ProgramOut:
    return program_out(await service.read_program(rt, caller, program_id))


@router.patch("/{program_id}", response_model=ProgramOut)
async def update_program(
    body: ProgramPatch, rt: RuntimeDep, caller: ProgramsWrite, program_id: int = ProgramId
) -> ProgramOut:
    changes = body.model_dump(exclude_unset=True)
    for name in ("name", "time_zone", "currency", "earn_rate", "is_default"):
        if name in changes and changes[name] is None:
            raise InvalidInput(f"{name} cannot be null", code="invalid_input", field=name)
    return program_out(await service.update_program(rt, caller, program_id, changes))


@router.post("/{program_id}/ladders", status_code=201, response_model=LadderOut)
async def create_ladder(
    body: Ladder, rt: RuntimeDep, caller: ProgramsWrite, program_id: int = ProgramId
) -> LadderOut:
    return ladder_out(await service.create_ladder(rt, caller, program_id, body))


@router.get("/{program_id}/ladders", response_model=list[LadderOut])
async def list_ladders(
    rt: RuntimeDep, caller: ProgramsRead, program_id: int = ProgramId
) -> list[LadderOut]:
    return [ladder_out(row) for row in await service.list_ladders(rt, caller, program_id)]


@router.get("/{program_id}/ladders/{key}", response_model=LadderOut)
async def read_ladder(
    rt: RuntimeDep, caller: ProgramsRead, program_id: int = ProgramId, key: str = LadderKey
) -> LadderOut:
    return ladder_out(await service.read_ladder(rt, caller, program_id, key))


@router.put("/{program_id}/ladders/{key}", response_model=LadderOut)
async def replace_ladder(
    body: Ladder,
    rt: RuntimeDep,
    caller: ProgramsWrite,
    program_id: int = ProgramId,
    key: str = LadderKey,
) -> LadderOut:
    return ladder_out(await service.replace_ladder(rt, caller, program_id, key, body))
