"""A repeat is told from a reuse of its key by the body's fingerprint, also where the
ledger does not store it (R12).

A usual purchase of a batch sent without a program id, at an instant in UTC, stores an
empty ``request_hash``: its fingerprint is written again from the row when a repeat
comes (``services.activities._stored_hash``). Every other activity stores its
fingerprint. Here each case is stored, then repeated alone and in a batch with the same
body (the first answer, replayed) and with bodies that differ in one field each (409,
nothing written).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tests.api.helpers import activity_body, batch, error_of, figures, meter
from tests.api.helpers import ladder as add_ladder
from tests.api.helpers import program as add_program
from tests.conftest import Api
from tierwise.db.tables import Activity


def _program(api: Api) -> int:
    found = add_program(api, name="Prints", currency="EUR", earn_rate="0.5")
    add_ladder(api, found["id"], meter())
    program_id: int = found["id"]
    return program_id


def _stored_hashes(api: Api, keys: list[str]) -> dict[str, str]:
    rt = api.runtime()

    async def read() -> dict[str, str]:
        async with rt.engine.connect() as conn:
            found = await conn.execute(
                select(Activity.idempotency_key, Activity.request_hash).where(
                    Activity.idempotency_key.in_(keys)
                )
            )
            return {row[0]: row[1] for row in found}

    assert api.client.portal is not None
    hashes: dict[str, str] = api.client.portal.call(read)
    return hashes


def _purchase(key: str, **fields: Any) -> dict[str, Any]:
    body = activity_body(
        "fp1", "purchase", at="2025-04-01T10:00:00.250000Z", key=key, amount_minor=1_234
    )
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


CASES = {
    # key: (first body's extra fields, whether the row keeps the fingerprint)
    "plain": ({}, False),
    "currency": ({"currency": "EUR"}, False),
    "program": ({"program_id": "PROGRAM"}, True),
    "offset": ({"occurred_at": "2025-04-01T12:00:00.25+02:00"}, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_repeats_replay_and_other_bodies_are_refused(api: Api, case: str) -> None:
    program_id = _program(api)
    extra, kept = CASES[case]
    extra = {k: program_id if v == "PROGRAM" else v for k, v in extra.items()}
    key = f"fp-{case}"
    # Two in the batch: the usual purchase's own path takes batches only.
    first = batch(api, [_purchase(key, **extra), _purchase(f"{key}-b", **extra)])["results"][0]
    stored = _stored_hashes(api, [key])[key]
    assert (stored != "") is kept

    same = _purchase(key, **extra)
    alone = api.post("/v1/activities", json=same)
    assert alone.status_code == 200, alone.text
    assert alone.json() == {**first, "replayed": True}
    again = batch(api, [same, _purchase(f"{key}-c", **extra)])
    assert again["results"][0] == {**first, "replayed": True}
    assert (again["accepted"], again["duplicates"]) == (1, 1)

    others = [
        {**extra, "amount_minor": 1_235},
        {**extra, "member_id": "fp2"},
        {**extra, "currency": None if "currency" in extra else "EUR"},
        {**extra, "program_id": None if "program_id" in extra else program_id},
        {**extra, "occurred_at": "2025-04-01T10:00:00.250001Z"},
    ]
    spend = figures(api, "fp1", program_id=program_id)["spend"]
    for changed in others:
        body = _purchase(key, **changed)
        error_of(api.post("/v1/activities", json=body), 409, "idempotency_key_reused")
        response = api.post(
            "/v1/activities/batch", json={"activities": [body, _purchase(f"{key}-d", **extra)]}
        )
        error_of(response, 409, "idempotency_key_reused")
    assert figures(api, "fp1", program_id=program_id)["spend"] == spend == 3 * 1_234
