"""Request and response bodies of the native API (separate from tables and domain)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from json.encoder import encode_basestring_ascii
from typing import Annotated, Any, Self

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from tierwise.domain.activity import ActivityType
from tierwise.domain.ladder import Benefit, Ladder
from tierwise.domain.metrics import is_counter_name
from tierwise.domain.request_hash import purchase_hash as purchase_hash
from tierwise.domain.windows import Window

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
"""Instants the API accepts: ``EARLIEST <= t < LATEST``. Calendar arithmetic (windows of
up to ten years back, validity of up to twenty years ahead) must stay inside ``datetime``."""


def in_range(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"instants must lie between {EARLIEST.year} and {LATEST.year - 1} (UTC)")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(in_range)]
"""An aware instant inside the supported range (R27)."""


def field_error(model: str, field: str, message: str, value: Any = None) -> ValidationError:
    """A validation error located at ``field`` (raised from a model validator, so that
    the error names the field rather than the whole body)."""
    return ValidationError.from_exception_data(
        model,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", message),
                loc=(field,),
                input=value,
            )
        ],
    )


class Strict(BaseModel):
    """Request bodies: unknown fields are refused, and so are NUL characters in strings
    (PostgreSQL cannot store them, and no identifier or name needs one)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        return value


# -- programs --------------------------------------------------------------------------


class ProgramIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    time_zone: str = Field(default="UTC", description="IANA zone for calendar boundaries")
    currency: str = Field(default="USD", min_length=3, max_length=3)
    earn_rate: Decimal = Field(
        default=Decimal(1),
        ge=0,
        le=100000,
        decimal_places=6,
        description="Points per major currency unit (before multipliers)",
    )
    is_default: bool = False


class ProgramPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    time_zone: str | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    earn_rate: Decimal | None = Field(default=None, ge=0, le=100000, decimal_places=6)
    is_default: bool | None = None


class ProgramOut(BaseModel):
    id: int
    uuid: str
    name: str
    time_zone: str
    currency: str
    earn_rate: str
    is_default: bool
    created_at: datetime
    updated_at: datetime


class LadderOut(BaseModel):
    id: int
    uuid: str
    program_id: int
    key: str
    version: int | None
    level_ids: dict[str, int] = Field(description="Stable integer id of each level key")
    definition: Ladder | None
    created_at: datetime
    updated_at: datetime


# -- activities ------------------------------------------------------------------------


def _utc_in_range(value: datetime) -> datetime:
    """``in_range``; an instant given at offset zero is carried with ``datetime.UTC`` (the
    same instant, dumped alike), which later comparisons, hashing and formatting handle
    several times faster than the validator's own zone object."""
    tz = value.tzinfo
    if tz is not UTC and (str(tz) == "UTC" or value.utcoffset() == _ZERO):
        value = value.astimezone(UTC)
    if not EARLIEST <= value < LATEST:
        return in_range(value)  # raises
    return value


_ZERO = timedelta(0)

ActivityInstant = Annotated[AwareDatetime, AfterValidator(_utc_in_range)]
"""``Instant`` for activities (R27), at offset zero in ``datetime.UTC``."""

MEMBER_ID_MAX = 128
KEY_MAX = 200
AMOUNT_MAX = 10**15
CURRENCY_LEN = 3
BATCH_MAX = 1000
PROGRAM_ID_MAX = 2**62
"""Limits of ``ActivityIn`` and ``ActivityBatchIn`` (also read by the batch's quick
purchases, ``routes.activities.batch_commands``)."""

_ACTIVITY_OPTIONAL = (
    "amount_minor",
    "currency",
    "points",
    "counter",
    "quantity",
    "reverses",
    "reverses_key",
)
_NEEDS: dict[ActivityType, tuple[str, ...]] = {
    ActivityType.PURCHASE: ("amount_minor",),
    ActivityType.POINTS_CREDIT: ("points",),
    ActivityType.POINTS_REDEMPTION: ("points",),
    ActivityType.COUNTER: ("counter",),
}
_ALLOWED: dict[ActivityType, tuple[str, ...]] = {
    ActivityType.PURCHASE: ("amount_minor", "currency"),
    ActivityType.POINTS_CREDIT: ("points",),
    ActivityType.POINTS_REDEMPTION: ("points",),
    ActivityType.COUNTER: ("counter", "quantity"),
    ActivityType.VISIT: ("quantity",),
    ActivityType.RETURN: ("reverses", "reverses_key", "amount_minor"),
}


