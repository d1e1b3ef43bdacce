"""What happens when a standing falls due: checks, grace ends, assignment expiries.

R15 checks at expiry; R16 renewal (maintain rule, attain as fallback, or always); R17
downgrade policies with grace, floor and per-level ``downgradable``; R18 credit and
rollover; R20 assignment expiry with re-evaluation. Pure: the caller measures the
member's figures at the instant ``measure_at(event)`` and passes them in.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from tierwise.domain.calendar import ONE_SECOND
from tierwise.domain.criteria import Measures, Rule
from tierwise.domain.evaluation import qualified_level
from tierwise.domain.ladder import DowngradePolicy, Ladder, Level, RenewalMode, Rollover
from tierwise.domain.lifecycle import enter, validity_instants
from tierwise.domain.state import (
    Assignment,
    AssignmentMode,
    ChangeKind,
    ChangeSource,
    TierChange,
    TierState,
)
from tierwise.domain.validity import next_cycle_start


class DueKind(StrEnum):
    ASSIGNMENT_EXPIRY = "assignment_expiry"
    GRACE_END = "grace_end"
    CHECK = "check"


@dataclass(frozen=True, slots=True)
class Due:
    kind: DueKind
    at: datetime

    @property
    def measure_at(self) -> datetime:
        """Figures are read as of the last instant before the event."""
        return self.at - ONE_SECOND


def next_due(state: TierState) -> Due | None:
    """The earliest thing the sweep must handle for this standing, if any (an assignment
    expiry first when it falls at the same instant)."""
    assignment = state.assignment
    expiry = assignment.expires_at if assignment is not None else None
    grace = state.grace_until
    if grace is not None:
        kind, at = DueKind.GRACE_END, grace
    elif state.check_due_at is not None and not state.pinned:
        kind, at = DueKind.CHECK, state.check_due_at
    else:
        return None if expiry is None else Due(DueKind.ASSIGNMENT_EXPIRY, expiry)
    if expiry is not None and expiry <= at:
        return Due(DueKind.ASSIGNMENT_EXPIRY, expiry)
    return Due(kind, at)


@dataclass(frozen=True, slots=True)
class Outcome:
    state: TierState
    change: TierChange | None


@dataclass(frozen=True, slots=True)
class Context:
    """What the rules need besides the standing and the figures."""

    tz: ZoneInfo
    enrolled_at: datetime
    last_activity_at: datetime | None


# -- fast paths ---------------------------------------------------------------------------
# The sweep applies these rules to every due standing, so the few steps every check takes
# are built directly; each gives exactly what the general form gives (tested).

#: ``TierState``'s fields in order, as the direct constructions below assume; should the
#: state gain a field, they fall back to ``dataclasses.replace`` and ``enter``.
_STATE_FIELDS = (
    "level_key",
    "achieved_at",
    "cycle_start",
    "expires_at",
    "check_due_at",
    "previous_level_key",
    "assignment",
    "grace_until",
    "credit",
)
_DIRECT = tuple(f.name for f in fields(TierState)) == _STATE_FIELDS

_LEVELS: dict[int, tuple[Ladder, tuple[Level, ...], dict[str, Level]]] = {}


def level_of(ladder: Ladder, key: str) -> Level | None:
    """``ladder.level(key)`` from a table made once per (immutable) ladder."""
    found = _LEVELS.get(id(ladder))
    if found is None or found[0] is not ladder or found[1] is not ladder.levels:
        table: dict[str, Level] = {}
        for level in ladder.levels:
            table.setdefault(level.key, level)
        if len(_LEVELS) >= 4096:
            _LEVELS.clear()
        found = _LEVELS[id(ladder)] = (ladder, ladder.levels, table)
    return found[2].get(key)


def _rank(ladder: Ladder, level: Level | None) -> int:
    """``rank_of(ladder, level.key)``: 0 for no level or one not on the ladder."""
    if level is None:
        return 0
    found = level_of(ladder, level.key)
    return found.rank if found is not None else 0


def entered(
    ladder: Ladder,
    state: TierState,
    level: Level | None,
    at: datetime,
    ctx: Context,
    assignment: Assignment | None,
) -> TierState:
    """``lifecycle.enter(…, assignment=assignment)``, built in one step."""
    if not _DIRECT:
        return enter(
            ladder,
            state,
            level,
            at,
            tz=ctx.tz,
            enrolled_at=ctx.enrolled_at,
            last_activity_at=ctx.last_activity_at,
            assignment=assignment,
        )
    key = level.key if level is not None else None
    start = at if key is not None else None
    expiry, due = validity_instants(
        ladder,
        level,
        start,
        tz=ctx.tz,
        enrolled_at=ctx.enrolled_at,
        last_activity_at=ctx.last_activity_at,
    )
    return TierState(key, start, start, expiry, due, state.level_key, assignment, None, 0)


def keep_rule(level: Level) -> Rule | None:
    """R16: the maintain rule, or the attain rule when the level has none."""
    return level.maintain if level.maintain is not None else level.attain


def with_credit(rule: Rule, measures: Measures, credit: int) -> Measures:
    """R18: credit counts toward the first criterion of the keep rule."""
    if not credit:
        return measures
    key = rule.criteria[0].key
    boosted = dict(measures)
    boosted[key] = boosted.get(key, 0) + credit
    return boosted


def keeps(ladder: Ladder, level: Level, state: TierState, measures: Measures) -> bool:
    if ladder.renewal is RenewalMode.ALWAYS or not level.downgradable:
        return True
    rule = keep_rule(level)
    if rule is None:
        return True
    return rule.holds(with_credit(rule, measures, state.credit))


def overshoot(rule: Rule | None, measures: Measures, credit: int = 0) -> int:
    """How far the first criterion of ``rule`` is above its threshold (R18 credit)."""
    if rule is None:
        return 0
    first = rule.criteria[0]
    if not first.is_upward():
        return 0
    return max(0, measures.get(first.key, 0) + credit - first.threshold)


def attain_credit(ladder: Ladder, level: Level, measures: Measures) -> int:
    """Omneo-style credit on entering ``level``: the overshoot of its attain threshold."""
    return overshoot(level.attain, measures) if ladder.credit else 0


def downgrade_target(
    ladder: Ladder, current: Level, state: TierState, measures: Measures
) -> Level | None:
    """R17: where a member goes when renewal fails, before floors are applied."""
    match ladder.downgrade.policy:
        case DowngradePolicy.HOLD:
            target: Level | None = current
        case DowngradePolicy.DROP_ONE:
            target = ladder.below(current)
        case DowngradePolicy.TO_FLOOR:
            target = ladder.floor
        case DowngradePolicy.TO_QUALIFYING:
            qualified = qualified_level(ladder, measures)
            target = qualified if _rank(ladder, qualified) < current.rank else ladder.below(current)
    floor = ladder.floor
    if floor is not None and _rank(ladder, target) < floor.rank:
        target = floor
    assignment = state.assignment
    if assignment is not None and assignment.mode is AssignmentMode.FLOOR:
        assigned = level_of(ladder, assignment.level_key)
        if assigned is not None and _rank(ladder, target) < assigned.rank:
            target = assigned
    return target


def renew(
    ladder: Ladder,
    level: Level,
    state: TierState,
    measures: Measures,
    *,
    cycle_end: datetime,
    at: datetime,
    ctx: Context,
    source: ChangeSource = ChangeSource.SWEEP,
) -> Outcome:
    """Start a new validity cycle at the same level (R16), rolling counters over (R18)."""
    rule = keep_rule(level)
    credit = (
        overshoot(rule, measures, state.credit) if ladder.rollover is Rollover.CARRY_EXCESS else 0
    )
    start = next_cycle_start(cycle_end)
    expiry, due = validity_instants(
        ladder,
        level,
        start,
        tz=ctx.tz,
        enrolled_at=ctx.enrolled_at,
        last_activity_at=ctx.last_activity_at,
    )
    if _DIRECT:
        renewed = TierState(
            state.level_key,
            state.achieved_at,
            start,
            expiry,
            due,
            state.previous_level_key,
            state.assignment,
            None,
            credit,
        )
    else:
        renewed = replace(
            state,
            cycle_start=start,
            grace_until=None,
            credit=credit,
            expires_at=expiry,
            check_due_at=due,
        )
    change = TierChange(
        from_level=level.key,
        to_level=level.key,
        kind=ChangeKind.RENEWED,
        at=at,
        source=source,
    )
    return Outcome(renewed, change)


def move_down(
    ladder: Ladder,
    state: TierState,
    target: Level | None,
    *,
    at: datetime,
    ctx: Context,
    measures: Measures,
) -> Outcome:
    held = state.assignment
    moved = entered(
        ladder,
        state,
        target,
        at,
        ctx,
        held if held is not None and held.mode is AssignmentMode.FLOOR else None,
    )
    kind = ChangeKind.DOWNGRADED if target is not None else ChangeKind.LOST
    return Outcome(
        moved,
        TierChange(
            from_level=state.level_key,
            to_level=target.key if target else None,
            kind=kind,
            at=at,
            source=ChangeSource.SWEEP,
        ),
    )


def handle(ladder: Ladder, state: TierState, due: Due, measures: Measures, ctx: Context) -> Outcome:
    """Apply one due event to a standing. The result is never due at ``due.at`` again."""
    current = level_of(ladder, state.level_key) if state.level_key else None
    if due.kind is DueKind.ASSIGNMENT_EXPIRY:
        return _assignment_expired(ladder, state, due, measures, ctx)
    if current is None:
        return Outcome(replace(state, check_due_at=None, expires_at=None, grace_until=None), None)
    if due.kind is DueKind.GRACE_END:
        if keeps(ladder, current, state, measures):
            cycle_end = state.expires_at or (due.at - ONE_SECOND)
            return renew(ladder, current, state, measures, cycle_end=cycle_end, at=due.at, ctx=ctx)
        target = downgrade_target(ladder, current, state, measures)
        return move_down(
            ladder, replace(state, grace_until=None), target, at=due.at, ctx=ctx, measures=measures
        )
    cycle_end = state.expires_at or (due.at - ONE_SECOND)
    if keeps(ladder, current, state, measures):
        return renew(ladder, current, state, measures, cycle_end=cycle_end, at=due.at, ctx=ctx)
    target = downgrade_target(ladder, current, state, measures)
    if target is not None and target.key == current.key:
        return renew(ladder, current, state, measures, cycle_end=cycle_end, at=due.at, ctx=ctx)
    if ladder.downgrade.grace_days > 0:
        grace = due.at + timedelta(days=ladder.downgrade.grace_days)
        return Outcome(replace(state, grace_until=grace), None)
    return move_down(ladder, state, target, at=due.at, ctx=ctx, measures=measures)


def _assignment_expired(
    ladder: Ladder, state: TierState, due: Due, measures: Measures, ctx: Context
) -> Outcome:
    """R20/E7: the assignment ends and the member is re-evaluated on their figures.

    A level kept through a pin whose own check fell due meanwhile starts a new cycle now,
    so that no check from before the assignment is handled afterwards."""
    target = qualified_level(ladder, measures)
    released = replace(state, assignment=None)
    stale = state.check_due_at is not None and state.check_due_at <= due.at
    if target is not None and target.key == state.level_key and not stale:
        # Same level, its cycle still running: the member simply keeps it.
        return Outcome(
            released,
            TierChange(
                from_level=state.level_key,
                to_level=target.key,
                kind=ChangeKind.EXPIRED,
                at=due.at,
                source=ChangeSource.SWEEP,
                reason="assignment expired",
            ),
        )
    moved = enter(
        ladder,
        released,
        target,
        due.at,
        tz=ctx.tz,
        enrolled_at=ctx.enrolled_at,
        last_activity_at=ctx.last_activity_at,
    )
    return Outcome(
        moved,
        TierChange(
            from_level=state.level_key,
            to_level=target.key if target else None,
            kind=ChangeKind.EXPIRED,
            at=due.at,
            source=ChangeSource.SWEEP,
            reason="assignment expired",
        ),
    )


def project(
    ladder: Ladder, state: TierState, measures: Measures, ctx: Context, at: datetime
) -> Level | None:
    """R19: the level the member would hold if their next check ran on these figures."""
    current = ladder.level(state.level_key) if state.level_key else None
    if current is None or state.pinned:
        return current
    if state.check_due_at is None and state.grace_until is None:
        return current
    due = Due(
        DueKind.GRACE_END if state.grace_until else DueKind.CHECK,
        state.grace_until or state.check_due_at or at,
    )
    outcome = handle(ladder, state, due, measures, ctx)
    if (
        outcome.state.grace_until is not None
        and outcome.state.level_key == current.key
        and state.grace_until is None
    ):
        # A failed check that opens a grace period ends with the downgrade target.
        target = downgrade_target(ladder, current, state, measures)
        return target
    return ladder.level(outcome.state.level_key) if outcome.state.level_key else None
