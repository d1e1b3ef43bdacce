"""A repeat answers the first answer, also where the ledger keeps it compact (R12).

The usual purchase (recorded by the one-pass path, changing no level, dated in UTC)
stores its earn rate instead of its whole answer (``activities.result`` NULL, revision
a5c1e7d3b9f2), and a repeat of its idempotency key rebuilds the answer from the row.
Every other activity stores its answer. Here each kind is recorded, alone and in
batches, then repeated; the repeats must answer exactly what the first requests
answered, and the rows must be stored the way this relies on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.api.helpers import activity_body, batch, criterion, level, status_ladder
from tests.api.helpers import ladder as add_ladder
from tests.api.helpers import program as add_program
from tests.conftest import Api
from tierwise.db.tables import Activity


def _program(api: Api) -> int:
    found = add_program(api, name="Compact", currency="EUR", earn_rate="0.333333")
    add_ladder(
        api,
        found["id"],
        status_ladder(
            level("base", 1, is_floor=True, earn_multiplier="1.1"),
            level("silver", 2, criterion("spend", 50_000), earn_multiplier="1.5"),
        ),
    )
    program_id: int = found["id"]
    return program_id


def _bodies(program_id: int) -> list[dict[str, Any]]:
    """Purchases in order (one earning no points, some with the currency and a zone given),
    one that lifts its member to silver, a late one, a points credit, a visit and a return."""
    out = []
    for i in range(12):
        out.append(
            activity_body(
                f"cm{i % 3}",
                "purchase",
                at=f"2025-03-{1 + i:02d}T10:00:00Z",
                key=f"cp-{i}",
                program_id=program_id,
                amount_minor=2 if i == 4 else 1_000 + 37 * i,
            )
            | (
                {"currency": "EUR", "occurred_at": f"2025-03-{1 + i:02d}T10:00:00.25+02:00"}
                if i % 5 == 1
                else {}
            )
        )
    out.append(
        activity_body(
            "cm0",
            "purchase",
            at="2025-03-20T10:00:00Z",
            key="c-up",
            program_id=program_id,
            amount_minor=60_000,
        )
    )
    out.append(
        activity_body(
            "cm2",
            "purchase",
            at="2025-02-01T09:30:00+01:00",
            key="c-late",
            program_id=program_id,
            amount_minor=900,
        )
    )
    out.append(
        activity_body("cm1", at="2025-03-21T08:00:00Z", key="c-credit", program_id=program_id)
        | {"points": 40}
    )
    out.append(
        activity_body("cm2", "visit", at="2025-03-21T09:00:00Z", key="c-visit")
        | {"program_id": program_id}
    )
    return out


def _rows(api: Api, keys: list[str]) -> dict[str, tuple[Any, Any, Any]]:
    """Per key: the stored answer (None for SQL NULL), earn rate and effects."""
    rt = api.runtime()

    async def read() -> dict[str, tuple[Any, Any, Any]]:
        async with rt.engine.connect() as conn:
            found = await conn.execute(
                select(
                    Activity.idempotency_key,
                    Activity.result,
                    Activity.result.is_(None),
                    Activity.earn_rate,
                    Activity.effects,
                ).where(Activity.idempotency_key.in_(keys))
            )
            # SQL NULL, not JSON null
            return {row[0]: (None if row[2] else row[1], row[3], row[4]) for row in found}

    assert api.client.portal is not None
    rows: dict[str, tuple[Any, Any, Any]] = api.client.portal.call(read)
    return rows


def _first(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["replayed"] is False, answer
    return {k: v for k, v in answer.items() if k != "replayed"}


def _again(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["replayed"] is True, answer
    return {k: v for k, v in answer.items() if k != "replayed"}


def test_repeats_answer_the_first_answer_for_every_kind_of_activity(api: Api) -> None:
    program_id = _program(api)
    bodies = _bodies(program_id)
    first = [api.post("/v1/activities", json=b).json() for b in bodies[:4]]
    first += batch(api, bodies[4:])["results"]
    firsts = [_first(a) for a in first]
    assert firsts[12]["tier_changes"], "the big purchase lifts its member"
    ret = activity_body(
        "cm0", "return", at="2025-03-22T08:00:00Z", key="c-return", program_id=program_id
    ) | {"reverses": firsts[3]["id"]}
    firsts.append(_first(api.post("/v1/activities", json=ret).json()))
    bodies.append(ret)

    # Repeated alone, and in one batch (the replay path of each).
    alone = [_again(api.post("/v1/activities", json=b).json()) for b in bodies]
    batched = [_again(a) for a in batch(api, bodies)["results"]]
    assert alone == firsts
    assert batched == firsts

    # The usual purchases (in order, in the program's currency, lifting nobody) are the
    # compact rows; every other activity keeps its answer.
    rows = _rows(api, [b["idempotency_key"] for b in bodies])
    compact = {key for key, (result, _, _) in rows.items() if result is None}
    # An instant given in another offset is answered in that offset, which the row
    # does not keep: those answers are stored whole.
    assert compact == {f"cp-{i}" for i in range(12) if i % 5 != 1}
    for i in range(12):
        _, rate, effects = rows[f"cp-{i}"]
        assert rate == firsts[i]["earn"][0]["rate"]
        assert effects == firsts[i]["effects"]  # what a return takes back (R13)
    for key in ("c-up", "c-late", "c-credit", "c-visit", "c-return"):
        result, rate, _ = rows[key]
        assert rate is None
        assert result["idempotency_key"] == key


def test_a_repeat_with_another_body_is_still_refused(api: Api) -> None:
    program_id = _program(api)
    body = activity_body("cmx", "purchase", key="c-same", program_id=program_id, amount_minor=1_000)
    assert api.post("/v1/activities", json=body).status_code == 201
    changed = body | {"amount_minor": 1_001}
    response = api.post("/v1/activities", json=changed)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    response = api.post("/v1/activities/batch", json={"activities": [body, changed]})
    assert response.status_code == 409


def test_a_lifting_purchase_without_a_program_id_is_fingerprinted_from_its_row(
    api: Api,
) -> None:
    """R12: a usual purchase sent without a program id that lifts its member (recorded by
    the general path) stores no fingerprint, as the quick paths store none: its repeat
    still answers the first answer, and a repeat with another body is still refused."""
    _program(api)  # the tenant's only program: the default
    bodies = [
        {
            "type": "purchase",
            "member_id": "cm-up",
            "idempotency_key": f"c-nop-{i}",
            "occurred_at": f"2025-04-0{1 + i}T10:00:00Z",
            "amount_minor": 60_000 if i == 1 else 1_000,
            "currency": "EUR",
        }
        for i in range(3)
    ]
    firsts = [_first(a) for a in batch(api, bodies)["results"]]
    assert firsts[1]["tier_changes"], "the second purchase lifts its member"
    rows = _rows(api, [b["idempotency_key"] for b in bodies])
    assert rows["c-nop-1"][0] is not None  # the general path's answer, stored whole
    assert [_again(a) for a in batch(api, bodies)["results"]] == firsts
    assert _again(api.post("/v1/activities", json=bodies[1]).json()) == firsts[1]
    changed = bodies[1] | {"amount_minor": 60_001}
    for response in (
        api.post("/v1/activities", json=changed),
        api.post("/v1/activities/batch", json={"activities": [changed]}),
    ):
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "idempotency_key_reused"
