"""The Yuko dialect: Yuko's public tier API under ``/compat/yuko`` (docs/dialects/yuko.md).

Yuko addresses a customer by the platform customer id (our member external id), wraps
payloads in ``data``, and names the tier metric ``total_earned_points`` or (sic)
``total_amount_spents``. It sees the tenant's default program and that program's first
ladder. Only translation happens here: levels, progress and history come from the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tierwise.api.auth import RuntimeDep, TiersRead
from tierwise.db.repos.members import ChangeRow
from tierwise.domain.errors import NotFound
from tierwise.domain.ladder import Level
from tierwise.domain.state import ChangeKind
from tierwise.services import dialect_reads as reads
from tierwise.services.status import MemberRef, member_history

PREFIX = "/compat/yuko"

router = APIRouter(prefix=PREFIX, tags=["dialect: yuko"], include_in_schema=True)

THRESHOLD_TYPES = {"points_earned": "total_earned_points", "spend": "total_amount_spents"}
"""Yuko's names for our metrics; any other metric keeps our name (no Yuko counterpart)."""

MAX_CUSTOMER_ID = 128


# -- response shapes ------------------------------------------------------------------------


class YukoBenefit(BaseModel):
    name: str
    benefit_type: str = Field(
        description="fixed_discount | percentage_discount | free_shipping | multiplier "
        "(our `custom` benefits keep the value `custom`)"
    )
    benefit_value: str | None


class YukoTier(BaseModel):
    id: str = Field(description="The level's UUID (stable across ladder versions)")
    name: str
    threshold_value: int = Field(description="Threshold of the first attain criterion")
    multiplier: float = Field(description="The level's earn multiplier")
    icon_url: str | None
    benefits: list[YukoBenefit]


class YukoNextTier(BaseModel):
    """The next tier, with the attributes the page lists for it (no ``icon_url``)."""

    id: str
    name: str
    threshold_value: int
    multiplier: float
    benefits: list[YukoBenefit]


class YukoProgress(BaseModel):
    current_value: int
    required_value: int
    remaining_value: int
    progress_percentage: float = Field(description="Capped at 100, 2 decimals")
    threshold_type: str = Field(description="total_earned_points | total_amount_spents")


class YukoCustomerTier(BaseModel):
    current_tier: YukoTier | None
    next_tier: YukoNextTier | None
    progress_to_next_tier: YukoProgress | None


class YukoCustomerTierOut(BaseModel):
    data: YukoCustomerTier


class YukoTiersOut(BaseModel):
    data: list[YukoTier]


class YukoMembership(BaseModel):
    tier: YukoTier
    status: Literal["active", "ended"]
    started_at: str = Field(description="ISO 8601, UTC")
    ended_at: str | None
    expires_at: str | None = Field(description="When the active membership lapses unless kept")
    assigned: bool = Field(description="The membership began with a manual assignment")


class YukoMembershipsOut(BaseModel):
    data: list[YukoMembership]


class YukoErrorBody(BaseModel):
    code: str
    message: str


class YukoError(BaseModel):
    error: YukoErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": YukoError, "description": description}
    for status, description in (
        (400, "A required query parameter is missing or invalid"),
        (401, "Missing or wrong token"),
        (403, "The token lacks the tiers:read scope"),
        (404, "Unknown customer"),
    )
}


# -- errors ---------------------------------------------------------------------------------

CODES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
}
CODES_BY_NATIVE_CODE = {
    "member_not_found": "customer_not_found",
    "missing_scope": "insufficient_scope",
    "validation_error": "invalid_request",
}


def render_error(
    request: Request, status: int, code: str, message: str, details: dict[str, Any]
) -> JSONResponse:
    """Errors under this prefix: ``{"error": {"code", "message"}}``. A request that fails
    validation (e.g. no ``customer_id``) is a 400 ``invalid_request``."""
    del request, details
    if status == 422:
        status = 400
    yuko_code = CODES_BY_NATIVE_CODE.get(code) or CODES_BY_STATUS.get(status, code)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"code": yuko_code, "message": message}}, status_code=status, headers=headers
    )


# -- translation ----------------------------------------------------------------------------


def _benefits(level: Level) -> list[YukoBenefit]:
    return [
        YukoBenefit(name=b.name, benefit_type=b.type.value, benefit_value=b.value)
        for b in level.benefits
    ]


def _threshold(level: Level, currency: str) -> int:
    metric = reads.first_metric(level.attain)
    return reads.whole_units(metric, reads.first_threshold(level.attain), currency, round_up=True)


def tier_out(catalogue: reads.Catalogue, level: Level) -> YukoTier:
    return YukoTier(
        id=catalogue.identity(level).uuid,
        name=level.name,
        threshold_value=_threshold(level, catalogue.program.currency),
        multiplier=float(level.earn_multiplier),
        icon_url=level.icon_url,
        benefits=_benefits(level),
    )


def next_tier_out(catalogue: reads.Catalogue, level: Level) -> YukoNextTier:
    return YukoNextTier(
        id=catalogue.identity(level).uuid,
        name=level.name,
        threshold_value=_threshold(level, catalogue.program.currency),
        multiplier=float(level.earn_multiplier),
        benefits=_benefits(level),
    )


