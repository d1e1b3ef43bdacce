"""The Capillary dialect under ``/compat/capillary`` (mapping tables:
docs/dialects/capillary.md).

- v2 ``GET /v2/customers/{userId}/tierDetails``: a customer's tier per program (seed 001).
- v3 tier admin ``/v3/tiers…`` (seed 002 and the platform's tier admin pages), in
  ``capillary_v3``: one tier = one level of the program's tier ladder (its first ladder);
  its lifecycle is carried by our ladder versions.

Authentication is HTTP Basic with our key id and secret. Every error under the prefix,
credentials included, answers ``{"data": null, "errors": [{"code", "message"}],
"warnings": null}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from tierwise.api.auth import RuntimeDep
from tierwise.api.dialects import capillary_v3
from tierwise.api.dialects.capillary_v3 import CustomerReader, iso, plain
from tierwise.domain.errors import InvalidInput
from tierwise.domain.program import Program
from tierwise.services import tier_admin
from tierwise.services.programs import list_programs
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.status import LadderStatus, MemberRef, find_member, member_status

PREFIX = "/compat/capillary"

router = APIRouter(prefix=PREFIX, tags=["dialect: capillary"], include_in_schema=True)

# -- errors --------------------------------------------------------------------------------

NUMBERED: dict[str, tuple[int, int]] = {
    "tier_not_found": (404, 9056),
    "member_not_found": (404, 8015),
    "status_filter_unsupported": (400, 9057),
}
"""Our error code → (HTTP status, the platform's error number) where the platform
documents one."""

CONFLICT_NUMBER = 999999
"""The platform answers every 409 with this generic number and a descriptive message;
ours starts with a stable label (below)."""

TRANSITION_LABELS = {
    "delete": "TIER_NOT_DELETABLE_NON_DRAFT",
    "submit": "TIER_NOT_SUBMITTABLE",
    "approve": "TIER_NOT_PENDING_APPROVAL",
    "reject": "TIER_NOT_PENDING_APPROVAL",
    "edit": "TIER_NOT_EDITABLE",
}
CONFLICT_LABELS = {
    "draft_exists": "TIER_DRAFT_IN_PROGRESS",
    "tier_limit": "TIER_LIMIT_EXCEEDED",
}


def render_error(
    request: Request, status: int, code: str, message: str, details: dict[str, Any]
) -> JSONResponse:
    """Errors under this prefix, in the platform's shape. The error number is the
    platform's where it documents one (9056, 8015, 9057, 999999 for conflicts), else the
    HTTP status; validation errors answer 400 as the platform does."""
    del request
    if code in NUMBERED:
        status, number = NUMBERED[code]
    elif status == 409:
        number = CONFLICT_NUMBER
        label = (
            TRANSITION_LABELS.get(str(details.get("action")), "TIER_INVALID_TRANSITION")
            if code == "invalid_transition"
            else CONFLICT_LABELS.get(code, "CONFLICT")
        )
        message = f"{label}: {message}"
    else:
        if status == 422:
            status = 400
        number = status
    headers = {"WWW-Authenticate": 'Basic realm="tierwise"'} if status == 401 else None
    return JSONResponse(
        {"data": None, "errors": [{"code": number, "message": message}], "warnings": None},
        status_code=status,
        headers=headers,
    )


# -- v2 tierDetails --------------------------------------------------------------------------


def program_tier(rt: Runtime, program: Program, view: LadderStatus) -> dict[str, Any]:
    """One program's entry: serial numbers are 1-based positions in rank order; no tier is
    ``""`` / ``-1`` (as the platform shows "no next tier"), no expiry is ``null``."""
    position = {level.key: i + 1 for i, level in enumerate(view.definition.levels)}
    current, upcoming = view.current, view.next
    expires = view.state.expires_at if current is not None else None
    return {
        "programId": program.id,
        "currentTierName": current.name if current is not None else "",
        "currentTierSerialNumber": position[current.key] if current is not None else -1,
        "tierExpiryDate": plain(rt, expires),
        "tierExpiryDateISO": iso(rt, expires),
        "nextTierName": upcoming.name if upcoming is not None else "",
        "nextTierSerialNumber": position[upcoming.key] if upcoming is not None else -1,
    }


async def _program_tier(
    rt: Runtime, caller: Caller, user_id: str, program_id: int | None
) -> dict[str, Any] | None:
    program, ladder = await tier_admin.tier_ladder(rt, caller, program_id)
    if ladder is None or ladder.definition is None:
        return None
    status = await member_status(
        rt, caller, user_id, program_id=program.id, ladder_key=ladder.key, by=MemberRef.ID
    )
    return program_tier(rt, program, status.ladders[0])


@router.get("/v2/customers/{userId}/tierDetails", summary="Get customer tier")
async def tier_details(
    userId: str,
    rt: RuntimeDep,
    caller: CustomerReader,
    programId: int | None = Query(default=None, ge=1, le=2**62),
    entityType: str = Query(default="CUSTOMER", max_length=40),
    fetchDataForAllPrograms: bool = Query(default=False),
) -> JSONResponse:
    """The customer's tier in every program (``fetchDataForAllPrograms=true``, whatever
    ``programId`` says), in ``programId``, or in the default program."""
    if not userId.isdigit() or len(userId) > 18:
        raise InvalidInput(
            f"userId must be an integer customer id, got {userId!r}",
            code="invalid_user_id",
            field="userId",
        )
    if entityType.upper() != "CUSTOMER":
        raise InvalidInput(
            f"entityType {entityType!r} is not supported; use CUSTOMER",
            code="invalid_entity_type",
            field="entityType",
        )
    async with rt.transaction() as conn:
        member = await find_member(conn, caller, userId, MemberRef.ID)
    targets: list[int | None] = (
        [p.id for p in await list_programs(rt, caller)] if fetchDataForAllPrograms else [programId]
    )
    tiers = [
        found
        for target in targets
        if (found := await _program_tier(rt, caller, userId, target)) is not None
    ]
    return JSONResponse(
        {"entityId": member.id, "entityType": "CUSTOMER", "programTiers": tiers, "warnings": []}
    )


router.include_router(capillary_v3.router)