class ActivityIn(BaseModel):
    """One activity. Fields by type: purchase ``amount_minor`` (+ ``currency``);
    points_credit / points_redemption ``points``; counter ``counter`` (+ ``quantity``);
    visit (+ ``quantity``); return ``reverses`` or ``reverses_key`` (+ ``amount_minor`` for a
    partial return)."""

    # As ``Strict`` (unknown fields and NUL characters refused), with the NUL check done
    # once per body instead of once per field: a batch validates 1,000 of these.
    model_config = ConfigDict(extra="forbid")

    type: ActivityType
    member_id: str = Field(
        min_length=1, max_length=MEMBER_ID_MAX, description="Your id for the member"
    )
    idempotency_key: str = Field(min_length=1, max_length=KEY_MAX)
    occurred_at: ActivityInstant
    program_id: int | None = Field(
        default=None, ge=1, le=PROGRAM_ID_MAX, description="Default program when omitted"
    )
    amount_minor: int | None = Field(default=None, ge=0, le=AMOUNT_MAX)
    currency: str | None = Field(default=None, min_length=CURRENCY_LEN, max_length=CURRENCY_LEN)
    points: int | None = Field(default=None, gt=0, le=10**12)
    counter: str | None = Field(default=None, max_length=63)
    quantity: int | None = Field(default=None, gt=0, le=10**9)
    reverses: str | None = Field(default=None, max_length=64, description="Activity id")
    reverses_key: str | None = Field(
        default=None, max_length=200, description="Idempotency key of the activity to return"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nul_in_body(cls, data: Any) -> Any:
        """A body with a NUL in any text is validated field by field as ``Strict`` does
        (``_CheckedActivityIn``), which raises exactly ``Strict``'s errors."""
        if isinstance(data, dict):
            for value in data.values():
                if isinstance(value, str) and "\x00" in value:
                    _CheckedActivityIn.model_validate(data)
                    break
        return data

    @model_validator(mode="after")
    def _fields_for_type(self) -> Self:
        # The usual bodies first: every check below passes for them.
        kind = self.type
        if (
            self.counter is None
            and self.quantity is None
            and self.reverses is None
            and self.reverses_key is None
        ):
            if kind is ActivityType.PURCHASE:
                if self.amount_minor and self.points is None:
                    return self
            elif (
                kind is ActivityType.POINTS_CREDIT or kind is ActivityType.POINTS_REDEMPTION
            ) and (self.points is not None and self.amount_minor is None and self.currency is None):
                return self
        return self._check_fields_for_type()

    def _check_fields_for_type(self) -> Self:
        def error(name: str, message: str) -> ValidationError:
            return field_error("ActivityIn", name, message, getattr(self, name))

        for name in _ACTIVITY_OPTIONAL:
            value = getattr(self, name)
            if name in _NEEDS.get(self.type, ()) and value is None:
                raise error(name, f"a {self.type.value} needs {name!r}")
            if value is not None and name not in _ALLOWED[self.type]:
                raise error(name, f"a {self.type.value} does not take {name!r}")
        if self.type is ActivityType.PURCHASE and not self.amount_minor:
            raise error("amount_minor", "a purchase needs a positive amount_minor")
        if self.type is ActivityType.RETURN:
            if (self.reverses is None) == (self.reverses_key is None):
                raise error(
                    "reverses", "a return needs exactly one of 'reverses' or 'reverses_key'"
                )
            if self.amount_minor == 0:
                raise error("amount_minor", "a partial return needs a positive amount_minor")
        if self.counter is not None and not is_counter_name(self.counter):
            raise error("counter", "counter names are lower-case letters, digits, '_', '.', '-'")
        return self

    def request_hash(self) -> str:
        """SHA-256 of the body as ``json.dumps(model_dump(mode="json", exclude_none=True),
        sort_keys=True)`` writes it (stored with the activity: a repeat must hash alike,
        R12), written directly for the usual bodies."""
        at = self.occurred_at
        if at.tzinfo is not UTC:
            return self._request_hash_dumped()
        text = encode_basestring_ascii
        stamp = orjson.dumps(at, option=orjson.OPT_UTC_Z).decode()
        parts: list[str] = []
        if self.amount_minor is not None:
            parts.append(f'"amount_minor": {self.amount_minor}')
        if self.counter is not None:
            parts.append(f'"counter": {text(self.counter)}')
        if self.currency is not None:
            parts.append(f'"currency": {text(self.currency)}')
        parts.append(f'"idempotency_key": {text(self.idempotency_key)}')
        parts.append(f'"member_id": {text(self.member_id)}')
        # isoformat() with "Z" for "+00:00" (as pydantic dumps it), written by orjson in C
        parts.append(f'"occurred_at": {stamp}')
        if self.points is not None:
            parts.append(f'"points": {self.points}')
        if self.program_id is not None:
            parts.append(f'"program_id": {self.program_id}')
        if self.quantity is not None:
            parts.append(f'"quantity": {self.quantity}')
        if self.reverses is not None:
            parts.append(f'"reverses": {text(self.reverses)}')
        if self.reverses_key is not None:
            parts.append(f'"reverses_key": {text(self.reverses_key)}')
        parts.append(f'"type": "{self.type.value}"')
        return hashlib.sha256(("{" + ", ".join(parts) + "}").encode()).hexdigest()

    def _request_hash_dumped(self) -> str:
        body = self.model_dump(mode="json", exclude_none=True)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class _CheckedActivityIn(ActivityIn):
    """``ActivityIn`` with ``Strict``'s NUL check on every field (for the rare body that
    has a NUL, so that it is refused with exactly ``Strict``'s errors)."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul_in_body(cls, data: Any) -> Any:
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return Strict._no_nul(value)


class ActivityBatchIn(Strict):
    activities: list[ActivityIn] = Field(min_length=1, max_length=BATCH_MAX)


class EarnPartOut(BaseModel):
    amount_minor: int
    rate: str
    points: int


class TierChangeOut(BaseModel):
    ladder: str
    from_: str | None = Field(alias="from")
    to: str | None
    kind: str
    at: str

    model_config = ConfigDict(populate_by_name=True)


class ActivityOut(BaseModel):
    id: str
    type: str
    member_id: str
    program_id: int
    idempotency_key: str
    occurred_at: str
    effects: dict[str, int]
    points_earned: int
    earn: list[EarnPartOut]
    reverses: str | None
    tier_changes: list[dict[str, Any]]
    replayed: bool = False


class BatchOut(BaseModel):
    accepted: int
    duplicates: int
    results: list[ActivityOut]


# -- members ---------------------------------------------------------------------------


class MemberIn(Strict):
    enrolled_at: Instant


class MemberOut(BaseModel):
    id: int
    uuid: str
    member_id: str
    enrolled_at: datetime
    last_activity_at: datetime | None
    created_at: datetime


class LevelRef(BaseModel):
    id: int | None
    key: str
    name: str
    rank: int
    earn_multiplier: Decimal
    benefits: tuple[Benefit, ...]


class CriterionOut(BaseModel):
    metric: str
    window: Window
    window_label: str
    operator: str
    threshold: int
    current: int
    required: int
    remaining: int
    percentage: float
    met: bool


class ProgressOut(BaseModel):
    """Progress on a rule. The headline figures are the first criterion's (R6); every
    criterion is listed with its own metric, window and gap (R7)."""

    level: str
    mode: str
    metric: str
    window: str
    current: int
    required: int
    remaining: int
    percentage: float
    met: bool
    criteria: list[CriterionOut]


class AssignmentOut(BaseModel):
    level: str
    mode: str
    reason: str
    actor: str
    assigned_at: datetime
    expires_at: datetime | None


class ForecastOut(BaseModel):
    next_check_at: datetime | None = Field(description="When the level is next checked")
    grace_until: datetime | None = Field(description="End of a running grace period")
    projected_level: LevelRef | None = Field(
        description="The level the member would hold if the check ran on today's figures"
    )
    remaining_to_keep: list[CriterionOut] = Field(
        description="Each criterion of the rule checked at expiry, with what is still missing"
    )
    credit: int = Field(description="R18: overshoot carried toward the keep rule")


class LadderStatusOut(BaseModel):
    ladder: str
    ladder_id: int
    current_level: LevelRef | None
    previous_level: LevelRef | None
    next_level: LevelRef | None
    achieved_at: datetime | None
    expires_at: datetime | None
    check_due_at: datetime | None
    cycle_end: datetime | None = Field(
        default=None,
        description="End of the current validity cycle; for a permanent floor level, the "
        "anniversary its validity gives (E4)",
    )
    assignment: AssignmentOut | None
    progress: ProgressOut | None
    forecast: ForecastOut | None = Field(
        default=None, description="R19: the next check and what it would decide today"
    )
    to_keep: ProgressOut | None = Field(description="The rule checked at expiry (R16, R19)")


class StatusOut(BaseModel):
    member_id: str
    program_id: int
    as_of: datetime
    ladders: list[LadderStatusOut]


class HistoryEntryOut(BaseModel):
    id: str
    ladder: str
    from_level: str | None
    to_level: str | None
    kind: str
    source: str
    activity_id: int | None
    actor: str | None
    reason: str | None
    occurred_at: datetime
    recorded_at: datetime


class HistoryOut(BaseModel):
    member_id: str
    program_id: int
    entries: list[HistoryEntryOut]
