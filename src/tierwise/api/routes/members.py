"""Members: enrolment, status (R5-R7, R27) and history (R22)."""

from __future__ import annotations

import logging
from datetime import datetime

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import TypeAdapter

from tierwise.api.auth import MembersRead, MembersWrite, RuntimeDep
from tierwise.api.schemas import (
    AssignmentOut,
    CriterionOut,
    ForecastOut,
    HistoryEntryOut,
    HistoryOut,
    LadderStatusOut,
    LevelRef,
    MemberIn,
    MemberOut,
    ProgressOut,
    StatusOut,
    in_range,
)
from tierwise.api.stored_status import LOOKUP_STATE
from tierwise.db.repos.members import MemberRow
from tierwise.domain.errors import InvalidInput
from tierwise.domain.ladder import Level
from tierwise.domain.progress import RuleProgress
from tierwise.services import members as members_service
from tierwise.services import status as service
from tierwise.services import status_documents as documents
from tierwise.services.runtime import Caller
from tierwise.services.status import LadderStatus

_log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/members", tags=["members"])

NO_NUL = r"^[^\x00]*$"
MemberId = Path(min_length=1, max_length=128, pattern=NO_NUL, description="Your id for the member")
AsOf = Query(default=None, description="Evaluate as of this instant (ISO 8601 with offset)")
_LADDERS = TypeAdapter(list[LadderStatusOut])
LadderKey = Query(default=None, max_length=64, pattern=NO_NUL, description="Only this ladder")


def member_out(member: MemberRow) -> MemberOut:
    return MemberOut(
        id=member.id,
        uuid=member.uuid,
        member_id=member.external_id,
        enrolled_at=member.enrolled_at,
        last_activity_at=member.last_activity_at,
        created_at=member.created_at,
    )


def level_ref(level: Level | None, ids: dict[str, int]) -> LevelRef | None:
    if level is None:
        return None
    return LevelRef(
        id=ids.get(level.key),
        key=level.key,
        name=level.name,
        rank=level.rank,
        earn_multiplier=level.earn_multiplier,
        benefits=level.benefits,
    )


def progress_out(level: Level, progress: RuleProgress | None) -> ProgressOut | None:
    if progress is None:
        return None
    criteria = [
        CriterionOut(
            metric=p.criterion.metric,
            window=p.criterion.window,
            window_label=p.criterion.window.label(),
            operator=p.criterion.operator.value,
            threshold=p.criterion.threshold,
            current=p.current,
            required=p.required,
            remaining=p.remaining,
            percentage=float(p.percentage),
            met=p.met,
        )
        for p in progress.criteria
    ]
    head = criteria[0]
    return ProgressOut(
        level=level.key,
        mode=progress.mode.value,
        metric=head.metric,
        window=head.window_label,
        current=head.current,
        required=head.required,
        remaining=head.remaining,
        percentage=head.percentage,
        met=progress.met,
        criteria=criteria,
    )


def forecast_out(item: LadderStatus) -> ForecastOut | None:
    """R19: next check, grace, projected level and what is missing to keep the level."""
    if item.current is None:
        return None
    keep = progress_out(item.current, item.maintain) if item.maintain else None
    return ForecastOut(
        next_check_at=None
        if item.state.pinned
        else (item.state.grace_until or item.state.check_due_at),
        grace_until=item.state.grace_until,
        projected_level=level_ref(item.projected, item.ladder.level_ids),
        remaining_to_keep=keep.criteria if keep else [],
        credit=item.state.credit,
    )


def ladder_status_out(item: LadderStatus) -> LadderStatusOut:
    ids = item.ladder.level_ids
    assignment = item.state.assignment
    return LadderStatusOut(
        ladder=item.ladder.key,
        ladder_id=item.ladder.id,
        current_level=level_ref(item.current, ids),
        previous_level=level_ref(item.previous, ids),
        next_level=level_ref(item.next, ids),
        achieved_at=item.state.achieved_at,
        expires_at=item.state.expires_at,
        check_due_at=item.state.check_due_at,
        cycle_end=item.cycle_end,
        assignment=None
        if assignment is None
        else AssignmentOut(
            level=assignment.level_key,
            mode=assignment.mode.value,
            reason=assignment.reason,
            actor=assignment.actor,
            assigned_at=assignment.assigned_at,
            expires_at=assignment.expires_at,
        ),
        progress=progress_out(item.next, item.progress) if item.next else None,
        forecast=forecast_out(item),
        to_keep=progress_out(item.current, item.maintain) if item.current else None,
    )


