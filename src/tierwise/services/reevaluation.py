"""Evaluating many members against a ladder definition, set-wise (R25, impact preview).

Used by the go-live job (which applies the decisions) and by the impact preview (which
only counts them). Members are taken in id order, a batch at a time, so memory stays
bounded and a job can resume from the last id it committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import activities as ledger
from tierwise.db.repos import members as members_repo
from tierwise.db.repos.members import MemberRow
from tierwise.db.repos.upsert import pg_driver
from tierwise.db.tables import Member
from tierwise.domain.checks import downgrade_target, keeps
from tierwise.domain.criteria import COMPARE, Criterion, MeasureKey, Measures
from tierwise.domain.evaluation import qualified_level, rank_of
from tierwise.domain.ladder import Ladder, Level
from tierwise.domain.program import Program
from tierwise.domain.state import ChangeKind, TierState
from tierwise.services import measuring, qualify_sql


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


async def batch(
    conn: AsyncConnection,
    *,
    tenant_id: int,
    ladder_id: int,
    after_id: int,
    limit: int,
    lock: bool = False,
) -> qualify_sql.Batch:
    """``member_batch`` with the members' standings on ``ladder_id`` (those who have one);
    one statement on PostgreSQL."""
    driver = await pg_driver(conn)
    if driver is not None:
        return await qualify_sql.batch_pg(
            driver,
            tenant_id=tenant_id,
            ladder_id=ladder_id,
            after_id=after_id,
            limit=limit,
            lock=lock,
        )
    members = await member_batch(conn, tenant_id, after_id, limit, lock=lock)
    stored = await members_repo.states(conn, [m.id for m in members], [ladder_id])
    return qualify_sql.Batch(members, {m: s for (m, _), s in stored.items()}, {})


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
    decide: Decider | None = None,
) -> list[Verdict]:
    """Verdicts for ``members`` (their standings in ``states``, in id order) under
    ``ladder`` at ``at``. ``decide`` may be shared by the batches of one run."""
    if decide is None:
        decide = Decider(ladder, old, downgrades_now=downgrades_now)
    values = await values_of(
        conn, program=program, keys=decide.keys, members=members, states=states, at=at
    )
    empty = TierState()
    return [decide.decide(m, states.get(m.id, empty), values[m.id]) for m in members]


async def measures_of(
    conn: AsyncConnection,
    *,
    program: Program,
    ladder: Ladder,
    members: list[MemberRow],
    states: dict[int, TierState],
    at: datetime,
) -> dict[int, Measures]:
    """Every measure ``ladder`` reads, per member, at ``at`` (see ``values_of``)."""
    keys = list(measuring.keys_of(ladder))
    values = await values_of(
        conn, program=program, keys=keys, members=members, states=states, at=at
    )
    return {m: dict(zip(keys, v, strict=True)) for m, v in values.items()}


async def values_of(
    conn: AsyncConnection,
    *,
    program: Program,
    keys: Sequence[MeasureKey],
    members: list[MemberRow],
    states: dict[int, TierState],
    at: datetime,
) -> dict[int, tuple[int, ...]]:
    """The measures ``keys`` of each member at ``at``, as a tuple in the order of
    ``keys``: summed by the database where its sums are exact (``qualify_sql``), by
    ``measuring`` for the others."""
    rest = members
    found: dict[int, tuple[int, ...]] = {}
    if conn.dialect.name == "postgresql" and members:
        spans = qualify_sql.shared_spans(keys, program.tz, at)
        if spans is not None:
            exact = [m.id for m in members if qualify_sql.exact_in_sql(m, at)]
            summed = await qualify_sql.sums(
                conn, program_id=program.id, spans=spans, keys=keys, member_ids=exact
            )
            if summed is not None:
                found = summed
                if len(summed) < len(members):
                    rest = [m for m in members if m.id not in summed]
                else:
                    rest = []
    if rest:
        measured = await measure_in_python(
            conn, program=program, keys=keys, members=rest, states=states, at=at
        )
        for member_id, measures in measured.items():
            found[member_id] = tuple(measures.get(k, 0) for k in keys)
    return found


async def measure_in_python(
    conn: AsyncConnection,
    *,
    program: Program,
    keys: Iterable[MeasureKey],
    members: list[MemberRow],
    states: dict[int, TierState],
    at: datetime,
) -> dict[int, Measures]:
    """The reference path: each member's figures loaded and summed by ``measuring``."""
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
    found: dict[int, Measures] = {}
    for member in members:
        found[member.id] = await measuring.measure(
            conn,
            figures[member.id],
            spans_by_member[member.id],
            member_id=member.id,
            program_id=program.id,
        )
    return found


class Decider:
    """``verdict`` for many members, computed once per distinct situation.

    A verdict reads the figures only through the ladder's criteria (which of them hold)
    and the standing only through its level, assignment (mode and level) and credit. For
    members without credit, the verdict is therefore the same for everyone with the same
    level, assignment and criteria outcomes, and is kept per such key; members with
    credit (which shifts one criterion's figure) are decided one by one.

    Figures come as a tuple of values in the order of ``keys`` (the ladder's measures)."""

    def __init__(self, ladder: Ladder, old: Ladder | None, *, downgrades_now: bool) -> None:
        self.ladder = ladder
        self.old = old
        self.downgrades_now = downgrades_now
        self.keys: list[MeasureKey] = list(measuring.keys_of(ladder))
        criteria: dict[Criterion, None] = {}
        for level in ladder.levels:
            for rule in (level.attain, level.maintain):
                if rule is not None:
                    criteria.update(dict.fromkeys(rule.criteria))
        index = {key: i for i, key in enumerate(self.keys)}
        self._tests = [(index[c.key], COMPARE[c.operator], c.threshold) for c in criteria]
        self._known: dict[
            tuple[Any, ...], tuple[str | None, str | None, str | None, ChangeKind | None, bool]
        ] = {}

    def decide(self, member: MemberRow, state: TierState, values: Sequence[int]) -> Verdict:
        if state.credit:
            return self.decide_one(member, state, values)
        held = state.assignment
        key = (
            state.level_key,
            None if held is None else held.mode,
            None if held is None else held.level_key,
            *[test(values[i], threshold) for i, test, threshold in self._tests],
        )
        known = self._known.get(key)
        if known is None:
            found = self.decide_one(member, state, values)
            known = (found.current, found.qualified, found.target, found.kind, found.now)
            if len(self._known) < 100_000:
                self._known[key] = known
            return found
        return Verdict(member, *known)

    def decide_one(self, member: MemberRow, state: TierState, values: Sequence[int]) -> Verdict:
        """``verdict`` itself, for this member alone."""
        ladder = self.ladder
        measures = dict(zip(self.keys, values, strict=True))
        return verdict(
            member,
            state,
            ladder,
            self.old,
            qualified_level(ladder, measures),
            measures,
            downgrades_now=self.downgrades_now,
        )
