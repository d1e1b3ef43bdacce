"""A member's standing on one ladder, and the decisions that change it (R9, R10, R20, R22)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any


class AssignmentMode(StrEnum):
    """R20: how a manual assignment interacts with automatic moves."""

    PIN = "pin"
    FLOOR = "floor"
    ONE_SHOT = "one_shot"


class ChangeKind(StrEnum):
    """R22: the kinds of level change recorded in history."""

    ASSIGNED = "assigned"
    UPGRADED = "upgraded"
    RENEWED = "renewed"
    DOWNGRADED = "downgraded"
    EXPIRED = "expired"
    LOST = "lost"
    REMOVED = "removed"


class ChangeSource(StrEnum):
    ACTIVITY = "activity"
    ENROLMENT = "enrolment"
    SWEEP = "sweep"
    MANUAL = "manual"
    DEFINITION = "definition"


@dataclass(frozen=True, slots=True)
class Assignment:
    level_key: str
    mode: AssignmentMode
    reason: str
    actor: str
    assigned_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TierState:
    """Where a member stands on a ladder. ``level_key`` is None when they hold no level."""

    level_key: str | None = None
    achieved_at: datetime | None = None
    """When the member entered the level (kept across renewals)."""
    cycle_start: datetime | None = None
    """Start of the current validity cycle: ``achieved_at``, or the last renewal."""
    expires_at: datetime | None = None
    check_due_at: datetime | None = None
    previous_level_key: str | None = None
    assignment: Assignment | None = None
    grace_until: datetime | None = None
    credit: int = 0

    @property
    def pinned(self) -> bool:
        return self.assignment is not None and self.assignment.mode is AssignmentMode.PIN

    @property
    def due_at(self) -> datetime | None:
        """The next instant the sweep must look at this standing (R15, R17, R20)."""
        candidates = [self.grace_until]
        if self.assignment is not None:
            candidates.append(self.assignment.expires_at)
        if not self.pinned and self.grace_until is None:
            candidates.append(self.check_due_at)
        found = [c for c in candidates if c is not None]
        return min(found) if found else None

    def moved_to(self, level_key: str | None, at: datetime, **changes: Any) -> TierState:
        """The state after moving to ``level_key`` at ``at`` (validity set by the caller,
        here in ``changes``: further fields of the new state, as for ``replace``)."""
        start = at if level_key is not None else None
        fields: dict[str, Any] = {
            "level_key": level_key,
            "previous_level_key": self.level_key,
            "achieved_at": start,
            "cycle_start": start,
            "expires_at": None,
            "check_due_at": None,
            "grace_until": None,
            "credit": 0,
        }
        fields.update(changes)
        return replace(self, **fields)


@dataclass(frozen=True, slots=True)
class TierChange:
    """A decided level change, to be recorded (R22) and published (R23)."""

    from_level: str | None
    to_level: str | None
    kind: ChangeKind
    at: datetime
    source: ChangeSource
    reason: str | None = None
    actor: str | None = None
