"""Criteria and rules: metric + window + operator + threshold, combined with ALL or ANY."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tierwise.domain.metrics import validate_metric
from tierwise.domain.windows import LIFETIME, Window


class Operator(StrEnum):
    GE = ">="
    GT = ">"
    EQ = "=="
    LE = "<="
    LT = "<"


COMPARE: dict[Operator, Callable[[int, int], bool]] = {
    Operator.GE: operator.ge,
    Operator.GT: operator.gt,
    Operator.EQ: operator.eq,
    Operator.LE: operator.le,
    Operator.LT: operator.lt,
}
"""Each operator as its ``operator`` module function: ``COMPARE[op](value, threshold)``."""


class Mode(StrEnum):
    ALL = "all"
    ANY = "any"


MetricName = Annotated[str, AfterValidator(validate_metric)]
MeasureKey = tuple[str, Window]
"""A metric summed over a window: the unit the engine asks the store for."""

Measures = Mapping[MeasureKey, int]


class Criterion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: MetricName
    window: Window = LIFETIME
    operator: Operator = Operator.GE
    threshold: int = Field(ge=0)

    @property
    def key(self) -> MeasureKey:
        return (self.metric, self.window)

    def holds(self, value: int) -> bool:
        """R2: thresholds are inclusive for ``>=``."""
        return COMPARE[self.operator](value, self.threshold)

    @property
    def required(self) -> int:
        """The value a member must reach: the threshold, or one more for ``>``."""
        return self.threshold + 1 if self.operator is Operator.GT else self.threshold

    def is_upward(self) -> bool:
        """True for "reach at least" criteria, the ones that have progress toward them."""
        return self.operator in (Operator.GE, Operator.GT)


class Rule(BaseModel):
    """A set of criteria combined with ALL or ANY."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = Mode.ALL
    criteria: tuple[Criterion, ...] = Field(min_length=1, max_length=20)

    def holds(self, measures: Measures) -> bool:
        results = (c.holds(measures.get(c.key, 0)) for c in self.criteria)
        return all(results) if self.mode is Mode.ALL else any(results)

    def measure_keys(self) -> set[MeasureKey]:
        return {c.key for c in self.criteria}


HUNDRED = Decimal(100)
CENT = Decimal("0.01")


def percentage(current: int, required: int) -> Decimal:
    """R6: ``min(100, current / required * 100)`` measured from zero, 2 decimals."""
    if required <= 0:
        return HUNDRED.quantize(CENT)
    value = min(HUNDRED, Decimal(max(current, 0)) * HUNDRED / Decimal(required))
    return value.quantize(CENT, rounding=ROUND_HALF_UP)
