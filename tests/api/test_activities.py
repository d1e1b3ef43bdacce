"""Recording activity through the HTTP API: idempotency (R12), batches, late activities
(R13), returns (R13), reads as of an instant (R27), history (R22) and earning (R11)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from tests.api.helpers import (
    activity,
    activity_body,
    batch,
    criterion,
    error_of,
    figures,
    history,
    ladder,
    level,
    meter,
    only_ladder,
    program,
    status_ladder,
)
from tests.conftest import Api

T = TypeVar("T")


def concurrently(n: int, fn: Callable[[int], T]) -> list[T]:
    """Run ``fn(0..n-1)`` in ``n`` threads released together by a barrier."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def spend_ladder(window: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Silver at spend >= 1000, gold at spend >= 5000 (minor units) over ``window``."""
    return {
        "key": "status",
        "name": "Status",
        "levels": [
            level("silver", 1, criterion("spend", 1000, window=window)),
            level("gold", 2, criterion("spend", 5000, window=window)),
        ],
        **extra,
    }


def setup(api: Api, window: dict[str, Any] | None = None) -> int:
    """A USD program (1 point per dollar) with the spend ladder and a meter ladder."""
    p = program(api)
    ladder(api, p["id"], spend_ladder(window))
    ladder(api, p["id"], meter(window=window))
    return int(p["id"])


def level_of(api: Api, member: str, **params: Any) -> str | None:
    view = only_ladder(api, member, ladder="status", **params)
    current = view["current_level"]
    return None if current is None else str(current["key"])


def without_replayed(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "replayed"}


# -- R12: idempotency ----------------------------------------------------------------------


def test_the_same_key_twice_is_stored_once_and_replays_the_first_result(api: Api) -> None:
    """R12: the repeat answers 200 with the first call's result and
    ``Idempotent-Replayed: true``; the purchase counts once."""
    setup(api)
    body = activity_body("m", "purchase", key="order-1", amount_minor=6000)
    first = api.post("/v1/activities", json=body)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert first.json()["replayed"] is False
    second = api.post("/v1/activities", json=body)
    assert second.status_code == 200, second.text
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["replayed"] is True
    assert without_replayed(second.json()) == without_replayed(first.json())
    assert [c["to"] for c in second.json()["tier_changes"]] == ["gold"]
    assert figures(api, "m") == {
        "spend": 6000,
        "orders": 1,
        "points_earned": 60,
        "points_balance": 60,
    }
    assert [(e["from_level"], e["to_level"]) for e in history(api, "m")] == [(None, "gold")]


def test_a_replay_is_recognised_whatever_the_order_of_the_fields(api: Api) -> None:
    """R12: "the same body" means the same fields and values, not the same bytes."""
    setup(api)
    body = activity_body("m", "purchase", key="order-1", amount_minor=1500, currency="USD")
    first = api.post("/v1/activities", json=body)
    assert first.status_code == 201, first.text
    reordered = dict(reversed(list(body.items())))
    again = api.post("/v1/activities", json=reordered)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(
    "change",
    [
        {"amount_minor": 6001},
        {"member_id": "someone-else"},
        {"occurred_at": "2025-01-11T12:00:00Z"},
        {"currency": "USD"},
        {"type": "points_credit", "amount_minor": None, "points": 6000},
    ],
    ids=["amount", "member", "time", "added field", "type"],
)
def test_the_same_key_with_another_body_is_409_and_changes_nothing(
    api: Api, change: dict[str, Any]
) -> None:
    """R12: a different body under a used key is refused with 409
    ``idempotency_key_reused``; the first activity stands alone."""
    setup(api)
    body = activity_body("m", "purchase", key="order-1", amount_minor=6000)
    assert api.post("/v1/activities", json=body).status_code == 201
    before = figures(api, "m")
    other = {k: v for k, v in {**body, **change}.items() if v is not None}
    error_of(api.post("/v1/activities", json=other), 409, "idempotency_key_reused")
    assert figures(api, "m") == before
    assert api.get("/v1/members/someone-else/status").status_code == 404


