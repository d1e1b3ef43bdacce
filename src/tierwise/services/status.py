"""Reading a member's status and history (R5-R7, R22, R27)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import activities as ledger
from tierwise.db.repos import members as members_repo
from tierwise.db.repos import programs as programs_repo
from tierwise.db.repos.members import ChangeRow, MemberRow
from tierwise.db.repos.members import _state as state_of_row
from tierwise.db.repos.programs import LadderRow
from tierwise.db.tables import Member, MemberTier
from tierwise.domain.checks import Context, project, with_credit
from tierwise.domain.checks import keep_rule as keep_rule_of
from tierwise.domain.criteria import MeasureKey
from tierwise.domain.cycles import current_cycle_end
from tierwise.domain.errors import NotFound
from tierwise.domain.figures import MemberFigures
from tierwise.domain.ladder import Ladder, Level, ValidityType
from tierwise.domain.lifecycle import validity_of, with_validity
from tierwise.domain.program import Program
from tierwise.domain.progress import RuleProgress, progress_toward, rule_progress
from tierwise.domain.state import ChangeKind, TierState
from tierwise.domain.windows import Interval
from tierwise.services import measuring
from tierwise.services.programs import get_program
from tierwise.services.runtime import Caller, Runtime


@dataclass(frozen=True, slots=True)
class LadderStatus:
    ladder: LadderRow
    definition: Ladder
    state: TierState
    current: Level | None
    previous: Level | None
    next: Level | None
    progress: RuleProgress | None
    maintain: RuleProgress | None
    """R19: the rule checked at expiry, on today's figures (credit included)."""
    measures: dict[MeasureKey, int]
    projected: Level | None
    """R19: the level the member would hold if the check ran on today's figures."""
    cycle_end: datetime | None = None
    """End of the current validity cycle: the expiry, or for a permanent (floor) level the
    end of the cycle its validity would give, rolled forward to ``as_of`` (E4)."""


@dataclass(frozen=True, slots=True)
class MemberStatus:
    member: MemberRow
    program: Program
    as_of: datetime
    ladders: tuple[LadderStatus, ...]


class MemberRef(StrEnum):
    """How a client names a member: our external id (default), our integer id (Capillary
    ``userId``/``entityId``) or our UUID (Omneo ``profile``, Scrip participant ``id``)."""

    EXTERNAL = "external"
    ID = "id"
    UUID = "uuid"


async def find_member(
    conn: AsyncConnection, caller: Caller, ref: str, by: MemberRef = MemberRef.EXTERNAL
) -> MemberRow:
    member: MemberRow | None
    if by is MemberRef.EXTERNAL:
        member = await members_repo.member_by_external_id(conn, caller.tenant_id, ref)
    else:
        column = Member.id if by is MemberRef.ID else Member.uuid
        value: object = ref
        if by is MemberRef.ID:
            if not ref.isdigit() or len(ref) > 18:
                raise NotFound(f"no member {ref!r}", code="member_not_found")
            value = int(ref)
        row = (
            await conn.execute(
                select(Member).where(Member.tenant_id == caller.tenant_id, column == value)
            )
        ).first()
        member = (
            None
            if row is None
            else MemberRow(
                row.id,
                row.uuid,
                row.tenant_id,
                row.external_id,
                row.enrolled_at,
                row.last_activity_at,
                row.created_at,
            )
        )
    if member is None:
        raise NotFound(f"no member {ref!r}", code="member_not_found")
    return member


_MEMBER_COLUMNS = (
    Member.id,
    Member.uuid,
    Member.tenant_id,
    Member.external_id,
    Member.enrolled_at,
    Member.last_activity_at,
    Member.created_at,
)
_STANDING_COLUMNS = (
    MemberTier.ladder_id,
    MemberTier.level_key,
    MemberTier.achieved_at,
    MemberTier.cycle_start,
    MemberTier.expires_at,
    MemberTier.check_due_at,
    MemberTier.previous_level_key,
    MemberTier.assignment,
    MemberTier.grace_until,
    MemberTier.credit,
)


def _member_standings_query(column: Any) -> Select[Any]:
    return (
        select(*_MEMBER_COLUMNS, *_STANDING_COLUMNS)
        .select_from(Member)
        .outerjoin(MemberTier, MemberTier.member_id == Member.id)
        .where(Member.tenant_id == bindparam("tenant_id"), column == bindparam("ref"))
    )


