"""Evaluating many members against a ladder definition, set-wise (R25, impact preview).

Used by the go-live job (which applies the decisions) and by the impact preview (which
only counts them). Members are taken in id order, a batch at a time, so memory stays
bounded and a job can resume from the last id it committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import activities as ledger
from tierwise.db.repos.members import MemberRow
from tierwise.db.tables import Member
from tierwise.domain.checks import downgrade_target, keeps
from tierwise.domain.criteria import Measures
from tierwise.domain.evaluation import qualified_level, rank_of
from tierwise.domain.ladder import Ladder, Level
from tierwise.domain.program import Program
from tierwise.domain.state import ChangeKind, TierState
from tierwise.services import measuring


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a definition means for one member: where they are, where the rules put them,
    and whether the move happens now."""

    member: MemberRow
    current: str | None
    qualified: str | None
    target: str | None
    kind: ChangeKind | None
    now: bool


async def member_batch(
    conn: AsyncConnection, tenant_id: int, after_id: int, limit: int, *, lock: bool = False
) -> list[MemberRow]:
    """The next ``limit`` members after ``after_id``; ``lock`` holds their rows (PostgreSQL)
    so that activity recorded meanwhile waits instead of being overwritten."""
    query = (
        select(Member)
        .where(Member.tenant_id == tenant_id, Member.id > after_id)
        .order_by(Member.id)
        .limit(limit)
    )
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    rows = await conn.execute(query)
    return [
        MemberRow(
            r.id,
            r.uuid,
            r.tenant_id,
            r.external_id,
            r.enrolled_at,
            r.last_activity_at,
            r.created_at,
        )
        for r in rows
    ]


def verdict(
    member: MemberRow,
    state: TierState,
    ladder: Ladder,
    old: Ladder | None,
    qualified: Level | None,
    measures: Measures,
    *,
    downgrades_now: bool,
) -> Verdict:
    """R25: upgrades at once; moves down at the next check unless asked to apply now. A
    move down is the one the member's check would make under this definition (keep rule,
    renewal mode, ``downgradable``, downgrade policy, floor and floor assignments, R16-R17).
    A member whose level the new definition removed moves to the level they qualify for."""
    current = state.level_key
    target_key = qualified.key if qualified else None
    if state.pinned:
        return Verdict(member, current, target_key, current, None, False)
    if current is not None and ladder.level(current) is None:
        old_rank = rank_of(old, current) if old is not None else 0
        new_rank = qualified.rank if qualified else 0
        kind = (
            ChangeKind.UPGRADED
            if new_rank > old_rank
            else (ChangeKind.DOWNGRADED if target_key else ChangeKind.LOST)
        )
        return Verdict(member, current, target_key, target_key, kind, True)
    if rank_of(ladder, target_key) > rank_of(ladder, current):
        return Verdict(member, current, target_key, target_key, ChangeKind.UPGRADED, True)
    level = ladder.level(current) if current is not None else None
    if level is None or keeps(ladder, level, state, measures):
        return Verdict(member, current, target_key, current, None, False)
    target = downgrade_target(ladder, level, state, measures)
    if target is not None and rank_of(ladder, target.key) >= level.rank:
        return Verdict(member, current, target_key, current, None, False)
    kind = ChangeKind.DOWNGRADED if target is not None else ChangeKind.LOST
    return Verdict(
        member, current, target_key, target.key if target else None, kind, downgrades_now
    )


async def evaluate(
    conn: AsyncConnection,
    *,
    program: Program,
    ladder: Ladder,
    old: Ladder | None,
    members: list[MemberRow],
    states: dict[int, TierState],
    at: datetime,
    downgrades_now: bool,
) -> list[Verdict]:
    """Verdicts for ``members`` (their standings in ``states``) under ``ladder`` at ``at``."""
    keys = ladder.measure_keys()
    metrics = {key[0] for key in keys}
    spans_by_member = {}
    needs: dict[int, tuple[date | None, datetime | None]] = {}
    for member in members:
        state = states.get(member.id, TierState())
        spans = measuring.intervals(
            keys,
            program,
            at=at,
            enrolled_at=member.enrolled_at,
            tier_start=state.cycle_start or state.achieved_at,
        )
        spans_by_member[member.id] = spans
        needs[member.id] = (
            measuring.first_day_needed(spans.values(), program, member.last_activity_at),
            member.last_activity_at,
        )
    figures = await ledger.load_figures(
        conn, program_id=program.id, tz=program.tz, metrics=metrics, members=needs
    )
    verdicts = []
    for member in members:
        state = states.get(member.id, TierState())
        measures = await measuring.measure(
            conn,
            figures[member.id],
            spans_by_member[member.id],
            member_id=member.id,
            program_id=program.id,
        )
        qualified = qualified_level(ladder, measures)
        verdicts.append(
            verdict(member, state, ladder, old, qualified, measures, downgrades_now=downgrades_now)
        )
    return verdicts
