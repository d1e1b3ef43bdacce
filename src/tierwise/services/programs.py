"""Programs and ladders: create, read, list, update."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import programs as repo
from tierwise.db.tables import Activity, MemberTier
from tierwise.domain.calendar import zone
from tierwise.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from tierwise.domain.ladder import Ladder
from tierwise.domain.money import is_currency_code
from tierwise.domain.program import Program
from tierwise.services.runtime import Caller, Runtime


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    name: str
    time_zone: str = "UTC"
    currency: str = "USD"
    earn_rate: Decimal = Decimal(1)
    is_default: bool = False


def _check_spec(time_zone: str | None, currency: str | None) -> None:
    if time_zone is not None:
        try:
            zone(time_zone)
        except ValueError as exc:
            raise InvalidInput(str(exc), code="invalid_time_zone", field="time_zone") from exc
    if currency is not None and not is_currency_code(currency):
        raise InvalidInput(
            f"{currency!r} is not an ISO 4217 currency code",
            code="invalid_currency",
            field="currency",
        )


async def get_program(conn: AsyncConnection, caller: Caller, program_id: int | None) -> Program:
    """The caller's program ``program_id``, or the default program when None."""
    found = (
        await repo.default_program(conn, caller.tenant_id)
        if program_id is None
        else await repo.program(conn, caller.tenant_id, program_id)
    )
    if found is None:
        what = "no default program" if program_id is None else f"no program {program_id}"
        raise NotFound(what, code="program_not_found")
    return found


async def create_program(rt: Runtime, caller: Caller, spec: ProgramSpec) -> Program:
    _check_spec(spec.time_zone, spec.currency)
    async with rt.transaction() as conn:
        has_any = bool(await repo.programs_of(conn, caller.tenant_id))
        program_id = await repo.add_program(
            conn,
            tenant_id=caller.tenant_id,
            uuid=str(uuid.uuid4()),
            name=spec.name,
            time_zone=spec.time_zone,
            currency=spec.currency,
            earn_rate=spec.earn_rate,
            is_default=spec.is_default or not has_any,
            now=rt.clock(),
        )
        program = await get_program(conn, caller, program_id)
        await conn.commit()
    return program


async def list_programs(rt: Runtime, caller: Caller) -> list[Program]:
    async with rt.transaction() as conn:
        return await repo.programs_of(conn, caller.tenant_id)


async def read_program(rt: Runtime, caller: Caller, program_id: int) -> Program:
    async with rt.transaction() as conn:
        return await get_program(conn, caller, program_id)


async def update_program(
    rt: Runtime, caller: Caller, program_id: int, changes: dict[str, Any]
) -> Program:
    """Change a program. The time zone and currency are fixed once activity was recorded:
    daily buckets are cut at the program's local midnight, amounts are in its currency."""
    _check_spec(changes.get("time_zone"), changes.get("currency"))
    async with rt.transaction() as conn:
        program = await get_program(conn, caller, program_id)
        fixed = [
            name
            for name in ("time_zone", "currency")
            if name in changes and changes[name] != getattr(program, name)
        ]
        if fixed:
            used = (
                await conn.execute(
                    select(func.count())
                    .select_from(Activity)
                    .where(Activity.program_id == program.id)
                )
            ).scalar_one()
            if used:
                raise Conflict(
                    f"the {fixed[0].replace('_', ' ')} cannot change once the program has "
                    "activity: daily sums are cut at its local midnight and amounts are stored "
                    "in its currency",
                    code="program_has_activity",
                    field=fixed[0],
                )
        if changes.get("is_default"):
            await repo.clear_default(conn, caller.tenant_id)
        if changes.get("is_default") is False and program.is_default:
            raise InvalidInput(
                "choose another default program instead of unsetting this one",
                code="default_program_required",
                field="is_default",
            )
        if changes:
            await repo.update_program(conn, program.id, {**changes, "updated_at": rt.clock()})
        program = await get_program(conn, caller, program_id)
        await conn.commit()
    return program


# -- ladders ---------------------------------------------------------------------------


async def get_ladder(
    rt: Runtime, conn: AsyncConnection, caller: Caller, program_id: int, key: str
) -> repo.LadderRow:
    await get_program(conn, caller, program_id)  # a missing program is program_not_found
    found = await repo.ladders(
        conn, rt.definitions, tenant_id=caller.tenant_id, program_id=program_id, ladder_key=key
    )
    if not found:
        raise NotFound(f"no ladder {key!r} in program {program_id}", code="ladder_not_found")
    return found[0]