# Built once: SQLAlchemy then finds the compiled form by the statement's cache key
# without rebuilding the statement on every read.
_MEMBER_STANDINGS = {
    MemberRef.EXTERNAL: _member_standings_query(Member.external_id),
    MemberRef.ID: _member_standings_query(Member.id),
    MemberRef.UUID: _member_standings_query(Member.uuid),
}


async def member_with_standings(
    conn: AsyncConnection, caller: Caller, ref: str, by: MemberRef = MemberRef.EXTERNAL
) -> tuple[MemberRow, dict[int, TierState]]:
    """:func:`find_member` and the member's standing on every ladder, in one statement."""
    value: object = ref
    if by is MemberRef.ID:
        if not ref.isdigit() or len(ref) > 18:
            raise NotFound(f"no member {ref!r}", code="member_not_found")
        value = int(ref)
    rows = (
        await conn.execute(_MEMBER_STANDINGS[by], {"tenant_id": caller.tenant_id, "ref": value})
    ).all()
    if not rows:
        raise NotFound(f"no member {ref!r}", code="member_not_found")
    member = MemberRow(*rows[0][:7])
    standings = {row.ladder_id: state_of_row(row) for row in rows if row.ladder_id is not None}
    return member, standings


async def member_measures(
    rt: Runtime,
    caller: Caller,
    member: MemberRow,
    program: Program,
    keys: set[MeasureKey],
    *,
    at: datetime,
    tier_start: datetime | None,
) -> dict[MeasureKey, int]:
    """Any metric over any window for one member, e.g. a dialect's "points in the last 12
    months" (same sums as the engine's, never a scan of history)."""
    spans = measuring.intervals(
        keys, program, at=at, enrolled_at=member.enrolled_at, tier_start=tier_start
    )
    first = measuring.first_day_needed(spans.values(), program, member.last_activity_at)
    async with rt.transaction() as conn:
        figures = (
            await ledger.load_figures(
                conn,
                program_id=program.id,
                tz=program.tz,
                metrics={k[0] for k in keys},
                members={member.id: (first, member.last_activity_at)},
            )
        )[member.id]
        return await measuring.measure(
            conn, figures, spans, member_id=member.id, program_id=program.id
        )


_NO_STATE = TierState()


_FIGURES_PG = (
    ledger.totals_sql("$1", "= $2", "$3::text[]", member=False, no_day=True)
    + " UNION ALL "
    + ledger.days_sql("$1", "= $2", "$4::text[]", "$5", member=False)
)


async def _figures(
    conn: AsyncConnection,
    program: Program,
    member: MemberRow,
    spans: Iterable[dict[MeasureKey, Interval]],
    first: date | None,
) -> MemberFigures:
    """The member's running totals and, from ``first`` on, the daily buckets of the
    metrics whose sums read them (a window with a start, or one that ends before the
    latest activity); a lifetime sum up to now is the running total alone.

    On PostgreSQL one statement on the driver connection (no per-row SQLAlchemy cost)."""
    last = member.last_activity_at
    metrics: set[str] = set()
    day_metrics: set[str] = set()
    for by_key in spans:
        for key, span in by_key.items():
            metrics.add(key[0])
            if span.start is not None or (last is not None and last > span.end):
                day_metrics.add(key[0])
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "asyncpg" or not metrics:
        return (
            await ledger.load_figures(
                conn,
                program_id=program.id,
                tz=program.tz,
                metrics=metrics,
                members={member.id: (first, last)},
            )
        )[member.id]
    figures = MemberFigures(tz=program.tz, days_from=first, last_activity_at=last)
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    rows = await driver.fetch(
        _FIGURES_PG,
        program.id,
        member.id,
        sorted(metrics),
        sorted(day_metrics) if first is not None else [],
        first,
    )
    totals = figures.totals
    days = figures.days
    for metric, day, value in rows:
        if day is None:
            totals[metric] = value
        else:
            days.setdefault(metric, {})[day] = value
    return figures


