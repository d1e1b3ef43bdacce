"""The batch path and the single-activity path record the same thing.

On PostgreSQL a large batch is written with ``COPY`` and its upgrade checks take a quick
path (see ``services/ingest_plan``); single activities go through one multi-table
statement. Both must give the answers, figures and history that recording the same
activities one at a time gives: the same effects, points and level changes.
"""

from __future__ import annotations

import random
from typing import Any

from tests.api.helpers import (
    activity_body,
    batch,
    comparable_result,
    criterion,
    figures,
    history_rows,
    level,
    meter,
)
from tests.api.helpers import ladder as add_ladder
from tests.api.helpers import program as add_program
from tests.conftest import Api

ROLLING_30 = {"type": "rolling_days", "days": 30}


def _ladder(timing: str) -> dict[str, Any]:
    return {
        "key": "status",
        "name": "Status",
        "upgrade_timing": timing,
        "levels": [
            level("base", 1, is_floor=True),
            level("silver", 2, criterion("spend", 3000, window=ROLLING_30), earn_multiplier="1.5"),
            level(
                "gold",
                3,
                criterion("spend", 9000, window=ROLLING_30),
                criterion("points_earned", 150),
                earn_multiplier="2",
            ),
            level("platinum", 4, criterion("visits", 12), criterion("orders", 40), mode="any"),
        ],
    }


def _activities(program_id: int, prefix: str) -> list[dict[str, Any]]:
    """200 activities of six members over two months, mostly in order, some late."""
    rng = random.Random(7)
    out = []
    for i in range(200):
        member = f"{prefix}{i % 6}"
        day = 1 + i * 59 // 200
        if i % 17 == 0:
            day = max(1, day - rng.randrange(1, 40))  # late (R13)
        at = f"2025-{1 + (day - 1) // 31:02d}-{1 + (day - 1) % 31 if day <= 31 else day - 31:02d}"
        at += f"T{rng.randrange(0, 24):02d}:{rng.randrange(0, 60):02d}:00Z"
        kind = rng.choice(["purchase"] * 6 + ["visit", "points_credit"])
        fields: dict[str, Any] = {"program_id": program_id}
        if kind == "purchase":
            fields["amount_minor"] = rng.randrange(100, 2500)
        elif kind == "points_credit":
            fields["points"] = rng.randrange(1, 30)
        out.append(activity_body(member, kind, at=at, key=f"{prefix}-{i}", **fields))
    return out


def _run(api: Api, timing: str) -> None:
    one = add_program(api)
    add_ladder(api, one["id"], _ladder(timing))
    add_ladder(api, one["id"], meter())
    many = add_program(api, name="Other")
    add_ladder(api, many["id"], _ladder(timing))
    add_ladder(api, many["id"], meter())

    # Enrol every member the same way on both sides (a batch enrols a new member at its
    # earliest activity in the batch, single posts at the first one sent).
    for prefix, p in (("s", one), ("b", many)):
        for i in range(6):
            body = activity_body(f"{prefix}{i}", "visit", at="2024-12-01T00:00:00Z")
            response = api.post("/v1/activities", json={**body, "program_id": p["id"]})
            assert response.status_code == 201, response.text
    singles = []
    for body in _activities(one["id"], "s"):
        response = api.post("/v1/activities", json=body)
        assert response.status_code == 201, response.text
        singles.append(response.json())
    batched = batch(api, _activities(many["id"], "b"))["results"]

    assert [comparable_result(r) for r in batched] == [comparable_result(r) for r in singles]
    assert any(r["tier_changes"] for r in singles)
    for i in range(6):
        assert figures(api, f"b{i}", program_id=many["id"]) == figures(
            api, f"s{i}", program_id=one["id"]
        )
        # The same changes, each upgrade naming the activity that caused it.
        assert history_rows(api, f"b{i}", many["id"]) == history_rows(api, f"s{i}", one["id"])


def test_a_large_batch_records_what_single_posts_record_eager(api: Api) -> None:
    _run(api, "eager")


def test_a_large_batch_records_what_single_posts_record_dynamic(api: Api) -> None:
    _run(api, "dynamic")


def test_a_large_batch_records_what_single_posts_record_lazy(api: Api) -> None:
    _run(api, "lazy")


def test_concurrent_repeats_of_a_large_batch_are_stored_once(api: Api) -> None:
    """R12 on the COPY path: a concurrent writer of the same keys makes the copy fail on
    the unique key; the batch is retried and answered as a repeat."""
    from tests.api.test_activities import concurrently, setup

    setup(api)
    items = [activity_body(f"m{i % 7}", "purchase", amount_minor=100) for i in range(150)]
    responses = concurrently(
        4, lambda _: api.post("/v1/activities/batch", json={"activities": items})
    )
    assert all(r.status_code == 200 for r in responses), [r.text[:300] for r in responses]
    assert sorted(r.json()["duplicates"] for r in responses) == [0, 150, 150, 150]
    first = next(r.json() for r in responses if r.json()["duplicates"] == 0)
    for r in responses:
        assert [x["id"] for x in r.json()["results"]] == [x["id"] for x in first["results"]]
    total = sum(figures(api, f"m{i}")["spend"] for i in range(7))
    assert total == 150 * 100
