"""Capillary v3 tier admin (``/v3/tiers…``) and the helpers the v2 routes share.

Translation only: per-tier edits are turned into ladder versions by
``services.tier_admin``; every transition, threshold order and maker-checker rule is the
engine's. Mapping tables: docs/dialects/capillary.md.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tierwise.api.auth import RuntimeDep, authenticate
from tierwise.api.errors import ApiError
from tierwise.api.routes.versions import start_job
from tierwise.domain.calendar import zone
from tierwise.domain.criteria import Criterion, Mode, Rule
from tierwise.domain.errors import InvalidInput, NotFound
from tierwise.domain.ladder import Ladder, Level, RenewalMode, UpgradeTiming, Validity, ValidityType
from tierwise.domain.metrics import COUNTER_PREFIX, BuiltinMetric, is_counter_name
from tierwise.domain.money import minor_unit_exponent
from tierwise.domain.versions import VersionState
from tierwise.services import tier_admin
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.tenants import Scope
from tierwise.services.tier_admin import Role, Tier, TierRecord

router = APIRouter(tags=["dialect: capillary"])

# -- shared with the v2 routes: credentials, time, envelopes --------------------------------


def scoped(*scopes: Scope) -> Any:
    """A dependency: HTTP Basic (key id : secret; Bearer is accepted too, as Capillary
    accepts OAuth tokens) holding any one of ``scopes``."""

    async def check(request: Request) -> Caller:
        caller = await authenticate(request)
        if not any(scope.value in caller.scopes for scope in scopes):
            wanted = " or ".join(repr(scope.value) for scope in scopes)
            raise ApiError(
                403, "missing_scope", f"this API key lacks the {wanted} scope", scope=wanted
            )
        return caller

    return Depends(check)


TierReader = Annotated[Caller, scoped(Scope.TIERS_READ, Scope.PROGRAMS_READ)]
CustomerReader = Annotated[
    Caller, scoped(Scope.TIERS_READ, Scope.PROGRAMS_READ, Scope.MEMBERS_READ)
]
TierWriter = Annotated[Caller, scoped(Scope.PROGRAMS_WRITE)]
TierReviewer = Annotated[Caller, scoped(Scope.PROGRAMS_APPROVE)]


def server_time(rt: Runtime, instant: datetime) -> datetime:
    """``instant`` in the configured server time zone, whole seconds."""
    return instant.astimezone(zone(rt.settings.server_time_zone)).replace(microsecond=0)


def iso(rt: Runtime, instant: datetime | None) -> str | None:
    """ISO 8601 in the server time zone: ``Z`` when the offset is zero, else ``+05:30``."""
    if instant is None:
        return None
    text = server_time(rt, instant).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def plain(rt: Runtime, instant: datetime | None) -> str | None:
    """``YYYY-MM-DD HH:MM:SS`` in the server time zone."""
    return None if instant is None else server_time(rt, instant).strftime("%Y-%m-%d %H:%M:%S")


def envelope(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"data": data, "errors": None, "warnings": None}, status_code=status)


def _compact(value: dict[str, Any]) -> dict[str, Any]:
    """Drop null fields, also inside nested objects."""
    return {k: _compact(v) if isinstance(v, dict) else v for k, v in value.items() if v is not None}


# -- our model → Capillary -----------------------------------------------------------------

KPI_OF_METRIC = {
    BuiltinMetric.POINTS_BALANCE.value: "CURRENT_POINTS",
    BuiltinMetric.POINTS_EARNED.value: "CUMULATIVE_POINTS",
    BuiltinMetric.SPEND.value: "CUMULATIVE_PURCHASES",
}
METRIC_OF_KPI = {kpi: metric for metric, kpi in KPI_OF_METRIC.items()}
TRACKER = "TRACKER_VALUE_BASED"
KpiType = Literal[
    "CURRENT_POINTS", "CUMULATIVE_POINTS", "CUMULATIVE_PURCHASES", "TRACKER_VALUE_BASED"
]

ENTRY_STATUS = {
    VersionState.DRAFT: "DRAFT",
    VersionState.PENDING_APPROVAL: "PENDING_APPROVAL",
    VersionState.REJECTED: "REJECTED",
    VersionState.SCHEDULED: "ACTIVE",
    VersionState.LIVE: "LIVE",
    VersionState.SNAPSHOT: "SNAPSHOT",
    VersionState.DELETED: "DELETED",
    VersionState.PUBLISH_FAILED: "PUBLISH_FAILED",
}
"""Status in the read shape (Get Tier, List All Tiers): the published record is LIVE."""
RECORD_STATUS = {**ENTRY_STATUS, VersionState.LIVE: "ACTIVE"}
"""Status in the record shape (write responses, approvals): an approved record is ACTIVE."""

SAME_AS_ELIGIBILITY = "Same as eligibility"
COMMUNICATION: dict[str, list[Any]] = {
    "upgrade": [],
    "renewal": [],
    "downgrade": [],
    "reminders": [],
}


def unique_id(record: TierRecord) -> str:
    return f"ut-{record.program.id}-{record.serial:03d}"


def _threshold_out(metric: str, threshold: int, currency: str) -> float:
    if metric == BuiltinMetric.SPEND.value:
        return float(Decimal(threshold).scaleb(-minor_unit_exponent(currency)))
    return float(threshold)


def _first_criterion(definition: Ladder, level: Level) -> tuple[Criterion | None, Criterion | None]:
    """The level's first attain criterion, and the one that names the ladder's KPI (the
    level's own, else the first attain criterion of any level)."""
    own = level.attain.criteria[0] if level.attain is not None else None
    if own is not None:
        return own, own
    for other in definition.levels:
        if other.attain is not None:
            return None, other.attain.criteria[0]
    return None, None


def eligibility(record: TierRecord) -> dict[str, Any]:
    own, kpi = _first_criterion(record.definition, record.level)
    found: dict[str, Any] = {}
    if kpi is not None:
        if kpi.metric.startswith(COUNTER_PREFIX):
            found["kpiType"] = TRACKER
        else:
            found["kpiType"] = KPI_OF_METRIC.get(kpi.metric)
    if own is not None:
        found["threshold"] = _threshold_out(own.metric, own.threshold, record.program.currency)
    found["upgradeType"] = record.definition.upgrade_timing.value.upper()
    if kpi is not None and kpi.metric.startswith(COUNTER_PREFIX):
        found["conditions"] = [{"trackerName": kpi.metric[len(COUNTER_PREFIX) :]}]
    return _compact(found)


def _period(validity: Validity) -> tuple[str, int, str] | None:
    """``(periodType, periodValue, unit)`` of a validity, None when it never expires."""
    match validity.type:
        case ValidityType.NONE:
            return None
        case ValidityType.FIXED_MONTHS:
            return "SLAB_UPGRADE", validity.months or 0, "NUM_MONTHS"
        case ValidityType.ENROLMENT_ANNIVERSARY:
            return "FIXED_CUSTOMER_REGISTRATION", 12, "NUM_MONTHS"
        case ValidityType.INACTIVITY:
            return "INACTIVITY", validity.inactivity_days or 0, "NUM_DAYS"
        case _:
            return validity.type.value.upper(), 12, "NUM_MONTHS"


def criteria_type(record: TierRecord) -> str:
    if record.definition.renewal is RenewalMode.ALWAYS:
        return "Always"
    return SAME_AS_ELIGIBILITY if record.level.maintain is None else "Custom"


def _validity_of(record: TierRecord) -> Validity:
    return record.level.validity or record.definition.validity


def renewal(record: TierRecord) -> dict[str, Any] | None:
    """The read shape's ``renewal``: validity period and renewal criteria."""
    period = _period(_validity_of(record))
    if period is None:
        return None
    kind, value, unit = period
    return {
        "periodType": kind,
        "periodValue": str(value),
        "unit": unit,
        "criteriaType": criteria_type(record),
    }


def validity(record: TierRecord) -> dict[str, Any] | None:
    """The record shape's ``validity`` (the same facts, nested the way that shape nests)."""
    period = _period(_validity_of(record))
    if period is None:
        return None
    kind, value, unit = period
    return {
        "periodType": kind,
        "periodValue": value,
        "renewal": {"criteriaType": criteria_type(record)},
        "unit": unit,
    }


def meta(rt: Runtime, record: TierRecord) -> dict[str, Any]:
    v = record.version
    return _compact(
        {
            "createdBy": v.created_by,
            "createdAt": iso(rt, v.created_at),
            "updatedBy": v.updated_by,
            "updatedAt": iso(rt, v.updated_at),
            "approvedBy": v.approved_by,
            "approvedAt": iso(rt, v.approved_at),
            "rejectedBy": v.rejected_by,
            "rejectedAt": iso(rt, v.rejected_at),
            "rejectionComment": v.rejection_comment,
        }
    )


def origin(record: TierRecord) -> str:
    """BOTH once the tier has been published (it has a level id), else MONGO_ONLY."""
    return "BOTH" if record.level_id is not None else "MONGO_ONLY"


def entry(rt: Runtime, record: TierRecord) -> dict[str, Any]:
    """One tier in the read shape (Get Tier, List All Tiers): null fields omitted."""
    live = record.role is Role.LIVE
    rejected = record.state is VersionState.REJECTED
    return _compact(
        {
            "slabId": record.level_id,
            "tierUniqueId": unique_id(record),
            "objectId": record.id,
            "name": record.level.name,
            "description": record.level.description,
            "color": record.level.color,
            "serialNumber": record.position,
            "tierStartDate": iso(rt, record.first_published_at) if live else None,
            "eligibility": eligibility(record),
            "communicationModeConfig": COMMUNICATION if live else None,
            "meta": meta(rt, record),
            "customerCount": record.customer_count,
            "countRefreshedAt": iso(rt, record.counted_at),
            "status": ENTRY_STATUS[record.state],
            "origin": origin(record),
            "renewal": renewal(record),
            "rejectionComment": record.version.rejection_comment if rejected else None,
        }
    )


def document(rt: Runtime, record: TierRecord) -> dict[str, Any]:
    """One tier in the record shape (create, update, submit, approve, approvals): the
    platform keeps null fields here."""
    found: dict[str, Any] = {
        "objectId": record.id,
        "tierUniqueId": unique_id(record),
        "orgId": record.program.tenant_id,
        "programId": record.program.id,
        "status": RECORD_STATUS[record.state],
        "parentId": record.parent_id,
        "version": record.revision,
        "slabId": record.level_id,
        "name": record.level.name,
        "description": record.level.description,
        "color": record.level.color,
        "serialNumber": record.position,
        "eligibility": eligibility(record),
        "validity": validity(record),
        "downgrade": None,
        "engineConfig": None,
        "meta": meta(rt, record),
        "comments": None,
    }
    if record.state is VersionState.REJECTED:
        found["rejectionComment"] = record.version.rejection_comment
    return found


# -- Capillary → our model -----------------------------------------------------------------


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str | None = None
    value: str | None = None
    trackerName: str | None = None
    trackerId: int | None = None
    trackerCondition: int | None = None


class EligibilityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kpiType: KpiType | None = None
    threshold: Decimal | None = Field(default=None, ge=0, le=Decimal(10) ** 15)
    upgradeType: Literal["EAGER", "DYNAMIC", "LAZY"] | None = None
    expressionRelation: Literal["AND", "OR"] | None = None
    conditions: list[Condition] | None = Field(default=None, max_length=1)
    trackerName: str | None = None


class RenewalCriteriaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    criteriaType: str | None = None


class ValidityIn(BaseModel):
    """``validity`` (Create Tier's spelling) or ``renewal`` (Get Tier's)."""

    model_config = ConfigDict(extra="forbid")

    periodType: str
    periodValue: int | str | None = None
    unit: str | None = None
    criteriaType: str | None = None
    renewal: RenewalCriteriaIn | None = None


class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    programId: int | None = Field(default=None, ge=1, le=2**62)
    name: str | None = Field(default=None, min_length=1, max_length=50)
    description: str | None = Field(default=None, max_length=500)
    color: str | None = Field(default=None, pattern=r"^#[0-9A-Fa-f]{6}$")
    serialNumber: int | None = Field(default=None, ge=1, le=50)
    eligibility: EligibilityIn | None = None
    validity: ValidityIn | None = None
    renewal: ValidityIn | None = None


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approvalStatus: Literal["APPROVE", "REJECT"]
    comment: str | None = Field(default=None, max_length=4000)


def _bad(message: str, where: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_tier", field=where)


def _threshold_in(metric: str, value: Decimal, currency: str) -> int:
    scaled = value.scaleb(minor_unit_exponent(currency)) if metric == "spend" else value
    if scaled != scaled.to_integral_value():
        unit = f"{currency} amount" if metric == "spend" else "whole number"
        raise _bad(f"threshold {value} is not a {unit}", "eligibility.threshold")
    return int(scaled)


def _metric(body: EligibilityIn, current: str | None) -> str | None:
    if body.kpiType is None:
        return current
    if body.kpiType != TRACKER:
        return METRIC_OF_KPI[body.kpiType]
    names = [c.trackerName for c in body.conditions or [] if c.trackerName]
    name = body.trackerName or (names[0] if names else None)
    if name is None and current is not None and current.startswith(COUNTER_PREFIX):
        return current
    if name is None or not is_counter_name(name):
        raise _bad(
            "TRACKER_VALUE_BASED needs a trackerName of lowercase letters, digits, '_', '.' "
            "or '-' (the name of the counter it measures)",
            "eligibility.conditions",
        )
    return f"{COUNTER_PREFIX}{name}"


def _validity_in(body: ValidityIn, where: str) -> Validity:
    value = body.periodValue
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif value is not None and value.isdigit() and len(value) <= 4:
        number = int(value)
    unit = body.unit or "NUM_MONTHS"
    if body.periodType == "SLAB_UPGRADE" and unit == "NUM_MONTHS" and 1 <= (number or 0) <= 120:
        return Validity(type=ValidityType.FIXED_MONTHS, months=number)
    if body.periodType == "FIXED_CUSTOMER_REGISTRATION" and number in (None, 12):
        return Validity(type=ValidityType.ENROLMENT_ANNIVERSARY)
    raise _bad(
        f"{where}: supported are periodType SLAB_UPGRADE with a periodValue in NUM_MONTHS "
        "(1-120), and FIXED_CUSTOMER_REGISTRATION (every 12 months from registration)",
        where,
    )


def changes(
    body: TierIn, current: TierRecord | None, currency: str, kpi_of: Ladder | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The level and ladder changes a Create/Update Tier body asks for, merged with the
    record it edits (partial update: omitted fields keep their values). Without a
    ``kpiType``, a new tier takes the KPI of the ladder ``kpi_of``."""
    level: dict[str, Any] = {}
    ladder: dict[str, Any] = {}
    for name, target in (("name", "name"), ("description", "description"), ("color", "color")):
        value = getattr(body, name)
        if value is not None:
            level[target] = value
    if body.eligibility is not None:
        wanted = body.eligibility
        if wanted.upgradeType is not None:
            ladder["upgrade_timing"] = UpgradeTiming(wanted.upgradeType.lower())
        old_rule = current.level.attain if current is not None else None
        old = old_rule.criteria[0] if old_rule is not None else None
        ladder_kpi = None
        if current is not None:
            ladder_kpi = _first_criterion(current.definition, current.level)[1]
        elif kpi_of is not None:
            ladder_kpi = _first_criterion(kpi_of, kpi_of.levels[0])[1]
        known = old or ladder_kpi
        metric = _metric(wanted, known.metric if known is not None else None)
        if wanted.kpiType is not None or wanted.threshold is not None:
            if metric is None:
                raise _bad("eligibility.kpiType is required", "eligibility.kpiType")
            if wanted.threshold is None and (old is None or old.metric != metric):
                raise _bad("eligibility.threshold is required", "eligibility.threshold")
            threshold = (
                _threshold_in(metric, wanted.threshold, currency)
                if wanted.threshold is not None
                else (old.threshold if old is not None else 0)
            )
            same = old is not None and old.metric == metric
            first = (
                old.model_copy(update={"threshold": threshold})
                if old is not None and same
                else Criterion(metric=metric, threshold=threshold)
            )
            rest = old_rule.criteria[1:] if old_rule is not None else ()
            mode = old_rule.mode if old_rule is not None else Mode.ALL
            level["attain"] = Rule(mode=mode, criteria=(first, *rest))
            level["is_floor"] = False
    period = body.validity or body.renewal
    if period is not None:
        where = "validity" if body.validity is not None else "renewal"
        level["validity"] = _validity_in(period, where)
        criteria = period.criteriaType or (period.renewal.criteriaType if period.renewal else None)
        if criteria is not None:
            if criteria != SAME_AS_ELIGIBILITY:
                raise _bad(
                    f"{where}: criteriaType {criteria!r} is not supported; use "
                    f"{SAME_AS_ELIGIBILITY!r} (renew on the eligibility rule)",
                    f"{where}.criteriaType",
                )
            level["maintain"] = None
            ladder["renewal"] = RenewalMode.MAINTAIN
    return level, ladder


# -- finding tiers ---------------------------------------------------------------------------

UNIQUE_ID = re.compile(r"^ut-(\d{1,18})-(\d{3,9})$")
OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")


def not_found(tier_id: str) -> NotFound:
    return NotFound(f"no tier matches the given tierId {tier_id!r}", code="tier_not_found")


async def _find(rt: Runtime, caller: Caller, tier_id: str, *, writing: bool) -> Tier:
    """A tier by slabId, tierUniqueId or objectId. Writes addressed by slabId or
    tierUniqueId go to the tier's open draft edit when it has one."""
    found: Tier | None = None
    unique = UNIQUE_ID.match(tier_id)
    if tier_id.isdigit() and len(tier_id) <= 18:
        found = await tier_admin.find_by_level_id(rt, caller, int(tier_id))
    elif unique is not None:
        found = await tier_admin.find_by_serial(
            rt, caller, int(unique.group(1)), int(unique.group(2))
        )
    elif OBJECT_ID.match(tier_id):
        found = await tier_admin.find_by_record_id(rt, caller, tier_id)
        if found is not None and found.record.state is VersionState.DELETED:
            found = None
        return _found(found, tier_id)
    return _found(found, tier_id).for_writing() if writing else _found(found, tier_id)


def _found(found: Tier | None, tier_id: str) -> Tier:
    if found is None:
        raise not_found(tier_id)
    return found


# -- routes ----------------------------------------------------------------------------------

ProgramQuery = Query(default=None, ge=1, le=2**62, description="Our integer program id")


@router.get("/v3/tiers/approvals", summary="List pending tier approvals")
async def approvals(
    rt: RuntimeDep, caller: TierReader, programId: int | None = ProgramQuery
) -> JSONResponse:
    """The reviewer's queue: tier records awaiting approval (the default program when
    ``programId`` is omitted)."""
    book = await tier_admin.load_book(rt, caller, programId)
    return envelope([document(rt, record) for record in book.pending()])


@router.get("/v3/tiers", summary="List all tiers")
async def list_tiers(
    rt: RuntimeDep,
    caller: TierReader,
    programId: int | None = ProgramQuery,
    tier: str | None = Query(default=None, max_length=100),
    status: str | None = Query(default=None, max_length=100),
) -> JSONResponse:
    """Every tier of the program; a published tier with an edit in progress is listed
    twice (live, then draft). ``tier`` narrows to one tier by slabId or tierUniqueId."""
    if status is not None:
        raise InvalidInput(
            "the status filter is not supported", code="status_filter_unsupported", field="status"
        )
    book = await tier_admin.load_book(rt, caller, programId)
    records = book.current()
    if tier is not None:
        unique = UNIQUE_ID.match(tier)
        if tier.isdigit():
            records = [r for r in records if r.level_id == int(tier)]
        elif unique is not None and int(unique.group(1)) == book.program.id:
            records = [r for r in records if r.serial == int(unique.group(2))]
        else:
            records = []
    return envelope({"tiers": [entry(rt, record) for record in records]})


@router.get("/v3/tiers/{tierId}", summary="Get tier")
async def get_tier(tierId: str, rt: RuntimeDep, caller: TierReader) -> JSONResponse:
    """By slabId: the live tier and its draft edit, if any (origin BOTH). By tierUniqueId:
    the draft (or the live tier when no draft is open). By objectId: that record."""
    found = await _find(rt, caller, tierId, writing=False)
    records = found.book.entries(found.key) if tierId.isdigit() else [found.record]
    return envelope([entry(rt, record) for record in records])


@router.post("/v3/tiers", summary="Create tier")
async def create_tier(body: TierIn, rt: RuntimeDep, caller: TierWriter) -> JSONResponse:
    """A new tier in DRAFT: a draft version of the program's tier ladder adding it."""
    if body.name is None:
        raise _bad("name is required", "name")
    program, ladder_row = await tier_admin.tier_ladder(rt, caller, body.programId)
    live = ladder_row.definition if ladder_row is not None else None
    level, ladder = changes(body, None, program.currency, live)
    empty = live is None
    if "attain" not in level and (body.serialNumber == 1 or (empty and body.serialNumber is None)):
        level["is_floor"] = True  # Capillary's base tier: everyone holds it
    created = await tier_admin.create_tier(
        rt,
        caller,
        program.id,
        name=body.name,
        level_changes=level,
        ladder_changes=ladder,
        position=body.serialNumber,
    )
    return envelope(document(rt, created.record))


@router.put("/v3/tiers/{tierId}", summary="Update tier")
async def update_tier(
    tierId: str, body: TierIn, rt: RuntimeDep, caller: TierWriter, programId: int | None = None
) -> JSONResponse:
    """Partial update: a draft is edited in place; a live tier gets a new draft version."""
    found = await _find(rt, caller, tierId, writing=True)
    if programId is not None and programId != found.book.program.id:
        raise not_found(tierId)
    if body.programId is not None and body.programId != found.book.program.id:
        raise _bad("a tier cannot move to another program", "programId")
    level, ladder = changes(body, found.record, found.book.program.currency)
    updated = await tier_admin.update_tier(
        rt, caller, found, level_changes=level, ladder_changes=ladder, position=body.serialNumber
    )
    return envelope(document(rt, updated.record))


@router.delete("/v3/tiers/{tierId}", status_code=204, summary="Delete tier")
async def delete_tier(tierId: str, rt: RuntimeDep, caller: TierWriter) -> Response:
    """Soft-delete a draft tier by objectId: HTTP 204, empty body; 409 for any other
    status."""
    if not OBJECT_ID.match(tierId):
        raise not_found(tierId)
    found = await _find(rt, caller, tierId, writing=True)
    await tier_admin.delete_tier(rt, caller, found)
    return Response(status_code=204)


@router.post("/v3/tiers/{tierId}/submit", summary="Submit tier for approval")
async def submit_tier(tierId: str, rt: RuntimeDep, caller: TierWriter) -> JSONResponse:
    found = await _find(rt, caller, tierId, writing=True)
    submitted = await tier_admin.submit_tier(rt, caller, found)
    return envelope(document(rt, submitted.record))


@router.post("/v3/tiers/{tierId}/approve", summary="Approve or reject tier")
async def review_tier(
    tierId: str, body: ReviewIn, request: Request, rt: RuntimeDep, caller: TierReviewer
) -> JSONResponse:
    """APPROVE publishes the version at once (members are re-evaluated in the background);
    REJECT sends it back to its author with the comment."""
    found = await _find(rt, caller, tierId, writing=True)
    reviewed, job = await tier_admin.review_tier(
        rt, caller, found, approve=body.approvalStatus == "APPROVE", comment=body.comment
    )
    if job is not None:
        start_job(request, rt, job)
    return envelope(document(rt, reviewed.record))