def state_from_history(changes: list[ChangeRow]) -> TierState:
    """R22/R27: the standing a member had after ``changes`` (oldest first): the standing
    the last change left, as its history row keeps it; for rows written before history
    kept it, replayed from the changes (level and dates only)."""
    if changes and changes[-1].state_after is not None:
        return changes[-1].state_after
    state = TierState()
    for row in changes:
        change = row.change
        if change.kind is ChangeKind.RENEWED:
            state = TierState(
                level_key=state.level_key,
                achieved_at=state.achieved_at,
                cycle_start=change.at,
                previous_level_key=state.previous_level_key,
            )
            continue
        state = TierState(
            level_key=change.to_level,
            achieved_at=change.at if change.to_level is not None else None,
            previous_level_key=change.from_level,
        )
    return state


async def member_status(
    rt: Runtime,
    caller: Caller,
    external_id: str,
    *,
    program_id: int | None = None,
    as_of: datetime | None = None,
    ladder_key: str | None = None,
    by: MemberRef = MemberRef.EXTERNAL,
    now: datetime | None = None,
) -> MemberStatus:
    now = now or rt.clock()
    at = as_of or now
    async with rt.read() as conn:
        member, stored = await member_with_standings(conn, caller, external_id, by)
        program, ladder_rows = await programs_repo.program_ladders(
            conn,
            rt.definitions,
            tenant_id=caller.tenant_id,
            program_id=program_id,
            ladder_key=ladder_key,
        )
        if program is None:
            what = "no default program" if program_id is None else f"no program {program_id}"
            raise NotFound(what, code="program_not_found")
        rows = [row for row in ladder_rows if row.definition is not None]
        if ladder_key is not None and not rows:
            raise NotFound(f"no ladder {ladder_key!r}", code="ladder_not_found")
        # R14/R27: the inactivity clock and the projection as they stood at ``at``: from
        # the last activity then, not the latest one (the figures still need the latest,
        # to know which stored sums include activities after ``at``).
        then = member
        if as_of is not None and as_of < now:
            then = replace(
                member,
                last_activity_at=await members_repo.last_activity_until(
                    conn, caller.tenant_id, member.id, at
                ),
            )
        states: dict[int, TierState] = {}
        for row in rows:
            assert row.definition is not None
            state = stored.get(row.id, _NO_STATE)
            if as_of is not None and (
                as_of < now
                or (state.achieved_at or at) > at
                or await _changed_after(conn, member.id, row.id, at)
            ):
                history = await members_repo.history(conn, member.id, [row.id], until=at)
                state = state_from_history(history)
                held = row.definition.level(state.level_key) if state.level_key else None
                if (
                    not history
                    or history[-1].state_after is None
                    or (
                        held is not None
                        and validity_of(row.definition, held).type is ValidityType.INACTIVITY
                    )
                ):
                    # The expiry as of ``at``: replayed rows kept no dates, and an
                    # inactivity expiry moved with every activity after the last change.
                    state = with_validity(
                        row.definition,
                        row.definition.level(state.level_key or ""),
                        state,
                        tz=program.tz,
                        enrolled_at=member.enrolled_at,
                        last_activity_at=then.last_activity_at,
                    )
            elif row.id not in stored and row.definition.floor is not None:
                # Not yet placed (no activity yet): R4 puts everyone on the floor.
                state = TierState(
                    level_key=row.definition.floor.key, achieved_at=member.enrolled_at
                )
            states[row.id] = state
        all_spans = {}
        for row in rows:
            assert row.definition is not None
            all_spans[row.id] = measuring.intervals(
                measuring.keys_of(row.definition),
                program,
                at=at,
                enrolled_at=member.enrolled_at,
                tier_start=states[row.id].cycle_start or states[row.id].achieved_at,
            )
        spans_flat = [span for spans in all_spans.values() for span in spans.values()]
        first = measuring.first_day_needed(spans_flat, program, member.last_activity_at)
        figures = await _figures(conn, program, member, all_spans.values(), first)
        result: list[LadderStatus] = []
        for row in rows:
            ladder = row.definition
            assert ladder is not None
            measures = await measuring.measure(
                conn, figures, all_spans[row.id], member_id=member.id, program_id=program.id
            )
            state = states[row.id]
            current = ladder.level(state.level_key) if state.level_key else None
            nxt = ladder.above(current)
            previous = ladder.level(state.previous_level_key) if state.previous_level_key else None
            keep_rule = keep_rule_of(current) if current is not None else None
            ctx = Context(program.tz, member.enrolled_at, then.last_activity_at)
            result.append(
                LadderStatus(
                    ladder=row,
                    definition=ladder,
                    state=state,
                    current=current,
                    previous=previous,
                    next=nxt,
                    progress=progress_toward(nxt, measures),
                    maintain=rule_progress(
                        keep_rule, with_credit(keep_rule, measures, state.credit)
                    )
                    if keep_rule
                    else None,
                    measures=measures,
                    projected=project(ladder, state, measures, ctx, at),
                    cycle_end=_cycle_end(ladder, current, state, then, program, at),
                )
            )
    return MemberStatus(member=member, program=program, as_of=at, ladders=tuple(result))


