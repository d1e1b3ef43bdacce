"""The sweep: handle every standing that fell due by an instant (R15-R18, R20).

Work is claimed in batches (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one
writer at a time), each batch in its own transaction. A standing is handled event by
event in time order until its next due instant lies after ``as_of``, so a late sweep
handles every missed due date once, in order. A second sweep finds nothing due; a
crashed sweep leaves unhandled standings due for the next one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import activities as ledger
from tierwise.db.repos import members as members_repo
from tierwise.db.repos import programs as programs_repo
from tierwise.db.repos.members import MemberRow
from tierwise.db.repos.programs import LadderRow
from tierwise.db.tables import MemberTier
from tierwise.domain.checks import Context, handle, next_due
from tierwise.domain.figures import MemberFigures
from tierwise.domain.program import Program
from tierwise.services import measuring
from tierwise.services.runtime import Runtime
from tierwise.services.standing import Standings

MAX_EVENTS_PER_STANDING = 10_000


@dataclass
class SweepSummary:
    as_of: datetime
    standings: int = 0
    events: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    batches: int = 0


async def sweep(
    rt: Runtime,
    *,
    as_of: datetime,
    tenant_id: int | None = None,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> SweepSummary:
    summary = SweepSummary(as_of=as_of)
    seen: set[tuple[int, int]] = set()
    while True:
        async with rt.transaction() as conn:
            claimed = await _claim(
                conn, as_of=as_of, tenant_id=tenant_id, limit=batch_size, exclude=seen
            )
            if not claimed:
                break
            await _process(rt, conn, claimed, as_of, summary)
            await conn.commit()
        seen.update((m, ladder) for m, ladder, _ in claimed)
        summary.batches += 1
        summary.standings += len(claimed)
        if progress is not None:
            progress(len(claimed))
    return summary


async def count_due(rt: Runtime, *, as_of: datetime, tenant_id: int | None = None) -> int:
    from sqlalchemy import func

    async with rt.transaction() as conn:
        query = select(func.count()).select_from(MemberTier).where(MemberTier.due_at <= as_of)
        if tenant_id is not None:
            query = query.where(MemberTier.tenant_id == tenant_id)
        return int((await conn.execute(query)).scalar_one())


async def _claim(
    conn: AsyncConnection,
    *,
    as_of: datetime,
    tenant_id: int | None,
    limit: int,
    exclude: set[tuple[int, int]],
) -> list[tuple[int, int, int]]:
    query = (
        select(MemberTier.member_id, MemberTier.ladder_id, MemberTier.tenant_id)
        .where(MemberTier.due_at <= as_of)
        .order_by(MemberTier.due_at, MemberTier.id)
        .limit(limit + len(exclude))
    )
    if tenant_id is not None:
        query = query.where(MemberTier.tenant_id == tenant_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = [(r[0], r[1], r[2]) for r in await conn.execute(query)]
    return [r for r in rows if (r[0], r[1]) not in exclude][:limit]


async def _process(
    rt: Runtime,
    conn: AsyncConnection,
    claimed: list[tuple[int, int, int]],
    as_of: datetime,
    summary: SweepSummary,
) -> None:
    by_tenant: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for member_id, ladder_id, tenant_id in claimed:
        by_tenant[tenant_id].append((member_id, ladder_id))
    for tenant_id, pairs in by_tenant.items():
        await _process_tenant(rt, conn, tenant_id, pairs, as_of, summary)


async def _process_tenant(
    rt: Runtime,
    conn: AsyncConnection,
    tenant_id: int,
    pairs: list[tuple[int, int]],
    as_of: datetime,
    summary: SweepSummary,
) -> None:
    now = rt.clock()
    ladder_rows = {
        row.id: row
        for row in await programs_repo.ladders(conn, rt.definitions, tenant_id=tenant_id)
        if row.definition is not None
    }
    programs = {p.id: p for p in await programs_repo.programs_of(conn, tenant_id)}
    member_ids = sorted({m for m, _ in pairs})
    members = await members_repo.members_by_ids(conn, member_ids)
    standings = Standings(rt, conn, tenant_id, now)
    standings.adopt(await members_repo.states(conn, member_ids, sorted(ladder_rows)))
    # Figures: one load per program, from the first day any due event needs.
    needs: dict[int, dict[int, tuple[date | None, datetime | None]]] = defaultdict(dict)
    metrics: dict[int, set[str]] = defaultdict(set)
    for member_id, ladder_id in pairs:
        row = ladder_rows.get(ladder_id)
        if row is None or row.definition is None:
            continue
        program = programs[row.program_id]
        member = members[member_id]
        state = standings.get(member_id, ladder_id)
        due = next_due(state)
        if due is None:
            continue
        keys = row.definition.measure_keys()
        metrics[program.id] |= {k[0] for k in keys}
        spans = measuring.intervals(
            keys,
            program,
            at=min(due.measure_at, as_of),
            enrolled_at=member.enrolled_at,
            tier_start=state.cycle_start or state.achieved_at,
        )
        first = measuring.first_day_needed(spans.values(), program, member.last_activity_at)
        old = needs[program.id].get(member_id, (None, member.last_activity_at))[0]
        if old is not None and (first is None or old < first):
            first = old
        needs[program.id][member_id] = (first, member.last_activity_at)
    figures: dict[tuple[int, int], MemberFigures] = {}
    for program_id, wanted in needs.items():
        program = programs[program_id]
        loaded = await ledger.load_figures(
            conn, program_id=program_id, tz=program.tz, metrics=metrics[program_id], members=wanted
        )
        for member_id, figure in loaded.items():
            figures[(member_id, program_id)] = figure
    for member_id, ladder_id in pairs:
        row = ladder_rows.get(ladder_id)
        if row is None or row.definition is None:
            continue
        program = programs[row.program_id]
        found = figures.get((member_id, program.id))
        if found is None:
            continue
        await _handle_standing(
            conn, standings, row, program, members[member_id], found, as_of, summary
        )
    await standings.flush()


async def _handle_standing(
    conn: AsyncConnection,
    standings: Standings,
    row: LadderRow,
    program: Program,
    member: MemberRow,
    figure: MemberFigures,
    as_of: datetime,
    summary: SweepSummary,
) -> None:
    ladder = row.definition
    assert ladder is not None
    ctx = Context(
        tz=program.tz, enrolled_at=member.enrolled_at, last_activity_at=member.last_activity_at
    )
    state = standings.get(member.id, row.id)
    for _ in range(MAX_EVENTS_PER_STANDING):
        due = next_due(state)
        if due is None or due.at > as_of:
            break
        spans = measuring.intervals(
            ladder.measure_keys(),
            program,
            at=due.measure_at,
            enrolled_at=ctx.enrolled_at,
            tier_start=state.cycle_start or state.achieved_at,
        )
        measures = await measuring.measure(
            conn, figure, spans, member_id=member.id, program_id=program.id
        )
        outcome = handle(ladder, state, due, measures, ctx)
        state = outcome.state
        summary.events += 1
        standings.change(member.id, row, state, outcome.change, member.external_id)
        if outcome.change is not None:
            kind = outcome.change.kind.value
            summary.changes[kind] = summary.changes.get(kind, 0) + 1
