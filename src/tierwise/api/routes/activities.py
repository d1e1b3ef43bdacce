"""Recording activity (R12, R13)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from tierwise.api.auth import ActivitiesWrite, RuntimeDep
from tierwise.api.schemas import ActivityBatchIn, ActivityIn, ActivityOut, BatchOut
from tierwise.services import activities as service
from tierwise.services.group_commit import GroupCommit
from tierwise.services.runtime import Caller, Runtime

router = APIRouter(prefix="/v1/activities", tags=["activities"])


def command(body: ActivityIn) -> service.ActivityCommand:
    return service.ActivityCommand(
        type=body.type,
        member_id=body.member_id,
        idempotency_key=body.idempotency_key,
        occurred_at=body.occurred_at,
        request_hash=body.request_hash(),
        program_id=body.program_id,
        amount_minor=body.amount_minor,
        currency=body.currency,
        points=body.points,
        counter=body.counter,
        quantity=body.quantity,
        reverses=body.reverses,
        reverses_key=body.reverses_key,
    )


def activity_out(outcome: service.Outcome) -> ActivityOut:
    return ActivityOut.model_validate({**outcome.result, "replayed": outcome.replayed})


_OUT_FIELDS = tuple(name for name in ActivityOut.model_fields if name != "replayed")
_EARN_FIELDS = ("amount_minor", "rate", "points")


def _out(outcome: service.Outcome) -> dict[str, Any] | None:
    """The ``ActivityOut`` document of ``outcome`` as plain JSON data, or None when the
    result is not exactly in that shape (``ActivityOut`` then validates it)."""
    result = outcome.result
    if tuple(result) != _OUT_FIELDS:
        return None
    for part in result["earn"]:
        if tuple(part) != _EARN_FIELDS:
            return None
    return {**result, "replayed": outcome.replayed}


def answer(outcome: service.Outcome) -> tuple[int, dict[str, str], bytes]:
    """The HTTP answer to one recorded activity: 201 with the result, or 200 with the
    first result and ``Idempotent-Replayed: true`` for a repeat (R12)."""
    status, headers = (200, {"Idempotent-Replayed": "true"}) if outcome.replayed else (201, {})
    out = _out(outcome)
    if out is None:
        return status, headers, activity_out(outcome).model_dump_json().encode()
    return status, headers, orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS)


async def record_one(
    groups: GroupCommit | None, rt: Runtime, caller: Caller, body: ActivityIn
) -> service.Outcome:
    """Record one activity, through the process's group commit when it has one."""
    if groups is not None:
        return await groups.submit(caller, command(body))
    [outcome] = await service.record(rt, caller, [command(body)])
    return outcome


def groups_of(app: Any) -> GroupCommit | None:
    """The group commit of the application's process (None when turned off)."""
    found: GroupCommit | None = getattr(app.state, "activity_groups", None)
    return found


@router.post(
    "",
    status_code=201,
    response_model=ActivityOut,
    responses={200: {"description": "A repeat of an earlier request: the first result, unchanged"}},
)
async def record_activity(
    body: ActivityIn, request: Request, rt: RuntimeDep, caller: ActivitiesWrite
) -> Response:
    status, headers, content = answer(await record_one(groups_of(request.app), rt, caller, body))
    return Response(content, status_code=status, headers=headers, media_type="application/json")


def batch_answer(outcomes: list[service.Outcome]) -> bytes:
    """The HTTP answer (200) to a recorded batch: counts and every activity's result."""
    duplicates = sum(1 for o in outcomes if o.replayed)
    results = [_out(o) for o in outcomes]
    if all(r is not None for r in results):
        return orjson.dumps(
            {"accepted": len(outcomes) - duplicates, "duplicates": duplicates, "results": results},
            option=orjson.OPT_NON_STR_KEYS,
        )
    return (
        BatchOut(
            accepted=len(outcomes) - duplicates,
            duplicates=duplicates,
            results=[activity_out(o) for o in outcomes],
        )
        .model_dump_json()
        .encode()
    )


async def record_many(rt: Runtime, caller: Caller, body: ActivityBatchIn) -> list[service.Outcome]:
    """Record a batch: one transaction, all stored or none."""
    return await service.record(rt, caller, [command(a) for a in body.activities])


@router.post("/batch", response_model=BatchOut)
async def record_batch(body: ActivityBatchIn, rt: RuntimeDep, caller: ActivitiesWrite) -> Response:
    """Up to 1,000 activities in one transaction: all are stored, or none."""
    content = batch_answer(await record_many(rt, caller, body))
    return Response(content, status_code=200, media_type="application/json")