async def _changed_after(
    conn: AsyncConnection, member_id: int, ladder_id: int, at: datetime
) -> bool:
    """True when the history holds a change after ``at`` (e.g. a sweep run ahead of time),
    so the stored standing is not the one held at ``at`` (R27)."""
    latest = await members_repo.history(conn, member_id, [ladder_id], limit=1)
    return bool(latest) and latest[-1].change.at > at


def _cycle_end(
    ladder: Ladder,
    level: Level | None,
    state: TierState,
    member: MemberRow,
    program: Program,
    at: datetime,
) -> datetime | None:
    if level is None:
        return None
    if state.expires_at is not None:
        return state.expires_at
    start = state.cycle_start or state.achieved_at
    if start is None:
        return None
    return current_cycle_end(
        validity_of(ladder, level),
        start=start,
        as_of=at,
        tz=program.tz,
        enrolled_at=member.enrolled_at,
        last_activity_at=member.last_activity_at,
    )


@dataclass(frozen=True, slots=True)
class MemberHistory:
    member: MemberRow
    program: Program
    entries: list[tuple[LadderRow, ChangeRow]]


async def member_history(
    rt: Runtime,
    caller: Caller,
    external_id: str,
    *,
    program_id: int | None = None,
    ladder_key: str | None = None,
    until: datetime | None = None,
) -> MemberHistory:
    async with rt.transaction() as conn:
        member = await find_member(conn, caller, external_id)
        program = await get_program(conn, caller, program_id)
        rows = await programs_repo.ladders(
            conn,
            rt.definitions,
            tenant_id=caller.tenant_id,
            program_id=program.id,
            ladder_key=ladder_key,
        )
        if ladder_key is not None and not rows:
            raise NotFound(f"no ladder {ladder_key!r}", code="ladder_not_found")
        by_id = {row.id: row for row in rows}
        changes = await members_repo.history(conn, member.id, list(by_id), until=until)
    return MemberHistory(
        member=member, program=program, entries=[(by_id[c.ladder_id], c) for c in changes]
    )


@dataclass(frozen=True, slots=True)
class LevelAt:
    ladder: LadderRow
    level: Level | None
    since: datetime | None
    change: ChangeRow | None


async def level_at(
    rt: Runtime,
    caller: Caller,
    external_id: str,
    *,
    at: datetime,
    program_id: int | None = None,
    ladder_key: str | None = None,
) -> tuple[MemberRow, list[LevelAt]]:
    """R22: which level the member held at instant ``at``, read from history."""
    async with rt.transaction() as conn:
        member = await find_member(conn, caller, external_id)
        program = await get_program(conn, caller, program_id)
        rows = [
            row
            for row in await programs_repo.ladders(
                conn,
                rt.definitions,
                tenant_id=caller.tenant_id,
                program_id=program.id,
                ladder_key=ladder_key,
            )
            if row.definition is not None
        ]
        if ladder_key is not None and not rows:
            raise NotFound(f"no ladder {ladder_key!r}", code="ladder_not_found")
        found: list[LevelAt] = []
        for row in rows:
            assert row.definition is not None
            changes = await members_repo.history(conn, member.id, [row.id], until=at)
            state = state_from_history(changes)
            level = row.definition.level(state.level_key) if state.level_key else None
            found.append(LevelAt(row, level, state.achieved_at, changes[-1] if changes else None))
    return member, found
