"""A batch large enough for the bulk write path (``BULK_MIN_ROWS``; ``COPY`` on
PostgreSQL) adds every metric to the buckets as the same activities sent one at a time do:
purchases, credits, redemptions, visits and custom counters, on two days, over lifetime
and day windows (R7 figures, R11 earning, R13 buckets).
"""

from __future__ import annotations

from typing import Any

from tests.api.helpers import activity_body, batch, figures, ladder, meter, program
from tests.conftest import Api

METRICS = ("spend", "orders", "points_earned", "points_balance", "visits", "counter:steps")
ONE_DAY = {"type": "rolling_days", "days": 1}


def _bodies(member: str, pid: int, tag: str) -> list[dict[str, Any]]:
    kinds: list[dict[str, Any]] = [
        {"type": "purchase", "amount_minor": 1250},
        {"type": "counter", "counter": "steps", "quantity": 3},
        {"type": "points_credit", "points": 40},
        {"type": "visit"},
        {"type": "points_redemption", "points": 15},
        {"type": "counter", "counter": "steps", "quantity": 2},
    ]
    return [
        {
            **activity_body(
                member, at=f"2025-03-0{1 + i // 6}T{8 + i % 6:02d}:00:00Z", **kinds[i % 6]
            ),
            "program_id": pid,
            "idempotency_key": f"{tag}-{member}-{i}",
        }
        for i in range(12)
    ]


def test_a_bulk_batch_adds_every_metric_as_single_posts_do(api: Api) -> None:
    pid = int(program(api)["id"])
    ladder(api, pid, meter(METRICS))
    ladder(api, pid, {**meter(METRICS, window=ONE_DAY), "key": "day", "name": "Day"})
    members = [f"bulk-{i}" for i in range(8)]  # 96 rows: the bulk path
    bodies = [body for m in members for body in _bodies(m, pid, "bulk")]
    assert batch(api, bodies)["accepted"] == len(bodies)
    single = "single-0"
    for body in _bodies(single, pid, "single"):
        assert api.post("/v1/activities", json=body).status_code == 201

    as_of = "2025-03-02T20:00:00Z"
    expected = figures(api, single, as_of=as_of)
    assert expected["counter:steps"] == 10 and expected["visits"] == 2  # the single path
    expected_day = figures(api, single, ladder_key="day", as_of=as_of)
    assert expected_day["counter:steps"] == 5  # the second day only
    for m in members:
        assert figures(api, m, as_of=as_of) == expected
        assert figures(api, m, ladder_key="day", as_of=as_of) == expected_day
