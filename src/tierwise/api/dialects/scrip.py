"""The Scrip dialect: tier definitions and participants' tier levels in Scrip's shapes.

Scrip calls our ladder a *tier* and our level a *level*. Programs, tiers, levels and
participants are named by UUID (ours), tiers and levels also by ``key``. Every request is
translated into an ordinary service call and every result into Scrip's JSON; no tier rule
lives here. The mapping table, the conversions (Go-style durations, money thresholds,
benefits) and the error table are in docs/dialects/scrip.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import NAMESPACE_URL, uuid5

from fastapi import APIRouter, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tierwise.api.auth import ProgramsRead, ProgramsWrite, RuntimeDep, TiersRead, TiersWrite
from tierwise.api.errors import ApiError
from tierwise.api.schemas import Instant
from tierwise.db.repos.programs import LadderRow
from tierwise.domain.errors import Conflict, NotFound
from tierwise.domain.ladder import (
    KEY_PATTERN,
    Benefit,
    BenefitType,
    Downgrade,
    DowngradePolicy,
    Ladder,
    Level,
    Rollover,
    Validity,
    ValidityType,
)
from tierwise.domain.metrics import COUNTER_PREFIX, BuiltinMetric, counter_metric, is_counter_name
from tierwise.domain.money import minor_unit_exponent, to_major
from tierwise.domain.program import Program
from tierwise.domain.state import AssignmentMode, TierState
from tierwise.domain.windows import LIFETIME, Window, WindowType
from tierwise.services import assignments as assignment_service
from tierwise.services import programs as programs_service
from tierwise.services import scrip_support as support
from tierwise.services import status as status_service
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.status import LadderStatus, MemberRef

PREFIX = "/compat/scrip"

router = APIRouter(prefix=PREFIX, tags=["dialect: scrip"], include_in_schema=True)

# -- errors ------------------------------------------------------------------------------

SCRIP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}
"""HTTP status -> Scrip ``code``. Our 422 (a well-formed request that breaks a rule) is
answered as Scrip answers invalid input: 400 ``bad_request``."""


def render_error(
    request: Request, status: int, code: str, message: str, details: dict[str, Any]
) -> JSONResponse:
    """Errors under this prefix: Scrip's ``{code, message, details}``."""
    del request
    if status == 422:
        status = 400
    scrip_code = SCRIP_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = {"code": scrip_code, "details": _error_details(code, details), "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _error_details(code: str, details: dict[str, Any]) -> dict[str, Any]:
    """Scrip's ``details``: for invalid fields ``{field, reason, message, fields[]}``
    (reason ``required`` or ``invalid``); otherwise ``reason`` is our stable code."""
    errors = details.get("errors")
    if code == "validation_error" and isinstance(errors, list) and errors:
        fields = [
            {
                "field": str(error.get("field", "")),
                "message": str(error.get("message", "")),
                "reason": "required" if error.get("type") == "missing" else "invalid",
            }
            for error in errors
            if isinstance(error, dict)
        ]
        return {**fields[0], "fields": fields}
    found: dict[str, Any] = {"reason": code}
    found.update(jsonable_encoder(details))
    return found


def bad(field: str, message: str, *, reason: str = "invalid", **extra: Any) -> ApiError:
    """A 400 about one input field, in Scrip's terms."""
    return ApiError(400, "bad_request", f"{field}: {message}", field=field, reason=reason, **extra)


# -- identifiers and timestamps ------------------------------------------------------------

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_KEY = re.compile(KEY_PATTERN)


def parse_uuid(value: str | None, field: str) -> str:
    """A UUID path or query value in canonical (lower-case) form, or a 400."""
    if value is None or value == "":
        raise bad(field, "is required", reason="required", expected="uuid")
    if not _UUID.match(value):
        raise bad(field, "must be a UUID", expected="uuid", received=value[:100])
    return value.lower()


def tier_key(key: str) -> str:
    """A tier key from the path; one that no ladder can have is simply not found."""
    if not _KEY.match(key):
        raise NotFound(f"no tier {key[:64]!r}", code="ladder_not_found")
    return key


def rfc3339(instant: datetime) -> str:
    """Scrip's timestamps: RFC 3339 in UTC, whole seconds, ``Z``."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- durations (Go-style) ----------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS: dict[str, Decimal] = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "μs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
DAY_SECONDS = 86_400
DAYS_PER_MONTH = 30
DAYS_PER_YEAR = 365
EXAMPLES = '"720h" (30 days = 1 month), "2160h" (3 months), "8760h" (365 days = 1 year)'


def duration_days(text: str, field: str) -> int:
    """A Go-style duration (``"8760h"``, ``"90h30m"``, ``"720h0m0s"``) as whole days."""
    rest = text.strip()
    if rest.startswith("+"):
        rest = rest[1:]
    total = Decimal(0)
    position = 0
    if not rest:
        raise bad(field, f"{text!r} is not a duration; send e.g. {EXAMPLES}", expected="duration")
    while position < len(rest):
        part = _DURATION_PART.match(rest, position)
        if part is None:
            raise bad(
                field,
                f"{text!r} is not a Go-style duration; send e.g. {EXAMPLES}",
                expected="duration",
                received=text[:64],
            )
        total += Decimal(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        position = part.end()
    if total <= 0 or total % DAY_SECONDS != 0:
        raise bad(
            field,
            f"{text!r} is not a positive whole number of days; the engine counts status "
            f"durations in days and months: send e.g. {EXAMPLES}",
            expected="whole days",
            received=text[:64],
        )
    return int(total // DAY_SECONDS)


def months_of(days: int, text: str, field: str) -> int:
    """Days of a PERIOD_BASED duration as months: 365 days = 12 months, 30 days = 1."""
    if days % DAYS_PER_YEAR == 0:
        months = days // DAYS_PER_YEAR * 12
    elif days % DAYS_PER_MONTH == 0:
        months = days // DAYS_PER_MONTH
    else:
        raise bad(
            field,
            f"{text!r} is {days} days, not whole months: PERIOD_BASED retention lasts whole "
            f"months, counted as 720h (30 days) each or 8760h (365 days) a year",
            expected="whole months",
            received=text[:64],
        )
    if months > 120:
        raise bad(field, f"{text!r} is longer than 120 months", expected="at most 87600h")
    return months


def months_duration(months: int) -> str:
    return f"{months // 12 * DAYS_PER_YEAR * 24}h" if months % 12 == 0 else f"{months * 720}h"


def days_duration(days: int) -> str:
    return f"{days * 24}h"


# -- counters, thresholds, benefits ------------------------------------------------------

BUILTIN_METRICS = frozenset(metric.value for metric in BuiltinMetric)


def metric_of(counter: str, field: str) -> str:
    """Scrip counter -> our metric: built-in names are ours, anything else (or an explicit
    ``counter:<name>``) is a custom counter."""
    if counter in BUILTIN_METRICS:
        return counter
    name = counter.removeprefix(COUNTER_PREFIX)
    if not is_counter_name(name):
        raise bad(
            field,
            f"{counter!r} is not a counter name: use one of {', '.join(sorted(BUILTIN_METRICS))} "
            "or a custom counter of lower-case letters, digits, '_', '.', '-' (up to 63)",
            received=counter[:80],
        )
    return counter_metric(name)


def counter_of(metric: str) -> str:
    """Our metric -> Scrip counter (a custom counter that shadows a built-in name keeps
    its ``counter:`` prefix so that it reads back as itself)."""
    if metric.startswith(COUNTER_PREFIX):
        name = metric.removeprefix(COUNTER_PREFIX)
        return metric if name in BUILTIN_METRICS else name
    return metric


def threshold_in(value: Decimal, metric: str, currency: str, field: str) -> int:
    """Scrip thresholds are numbers; spend is in major units (``2000`` = 2,000.00), our
    engine counts money in minor units and everything else in whole units (R8)."""
    scaled = value.scaleb(minor_unit_exponent(currency)) if metric == BuiltinMetric.SPEND else value
    if scaled != scaled.to_integral_value():
        what = f"{currency} amounts with at most {minor_unit_exponent(currency)} decimals"
        raise bad(
            field,
            f"{value} is not a whole number; {metric} thresholds are "
            + (what if metric == BuiltinMetric.SPEND else "whole numbers"),
        )
    return int(scaled)


def threshold_out(value: int, metric: str, currency: str) -> int | float:
    if metric != BuiltinMetric.SPEND:
        return value
    major = to_major(value, currency)
    return int(major) if major == major.to_integral_value() else float(major)


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def benefit_value(value: str | None) -> Any:
    """A stored benefit value as Scrip shows it: JSON numbers, booleans, null, objects and
    arrays come back as themselves, other text as a string; a benefit without a value
    (a plain perk from the native API) shows ``true``."""
    if value is None:
        return True
    try:
        parsed = json.loads(value, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return value
    return value if isinstance(parsed, str) else parsed


def benefits_out(benefits: Iterable[Benefit]) -> dict[str, Any]:
    return {benefit.name: benefit_value(benefit.value) for benefit in benefits}


def benefits_in(raw: dict[str, Any], previous: Iterable[Benefit], field: str) -> list[Benefit]:
    """Scrip's free-form ``benefits`` object -> our benefit list: one benefit per key, its
    value kept as text (non-strings as compact JSON). Known names keep their type."""
    types = {benefit.name: benefit.type for benefit in previous}
    if len(raw) > 100:
        raise bad(field, "at most 100 benefits per level")
    found: list[Benefit] = []
    for name, value in raw.items():
        if not 1 <= len(name) <= 200:
            raise bad(f"{field}.{name[:40]}", "benefit names are 1-200 characters")
        text = (
            value
            if isinstance(value, str)
            else json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        )
        if len(text) > 200:
            raise bad(f"{field}.{name}", "a benefit value takes at most 200 characters as JSON")
        found.append(Benefit(name=name, type=types.get(name, BenefitType.CUSTOM), value=text))
    return found


# -- request bodies ------------------------------------------------------------------------

MAX_DEPTH = 32


def _clean(value: Any) -> None:
    """Refuse NUL characters (PostgreSQL cannot store them), non-finite numbers and
    absurd nesting anywhere in a body, naming the place; iterative, so any depth is safe."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        field = ".".join(path) or "body"
        if len(path) > MAX_DEPTH:
            raise bad(field, f"the body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, str):
            if "\x00" in item:
                raise bad(field, "text must not contain NUL characters")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise bad(field, "numbers must be finite")
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and "\x00" in key:
                    raise bad(field, "names must not contain NUL characters")
                stack.append((inner, (*path, str(key))))
        elif isinstance(item, list):
            stack.extend((inner, (*path, str(index))) for index, inner in enumerate(item))


class ScripBody(BaseModel):
    """Scrip request bodies: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class ScripRequest(ScripBody):
    """A whole request body: also refuses unstorable text (the error names the place;
    it is raised past pydantic as our own 400)."""

    @model_validator(mode="before")
    @classmethod
    def _clean_input(cls, data: Any) -> Any:
        _clean(data)
        return data


class CriterionIn(ScripBody):
    counter: str = Field(min_length=1, max_length=72)
    operator: Literal[">=", ">", "==", "<=", "<"]
    threshold: Decimal = Field(ge=0, le=Decimal(10) ** 15, allow_inf_nan=False)


class QualificationIn(ScripBody):
    mode: Literal["ALL", "ANY"] = "ALL"
    criteria: list[CriterionIn] = Field(default_factory=list, max_length=20)


class LevelIn(ScripBody):
    key: str = Field(pattern=KEY_PATTERN)
    rank: int | None = Field(default=None, ge=1, le=1000)
    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    qualification: QualificationIn | None = None
    benefits: dict[str, Any] | None = None
    color: str | None = Field(default=None, max_length=32)
    icon_url: str | None = Field(default=None, max_length=2000)


class RetentionIn(ScripBody):
    mode: Literal["PERIOD_BASED", "ACTIVITY_REFRESH"] | None = None
    duration: str | None = Field(default=None, max_length=64)


class QualificationPeriodIn(ScripBody):
    type: Literal["CALENDAR_YEAR", "FIXED_YEAR", "NONE"] | None = None
    start_month: int | None = Field(default=None, ge=1, le=12)
    start_day: int | None = Field(default=None, ge=1, le=31)


class StatusValidityIn(ScripBody):
    extend_months: int | None = Field(default=None, ge=0, le=120)


class DowngradePolicyIn(ScripBody):
    mode: Literal["DROP_TO_QUALIFYING", "DROP_ONE", "HOLD"] | None = None
    grace_days: int | None = Field(default=None, ge=0, le=3650)
    min_level: str | None = Field(default=None, max_length=64)


class CountersIn(ScripBody):
    rollover: Literal["NONE", "EXCESS"] | None = None
    qualifying: list[str] | None = Field(default=None, max_length=50)


class LifecycleIn(ScripBody):
    retention: RetentionIn | None = None
    qualification_period: QualificationPeriodIn | None = None
    status_validity: StatusValidityIn | None = None
    downgrade_policy: DowngradePolicyIn | None = None
    counters: CountersIn | None = None


class TierIn(ScripRequest):
    key: str = Field(pattern=KEY_PATTERN)
    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    levels: list[LevelIn] = Field(min_length=1, max_length=50)
    lifecycle: LifecycleIn | None = None

    @field_validator("levels")
    @classmethod
    def _unique_keys(cls, levels: list[LevelIn]) -> list[LevelIn]:
        return _unique(levels)


class TierPatch(ScripRequest):
    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    levels: list[LevelIn] | None = Field(default=None, max_length=50)
    lifecycle: LifecycleIn | None = None

    @field_validator("levels")
    @classmethod
    def _unique_keys(cls, levels: list[LevelIn] | None) -> list[LevelIn] | None:
        return None if levels is None else _unique(levels)


def _unique(levels: list[LevelIn]) -> list[LevelIn]:
    seen: set[str] = set()
    for level in levels:
        if level.key in seen:
            raise ValueError(f"level key {level.key!r} is given twice")
        seen.add(level.key)
    return levels


class ParticipantTierIn(ScripRequest):
    level: str = Field(min_length=1, max_length=100)
    expires_at: Instant | None = None


def _given(model: BaseModel | None) -> dict[str, Any]:
    """The fields a client actually sent (``None`` values included)."""
    if model is None:
        return {}
    return {name: getattr(model, name) for name in model.model_fields_set}


# -- reading our ladder as a Scrip tier ----------------------------------------------------

POLICY_OUT: dict[DowngradePolicy, str] = {
    DowngradePolicy.TO_QUALIFYING: "DROP_TO_QUALIFYING",
    DowngradePolicy.DROP_ONE: "DROP_ONE",
    DowngradePolicy.HOLD: "HOLD",
    DowngradePolicy.TO_FLOOR: "DROP_TO_QUALIFYING",
}
POLICY_IN: dict[str, DowngradePolicy] = {
    "DROP_TO_QUALIFYING": DowngradePolicy.TO_QUALIFYING,
    "DROP_ONE": DowngradePolicy.DROP_ONE,
    "HOLD": DowngradePolicy.HOLD,
}
YEARLY = (
    ValidityType.CALENDAR_YEAR,
    ValidityType.FIXED_YEAR,
    ValidityType.ENROLMENT_ANNIVERSARY,
    ValidityType.FIXED_DATE,
)


def _windows(ladder: Ladder) -> set[Window]:
    return {
        criterion.window
        for level in ladder.levels
        for rule in (level.attain, level.maintain)
        if rule is not None
        for criterion in rule.criteria
    }


def is_rules_only(ladder: Ladder) -> bool:
    """Scrip's ``lifecycle: {}``: no expiry, default policies, no floor, lifetime counters."""
    return (
        ladder.validity.type is ValidityType.NONE
        and ladder.downgrade == Downgrade()
        and ladder.rollover is Rollover.RESET
        and ladder.floor is None
        and _windows(ladder) <= {LIFETIME}
    )


def _period_of_window(window: Window) -> dict[str, Any] | None:
    match window.type:
        case WindowType.LIFETIME:
            return {"type": "NONE"}
        case WindowType.CALENDAR_YEAR:
            return {"type": "CALENDAR_YEAR"}
        case WindowType.FIXED_YEAR:
            return {"start_day": window.day, "start_month": window.month, "type": "FIXED_YEAR"}
        case _:
            return None


def qualification_period_out(ladder: Ladder) -> dict[str, Any]:
    validity = ladder.validity
    if validity.type is ValidityType.CALENDAR_YEAR:
        return {"type": "CALENDAR_YEAR"}
    if validity.type is ValidityType.FIXED_YEAR:
        return {"start_day": validity.day, "start_month": validity.month, "type": "FIXED_YEAR"}
    windows = _windows(ladder)
    if len(windows) == 1:
        found = _period_of_window(next(iter(windows)))
        if found is not None:
            return found
    return {"type": "NONE"}


def retention_out(validity: Validity) -> dict[str, Any]:
    if validity.type is ValidityType.FIXED_MONTHS and validity.months is not None:
        return {"duration": months_duration(validity.months), "mode": "PERIOD_BASED"}
    if validity.type is ValidityType.INACTIVITY and validity.inactivity_days is not None:
        return {"duration": days_duration(validity.inactivity_days), "mode": "ACTIVITY_REFRESH"}
    if validity.type in YEARLY:
        return {"duration": months_duration(12), "mode": "PERIOD_BASED"}
    return {"mode": "PERIOD_BASED"}


def counters_used(ladder: Ladder) -> list[str]:
    return sorted({counter_of(metric) for metric, _ in ladder.measure_keys()})


def lifecycle_out(ladder: Ladder) -> dict[str, Any]:
    if is_rules_only(ladder):
        return {}
    downgrade: dict[str, Any] = {
        "grace_days": ladder.downgrade.grace_days,
        "mode": POLICY_OUT[ladder.downgrade.policy],
    }
    if ladder.floor is not None:
        downgrade["min_level"] = ladder.floor.key
    return {
        "counters": {
            "qualifying": counters_used(ladder),
            "rollover": "EXCESS" if ladder.rollover is Rollover.CARRY_EXCESS else "NONE",
        },
        "downgrade_policy": downgrade,
        "qualification_period": qualification_period_out(ladder),
        "retention": retention_out(ladder.validity),
        "status_validity": {"extend_months": ladder.validity.extend_months or 0},
    }


def qualification_out(level: Level, currency: str) -> dict[str, Any]:
    if level.attain is None:
        return {}
    return {
        "criteria": [
            {
                "counter": counter_of(criterion.metric),
                "operator": criterion.operator.value,
                "threshold": threshold_out(criterion.threshold, criterion.metric, currency),
            }
            for criterion in level.attain.criteria
        ],
        "mode": level.attain.mode.value.upper(),
    }


def level_out(
    level: Level, meta: support.LevelMeta | None, row: LadderRow, currency: str
) -> dict[str, Any]:
    body: dict[str, Any] = {"benefits": benefits_out(level.benefits)}
    if level.color is not None:
        body["color"] = level.color
    body["created_at"] = rfc3339(meta.created_at if meta else row.created_at)
    body["display_name"] = level.name
    if level.icon_url is not None:
        body["icon_url"] = level.icon_url
    body["id"] = meta.uuid if meta else str(uuid5(NAMESPACE_URL, f"{row.uuid}/{level.key}"))
    body["key"] = level.key
    body["qualification"] = qualification_out(level, currency)
    body["rank"] = level.rank
    body["updated_at"] = rfc3339(meta.updated_at if meta else row.updated_at)
    return body


def tier_out(
    program: Program, row: LadderRow, meta: dict[str, support.LevelMeta]
) -> dict[str, Any]:
    ladder = row.definition
    assert ladder is not None
    return {
        "created_at": rfc3339(row.created_at),
        "display_name": ladder.name,
        "id": row.uuid,
        "key": row.key,
        "levels": [
            level_out(level, meta.get(level.key), row, program.currency) for level in ladder.levels
        ],
        "lifecycle": lifecycle_out(ladder),
        "program_id": program.uuid,
        "updated_at": rfc3339(row.updated_at),
    }


async def render_tier(rt: Runtime, program: Program, row: LadderRow) -> dict[str, Any]:
    meta = await support.levels_meta(rt, [row])
    return tier_out(program, row, meta.get(row.id, {}))


# -- writing a Scrip tier into our ladder ----------------------------------------------------


def _window(period: dict[str, Any], field: str) -> Window:
    kind = period.get("type") or "NONE"
    month, day = period.get("start_month"), period.get("start_day")
    if kind != "FIXED_YEAR":
        if month is not None or day is not None:
            raise bad(f"{field}.type", "start_month and start_day go with FIXED_YEAR only")
        return Window(type=WindowType.CALENDAR_YEAR) if kind == "CALENDAR_YEAR" else LIFETIME
    if month is None or day is None:
        raise bad(
            f"{field}.start_month" if month is None else f"{field}.start_day",
            "FIXED_YEAR needs start_month and start_day",
            reason="required",
        )
    if day > (29 if month == 2 else 30 if month in (4, 6, 9, 11) else 31):
        raise bad(f"{field}.start_day", f"month {month} has no day {day}")
    return Window(type=WindowType.FIXED_YEAR, month=month, day=day)


def _validity(lifecycle: dict[str, Any], window: Window) -> Validity:
    """retention + qualification_period + status_validity -> our validity (R14)."""
    retention = lifecycle.get("retention") or {}
    mode = retention.get("mode") or "PERIOD_BASED"
    duration = retention.get("duration")
    extend = (lifecycle.get("status_validity") or {}).get("extend_months") or None
    field = "lifecycle.retention.duration"
    if mode == "ACTIVITY_REFRESH":
        if duration is None:
            raise bad(field, "ACTIVITY_REFRESH retention needs a duration", reason="required")
        days = duration_days(duration, field)
        if days > 3660:
            raise bad(field, f"{duration!r} is longer than 3660 days")
        if extend:
            raise bad(
                "lifecycle.status_validity.extend_months",
                "extends a qualification period's end, which ACTIVITY_REFRESH retention "
                "does not have",
            )
        return Validity(type=ValidityType.INACTIVITY, inactivity_days=days)
    if window.type in (WindowType.CALENDAR_YEAR, WindowType.FIXED_YEAR):
        if duration is not None and duration_days(duration, field) != DAYS_PER_YEAR:
            raise bad(
                field,
                "with a CALENDAR_YEAR or FIXED_YEAR qualification period the status lasts "
                'to the period\'s end: omit the duration or send "8760h"',
            )
        if window.type is WindowType.CALENDAR_YEAR:
            return Validity(type=ValidityType.CALENDAR_YEAR, extend_months=extend)
        return Validity(
            type=ValidityType.FIXED_YEAR, month=window.month, day=window.day, extend_months=extend
        )
    if extend:
        raise bad(
            "lifecycle.status_validity.extend_months",
            "extends a qualification period's end: set qualification_period to "
            "CALENDAR_YEAR or FIXED_YEAR",
        )
    if duration is None:
        return Validity()
    return Validity(
        type=ValidityType.FIXED_MONTHS,
        months=months_of(duration_days(duration, field), duration, field),
    )


def _rule(
    qualification: QualificationIn, window: Window, currency: str, field: str
) -> dict[str, Any] | None:
    if not qualification.criteria:
        return None
    criteria = []
    for index, criterion in enumerate(qualification.criteria):
        where = f"{field}.criteria.{index}"
        metric = metric_of(criterion.counter, f"{where}.counter")
        criteria.append(
            {
                "metric": metric,
                "window": window.model_dump(mode="json", exclude_none=True),
                "operator": criterion.operator,
                "threshold": threshold_in(
                    criterion.threshold, metric, currency, f"{where}.threshold"
                ),
            }
        )
    return {"mode": qualification.mode.lower(), "criteria": criteria}


def _merge_level(
    current: dict[str, Any] | None,
    item: LevelIn,
    index: int,
    window: Window,
    currency: str,
) -> dict[str, Any]:
    """One Scrip level over our level (or a new one); fields not sent stay as they are."""
    field = f"levels.{index}"
    level: dict[str, Any]
    if current is None:
        if item.rank is None:
            raise bad(f"{field}.rank", "a new level needs a rank", reason="required")
        level = {"key": item.key, "name": item.key, "rank": item.rank}
    else:
        level = dict(current)
    if item.rank is not None:
        level["rank"] = item.rank
    if item.display_name is not None:
        level["name"] = item.display_name
    if item.color is not None:
        level["color"] = item.color or None
    if item.icon_url is not None:
        level["icon_url"] = item.icon_url or None
    if item.benefits is not None:
        previous = [Benefit.model_validate(b) for b in level.get("benefits", [])]
        level["benefits"] = [
            b.model_dump(mode="json")
            for b in benefits_in(item.benefits, previous, f"{field}.benefits")
        ]
    if item.qualification is not None:
        level["attain"] = _rule(item.qualification, window, currency, f"{field}.qualification")
    return level


def _set_windows(data: dict[str, Any], window: Window) -> None:
    dumped = window.model_dump(mode="json", exclude_none=True)
    for level in data["levels"]:
        for part in ("attain", "maintain"):
            rule = level.get(part)
            if rule:
                for criterion in rule["criteria"]:
                    criterion["window"] = dict(dumped)


def _apply_downgrade(data: dict[str, Any], policy: dict[str, Any]) -> None:
    mode = policy.get("mode") or "DROP_TO_QUALIFYING"
    data["downgrade"] = {
        "policy": POLICY_IN[mode].value,
        "grace_days": policy.get("grace_days") or 0,
    }
    min_level = policy.get("min_level")
    levels: list[dict[str, Any]] = data["levels"]
    for level in levels:
        level["is_floor"] = False
    if not min_level:
        return
    field = "lifecycle.downgrade_policy.min_level"
    target = next((level for level in levels if level["key"] == min_level), None)
    if target is None:
        raise bad(field, f"the tier has no level {min_level!r}", received=min_level[:64])
    if target["rank"] != min(level["rank"] for level in levels):
        raise bad(
            field,
            "the engine's floor level must be the tier's lowest-ranked level (every "
            "participant holds at least it); a minimum above the lowest level is not supported",
        )
    target["is_floor"] = True


def _apply_counters(data: dict[str, Any], counters: dict[str, Any]) -> None:
    data["rollover"] = (
        Rollover.CARRY_EXCESS.value
        if counters.get("rollover") == "EXCESS"
        else Rollover.RESET.value
    )
    used = {
        criterion["metric"]
        for level in data["levels"]
        for part in ("attain", "maintain")
        if level.get(part)
        for criterion in level[part]["criteria"]
    }
    for index, name in enumerate(counters.get("qualifying") or []):
        field = f"lifecycle.counters.qualifying.{index}"
        if metric_of(name, field) not in used:
            raise bad(
                field,
                f"no qualification criterion uses counter {name!r}; the engine rolls over "
                "the counters the criteria use",
                received=name[:80],
            )


def _ladder(data: dict[str, Any]) -> Ladder:
    """Our ladder from the translated fields; a rule it breaks is a 400 naming the field."""
    try:
        return Ladder.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error.get("loc", ()))
        raise bad(field or "body", str(error.get("msg", "invalid"))) from None


def _lifecycle_dict(lifecycle: LifecycleIn | None) -> dict[str, Any]:
    if lifecycle is None:
        return {}
    return {
        part: _given(getattr(lifecycle, part))
        for part in lifecycle.model_fields_set
        if getattr(lifecycle, part) is not None
    }


def _apply_lifecycle(
    data: dict[str, Any], lifecycle: dict[str, Any], touched: set[str], window: Window
) -> None:
    if touched & {"retention", "qualification_period", "status_validity"}:
        data["validity"] = _validity(lifecycle, window).model_dump(mode="json", exclude_none=True)
    if "qualification_period" in touched:
        _set_windows(data, window)
    if "downgrade_policy" in touched:
        _apply_downgrade(data, lifecycle.get("downgrade_policy") or {})
    if "counters" in touched:
        _apply_counters(data, lifecycle.get("counters") or {})


ALL_PARTS = {"retention", "qualification_period", "status_validity", "downgrade_policy", "counters"}


def ladder_from_create(body: TierIn, currency: str) -> Ladder:
    """POST body -> our ladder. No lifecycle (or ``{}``) is Scrip's rules-only tier."""
    lifecycle = _lifecycle_dict(body.lifecycle)
    window = _window(lifecycle.get("qualification_period") or {}, "lifecycle.qualification_period")
    data: dict[str, Any] = {
        "key": body.key,
        "name": body.display_name or body.key,
        "levels": [
            _merge_level(None, item, index, window, currency)
            for index, item in enumerate(body.levels)
        ],
    }
    _apply_lifecycle(data, lifecycle, ALL_PARTS, window)
    return _ladder(data)


RULES_ONLY_SHOWN: dict[str, dict[str, Any]] = {
    "counters": {"rollover": "NONE"},
    "downgrade_policy": {"grace_days": 0, "mode": "DROP_TO_QUALIFYING"},
    "qualification_period": {"type": "NONE"},
    "retention": {"mode": "PERIOD_BASED"},
    "status_validity": {"extend_months": 0},
}
"""What a rules-only tier's lifecycle parts mean, for merging a PATCH over them."""


def _merged_lifecycle(current: Ladder, patch: LifecycleIn) -> tuple[dict[str, Any], set[str]]:
    """The Scrip lifecycle after a PATCH and the parts it touched. ``{}`` clears it
    (rules-only); a part sent is merged field by field over what GET shows; a part
    omitted or null is left as it is."""
    if not patch.model_fields_set:
        return {}, set(ALL_PARTS)
    sent = _lifecycle_dict(patch)
    if not sent:
        return {}, set()
    shown = lifecycle_out(current) or RULES_ONLY_SHOWN
    merged = {part: {**shown.get(part, {}), **sent.get(part, {})} for part in ALL_PARTS}
    if "qualifying" not in sent.get("counters", {}):
        merged["counters"].pop("qualifying", None)  # derived from the criteria on read
    period = sent.get("qualification_period", {})
    if period.get("type") not in (None, "FIXED_YEAR"):
        for name in ("start_month", "start_day"):
            if name not in period:
                merged["qualification_period"].pop(name, None)
    return merged, set(sent)


def ladder_from_patch(current: Ladder, body: TierPatch, currency: str) -> Ladder:
    """PATCH body over our live ladder: levels are upserted by key, lifecycle parts merged;
    whatever the body does not name (and native-only settings) stays as it is."""
    data = current.model_dump(mode="json")
    if body.display_name is not None:
        data["name"] = body.display_name
    lifecycle, touched = (
        _merged_lifecycle(current, body.lifecycle) if body.lifecycle is not None else ({}, set())
    )
    period = (
        lifecycle.get("qualification_period") or {}
        if "qualification_period" in touched
        else qualification_period_out(current)
    )
    window = _window(period, "lifecycle.qualification_period")
    if body.levels:
        by_key = {level["key"]: level for level in data["levels"]}
        for index, item in enumerate(body.levels):
            by_key[item.key] = _merge_level(by_key.get(item.key), item, index, window, currency)
        data["levels"] = sorted(by_key.values(), key=lambda level: int(level["rank"]))
        ranks: dict[int, str] = {}
        for level in data["levels"]:
            if level["rank"] in ranks:
                raise Conflict(
                    f"levels {ranks[level['rank']]!r} and {level['key']!r} would share rank "
                    f"{level['rank']}",
                    code="rank_conflict",
                    field="levels",
                )
            ranks[level["rank"]] = level["key"]
    _apply_lifecycle(data, lifecycle, touched, window)
    return _ladder(data)


# -- participants' levels -----------------------------------------------------------------


def _expiry(state: TierState) -> datetime | None:
    """When the participant's level ends: a pinned assignment's expiry, else the earlier
    of the level's validity and any assignment's expiry."""
    assignment = state.assignment
    if assignment is not None and assignment.mode is AssignmentMode.PIN:
        return assignment.expires_at
    candidates = [
        instant
        for instant in (state.expires_at, assignment.expires_at if assignment else None)
        if instant is not None
    ]
    return min(candidates) if candidates else None


def participant_tier_out(item: LadderStatus, *, with_key: bool = False) -> dict[str, Any]:
    level = item.current
    assert level is not None
    body: dict[str, Any] = {}
    if item.state.achieved_at is not None:
        body["acquired_at"] = rfc3339(item.state.achieved_at)
    body["benefits"] = benefits_out(level.benefits)
    expiry = _expiry(item.state)
    if expiry is not None:
        body["expires_at"] = rfc3339(expiry)
    if with_key:
        body["key"] = item.ladder.key
    body["level"] = level.key
    body["rank"] = level.rank
    return body


async def _participant_tier(
    rt: Runtime, caller: Caller, participant: str, program: Program, key: str
) -> dict[str, Any]:
    found = await status_service.member_status(
        rt, caller, participant, program_id=program.id, ladder_key=key, by=MemberRef.UUID
    )
    item = found.ladders[0]
    if item.current is None:
        raise NotFound(f"participant {participant} holds no level on tier {key!r}", code="no_level")
    return participant_tier_out(item)


# -- routes ----------------------------------------------------------------------------------

PROGRAM_ID = "programId"
ASSIGNMENT_REASON = "set through the Scrip API"


async def _program(rt: Runtime, caller: Caller, value: str | None, field: str) -> Program:
    return await support.program_by_uuid(rt, caller, parse_uuid(value, field))


async def _live(rt: Runtime, caller: Caller, program: Program, key: str) -> LadderRow:
    row = await programs_service.read_ladder(rt, caller, program.id, tier_key(key))
    if row.definition is None:
        raise NotFound(f"tier {key!r} has no published definition", code="ladder_not_found")
    return row


def _cursor(row: LadderRow) -> str:
    return base64.urlsafe_b64encode(row.uuid.encode()).decode().rstrip("=")


def _after(rows: list[LadderRow], cursor: str) -> int:
    try:
        target = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        target = ""
    for index, row in enumerate(rows):
        if row.uuid == target:
            return index + 1
    raise bad("cursor", "is not a cursor this list returned", reason="invalid")


@router.get("/v1/programs/{program_id}/tiers", summary="List tiers")
async def list_tiers(
    rt: RuntimeDep,
    caller: ProgramsRead,
    program_id: str,
    limit: int = Query(default=50, ge=1, le=100),
    cursor: str | None = Query(default=None, max_length=200),
) -> JSONResponse:
    """``{"data": [tier…], "pagination": {"has_more", "next_cursor"}}``, oldest tier first."""
    program = await _program(rt, caller, program_id, PROGRAM_ID)
    rows = [
        row
        for row in await programs_service.list_ladders(rt, caller, program.id)
        if row.definition is not None
    ]
    start = _after(rows, cursor) if cursor else 0
    page = rows[start : start + limit]
    has_more = start + limit < len(rows)
    meta = await support.levels_meta(rt, page)
    return JSONResponse(
        {
            "data": [tier_out(program, row, meta.get(row.id, {})) for row in page],
            "pagination": {
                "has_more": has_more,
                "next_cursor": _cursor(page[-1]) if has_more and page else None,
            },
        }
    )


@router.post("/v1/programs/{program_id}/tiers", status_code=201, summary="Create a tier")
async def create_tier(
    body: TierIn, rt: RuntimeDep, caller: ProgramsWrite, program_id: str
) -> JSONResponse:
    """A new ladder from a Scrip tier, published at once."""
    program = await _program(rt, caller, program_id, PROGRAM_ID)
    ladder = ladder_from_create(body, program.currency)
    row = await programs_service.create_ladder(rt, caller, program.id, ladder)
    return JSONResponse(await render_tier(rt, program, row), status_code=201)


@router.get("/v1/programs/{program_id}/tiers/{key}", summary="Get a tier")
async def get_tier(rt: RuntimeDep, caller: ProgramsRead, program_id: str, key: str) -> JSONResponse:
    program = await _program(rt, caller, program_id, PROGRAM_ID)
    row = await _live(rt, caller, program, key)
    return JSONResponse(await render_tier(rt, program, row))


@router.patch("/v1/programs/{program_id}/tiers/{key}", summary="Update a tier")
async def update_tier(
    body: TierPatch, rt: RuntimeDep, caller: ProgramsWrite, program_id: str, key: str
) -> JSONResponse:
    """A partial update, published at once as a new live version of the ladder."""
    program = await _program(rt, caller, program_id, PROGRAM_ID)
    row = await _live(rt, caller, program, key)
    assert row.definition is not None
    ladder = ladder_from_patch(row.definition, body, program.currency)
    if ladder != row.definition:
        row = await programs_service.replace_ladder(rt, caller, program.id, row.key, ladder)
    return JSONResponse(await render_tier(rt, program, row))


@router.get("/v1/participants/{participant_id}/state/tiers", summary="List participant tiers")
async def list_participant_tiers(
    rt: RuntimeDep,
    caller: TiersRead,
    participant_id: str,
    program_id: str | None = Query(default=None, max_length=100),
) -> JSONResponse:
    """``{"data": [{acquired_at, benefits, expires_at, key, level, rank}]}``: one entry
    per tier on which the participant holds a level."""
    participant = parse_uuid(participant_id, "id")
    program = await _program(rt, caller, program_id, "program_id")
    found = await status_service.member_status(
        rt, caller, participant, program_id=program.id, by=MemberRef.UUID
    )
    return JSONResponse(
        {
            "data": [
                participant_tier_out(item, with_key=True)
                for item in found.ladders
                if item.current is not None
            ]
        }
    )


@router.get("/v1/participants/{participant_id}/state/tiers/{key}", summary="Get participant tier")
async def get_participant_tier(
    rt: RuntimeDep,
    caller: TiersRead,
    participant_id: str,
    key: str,
    program_id: str | None = Query(default=None, max_length=100),
) -> JSONResponse:
    participant = parse_uuid(participant_id, "id")
    program = await _program(rt, caller, program_id, "program_id")
    return JSONResponse(await _participant_tier(rt, caller, participant, program, tier_key(key)))


@router.put("/v1/participants/{participant_id}/state/tiers/{key}", summary="Set participant tier")
async def set_participant_tier(
    body: ParticipantTierIn,
    rt: RuntimeDep,
    caller: TiersWrite,
    participant_id: str,
    key: str,
    program_id: str | None = Query(default=None, max_length=100),
) -> JSONResponse:
    """A manual assignment in ``pin`` mode (R20), removed at ``expires_at`` by the sweep."""
    participant = parse_uuid(participant_id, "id")
    program = await _program(rt, caller, program_id, "program_id")
    member = await support.member_by_uuid(rt, caller, participant)
    await assignment_service.assign(
        rt,
        caller,
        member.external_id,
        level_key=body.level,
        mode=AssignmentMode.PIN,
        reason=ASSIGNMENT_REASON,
        ladder_key=tier_key(key),
        program_id=program.id,
        expires_at=body.expires_at,
    )
    return JSONResponse(await _participant_tier(rt, caller, participant, program, key))


@router.delete(
    "/v1/participants/{participant_id}/state/tiers/{key}",
    status_code=204,
    summary="Remove participant tier",
)
async def remove_participant_tier(
    rt: RuntimeDep,
    caller: TiersWrite,
    participant_id: str,
    key: str,
    program_id: str | None = Query(default=None, max_length=100),
) -> Response:
    """Removes the manual assignment and re-evaluates the participant at once (R21)."""
    participant = parse_uuid(participant_id, "id")
    program = await _program(rt, caller, program_id, "program_id")
    member = await support.member_by_uuid(rt, caller, participant)
    await assignment_service.unassign(
        rt,
        caller,
        member.external_id,
        ladder_key=tier_key(key),
        program_id=program.id,
        reason="removed through the Scrip API",
    )
    return Response(status_code=204)