def test_repeats_inside_one_batch_are_stored_once(api: Api) -> None:
    """R12: a key repeated in one batch is stored once; the repeat answers the first
    result and counts as a duplicate."""
    setup(api)
    a = activity_body("m", "purchase", key="a", amount_minor=700)
    b = activity_body("m", "purchase", key="b", amount_minor=400)
    result = batch(api, [a, b, a, a])
    assert (result["accepted"], result["duplicates"]) == (2, 2)
    ids = [r["id"] for r in result["results"]]
    assert ids[0] == ids[2] == ids[3] != ids[1]
    assert [r["replayed"] for r in result["results"]] == [False, False, True, True]
    assert figures(api, "m")["spend"] == 1100
    assert figures(api, "m")["orders"] == 2


def test_a_batch_repeating_stored_keys_stores_only_the_new_ones(api: Api) -> None:
    """R12: a batch sent again (e.g. after a timeout) adds only what is new."""
    setup(api)
    items = [activity_body("m", "purchase", amount_minor=100 * (i + 1)) for i in range(5)]
    first = batch(api, items[:3])
    again = batch(api, items)
    assert (again["accepted"], again["duplicates"]) == (2, 3)
    assert [r["id"] for r in again["results"][:3]] == [r["id"] for r in first["results"]]
    assert figures(api, "m")["spend"] == 1500
    assert figures(api, "m")["orders"] == 5


def test_the_same_key_with_two_bodies_in_one_batch_refuses_the_batch(api: Api) -> None:
    """R12: inside one batch too, a key reused with another body is 409 and the whole
    batch is refused."""
    setup(api)
    items = [
        activity_body("m", "purchase", key="a", amount_minor=700),
        activity_body("m", "purchase", key="b", amount_minor=400),
        activity_body("m", "purchase", key="a", amount_minor=701),
    ]
    error = error_of(
        api.post("/v1/activities/batch", json={"activities": items}),
        409,
        "idempotency_key_reused",
    )
    assert error["details"]["index"] == 2
    assert api.get("/v1/members/m/status").status_code == 404


def test_concurrent_repeats_are_stored_and_counted_once(api: Api) -> None:
    """R12 "also concurrently": ten identical requests at once store one activity; one
    answers 201, the others replay it."""
    setup(api)
    body = activity_body("m", "purchase", key="racy", amount_minor=6000)
    responses = concurrently(10, lambda _: api.post("/v1/activities", json=body))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 9 + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert all(
        r.headers.get("Idempotent-Replayed") == "true" for r in responses if r.status_code == 200
    )
    assert figures(api, "m") == {
        "spend": 6000,
        "orders": 1,
        "points_earned": 60,
        "points_balance": 60,
    }
    upgrades = history(api, "m")
    assert [(e["from_level"], e["to_level"]) for e in upgrades] == [(None, "gold")]


