"""Ladders and levels: the definition a tenant writes (semantics §1, R1).

Definitions are immutable values. ``Ladder.validate`` enforces R1 and the structural
rules (unique keys and ranks, one floor at the bottom); the API accepts these values as
request bodies, so a broken ladder is refused with an error that says what is wrong.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tierwise.domain.criteria import MeasureKey, Rule
from tierwise.domain.errors import LadderInvalid

KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class BenefitType(StrEnum):
    FIXED_DISCOUNT = "fixed_discount"
    PERCENTAGE_DISCOUNT = "percentage_discount"
    FREE_SHIPPING = "free_shipping"
    MULTIPLIER = "multiplier"
    CUSTOM = "custom"


class Benefit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    type: BenefitType = BenefitType.CUSTOM
    value: str | None = Field(default=None, max_length=200)


class UpgradeTiming(StrEnum):
    """R11: the earn rate of the purchase that causes an upgrade."""

    LAZY = "lazy"
    EAGER = "eager"
    DYNAMIC = "dynamic"


class ValidityType(StrEnum):
    NONE = "none"
    FIXED_MONTHS = "fixed_months"
    ENROLMENT_ANNIVERSARY = "enrolment_anniversary"
    FIXED_DATE = "fixed_date"
    CALENDAR_YEAR = "calendar_year"
    FIXED_YEAR = "fixed_year"
    INACTIVITY = "inactivity"


class Validity(BaseModel):
    """R14: how long a held level lasts before it is checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ValidityType = ValidityType.NONE
    months: int | None = Field(default=None, ge=1, le=120)
    month: int | None = Field(default=None, ge=1, le=12)
    day: int | None = Field(default=None, ge=1, le=31)
    min_stay_months: int | None = Field(default=None, ge=1, le=120)
    extend_months: int | None = Field(default=None, ge=1, le=120)
    inactivity_days: int | None = Field(default=None, ge=1, le=3660)

    @model_validator(mode="after")
    def _check_parameters(self) -> Self:
        needs: dict[ValidityType, tuple[str, ...]] = {
            ValidityType.FIXED_MONTHS: ("months",),
            ValidityType.FIXED_DATE: ("month", "day"),
            ValidityType.FIXED_YEAR: ("month", "day"),
            ValidityType.INACTIVITY: ("inactivity_days",),
        }
        allowed: dict[ValidityType, tuple[str, ...]] = {
            ValidityType.NONE: (),
            ValidityType.FIXED_MONTHS: ("months",),
            ValidityType.ENROLMENT_ANNIVERSARY: ("min_stay_months",),
            ValidityType.FIXED_DATE: ("month", "day", "min_stay_months"),
            ValidityType.CALENDAR_YEAR: ("extend_months",),
            ValidityType.FIXED_YEAR: ("month", "day", "extend_months"),
            ValidityType.INACTIVITY: ("inactivity_days",),
        }
        for name in (
            "months",
            "month",
            "day",
            "min_stay_months",
            "extend_months",
            "inactivity_days",
        ):
            value = getattr(self, name)
            if name in needs.get(self.type, ()) and value is None:
                raise ValueError(f"validity type {self.type.value!r} needs {name!r}")
            if name not in allowed[self.type] and value is not None:
                raise ValueError(f"validity type {self.type.value!r} does not take {name!r}")
        return self


class CheckSchedule(StrEnum):
    """R15: when an expiring level is checked."""

    DAILY = "daily"
    MONTH_END = "month_end"


class RenewalMode(StrEnum):
    """R16: ``maintain`` uses the maintain rule (attain as fallback); ``always`` renews."""

    MAINTAIN = "maintain"
    ALWAYS = "always"


class DowngradePolicy(StrEnum):
    """R17: where a member goes when renewal fails."""

    DROP_ONE = "drop_one"
    TO_QUALIFYING = "to_qualifying"
    TO_FLOOR = "to_floor"
    HOLD = "hold"


