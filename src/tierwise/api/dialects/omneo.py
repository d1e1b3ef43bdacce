"""The Omneo dialect: Omneo's v3 tier API under ``/compat/omneo`` (docs/dialects/omneo.md).

A profile is our member, addressed by its UUID; a tier is one of our levels, with our
stable integer level id and its key as ``handle``. Omneo sees the tenant's default
program and that program's first ladder. Timestamps render as ``YYYY-MM-DD HH:MM:SS``.
Only translation happens here: levels, credit, progress and dates come from the engine.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tierwise.api.auth import RuntimeDep, TiersRead
from tierwise.domain.checks import keep_rule
from tierwise.domain.criteria import MeasureKey
from tierwise.domain.errors import NotFound
from tierwise.domain.ladder import Level
from tierwise.domain.metrics import BuiltinMetric
from tierwise.services import dialect_reads as reads
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.status import MemberRef

PREFIX = "/compat/omneo"

router = APIRouter(prefix=PREFIX, tags=["dialect: omneo"], include_in_schema=True)

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
POINTS = BuiltinMetric.POINTS_EARNED.value
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


# -- response shapes ------------------------------------------------------------------------


class OmneoTier(BaseModel):
    id: int = Field(description="Our stable integer level id")
    name: str
    handle: str = Field(description="The level key")
    is_floor: bool
    value_min: int = Field(description="Threshold of the first attain criterion")
    value_maintain: int = Field(description="Threshold of the first maintain criterion")
    is_assignable: bool
    internal_notes: str | None
    description: str | None
    short_description: str | None
    long_description: str | None
    terms_conditions: str | None
    icon: str | None
    image_url: str | None
    earn_instructions: str | None
    tags: list[str]
    created_at: str
    updated_at: str


class OmneoProfileTier(BaseModel):
    id: int = Field(description="The profile tier record: our integer member id")
    profile_id: str
    current_tier: OmneoTier | None
    next_tier: OmneoTier | None
    prev_tier: OmneoTier | None
    is_floor: bool
    current_credit: int
    current_progress: int
    current_remain: int
    next_progress: int
    next_remain: int
    total_points_12m: int
    total_points_achievement: int | None
    anniversary_at: str | None
    assigned_at: str | None
    achieved_at: str | None
    created_at: str
    updated_at: str


class OmneoProfileTierOut(BaseModel):
    data: OmneoProfileTier


class OmneoTiersOut(BaseModel):
    data: list[OmneoTier]


class OmneoError(BaseModel):
    message: str
    errors: dict[str, list[str]] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OmneoError, "description": description}
    for status, description in (
        (401, "Missing or wrong token"),
        (403, "The token lacks the tiers:read scope"),
        (404, "Unknown profile"),
    )
}


# -- errors ---------------------------------------------------------------------------------


def render_error(
    request: Request, status: int, code: str, message: str, details: dict[str, Any]
) -> JSONResponse:
    """Errors under this prefix, Laravel-style as Omneo answers: ``{"message"}``, plus
    ``errors`` (field -> messages) on a 422; a 401 says ``"Unauthenticated."``."""
    del request, code
    body: dict[str, Any] = {"message": "Unauthenticated." if status == 401 else message}
    if status == 422:
        errors: dict[str, list[str]] = {}
        for problem in details.get("errors", []):
            errors.setdefault(str(problem.get("field", "")), []).append(str(problem["message"]))
        body["errors"] = errors
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


# -- translation ----------------------------------------------------------------------------


def stamp(value: datetime | None, tz: tzinfo = UTC) -> str | None:
    """``YYYY-MM-DD HH:MM:SS`` in ``tz``."""
    if value is None:
        return None
    return value.astimezone(tz).strftime(TIME_FORMAT)


def tier_out(catalogue: reads.Catalogue, level: Level) -> OmneoTier:
    currency = catalogue.program.currency
    keep = keep_rule(level)
    ladder = catalogue.ladder
    assert ladder is not None
    return OmneoTier(
        id=catalogue.identity(level).id,
        name=level.name,
        handle=level.key,
        is_floor=level.is_floor,
        value_min=reads.whole_units(
            reads.first_metric(level.attain),
            reads.first_threshold(level.attain),
            currency,
            round_up=True,
        ),
        value_maintain=reads.whole_units(
            reads.first_metric(keep), reads.first_threshold(keep), currency, round_up=True
        ),
        is_assignable=level.is_assignable,
        internal_notes=level.internal_notes,
        description=level.description,
        short_description=level.short_description,
        long_description=level.long_description,
        terms_conditions=level.terms,
        icon=level.icon_url,
        image_url=level.image_url,
        earn_instructions=level.earn_instructions,
        tags=list(level.tags),
        created_at=stamp(catalogue.identity(level).created_at, UTC) or "",
        updated_at=stamp(ladder.updated_at, UTC) or "",
    )


def _tier(catalogue: reads.Catalogue, level: Level | None) -> OmneoTier | None:
    return None if level is None else tier_out(catalogue, level)


async def profile_tier(rt: Runtime, caller: Caller, profile: str) -> OmneoProfileTier:
    if not UUID.match(profile):
        raise NotFound(f"no member {profile[:64]!r}", code="member_not_found")
    view = await reads.member_view(rt, caller, profile.lower(), MemberRef.UUID)
    status = view.status
    program = status.program
    currency = program.currency
    item = view.standing
    current = None if item is None else item.current
    nxt = None if item is None else item.next
    state = None if item is None else item.state

    # The ladder's tier metric: what the current level is kept on, else what the next is
    # reached on (R16, R6). Omneo reports every figure in it.
    keep = None if current is None else keep_rule(current)
    tier_metric = reads.first_metric(keep) or reads.first_metric(nxt.attain if nxt else None)
    next_metric = reads.first_metric(nxt.attain if nxt else None) or tier_metric
    cycle_start = None if state is None else (state.cycle_start or state.achieved_at)
    achieved_at = None if state is None else state.achieved_at
    counts_achievement = current is not None and not current.is_floor

    wanted: set[MeasureKey] = {(POINTS, reads.ROLLING_365_DAYS)}
    if next_metric is not None:
        wanted.add((next_metric, reads.ROLLING_365_DAYS))
    if current is not None and tier_metric is not None:
        wanted.add((tier_metric, reads.SINCE_TIER_START))
    figures = await reads.measures(rt, caller, view, wanted, tier_start=cycle_start)
    total_points_achievement: int | None = None
    if counts_achievement:
        since_achieved = await reads.measures(
            rt, caller, view, {(POINTS, reads.SINCE_TIER_START)}, tier_start=achieved_at
        )
        total_points_achievement = since_achieved[(POINTS, reads.SINCE_TIER_START)]

    current_progress = 0
    if current is not None and tier_metric is not None:
        current_progress = reads.whole_units(
            tier_metric,
            figures[(tier_metric, reads.SINCE_TIER_START)],
            currency,
            round_up=False,
        )
    current_remain = 0
    if item is not None and item.maintain is not None:
        head = item.maintain.headline
        current_remain = reads.whole_units(
            head.criterion.metric, head.remaining, currency, round_up=True
        )
    next_progress = 0
    if next_metric is not None:
        next_progress = reads.whole_units(
            next_metric, figures[(next_metric, reads.ROLLING_365_DAYS)], currency, round_up=False
        )
    next_remain = 0
    if item is not None and item.progress is not None:
        head = item.progress.headline
        next_remain = reads.whole_units(
            head.criterion.metric, head.remaining, currency, round_up=True
        )
    assignment = None if state is None else state.assignment
    return OmneoProfileTier(
        id=status.member.id,
        profile_id=status.member.uuid,
        current_tier=_tier(view.catalogue, current),
        next_tier=_tier(view.catalogue, nxt),
        prev_tier=_tier(view.catalogue, None if item is None else item.previous),
        is_floor=current is not None and current.is_floor,
        current_credit=0
        if state is None
        else reads.whole_units(tier_metric, state.credit, currency, round_up=False),
        current_progress=current_progress,
        current_remain=current_remain,
        next_progress=next_progress,
        next_remain=next_remain,
        total_points_12m=figures[(POINTS, reads.ROLLING_365_DAYS)],
        total_points_achievement=total_points_achievement,
        anniversary_at=stamp(reads.cycle_end(view), program.tz),
        assigned_at=stamp(None if assignment is None else assignment.assigned_at, program.tz),
        achieved_at=stamp(achieved_at if current is not None else None, program.tz),
        created_at=stamp(view.record.created_at, UTC) or "",
        updated_at=stamp(view.record.updated_at, UTC) or "",
    )


# -- endpoints ------------------------------------------------------------------------------

ProfileId = Path(description="The profile id: our member UUID")


@router.get(
    "/api/v3/profiles/{profile}/tiers",
    response_model=OmneoProfileTierOut,
    responses=ERRORS,
    summary="Read Profile Tier",
)
async def read_profile_tier(
    rt: RuntimeDep, caller: TiersRead, profile: str = ProfileId
) -> OmneoProfileTierOut:
    """The profile's tier record: current, next and previous tier, credit, progress,
    anniversary (seed 003)."""
    return OmneoProfileTierOut(data=await profile_tier(rt, caller, profile))


@router.get(
    "/api/v3/tiers/definitions",
    response_model=OmneoTiersOut,
    responses=ERRORS,
    summary="List Tier Definitions",
)
async def list_tier_definitions(rt: RuntimeDep, caller: TiersRead) -> OmneoTiersOut:
    """Every tier of the default program's first ladder, lowest first."""
    catalogue = await reads.default_catalogue(rt, caller)
    return OmneoTiersOut(data=[tier_out(catalogue, level) for level in catalogue.levels])