def test_concurrent_repeats_of_a_batch_are_stored_once(api: Api) -> None:
    """R12 for batches sent concurrently: every item is stored and counted once."""
    setup(api)
    items = [activity_body(f"m{i % 3}", "purchase", amount_minor=1000) for i in range(30)]
    responses = concurrently(
        5, lambda _: api.post("/v1/activities/batch", json={"activities": items})
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert sum(r.json()["accepted"] for r in responses) == 30
    assert sorted(r.json()["duplicates"] for r in responses) == [0, 30, 30, 30, 30]
    for member in ("m0", "m1", "m2"):
        assert figures(api, member)["spend"] == 10_000
        assert figures(api, member)["orders"] == 10


def test_concurrent_activities_of_one_member_are_all_counted(api: Api) -> None:
    """R12/R13: concurrent writers for one member lose no update."""
    setup(api)
    responses = concurrently(
        10,
        lambda i: api.post(
            "/v1/activities", json=activity_body("m", "purchase", amount_minor=600 + i)
        ),
    )
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    assert figures(api, "m")["spend"] == sum(600 + i for i in range(10))
    assert figures(api, "m")["orders"] == 10
    assert level_of(api, "m") == "gold"
    changes = [(e["from_level"], e["to_level"]) for e in history(api, "m")]
    assert changes in ([(None, "silver"), ("silver", "gold")], [(None, "gold")])


# -- batches -------------------------------------------------------------------------------


def test_a_batch_of_1000_activities_is_accepted_in_one_call(api: Api) -> None:
    """Issue 2 §8: up to 1,000 activities in one transaction, each answered in order."""
    setup(api)
    items = [
        activity_body(f"m{i % 10}", "purchase", amount_minor=100, key=f"b-{i}") for i in range(1000)
    ]
    result = batch(api, items)
    assert (result["accepted"], result["duplicates"]) == (1000, 0)
    assert [r["idempotency_key"] for r in result["results"]] == [f"b-{i}" for i in range(1000)]
    assert len({r["id"] for r in result["results"]}) == 1000
    for member in ("m0", "m9"):
        assert figures(api, member) == {
            "spend": 10_000,
            "orders": 100,
            "points_earned": 100,
            "points_balance": 100,
        }
        assert level_of(api, member) == "gold"
        assert [e["to_level"] for e in history(api, member)] == ["silver", "gold"]


# -- R13: late activities ------------------------------------------------------------------

CALENDAR_YEAR = {"type": "calendar_year"}
ROLLING_30 = {"type": "rolling_days", "days": 30}


def test_a_late_activity_in_the_current_year_completes_the_total_and_upgrades(
    api: Api,
) -> None:
    """R13, R9: a back-dated purchase counts in the calendar year it falls in; it
    completes the year's total, so the member moves up."""
    setup(api, CALENDAR_YEAR)
    activity(api, "m", "purchase", amount_minor=3000, at="2025-06-10T12:00:00Z")
    assert level_of(api, "m", as_of="2025-06-11T00:00:00Z") == "silver"
    late = activity(api, "m", "purchase", amount_minor=2500, at="2025-03-01T12:00:00Z")
    assert [c["to"] for c in late["tier_changes"]] == ["gold"]
    assert level_of(api, "m", as_of="2025-06-11T00:00:00Z") == "gold"
    assert figures(api, "m", as_of="2025-06-11T00:00:00Z")["spend"] == 5500
    assert figures(api, "m", as_of="2025-03-02T00:00:00Z")["spend"] == 2500


def test_a_late_activity_in_the_previous_year_does_not_count_this_year(api: Api) -> None:
    """R13: a purchase dated in the previous calendar year counts there, not now."""
    setup(api, CALENDAR_YEAR)
    activity(api, "m", "purchase", amount_minor=3000, at="2025-01-15T12:00:00Z")
    late = activity(api, "m", "purchase", amount_minor=2500, at="2024-12-20T12:00:00Z")
    assert late["tier_changes"] == []  # already silver; 3000 + 2500 is not this year's
    assert figures(api, "m", as_of="2025-01-16T00:00:00Z")["spend"] == 3000
    assert figures(api, "m", as_of="2024-12-31T23:00:00Z")["spend"] == 2500
    assert level_of(api, "m", as_of="2025-01-16T00:00:00Z") == "silver"
    activity(api, "m", "purchase", amount_minor=1999, at="2025-02-01T12:00:00Z")
    assert level_of(api, "m", as_of="2025-02-02T00:00:00Z") == "silver"  # 4999 this year
    done = activity(api, "m", "purchase", amount_minor=1, at="2025-01-20T12:00:00Z")
    assert [c["to"] for c in done["tier_changes"]] == ["gold"]


def test_a_late_activity_inside_a_rolling_window_completes_a_later_total(api: Api) -> None:
    """R13: with a rolling 30-day window, a purchase back-dated to 9 days before an
    existing one makes that later moment reach the threshold: the member is upgraded as
    of the moment the total was complete."""
    setup(api, ROLLING_30)
    activity(api, "m", "purchase", amount_minor=3000, at="2025-06-10T12:00:00Z")
    late = activity(api, "m", "purchase", amount_minor=2500, at="2025-06-01T12:00:00Z")
    assert [c["to"] for c in late["tier_changes"]] == ["gold"]
    gold = [e for e in history(api, "m") if e["to_level"] == "gold"]
    assert len(gold) == 1
    assert gold[0]["occurred_at"] == "2025-06-10T12:00:00Z"
    assert figures(api, "m", as_of="2025-06-10T13:00:00Z")["spend"] == 5500
    assert figures(api, "m", as_of="2025-06-05T00:00:00Z")["spend"] == 2500
    assert level_of(api, "m", as_of="2025-06-10T13:00:00Z") == "gold"


def test_a_late_activity_outside_the_rolling_window_does_not_complete_it(api: Api) -> None:
    """R13: a purchase back-dated beyond the rolling window of the later one does not
    add to it."""
    setup(api, ROLLING_30)
    activity(api, "m", "purchase", amount_minor=3000, at="2025-06-10T12:00:00Z")
    late = activity(api, "m", "purchase", amount_minor=2500, at="2025-04-01T12:00:00Z")
    assert [c["to"] for c in late["tier_changes"]] in ([], ["silver"])
    assert figures(api, "m", as_of="2025-06-10T13:00:00Z")["spend"] == 3000
    assert figures(api, "m", as_of="2025-04-01T13:00:00Z")["spend"] == 2500
    assert level_of(api, "m", as_of="2025-06-10T13:00:00Z") == "silver"


def test_a_late_points_credit_upgrades_on_a_lifetime_total(api: Api) -> None:
    """R13, E1 ladder: a credit back-dated before earlier activity still completes the
    lifetime total."""
    p = program(api)
    ladder(
        api,
        p["id"],
        {
            "key": "status",
            "name": "Status",
            "levels": [
                level("silver", 1, criterion("points_earned", 500)),
                level("gold", 2, criterion("points_earned", 1000)),
            ],
        },
    )
    activity(api, "m", points=650, at="2025-05-01T00:00:00Z")
    late = activity(api, "m", points=400, at="2025-01-01T00:00:00Z")
    assert [c["to"] for c in late["tier_changes"]] == ["gold"]
    assert only_ladder(api, "m")["current_level"]["key"] == "gold"


# -- R13: returns --------------------------------------------------------------------------


def test_a_full_return_by_activity_id_takes_back_spend_order_and_points(api: Api) -> None:
    """R13: a return of a whole purchase reduces spend by its amount, orders by one and
    points by what it earned; R10: the level reached stays."""
    setup(api)
    activity(api, "m", "purchase", amount_minor=1000)
    bought = activity(api, "m", "purchase", amount_minor=4500)
    assert bought["points_earned"] == 45
    assert level_of(api, "m") == "gold"
    returned = activity(api, "m", "return", reverses=bought["id"])
    assert returned["reverses"] == bought["id"]
    assert returned["effects"] == {
        "orders": -1,
        "points_balance": -45,
        "points_earned": -45,
        "spend": -4500,
    }
    assert figures(api, "m") == {
        "spend": 1000,
        "orders": 1,
        "points_earned": 10,
        "points_balance": 10,
    }
    assert level_of(api, "m") == "gold"


def test_partial_returns_by_key_take_back_in_proportion_until_the_order_is_gone(
    api: Api,
) -> None:
    """R13: a partial return (by ``reverses_key``) reduces spend by its amount and points
    in proportion; orders drop only when the purchase is fully returned; a return beyond
    what is left is refused."""
    setup(api)
    activity(api, "m", "purchase", amount_minor=2000, key="order-9")  # 20 points
    part = activity(api, "m", "return", reverses_key="order-9", amount_minor=500)
    assert part["effects"] == {"points_balance": -5, "points_earned": -5, "spend": -500}
    assert figures(api, "m") == {
        "spend": 1500,
        "orders": 1,
        "points_earned": 15,
        "points_balance": 15,
    }
    too_much = api.post(
        "/v1/activities",
        json=activity_body("m", "return", reverses_key="order-9", amount_minor=1501),
    )
    error_of(too_much, 422, "return_exceeds_purchase")
    rest = activity(api, "m", "return", reverses_key="order-9")
    assert rest["effects"] == {
        "orders": -1,
        "points_balance": -15,
        "points_earned": -15,
        "spend": -1500,
    }
    assert figures(api, "m") == {"spend": 0, "orders": 0, "points_earned": 0, "points_balance": 0}
    again = api.post("/v1/activities", json=activity_body("m", "return", reverses_key="order-9"))
    error_of(again, 422, "already_returned")


def test_partial_returns_never_take_back_more_points_than_were_earned(api: Api) -> None:
    """R8, R13: three returns of a third each take back exactly the points earned, not
    one point more or less, despite rounding."""
    setup(api)
    bought = activity(api, "m", "purchase", amount_minor=1000)  # 10 points
    for _ in range(3):
        activity(api, "m", "return", reverses=bought["id"], amount_minor=333)
    activity(api, "m", "return", reverses=bought["id"], amount_minor=1)
    assert figures(api, "m") == {"spend": 0, "orders": 0, "points_earned": 0, "points_balance": 0}


def test_a_return_of_a_points_credit_reverses_it_whole(api: Api) -> None:
    """R13: any other activity is reversed whole, once."""
    setup(api)
    credit = activity(api, "m", points=300)
    activity(api, "m", "return", reverses=credit["id"])
    assert figures(api, "m")["points_earned"] == 0
    assert figures(api, "m")["points_balance"] == 0
    again = api.post("/v1/activities", json=activity_body("m", "return", reverses=credit["id"]))
    error_of(again, 422, "already_returned")


def test_a_return_replayed_with_its_key_is_not_applied_twice(api: Api) -> None:
    """R12 + R13: a return is an activity like any other: its repeat is a replay."""
    setup(api)
    bought = activity(api, "m", "purchase", amount_minor=2000)
    body = activity_body("m", "return", reverses=bought["id"], amount_minor=500)
    assert api.post("/v1/activities", json=body).status_code == 201
    assert api.post("/v1/activities", json=body).status_code == 200
    assert figures(api, "m")["spend"] == 1500


# -- R27: reading as of an instant; R22: history -------------------------------------------


def test_status_as_of_an_instant_before_an_upgrade_shows_the_level_and_figures_of_then(
    api: Api,
) -> None:
    """R27: a read as of an instant evaluates the member as they stood then: level,
    achieved_at and the figures of that moment."""
    setup(api)
    activity(api, "m", "purchase", amount_minor=1500, at="2025-01-10T12:00:00Z")
    activity(api, "m", "purchase", amount_minor=4000, at="2025-03-10T12:00:00Z")

    before_all = only_ladder(api, "m", ladder="status", as_of="2025-01-01T00:00:00Z")
    assert before_all["current_level"] is None
    assert before_all["progress"]["current"] == 0

    between = only_ladder(api, "m", ladder="status", as_of="2025-02-01T00:00:00Z")
    assert between["current_level"]["key"] == "silver"
    assert between["achieved_at"] == "2025-01-10T12:00:00Z"
    assert between["next_level"]["key"] == "gold"
    assert between["progress"]["current"] == 1500
    assert between["progress"]["remaining"] == 3500
    assert between["progress"]["percentage"] == 30.0

    at_upgrade = only_ladder(api, "m", ladder="status", as_of="2025-03-10T12:00:00Z")
    assert at_upgrade["current_level"]["key"] == "gold"
    assert at_upgrade["previous_level"]["key"] == "silver"
    assert at_upgrade["achieved_at"] == "2025-03-10T12:00:00Z"

    now = only_ladder(api, "m", ladder="status")
    assert now["current_level"]["key"] == "gold"
    assert figures(api, "m", as_of="2025-02-01T00:00:00Z")["spend"] == 1500
    assert figures(api, "m")["spend"] == 5500


def test_status_as_of_renders_the_instant_asked_for(api: Api) -> None:
    """R27: the read says which instant it describes, with its offset."""
    setup(api)
    activity(api, "m", "purchase", amount_minor=1500, at="2025-01-10T12:00:00Z")
    body = api.get("/v1/members/m/status", params={"as_of": "2025-02-01T09:00:00+09:00"}).json()
    assert body["as_of"] in ("2025-02-01T09:00:00+09:00", "2025-02-01T00:00:00Z")


def test_history_lists_every_upgrade_with_its_kind_source_and_activity(api: Api) -> None:
    """R22: every level change is recorded with from, to, kind, source and time; the
    source names the activity; ``until`` answers "what did the member hold on date D"."""
    setup(api)
    first = activity(api, "m", "purchase", amount_minor=1500, at="2025-01-10T12:00:00Z")
    second = activity(api, "m", "purchase", amount_minor=4000, at="2025-03-10T12:00:00Z")
    entries = history(api, "m", ladder="status")
    assert [
        (e["ladder"], e["from_level"], e["to_level"], e["kind"], e["source"], e["occurred_at"])
        for e in entries
    ] == [
        ("status", None, "silver", "upgraded", "activity", "2025-01-10T12:00:00Z"),
        ("status", "silver", "gold", "upgraded", "activity", "2025-03-10T12:00:00Z"),
    ]
    assert all(isinstance(e["activity_id"], int) for e in entries)
    assert entries[0]["activity_id"] != entries[1]["activity_id"]
    assert len({e["id"] for e in entries}) == 2
    assert [c["to"] for c in first["tier_changes"]] == ["silver"]
    assert [c["to"] for c in second["tier_changes"]] == ["gold"]
    until = history(api, "m", ladder="status", until="2025-02-01T00:00:00Z")
    assert [e["to_level"] for e in until] == ["silver"]


def test_a_floor_placement_is_recorded_with_enrolment_as_its_source(api: Api) -> None:
    """R4, R22: a ladder with a floor puts every member there, and history says so."""
    p = program(api)
    ladder(
        api,
        p["id"],
        status_ladder(
            level("bronze", 1, is_floor=True), level("silver", 2, criterion("spend", 1000))
        ),
    )
    activity(api, "m", "purchase", amount_minor=1200, at="2025-01-10T12:00:00Z")
    entries = history(api, "m")
    assert [(e["from_level"], e["to_level"], e["kind"], e["source"]) for e in entries] == [
        (None, "bronze", "upgraded", "enrolment"),
        ("bronze", "silver", "upgraded", "activity"),
    ]


# -- R11: earning --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timing", "points", "parts"),
    [
        ("lazy", 400, [(200_000, "0.2", 400)]),
        ("eager", 600, [(200_000, "0.3", 600)]),
        ("dynamic", 500, [(100_000, "0.2", 200), (100_000, "0.3", 300)]),
    ],
)
def test_the_purchase_that_upgrades_earns_by_the_ladders_upgrade_timing(
    api: Api, timing: str, points: int, parts: list[tuple[int, str, int]]
) -> None:
    """R11, the semantics example: Gold 20 %, Diamond 30 % at lifetime spend >= 15,000; a
    Gold member at 14,000 buys 2,000 -> lazy 400, eager 600, dynamic 500; Diamond in all."""
    p = program(api, earn_rate="1")
    ladder(
        api,
        p["id"],
        {
            "key": "status",
            "name": "Status",
            "upgrade_timing": timing,
            "levels": [
                level("gold", 1, is_floor=True, earn_multiplier="0.2"),
                level("diamond", 2, criterion("spend", 1_500_000), earn_multiplier="0.3"),
            ],
        },
    )
    ladder(api, p["id"], meter())
    before = activity(api, "m", "purchase", amount_minor=1_400_000, at="2025-01-10T12:00:00Z")
    assert before["points_earned"] == 2800
    assert before["tier_changes"] == []
    upgrade = activity(api, "m", "purchase", amount_minor=200_000, at="2025-01-11T12:00:00Z")
    assert upgrade["points_earned"] == points
    assert [(e["amount_minor"], e["rate"], e["points"]) for e in upgrade["earn"]] == parts
    assert [(c["from"], c["to"]) for c in upgrade["tier_changes"]] == [("gold", "diamond")]
    assert level_of(api, "m") == "diamond"
    assert figures(api, "m")["points_earned"] == 2800 + points
    after = activity(api, "m", "purchase", amount_minor=100_000, at="2025-01-12T12:00:00Z")
    assert after["points_earned"] == 300  # Diamond's rate from now on, whatever the timing


