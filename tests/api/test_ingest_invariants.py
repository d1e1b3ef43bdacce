"""Every transaction that changes a member's running totals also writes the member's row.

Stored status documents are stamped by the rows a status depends on (R27 reads, see
``db/repos/status_docs.py``): the member's ``members`` row stands for its figures, so any
write of ``member_totals`` or ``metric_totals`` must come with a write of that row in the
same transaction.
Checked here for every kind of activity (R11–R13: purchases, credits, redemptions, visits,
counters, returns), one at a time and in batches large enough for the bulk write path;
on PostgreSQL by the rows' ``xmin`` (the writing transaction), elsewhere by
``updated_at``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text

from tests.api.helpers import activity_body, batch
from tests.api.helpers import program as add_program
from tests.conftest import Api


def _stamps(api: Api, external_id: str) -> tuple[Any, Any, list[Any]]:
    """(members row's xmin or None, its updated_at, the xmins of its running totals' rows)."""
    rt = api.runtime()
    postgres = rt.engine.dialect.name == "postgresql"
    xmin = "xmin::text::bigint" if postgres else "NULL"

    async def read() -> tuple[Any, Any, list[Any]]:
        async with rt.engine.connect() as conn:
            member = (
                await conn.execute(
                    text(f"SELECT id, {xmin}, updated_at FROM members WHERE external_id = :e"),
                    {"e": external_id},
                )
            ).one()
            totals = (
                await conn.execute(
                    text(
                        f"SELECT {xmin} FROM metric_totals WHERE member_id = :m "
                        f"UNION ALL SELECT {xmin} FROM member_totals WHERE member_id = :m"
                    ),
                    {"m": member[0]},
                )
            ).all()
            return member[1], member[2], [row[0] for row in totals]

    assert api.client.portal is not None
    result: tuple[Any, Any, list[Any]] = api.client.portal.call(read)
    return result


def _check_written_together(api: Api, member: str, before: tuple[Any, Any, list[Any]]) -> None:
    member_xmin, updated_at, total_xmins = _stamps(api, member)
    if member_xmin is not None:
        # The totals this transaction wrote carry its id, and so does the member's row.
        changed = set(total_xmins) - set(before[2])
        assert changed, "the activity changed no running total"
        assert changed == {member_xmin}
    else:
        as_dt = (
            updated_at if isinstance(updated_at, datetime) else datetime.fromisoformat(updated_at)
        )
        old = before[1] if isinstance(before[1], datetime) else datetime.fromisoformat(before[1])
        assert as_dt > old


def test_every_kind_of_activity_writes_the_member_row_with_its_totals(api: Api) -> None:
    pid = add_program(api)["id"]
    member = "inv-1"
    first = activity_body(member, "purchase", at="2025-01-10T10:00:00Z", amount_minor=5000)
    first["program_id"] = pid
    first["idempotency_key"] = "inv-buy-1"
    assert api.post("/v1/activities", json=first).status_code == 201
    kinds: list[dict[str, Any]] = [
        {"type": "purchase", "amount_minor": 1200},
        {"type": "points_credit", "points": 40},
        {"type": "points_redemption", "points": 30},
        {"type": "visit"},
        {"type": "counter", "counter": "steps", "quantity": 3},
        {"type": "return", "reverses_key": "inv-buy-1", "amount_minor": 1000},
        {"type": "return", "reverses_key": "inv-buy-1"},
    ]
    for i, fields in enumerate(kinds):
        before = _stamps(api, member)
        body = activity_body(member, at=f"2025-01-{11 + i}T10:00:00Z", **fields)
        body["program_id"] = pid
        response = api.post("/v1/activities", json=body)
        assert response.status_code == 201, (fields, response.text)
        _check_written_together(api, member, before)


def test_a_large_batch_writes_every_member_row_with_its_totals(api: Api) -> None:
    """The bulk path (COPY on PostgreSQL) of a batch of 300 over 30 members, then a
    batch of returns of some of them."""
    pid = add_program(api)["id"]
    members = [f"inv-b{i}" for i in range(30)]
    first = [
        {
            **activity_body(m, "purchase", at="2025-02-01T09:00:00Z", amount_minor=900),
            "program_id": pid,
        }
        for m in members
    ]
    batch(api, first)
    befores = {m: _stamps(api, m) for m in members}
    bodies = [
        {
            **activity_body(
                members[i % 30],
                "purchase" if i % 3 else "points_credit",
                at=f"2025-02-02T{10 + i // 60:02d}:{i % 60:02d}:00Z",
                **({"amount_minor": 100 + i} if i % 3 else {"points": 5}),
            ),
            "program_id": pid,
            "idempotency_key": f"inv-b-{i}",
        }
        for i in range(300)
    ]
    assert batch(api, bodies)["accepted"] == 300
    for m in members:
        _check_written_together(api, m, befores[m])
    befores = {m: _stamps(api, m) for m in members}
    returns = [
        {
            **activity_body(members[i], "return", at="2025-02-03T10:00:00Z"),
            "program_id": pid,
            "reverses_key": f"inv-b-{i + 30}",
        }
        for i in range(30)
    ]
    assert batch(api, returns)["accepted"] == 30
    for m in members:
        _check_written_together(api, m, befores[m])
