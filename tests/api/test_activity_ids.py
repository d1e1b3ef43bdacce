"""Public activity ids are written from the ledger id (revision b8d2f4a6c0e1), and rows
recorded before keep the UUID stored with them (R12: a repeat answers the first answer,
with the same id; a return names the activity it reverses by that id)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update

from tests.api.helpers import (
    activity_body,
    batch,
    criterion,
    error_of,
    history,
    level,
    status_ladder,
)
from tests.api.helpers import ladder as add_ladder
from tests.api.helpers import program as add_program
from tests.conftest import Api, make_key
from tierwise.db.tables import Activity, Event
from tierwise.domain.activity_ids import ledger_id
from tierwise.services.tenants import ALL_SCOPES


def _program(api: Api) -> int:
    found = add_program(api, name="Ids", currency="EUR", earn_rate="1")
    add_ladder(
        api,
        found["id"],
        status_ladder(
            level("base", 1, is_floor=True), level("silver", 2, criterion("spend", 50_000))
        ),
    )
    program_id: int = found["id"]
    return program_id


def _purchase(member: str, key: str, program_id: int, amount: int, day: int) -> dict[str, Any]:
    return activity_body(
        member,
        "purchase",
        at=f"2025-04-{day:02d}T10:00:00Z",
        key=key,
        program_id=program_id,
        amount_minor=amount,
    )


def _stored(api: Api, key: str) -> tuple[int, str | None]:
    rt = api.runtime()

    async def read() -> tuple[int, str | None]:
        async with rt.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(Activity.id, Activity.uuid).where(Activity.idempotency_key == key)
                )
            ).one()
            return row[0], row[1]

    assert api.client.portal is not None
    found: tuple[int, str | None] = api.client.portal.call(read)
    return found


def _event_activity_ids(api: Api, member: str) -> list[str | None]:
    """The ``activity_id`` of every event published for ``member`` (R23)."""
    rt = api.runtime()

    async def read() -> list[str | None]:
        async with rt.engine.connect() as conn:
            rows = await conn.execute(select(Event.payload).order_by(Event.id))
            return [p["activity_id"] for p in rows.scalars() if p["member_id"] == member]

    assert api.client.portal is not None
    found: list[str | None] = api.client.portal.call(read)
    return found


def _give_stored_uuid(api: Api, key: str, value: str) -> None:
    """What the migration leaves for a row recorded before: its own UUID kept, and the
    answer it stored (if any) naming it."""
    rt = api.runtime()

    async def write() -> None:
        async with rt.engine.begin() as conn:
            where = Activity.idempotency_key == key
            result = (await conn.execute(select(Activity.result).where(where))).scalar_one()
            if result is not None:
                result = {**result, "id": value}
            await conn.execute(update(Activity).where(where).values(uuid=value, result=result))

    assert api.client.portal is not None
    api.client.portal.call(write)


def test_new_activities_answer_ids_written_from_their_ledger_ids(api: Api) -> None:
    program_id = _program(api)
    one = api.post("/v1/activities", json=_purchase("ida", "ida-1", program_id, 900, 1))
    assert one.status_code == 201, one.text
    many = batch(
        api,
        [
            _purchase("ida", "ida-2", program_id, 1_000, 2),
            _purchase("idb", "idb-1", program_id, 60_000, 2),  # lifts idb to silver
        ],
    )["results"]
    answers = [one.json(), *many]
    for answer, key in zip(answers, ["ida-1", "ida-2", "idb-1"], strict=True):
        row_id, stored_uuid = _stored(api, key)
        assert stored_uuid is None, "new rows store no second key"
        assert ledger_id(answer["id"]) == row_id
        assert uuid.UUID(answer["id"]).version == 8
    assert len({a["id"] for a in answers}) == 3
    # The history row of the lift names the activity that caused it (R22).
    [lift] = [e for e in history(api, "idb") if e["to_level"] == "silver"]
    assert lift["activity_id"] == ledger_id(many[1]["id"])
    # ...and so does the event published with it (R23), by the id the answer gave.
    assert many[1]["id"] in _event_activity_ids(api, "idb")
    # A repeat answers the same id (R12), alone and in a batch.
    again = api.post("/v1/activities", json=_purchase("ida", "ida-1", program_id, 900, 1))
    assert again.status_code == 200 and again.json()["id"] == answers[0]["id"]
    replayed = batch(api, [_purchase("idb", "idb-1", program_id, 60_000, 2)])["results"]
    assert replayed[0]["id"] == answers[2]["id"]


def test_a_return_finds_its_purchase_by_the_new_id_in_either_letter_case(api: Api) -> None:
    program_id = _program(api)
    bought = api.post("/v1/activities", json=_purchase("idr", "idr-1", program_id, 5_000, 3))
    purchase_id = bought.json()["id"]
    back = api.post(
        "/v1/activities",
        json=activity_body(
            "idr", "return", at="2025-04-04T10:00:00Z", key="idr-2", program_id=program_id
        )
        | {"reverses": purchase_id.upper(), "amount_minor": 2_000},
    )
    assert back.status_code == 201, back.text
    assert back.json()["reverses"] == purchase_id
    assert back.json()["effects"]["spend"] == -2_000


def test_rows_recorded_before_keep_their_stored_uuid(api: Api) -> None:
    program_id = _program(api)
    usual = _purchase("idl", "idl-1", program_id, 4_000, 5)  # stored compact (no answer)
    lift = _purchase("idm", "idm-1", program_id, 70_000, 5)  # stored with its answer
    assert batch(api, [usual, lift])["accepted"] == 2
    old_usual, old_lift = str(uuid.uuid4()), str(uuid.uuid4())
    _give_stored_uuid(api, "idl-1", old_usual)
    _give_stored_uuid(api, "idm-1", old_lift)

    # A repeat answers its stored uuid: of the compact row (rebuilt) and of the row that
    # stored its answer.
    again = api.post("/v1/activities", json=usual)
    assert again.status_code == 200 and again.json()["id"] == old_usual
    [lift_again] = batch(api, [lift])["results"]
    assert lift_again["replayed"] is True
    assert lift_again["id"] == old_lift
    # A return names it by that uuid, and answers it.
    back = api.post(
        "/v1/activities",
        json=activity_body(
            "idl", "return", at="2025-04-06T10:00:00Z", key="idl-2", program_id=program_id
        )
        | {"reverses": old_usual},
    )
    assert back.status_code == 201, back.text
    assert back.json()["reverses"] == old_usual
    assert back.json()["effects"]["spend"] == -4_000
    lift_back = api.post(
        "/v1/activities",
        json=activity_body(
            "idm", "return", at="2025-04-06T10:00:00Z", key="idm-2", program_id=program_id
        )
        | {"reverses": old_lift, "amount_minor": 1_000},
    )
    assert lift_back.status_code == 201, lift_back.text
    assert lift_back.json()["reverses"] == old_lift


def test_another_tenants_activity_is_not_found_by_its_id(api: Api) -> None:
    other = Api(api.client, make_key(api.client, f"other-{uuid.uuid4().hex[:10]}", ALL_SCOPES))
    program_id = _program(api)
    theirs = _program(other)
    bought = other.post("/v1/activities", json=_purchase("ido", "ido-1", theirs, 5_000, 3))
    assert bought.status_code == 201, bought.text
    response = api.post(
        "/v1/activities",
        json=activity_body(
            "ido", "return", at="2025-04-04T10:00:00Z", key="ido-2", program_id=program_id
        )
        | {"reverses": bought.json()["id"]},
    )
    error_of(response, 404, "activity_not_found")


def test_a_batch_numbers_its_activities_in_order(api: Api) -> None:
    program_id = _program(api)
    bodies = [
        _purchase(f"ids{i % 3}", f"ids-{i}", program_id, 1_000 + i, 7 + i // 3) for i in range(9)
    ]
    ids = [ledger_id(r["id"]) for r in batch(api, bodies)["results"]]
    # one member's purchases in the order sent (R13: the ledger keeps their order)
    for member in range(3):
        own = [i for i in ids[member::3] if i is not None]
        assert own == sorted(own) and len(own) == 3
    assert len(set(ids)) == 9


def test_a_return_must_come_after_its_purchase_is_recorded(api: Api) -> None:
    """A return in the same batch as its purchase (named by its idempotency key: its id is
    known only once it is recorded) is refused, with nothing written; once the purchase is
    recorded, its id names it."""
    program_id = _program(api)
    purchase = _purchase("idq", "idq-1", program_id, 3_000, 8)
    by_key = activity_body(
        "idq", "return", at="2025-04-09T10:00:00Z", key="idq-2", program_id=program_id
    ) | {"reverses_key": "idq-1"}
    response = api.post("/v1/activities/batch", json={"activities": [purchase, by_key]})
    error_of(response, 422, "return_in_same_batch")
    # The batch wrote nothing: the purchase is recorded afresh, and its id then names it.
    first = api.post("/v1/activities", json=purchase)
    assert first.status_code == 201, first.text
    next_id = first.json()["id"]
    by_id = activity_body(
        "idq", "return", at="2025-04-09T11:00:00Z", key="idq-3", program_id=program_id
    ) | {"reverses": next_id}
    assert api.post("/v1/activities", json=by_id).status_code == 201