class Downgrade(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: DowngradePolicy = DowngradePolicy.TO_QUALIFYING
    grace_days: int = Field(default=0, ge=0, le=3650)


class Rollover(StrEnum):
    """R18: what windowed counters do at period end."""

    RESET = "reset"
    CARRY_EXCESS = "carry_excess"


class Level(BaseModel):
    """One rung of a ladder (Capillary *slab*, Omneo/Yuko *tier*)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=KEY_PATTERN)
    name: str = Field(min_length=1, max_length=100)
    rank: int = Field(ge=1, le=1000)
    color: str | None = Field(default=None, max_length=32)
    icon_url: str | None = Field(default=None, max_length=2000)
    image_url: str | None = Field(default=None, max_length=2000)
    description: str | None = Field(default=None, max_length=4000)
    short_description: str | None = Field(default=None, max_length=1000)
    long_description: str | None = Field(default=None, max_length=20000)
    terms: str | None = Field(default=None, max_length=20000)
    earn_instructions: str | None = Field(default=None, max_length=4000)
    internal_notes: str | None = Field(default=None, max_length=4000)
    tags: tuple[str, ...] = Field(default=(), max_length=50)
    benefits: tuple[Benefit, ...] = Field(default=(), max_length=100)
    earn_multiplier: Decimal = Field(default=Decimal(1), ge=0, le=1000, decimal_places=4)
    attain: Rule | None = None
    maintain: Rule | None = None
    is_floor: bool = False
    is_assignable: bool = True
    downgradable: bool = True
    validity: Validity | None = None
    """Per-level validity, overriding the ladder's (where a platform allows it)."""

    def measure_keys(self) -> set[MeasureKey]:
        keys: set[MeasureKey] = set()
        for rule in (self.attain, self.maintain):
            if rule is not None:
                keys |= rule.measure_keys()
        return keys


class Ladder(BaseModel):
    """One independent status track of a program, with its levels and policies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=KEY_PATTERN)
    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=4000)
    levels: tuple[Level, ...] = Field(min_length=1, max_length=50)
    upgrade_timing: UpgradeTiming = UpgradeTiming.EAGER
    validity: Validity = Validity()
    check_schedule: CheckSchedule = CheckSchedule.DAILY
    renewal: RenewalMode = RenewalMode.MAINTAIN
    downgrade: Downgrade = Downgrade()
    rollover: Rollover = Rollover.RESET
    credit: bool = False
    """R18: carry the attain overshoot as credit toward the next cycle's maintain goal."""
    reverse_upgrade_on_return: bool = False
    """R13: a return that undoes the qualification of the upgrade it caused reverses it."""

    @model_validator(mode="after")
    def _sorted(self) -> Self:
        ordered = tuple(sorted(self.levels, key=lambda level: level.rank))
        if ordered != self.levels:
            object.__setattr__(self, "levels", ordered)
        return self

    # -- queries -----------------------------------------------------------------------

    def level(self, key: str) -> Level | None:
        return next((level for level in self.levels if level.key == key), None)

    @property
    def floor(self) -> Level | None:
        return next((level for level in self.levels if level.is_floor), None)

    def above(self, level: Level | None) -> Level | None:
        """R5: the level ranked just above ``level`` (the lowest when ``level`` is None)."""
        if level is None:
            return self.levels[0]
        return next((x for x in self.levels if x.rank > level.rank), None)

    def below(self, level: Level) -> Level | None:
        lower = [x for x in self.levels if x.rank < level.rank]
        return lower[-1] if lower else None

    def measure_keys(self) -> set[MeasureKey]:
        keys: set[MeasureKey] = set()
        for level in self.levels:
            keys |= level.measure_keys()
        return keys

    # -- R1 ----------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Everything wrong with this ladder, in words a programme manager understands."""
        found: list[str] = []
        seen_keys: dict[str, int] = {}
        seen_ranks: dict[int, str] = {}
        for level in self.levels:
            if level.key in seen_keys:
                found.append(f"level key {level.key!r} is used twice")
            seen_keys[level.key] = level.rank
            if level.rank in seen_ranks:
                found.append(
                    f"levels {seen_ranks[level.rank]!r} and {level.key!r} share rank {level.rank}"
                )
            seen_ranks[level.rank] = level.key
        floors = [level for level in self.levels if level.is_floor]
        if len(floors) > 1:
            found.append(f"only one floor level is allowed, got {[x.key for x in floors]}")
        if floors and floors[0] is not self.levels[0]:
            found.append(f"the floor level {floors[0].key!r} must be the lowest-ranked level")
        for level in self.levels:
            if level.attain is None and not level.is_floor and not level.is_assignable:
                found.append(
                    f"level {level.key!r} has no attain rule, is not the floor and is not "
                    "assignable, so no member could ever reach it"
                )
        found.extend(_decreasing_thresholds(self.levels))
        return found

    def validate_rules(self) -> Self:
        """Raise ``LadderInvalid`` listing every problem (R1), or return the ladder."""
        problems = self.problems()
        if problems:
            raise LadderInvalid("; ".join(problems), problems=problems)
        return self


def _decreasing_thresholds(levels: tuple[Level, ...]) -> list[str]:
    """R1: attain thresholds on the same metric and window must not decrease with rank."""
    found: list[str] = []
    best: dict[MeasureKey, tuple[int, Level]] = {}
    for level in levels:
        if level.attain is None:
            continue
        for criterion in level.attain.criteria:
            if not criterion.is_upward():
                continue
            previous = best.get(criterion.key)
            if previous is not None and criterion.required < previous[0]:
                lower = previous[1]
                found.append(
                    f"level {level.key!r} (rank {level.rank}) needs {criterion.metric} "
                    f"over {criterion.window.label()} {criterion.operator.value} "
                    f"{criterion.threshold}, less than {lower.key!r} (rank {lower.rank}) "
                    f"needs ({previous[0]}): thresholds must not decrease with rank"
                )
            if previous is None or criterion.required >= previous[0]:
                best[criterion.key] = (criterion.required, level)
    return found