async def create_ladder(
    rt: Runtime, caller: Caller, program_id: int, ladder: Ladder
) -> repo.LadderRow:
    """Create a ladder whose first version is live at once (R1 checked first)."""
    ladder.validate_rules()
    now = rt.clock()
    async with rt.transaction() as conn:
        program = await get_program(conn, caller, program_id)
        if await repo.ladders(
            conn,
            rt.definitions,
            tenant_id=caller.tenant_id,
            program_id=program.id,
            ladder_key=ladder.key,
        ):
            raise Conflict(
                f"program {program.id} already has a ladder {ladder.key!r}",
                code="ladder_exists",
                field="key",
            )
        ladder_id = await repo.add_ladder(
            conn,
            tenant_id=caller.tenant_id,
            program_id=program.id,
            uuid=str(uuid.uuid4()),
            key=ladder.key,
            now=now,
        )
        job = await _publish(rt, conn, caller, ladder_id, ladder)
        await conn.commit()
    return await _after_publish(rt, caller, program_id, ladder.key, job)


async def _after_publish(
    rt: Runtime, caller: Caller, program_id: int, key: str, job: str
) -> repo.LadderRow:
    """Run the go-live job to the end, then read the ladder back."""
    from tierwise.services.golive import run_job

    await run_job(rt, job)
    return await read_ladder(rt, caller, program_id, key)


async def _publish(
    rt: Runtime,
    conn: AsyncConnection,
    caller: Caller,
    ladder_id: int,
    ladder: Ladder,
    previous_version_id: int | None = None,
) -> str:
    """One-step publish (R24 shortcut): a version created, submitted and approved by the
    caller, made live with a go-live job (R25). Refused when the tenant requires a
    reviewer other than the author (maker-checker)."""
    from tierwise.db.repos import tenants as tenants_repo
    from tierwise.services.publishing import publish

    tenant = await tenants_repo.tenant_by_id(conn, caller.tenant_id)
    if tenant is not None and tenant.require_distinct_approver:
        raise Forbidden(
            "this tenant requires approval by a second person: create a draft version, "
            "submit it and have another key approve it",
            code="approval_required",
        )
    now = rt.clock()
    version_id, _ = await repo.add_version(
        conn,
        tenant_id=caller.tenant_id,
        ladder_id=ladder_id,
        uuid=str(uuid.uuid4()),
        state="pending_approval",
        definition=ladder,
        actor=caller.actor,
        now=now,
    )
    await repo.set_version_state(
        conn,
        version_id,
        "pending_approval",
        {
            "submitted_by": caller.actor,
            "submitted_at": now,
            "approved_by": caller.actor,
            "approved_at": now,
        },
    )
    rows = await repo.ladders(conn, rt.definitions, tenant_id=caller.tenant_id)
    row = next(r for r in rows if r.id == ladder_id)
    del previous_version_id
    return await publish(rt, conn, caller.tenant_id, row, version_id)


async def list_ladders(rt: Runtime, caller: Caller, program_id: int) -> list[repo.LadderRow]:
    async with rt.transaction() as conn:
        program = await get_program(conn, caller, program_id)
        return await repo.ladders(
            conn, rt.definitions, tenant_id=caller.tenant_id, program_id=program.id
        )


async def read_ladder(rt: Runtime, caller: Caller, program_id: int, key: str) -> repo.LadderRow:
    async with rt.transaction() as conn:
        return await get_ladder(rt, conn, caller, program_id, key)


async def replace_ladder(
    rt: Runtime, caller: Caller, program_id: int, key: str, ladder: Ladder
) -> repo.LadderRow:
    """Publish a new live version of a ladder; the old one becomes a snapshot.

    A level that members hold cannot be removed (rename it or move them first).
    """
    if ladder.key != key:
        raise InvalidInput("a ladder's key cannot change", code="ladder_key_immutable", field="key")
    ladder.validate_rules()
    async with rt.transaction() as conn:
        current = await get_ladder(rt, conn, caller, program_id, key)
        old_keys = (
            {level.key for level in current.definition.levels} if current.definition else set()
        )
        removed = old_keys - {level.key for level in ladder.levels}
        if removed:
            held = (
                await conn.execute(
                    select(func.count())
                    .select_from(MemberTier)
                    .where(
                        MemberTier.ladder_id == current.id,
                        MemberTier.level_key.in_(sorted(removed)),
                    )
                )
            ).scalar_one()
            if held:
                raise Conflict(
                    f"{held} member(s) hold level(s) {sorted(removed)} that the new "
                    "definition removes",
                    code="level_in_use",
                    field="levels",
                )
        job = await _publish(rt, conn, caller, current.id, ladder, current.live_version_id)
        await conn.commit()
    return await _after_publish(rt, caller, program_id, key, job)