@router.put("/{member_id}", response_model=MemberOut)
async def enrol_member(
    body: MemberIn,
    response: Response,
    rt: RuntimeDep,
    caller: MembersWrite,
    member_id: str = MemberId,
) -> MemberOut:
    member, created = await members_service.enrol(rt, caller, member_id, body.enrolled_at)
    response.status_code = 201 if created else 200
    return member_out(member)


@router.get("/{member_id}", response_model=MemberOut)
async def read_member(rt: RuntimeDep, caller: MembersRead, member_id: str = MemberId) -> MemberOut:
    """The member's ids (integer id for Capillary, UUID for Omneo and Scrip) and dates."""
    return member_out(await members_service.read(rt, caller, member_id))


@router.get("/{member_id}/status", response_model=StatusOut)
async def member_status(
    request: Request,
    rt: RuntimeDep,
    caller: MembersRead,
    member_id: str = MemberId,
    program_id: int | None = Query(default=None, ge=1, le=2**62),
    ladder: str | None = LadderKey,
    as_of: datetime | None = AsOf,
) -> Response:
    at = _instant(as_of, "as_of")
    now = rt.clock()
    stamp: documents.Stamp | None = None
    served: bytes | None = None
    if at is None and ladder is None and documents.enabled(rt):
        try:
            found = _fast_path_lookup(request, caller, program_id)
            if found is None:
                found = await documents.lookup(rt, caller, member_id, program_id, now)
            served, stamp = found.served, found.stamp
            if served is not None and not rt.settings.status_docs_verify:
                return Response(content=served, media_type="application/json")
        except Exception:  # a cache: when it fails, the status is computed
            _log.exception("stored status documents unavailable; computing the status")
            served = stamp = None
    status = await service.member_status(
        rt, caller, member_id, program_id=program_id, as_of=at, ladder_key=ladder, now=now
    )
    # Encoded once, without FastAPI validating the response model a second time (the
    # OpenAPI schema still comes from response_model).
    ladders = _LADDERS.dump_json(
        [ladder_status_out(item) for item in status.ladders], by_alias=True
    )
    body = documents.envelope(status.member.external_id, status.program.id, status.as_of, ladders)
    if served is not None:
        documents.check_same(served, body)
    elif stamp is not None and stamp.program_id == status.program.id:
        try:
            await documents.store(rt, stamp, status, ladders, now)
        except Exception:
            _log.exception("could not store the status document")
    return Response(content=body, media_type="application/json")


def _fast_path_lookup(
    request: Request, caller: Caller, program_id: int | None
) -> documents.Lookup | None:
    """The lookup the fast path already made for this request (it found no usable
    document), if it was made for this caller and the default program."""
    left = getattr(request.state, LOOKUP_STATE, None)
    if left is None or program_id is not None or left[0] != caller.tenant_id:
        return None
    found: documents.Lookup = left[1]
    return found


@router.get("/{member_id}/history", response_model=HistoryOut)
async def member_history(
    rt: RuntimeDep,
    caller: MembersRead,
    member_id: str = MemberId,
    program_id: int | None = Query(default=None, ge=1, le=2**62),
    ladder: str | None = LadderKey,
    until: datetime | None = Query(default=None),
) -> HistoryOut:
    found = await service.member_history(
        rt,
        caller,
        member_id,
        program_id=program_id,
        ladder_key=ladder,
        until=_instant(until, "until"),
    )
    return HistoryOut(
        member_id=found.member.external_id,
        program_id=found.program.id,
        entries=[
            HistoryEntryOut(
                id=row.uuid,
                ladder=ladder_row.key,
                from_level=row.change.from_level,
                to_level=row.change.to_level,
                kind=row.change.kind.value,
                source=row.change.source.value,
                activity_id=row.activity_id,
                actor=row.change.actor,
                reason=row.change.reason,
                occurred_at=row.change.at,
                recorded_at=row.recorded_at,
            )
            for ladder_row, row in found.entries
        ],
    )


def _instant(value: datetime | None, field: str) -> datetime | None:
    """R27: an aware instant inside the range the API accepts, or None."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(
            "give instants with a time zone offset, e.g. 2025-01-01T00:00:00Z",
            code="naive_datetime",
            field=field,
        )
    try:
        return in_range(value)
    except ValueError as exc:
        raise InvalidInput(str(exc), code="instant_out_of_range", field=field) from exc
