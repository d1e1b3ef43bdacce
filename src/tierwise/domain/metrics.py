"""Metrics: numbers derived from activities (semantics §1).

A metric is named by a string: one of the built-ins below or ``counter:<name>`` for a
custom counter (Capillary *trackers*, Scrip *counters*). All values are integers: money
in minor units, points in whole points, counts as counts (R8).
"""

from __future__ import annotations

import re
from enum import StrEnum


class BuiltinMetric(StrEnum):
    POINTS_EARNED = "points_earned"
    POINTS_BALANCE = "points_balance"
    SPEND = "spend"
    ORDERS = "orders"
    VISITS = "visits"


COUNTER_PREFIX = "counter:"
_COUNTER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def is_counter_name(name: str) -> bool:
    return bool(_COUNTER_NAME.match(name))


def counter_metric(name: str) -> str:
    return f"{COUNTER_PREFIX}{name}"


def validate_metric(metric: str) -> str:
    """Return ``metric`` if it names a built-in metric or a well-formed counter."""
    if metric in BuiltinMetric.__members__.values():
        return metric
    if metric.startswith(COUNTER_PREFIX) and is_counter_name(metric[len(COUNTER_PREFIX) :]):
        return metric
    raise ValueError(
        f"unknown metric {metric!r}: use one of "
        f"{', '.join(m.value for m in BuiltinMetric)} or 'counter:<name>'"
    )
