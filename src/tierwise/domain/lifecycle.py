"""Entering a level: its start, validity and check instant (R14, R15)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tierwise.domain.ladder import Ladder, Level, Validity
from tierwise.domain.state import TierState
from tierwise.domain.validity import check_due_at, expiry_of


def validity_of(ladder: Ladder, level: Level) -> Validity:
    """A level's own validity where it sets one, else the ladder's."""
    return level.validity if level.validity is not None else ladder.validity


def validity_instants(
    ladder: Ladder,
    level: Level | None,
    start: datetime | None,
    *,
    tz: ZoneInfo,
    enrolled_at: datetime,
    last_activity_at: datetime | None,
) -> tuple[datetime | None, datetime | None]:
    """``(expiry, check instant)`` of a cycle of ``level`` starting at ``start``.

    Floor levels are permanent; so is holding no level.
    """
    if level is None or level.is_floor or start is None:
        return None, None
    expiry = expiry_of(
        validity_of(ladder, level),
        tier_start=start,
        enrolled_at=enrolled_at,
        tz=tz,
        last_activity_at=last_activity_at,
    )
    due = None if expiry is None else check_due_at(expiry, ladder.check_schedule, tz)
    return expiry, due


def with_validity(
    ladder: Ladder,
    level: Level | None,
    state: TierState,
    *,
    tz: ZoneInfo,
    enrolled_at: datetime,
    last_activity_at: datetime | None,
) -> TierState:
    """``state`` with the expiry and check instant of its current cycle.

    Floor levels are permanent; so is holding no level.
    """
    expiry, due = validity_instants(
        ladder,
        level,
        state.cycle_start or state.achieved_at,
        tz=tz,
        enrolled_at=enrolled_at,
        last_activity_at=last_activity_at,
    )
    return replace(state, expires_at=expiry, check_due_at=due)


def enter(
    ladder: Ladder,
    state: TierState,
    level: Level | None,
    at: datetime,
    *,
    tz: ZoneInfo,
    enrolled_at: datetime,
    last_activity_at: datetime | None,
    **changes: Any,
) -> TierState:
    """The state after entering ``level`` at ``at``: a new cycle starts (R14).

    ``changes`` are further fields of the new state (as for ``dataclasses.replace``)."""
    expiry, due = validity_instants(
        ladder,
        level,
        at if level is not None else None,  # the new cycle's start
        tz=tz,
        enrolled_at=enrolled_at,
        last_activity_at=last_activity_at,
    )
    return state.moved_to(
        level.key if level is not None else None,
        at,
        expires_at=expiry,
        check_due_at=due,
        **changes,
    )
