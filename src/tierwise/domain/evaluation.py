"""Qualification and immediate upgrades (R3, R4, R9, R10)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tierwise.domain.criteria import Measures
from tierwise.domain.ladder import Ladder, Level
from tierwise.domain.state import AssignmentMode, ChangeKind, ChangeSource, TierChange, TierState


def qualified_level(ladder: Ladder, measures: Measures) -> Level | None:
    """R3/R4: the highest level whose attain rule holds; the floor when none does."""
    best: Level | None = ladder.floor
    for level in ladder.levels:
        if level.attain is not None and level.attain.holds(measures):
            best = level
    return best


def rank_of(ladder: Ladder, level_key: str | None) -> int:
    """Rank of ``level_key`` on ``ladder``; 0 for no level (or a level since removed)."""
    if level_key is None:
        return 0
    level = ladder.level(level_key)
    return level.rank if level is not None else 0


@dataclass(frozen=True, slots=True)
class UpgradeDecision:
    level: Level
    change: TierChange


def decide_upgrade(
    ladder: Ladder,
    state: TierState,
    measures: Measures,
    *,
    at: datetime,
    source: ChangeSource,
) -> UpgradeDecision | None:
    """R9/R10: move up at once when the member qualifies higher; never move down here.

    A ``pin`` assignment freezes the level (R20); ``floor`` and ``one_shot`` assignments
    let upgrades happen.
    """
    if state.assignment is not None and state.assignment.mode is AssignmentMode.PIN:
        return None
    target = qualified_level(ladder, measures)
    if target is None or target.rank <= rank_of(ladder, state.level_key):
        return None
    return upgrade_to(state, target, at=at, source=source)


def upgrade_to(
    state: TierState, level: Level, *, at: datetime, source: ChangeSource
) -> UpgradeDecision:
    """The decision to move the member from its level up to ``level`` at ``at``."""
    change = TierChange(
        from_level=state.level_key,
        to_level=level.key,
        kind=ChangeKind.UPGRADED,
        at=at,
        source=source,
    )
    return UpgradeDecision(level=level, change=change)