def progress_out(view: reads.MemberView) -> YukoProgress | None:
    item = view.standing
    if item is None or item.next is None or item.progress is None:
        return None
    head = item.progress.headline
    metric = head.criterion.metric
    currency = view.status.program.currency
    return YukoProgress(
        current_value=reads.whole_units(metric, head.current, currency, round_up=False),
        required_value=reads.whole_units(metric, head.required, currency, round_up=True),
        remaining_value=reads.whole_units(metric, head.remaining, currency, round_up=True),
        progress_percentage=float(head.percentage),
        threshold_type=THRESHOLD_TYPES.get(metric, metric),
    )


def _stamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _customer_ref(customer_id: str) -> str:
    """A customer id that cannot name a member is an unknown customer (404)."""
    if not customer_id or len(customer_id) > MAX_CUSTOMER_ID or "\x00" in customer_id:
        raise NotFound(f"no member {customer_id[:MAX_CUSTOMER_ID]!r}", code="member_not_found")
    return customer_id


@dataclass(slots=True)
class _Period:
    level_key: str
    started_at: datetime
    ended_at: datetime | None
    assigned: bool


def _periods(view: reads.MemberView, changes: list[ChangeRow]) -> list[_Period]:
    """Membership periods from the level history (oldest first): a renewal continues the
    period, any other change ends it and, when it lands on a level, starts the next."""
    periods: list[_Period] = []
    for row in changes:
        change = row.change
        if change.kind is ChangeKind.RENEWED or (
            change.from_level == change.to_level and periods and periods[-1].ended_at is None
        ):
            if change.kind is ChangeKind.ASSIGNED:
                periods[-1].assigned = True
            continue
        if periods and periods[-1].ended_at is None:
            periods[-1].ended_at = change.at
        if change.to_level is not None:
            periods.append(
                _Period(change.to_level, change.at, None, change.kind is ChangeKind.ASSIGNED)
            )
    item = view.standing
    current = None if item is None else item.current
    if item is not None and current is not None:
        last = periods[-1] if periods else None
        if last is None or last.ended_at is not None or last.level_key != current.key:
            if last is not None and last.ended_at is None:
                last.ended_at = item.state.achieved_at
            periods.append(
                _Period(
                    current.key,
                    item.state.achieved_at or view.status.member.enrolled_at,
                    None,
                    item.state.assignment is not None,
                )
            )
    return periods


# -- endpoints ------------------------------------------------------------------------------

CustomerId = Query(
    description="The platform customer id (our member id)", examples=["9049402769586"]
)


@router.get(
    "/api/v1/public/customers/tier",
    response_model=YukoCustomerTierOut,
    responses=ERRORS,
    summary="Get customer tier",
)
async def customer_tier(
    rt: RuntimeDep, caller: TiersRead, customer_id: str = CustomerId
) -> YukoCustomerTierOut:
    """The customer's current tier, next tier and progress toward it (seed 000)."""
    view = await reads.member_view(rt, caller, _customer_ref(customer_id), MemberRef.EXTERNAL)
    item = view.standing
    catalogue = view.catalogue
    return YukoCustomerTierOut(
        data=YukoCustomerTier(
            current_tier=None
            if item is None or item.current is None
            else tier_out(catalogue, item.current),
            next_tier=None
            if item is None or item.next is None
            else next_tier_out(catalogue, item.next),
            progress_to_next_tier=progress_out(view),
        )
    )


@router.get(
    "/api/v1/public/tiers", response_model=YukoTiersOut, responses=ERRORS, summary="List tiers"
)
async def list_tiers(rt: RuntimeDep, caller: TiersRead) -> YukoTiersOut:
    """Every tier of the default program's first ladder, sorted by ``threshold_value``."""
    catalogue = await reads.default_catalogue(rt, caller)
    tiers = [(level.rank, tier_out(catalogue, level)) for level in catalogue.levels]
    tiers.sort(key=lambda pair: (pair[1].threshold_value, pair[0]))
    return YukoTiersOut(data=[tier for _, tier in tiers])


@router.get(
    "/api/v1/public/customers/memberships",
    response_model=YukoMembershipsOut,
    responses=ERRORS,
    summary="List customer tier memberships",
)
async def customer_memberships(
    rt: RuntimeDep, caller: TiersRead, customer_id: str = CustomerId
) -> YukoMembershipsOut:
    """The customer's tier memberships, newest first: the active one (with its expiry)
    and the ended ones, read from the level history (R22)."""
    view = await reads.member_view(rt, caller, _customer_ref(customer_id), MemberRef.EXTERNAL)
    ladder = view.catalogue.ladder
    changes: list[ChangeRow] = []
    if ladder is not None:
        history = await member_history(
            rt,
            caller,
            view.status.member.external_id,
            program_id=view.catalogue.program.id,
            ladder_key=ladder.key,
            until=view.status.as_of,
        )
        changes = [change for _, change in history.entries]
    definition = view.catalogue.definition
    item = view.standing
    memberships: list[YukoMembership] = []
    for period in reversed(_periods(view, changes)):
        level = None if definition is None else definition.level(period.level_key)
        if level is None:
            continue  # a level the live definition no longer has
        active = period.ended_at is None
        memberships.append(
            YukoMembership(
                tier=tier_out(view.catalogue, level),
                status="active" if active else "ended",
                started_at=_stamp(period.started_at) or "",
                ended_at=_stamp(period.ended_at),
                expires_at=_stamp(item.state.expires_at) if active and item is not None else None,
                assigned=period.assigned,
            )
        )
    return YukoMembershipsOut(data=memberships)
