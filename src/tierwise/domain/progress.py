"""What a status read shows about the way up (R5, R6, R7)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tierwise.domain.criteria import Criterion, Measures, Mode, Rule, percentage
from tierwise.domain.ladder import Level


@dataclass(frozen=True, slots=True)
class CriterionProgress:
    """One criterion's figures: which metric over which window, and the gap."""

    criterion: Criterion
    current: int
    required: int
    remaining: int
    percentage: Decimal
    met: bool


@dataclass(frozen=True, slots=True)
class RuleProgress:
    """Progress on a whole rule; ``headline`` is the first criterion's (R6)."""

    mode: Mode
    criteria: tuple[CriterionProgress, ...]
    met: bool

    @property
    def headline(self) -> CriterionProgress:
        return self.criteria[0]


def criterion_progress(criterion: Criterion, measures: Measures) -> CriterionProgress:
    current = measures.get(criterion.key, 0)
    met = criterion.holds(current)
    if criterion.is_upward():
        required = criterion.required
        remaining = max(0, required - current)
        pct = percentage(current, required)
    else:
        # "stay under" criteria have no way up: either met (100 %) or not (0 %).
        required = criterion.threshold
        remaining = 0
        pct = Decimal("100.00") if met else Decimal("0.00")
    return CriterionProgress(criterion, current, required, remaining, pct, met)


def rule_progress(rule: Rule, measures: Measures) -> RuleProgress:
    items = tuple(criterion_progress(c, measures) for c in rule.criteria)
    return RuleProgress(mode=rule.mode, criteria=items, met=rule.holds(measures))


def progress_toward(level: Level | None, measures: Measures) -> RuleProgress | None:
    """R5/R6: progress toward ``level`` on its attain rule; None at the top or when the
    level can only be assigned."""
    if level is None or level.attain is None:
        return None
    return rule_progress(level.attain, measures)
