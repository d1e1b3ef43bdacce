"""Activities and the metric effects they have (semantics §1, R12, R13)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tierwise.domain.metrics import BuiltinMetric, counter_metric

Effects = dict[str, int]
"""Metric deltas of one activity: ``{"spend": 1999, "orders": 1, ...}``."""


class ActivityType(StrEnum):
    PURCHASE = "purchase"
    POINTS_CREDIT = "points_credit"
    POINTS_REDEMPTION = "points_redemption"
    RETURN = "return"
    VISIT = "visit"
    COUNTER = "counter"


@dataclass(frozen=True, slots=True)
class Recorded:
    """A stored activity, as much as reversing it needs."""

    id: int
    uuid: str
    member_id: int
    program_id: int
    type: ActivityType
    occurred_at: datetime
    amount_minor: int | None
    effects: Effects


def base_effects(
    type_: ActivityType,
    *,
    amount_minor: int | None,
    points: int | None,
    counter: str | None,
    quantity: int | None,
) -> Effects:
    """Effects of an activity before earning (purchase points are added by earning)."""
    match type_:
        case ActivityType.PURCHASE:
            assert amount_minor is not None
            return {BuiltinMetric.SPEND: amount_minor, BuiltinMetric.ORDERS: 1}
        case ActivityType.POINTS_CREDIT:
            assert points is not None
            return {BuiltinMetric.POINTS_EARNED: points, BuiltinMetric.POINTS_BALANCE: points}
        case ActivityType.POINTS_REDEMPTION:
            assert points is not None
            return {BuiltinMetric.POINTS_BALANCE: -points}
        case ActivityType.VISIT:
            return {BuiltinMetric.VISITS: quantity or 1}
        case ActivityType.COUNTER:
            assert counter is not None
            return {counter_metric(counter): quantity or 1}
        case ActivityType.RETURN:
            return {}


def purchase_points(effects: Effects, points: int) -> Effects:
    if points:
        effects = dict(effects)
        effects[BuiltinMetric.POINTS_EARNED] = points
        effects[BuiltinMetric.POINTS_BALANCE] = points
    return effects


def return_effects(
    original: Recorded, *, amount_minor: int | None, already_returned: int
) -> Effects:
    """R13: the effects of returning (part of) ``original``.

    A purchase return reduces spend by the amount, the points it earned in proportion,
    and orders by one when the purchase is now fully returned. Any other activity is
    reversed whole.
    """
    if original.type is not ActivityType.PURCHASE:
        return {metric: -delta for metric, delta in original.effects.items()}
    total = original.amount_minor or 0
    amount = total - already_returned if amount_minor is None else amount_minor
    earned = original.effects.get(BuiltinMetric.POINTS_EARNED, 0)
    returned_before = earned * already_returned // total if total else 0
    returned_after = earned * (already_returned + amount) // total if total else 0
    points = returned_after - returned_before
    effects: Effects = {BuiltinMetric.SPEND: -amount}
    if already_returned + amount >= total:
        effects[BuiltinMetric.ORDERS] = -1
    if points:
        effects[BuiltinMetric.POINTS_EARNED] = -points
        effects[BuiltinMetric.POINTS_BALANCE] = -points
    return effects
