"""A standing (``TierState``) as JSON: how history rows keep the standing a change left
(``tier_changes.state_after``), so that a read as of a past instant shows the expiry,
cycle, grace and credit the member had then (R22, R27)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tierwise.domain.state import Assignment, AssignmentMode, TierState


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def assignment_json(value: Assignment | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {
        "level_key": value.level_key,
        "mode": value.mode.value,
        "reason": value.reason,
        "actor": value.actor,
        "assigned_at": value.assigned_at.isoformat(),
        "expires_at": _instant(value.expires_at),
    }


def assignment_of(raw: dict[str, Any] | None) -> Assignment | None:
    if raw is None:
        return None
    assigned_at = _parse(raw["assigned_at"])
    assert assigned_at is not None
    return Assignment(
        level_key=raw["level_key"],
        mode=AssignmentMode(raw["mode"]),
        reason=raw["reason"],
        actor=raw["actor"],
        assigned_at=assigned_at,
        expires_at=_parse(raw.get("expires_at")),
    )


def state_json(state: TierState) -> dict[str, Any]:
    return {
        "level_key": state.level_key,
        "achieved_at": _instant(state.achieved_at),
        "cycle_start": _instant(state.cycle_start),
        "expires_at": _instant(state.expires_at),
        "check_due_at": _instant(state.check_due_at),
        "previous_level_key": state.previous_level_key,
        "assignment": assignment_json(state.assignment),
        "grace_until": _instant(state.grace_until),
        "credit": state.credit,
    }


def state_of(raw: dict[str, Any]) -> TierState:
    return TierState(
        level_key=raw.get("level_key"),
        achieved_at=_parse(raw.get("achieved_at")),
        cycle_start=_parse(raw.get("cycle_start")),
        expires_at=_parse(raw.get("expires_at")),
        check_due_at=_parse(raw.get("check_due_at")),
        previous_level_key=raw.get("previous_level_key"),
        assignment=assignment_of(raw.get("assignment")),
        grace_until=_parse(raw.get("grace_until")),
        credit=int(raw.get("credit") or 0),
    )
