"""Stored keys are looked for only when the ledger refuses one (R12).

``services.activities.record`` first records a batch as if every idempotency key were
new, without reading the ledger for them; the ledger's unique index refuses a stored key,
and the batch is then recorded again, looking for stored keys first. Any error of the
first attempt sends it to the second, so a client sees what it saw when keys were always
looked for first: a repeat answers its first answer even when recording it again would
fail (a return that is already returned), and a key reused with another body is
refused before the other activities' errors. Nothing of the first attempt is kept.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.api.helpers import (
    activity_body,
    batch,
    error_of,
    figures,
    history,
    level_key,
    meter,
    only_ladder,
    silver_gold,
)
from tests.api.helpers import ladder as add_ladder
from tests.api.helpers import program as add_program
from tests.conftest import Api
from tierwise.db.repos import activities as ledger


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of keys of each ledger look-up for stored keys."""
    seen: list[int] = []
    real = ledger.stored_by_keys

    async def counting(conn: Any, tenant_id: int, keys: list[str]) -> Any:
        seen.append(len(keys))
        return await real(conn, tenant_id, keys)

    monkeypatch.setattr(ledger, "stored_by_keys", counting)
    return seen


def _program(api: Api) -> int:
    found = add_program(api, name="Keys", currency="EUR", earn_rate="1")
    add_ladder(api, found["id"], meter())
    program_id: int = found["id"]
    return program_id


def _purchase(key: str, program_id: int, member: str = "k1", **fields: Any) -> dict[str, Any]:
    return activity_body(
        member,
        "purchase",
        at="2025-03-01T10:00:00Z",
        key=key,
        program_id=program_id,
        amount_minor=fields.pop("amount_minor", 1_000),
        **fields,
    )


def test_new_keys_are_not_looked_for(api: Api, lookups: list[int]) -> None:
    program_id = _program(api)
    answer = batch(api, [_purchase(f"n-{i}", program_id, f"k{i % 3}") for i in range(30)])
    assert (answer["accepted"], answer["duplicates"]) == (30, 0)
    assert lookups == []


def test_a_batch_with_a_stored_key_is_recorded_once_looking_for_keys(
    api: Api, lookups: list[int]
) -> None:
    program_id = _program(api)
    first = batch(api, [_purchase("s-1", program_id)])["results"][0]
    answer = batch(api, [_purchase("s-0", program_id), _purchase("s-1", program_id)])
    assert (answer["accepted"], answer["duplicates"]) == (1, 1)
    assert answer["results"][1] == {**first, "replayed": True}
    assert lookups == [2]  # the second attempt only
    # Counted once each (R12): 1,000 + 1,000, not three purchases.
    assert figures(api, "k1", program_id=program_id)["spend"] == 2_000


def test_a_repeated_return_answers_its_first_answer(api: Api, lookups: list[int]) -> None:
    """Recording the return again would fail (already returned): the repeat answers."""
    program_id = _program(api)
    bought = batch(api, [_purchase("r-buy", program_id)])["results"][0]
    ret = activity_body(
        "k1", "return", at="2025-03-02T10:00:00Z", key="r-ret", program_id=program_id
    ) | {"reverses": bought["id"]}
    first = batch(api, [ret])["results"][0]
    again = batch(api, [ret])
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    assert again["results"][0] == {**first, "replayed": True}
    assert figures(api, "k1", program_id=program_id)["spend"] == 0


def test_a_reused_key_is_refused_before_the_other_errors(api: Api) -> None:
    program_id = _program(api)
    batch(api, [_purchase("u-1", program_id)])
    unknown = activity_body(
        "k1", "return", at="2025-03-02T10:00:00Z", key="u-ret", program_id=program_id
    ) | {"reverses_key": "no-such-key"}
    response = api.post(
        "/v1/activities/batch",
        json={
            "activities": [
                _purchase("u-2", program_id),
                unknown,
                _purchase("u-1", program_id, amount_minor=5),
            ]
        },
    )
    error_of(response, 409, "idempotency_key_reused")
    # Nothing of the batch was kept.
    assert figures(api, "k1", program_id=program_id)["spend"] == 1_000
    alone = api.post("/v1/activities", json=unknown)
    error_of(alone, 404, "activity_not_found")


def _events(api: Api, member: str) -> int:
    rt = api.runtime()

    async def read() -> int:
        async with rt.engine.connect() as conn:
            found = await conn.execute(
                text(
                    "SELECT count(*) FROM events e JOIN members m ON m.id = e.member_id "
                    "JOIN tenants t ON t.id = m.tenant_id "
                    "WHERE t.name = :tenant AND m.external_id = :member"
                ),
                {"tenant": api.key.tenant, "member": member},
            )
            return int(found.scalar_one())

    assert api.client.portal is not None
    count: int = api.client.portal.call(read)
    return count


def test_a_level_change_in_a_batch_run_twice_is_recorded_once(api: Api) -> None:
    """R22, R23: the first attempt's upgrade is rolled back with it; the history and the
    outbox hold the second attempt's only."""
    found = add_program(api, name="Once", currency="EUR", earn_rate="1")
    add_ladder(api, found["id"], silver_gold())
    stored = activity_body(
        "up1", "points_credit", at="2025-03-01T10:00:00Z", key="o-1", program_id=found["id"]
    ) | {"points": 100}
    batch(api, [stored])
    lift = activity_body(
        "up1", "points_credit", at="2025-03-02T10:00:00Z", key="o-2", program_id=found["id"]
    ) | {"points": 450}
    answer = batch(api, [stored, lift])
    assert (answer["accepted"], answer["duplicates"]) == (1, 1)
    assert [c["to"] for c in answer["results"][1]["tier_changes"]] == ["silver"]
    assert level_key(only_ladder(api, "up1", program_id=found["id"])) == "silver"
    assert [(h["kind"], h["to_level"]) for h in history(api, "up1")] == [("upgraded", "silver")]
    assert _events(api, "up1") == 1