def test_earning_uses_the_program_rate_and_the_current_levels_multiplier(api: Api) -> None:
    """R11, R8: points = amount (major units) x earn rate x multiplier, rounded down,
    with exact decimal arithmetic (no float)."""
    p = program(api, earn_rate="1.5")
    ladder(
        api,
        p["id"],
        {
            "key": "status",
            "name": "Status",
            "levels": [
                level("bronze", 1, is_floor=True, earn_multiplier="1.1"),
                level("silver", 2, criterion("spend", 10_000_000), earn_multiplier="2"),
            ],
        },
    )
    # 19.99 x 1.5 x 1.1 = 32.9835 -> 32
    assert activity(api, "m", "purchase", amount_minor=1999)["points_earned"] == 32
    # 0.10 x 1.5 x 1.1 = 0.165 -> 0
    assert activity(api, "m", "purchase", amount_minor=10)["points_earned"] == 0


def test_earning_counts_minor_units_by_the_currencys_exponent(api: Api) -> None:
    """R8, R11: JPY has no minor unit: 1,000 yen at 1 point per yen is 1,000 points."""
    p = program(api, currency="JPY", earn_rate="1")
    ladder(api, p["id"], meter())
    assert activity(api, "m", "purchase", amount_minor=1000)["points_earned"] == 1000
