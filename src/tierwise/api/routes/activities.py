"""Recording activity (R12, R13)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from tierwise.api.auth import ActivitiesWrite, RuntimeDep
from tierwise.api.schemas import ActivityBatchIn, ActivityIn, ActivityOut, BatchOut
from tierwise.services import activities as service

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


@router.post(
    "",
    status_code=201,
    response_model=ActivityOut,
    responses={200: {"description": "A repeat of an earlier request: the first result, unchanged"}},
)
async def record_activity(
    body: ActivityIn, response: Response, rt: RuntimeDep, caller: ActivitiesWrite
) -> ActivityOut:
    [outcome] = await service.record(rt, caller, [command(body)])
    if outcome.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return activity_out(outcome)


@router.post("/batch", response_model=BatchOut)
async def record_batch(body: ActivityBatchIn, rt: RuntimeDep, caller: ActivitiesWrite) -> BatchOut:
    """Up to 1,000 activities in one transaction: all are stored, or none."""
    outcomes = await service.record(rt, caller, [command(a) for a in body.activities])
    duplicates = sum(1 for o in outcomes if o.replayed)
    return BatchOut(
        accepted=len(outcomes) - duplicates,
        duplicates=duplicates,
        results=[activity_out(o) for o in outcomes],
    )
