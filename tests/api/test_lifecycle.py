"""The tier lifecycle through the HTTP API: earning, returns, validity, checks and the
sweep, renewal, downgrades, rollover and credit, forecast, manual assignment, history.

Rules R11, R13-R22 of semantics.md and examples E4, E5, E7. Every sweep is run with an
explicit ``as_of`` (R27), so no test sleeps.

Most scenarios use fixed instants in 2024-2026. Manual assignments are stamped with the
server's real clock (and expiries in the past are refused), so the assignment tests place
their activities and sweeps relative to the real "now" instead.

The standard ladder (``ranked``) counts points earned over a rolling 365-day window and
holds a level for 12 months: a member who earns 3,000 points on 2024-01-10 is Platinum
until 2025-01-09 23:59:59, checked on 2025-01-10 00:00:00, and at that check the window
(2024-01-11 .. 2025-01-09) no longer holds the points that earned the level. Points earned
on 2024-06-01 (``MID``) are inside it.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.api.helpers import (
    activity,
    assign,
    criterion,
    enrol,
    history,
    iso,
    ladder,
    level,
    level_at,
    level_key,
    only_ladder,
    program,
    silver_gold,
    status,
    sweep,
    unassign,
    utc_now,
)
from tests.conftest import Api

ROLLING_YEAR = {"type": "rolling_days", "days": 365}
TWELVE_MONTHS = {"type": "fixed_months", "months": 12}

START = "2024-01-10T00:00:00Z"  # the upgrade
MID = "2024-06-01T00:00:00Z"  # inside the window of the first check
EXPIRY_1 = "2025-01-09T23:59:59Z"
CHECK_1 = "2025-01-10T00:00:00Z"
EXPIRY_2 = "2026-01-09T23:59:59Z"
CHECK_2 = "2026-01-10T00:00:00Z"


def ranked(
    policy: str = "drop_one",
    *,
    floor: bool = True,
    grace_days: int = 0,
    key: str = "status",
    **extra: Any,
) -> dict[str, Any]:
    """Bronze (floor, optional) < Silver 1,000 < Gold 2,000 < Platinum 3,000 points earned
    over a rolling year; 12-month validity, daily checks, downgrade ``policy``."""
    levels = [
        level("silver", 2, criterion("points_earned", 1000, window=ROLLING_YEAR)),
        level("gold", 3, criterion("points_earned", 2000, window=ROLLING_YEAR)),
        level("platinum", 4, criterion("points_earned", 3000, window=ROLLING_YEAR)),
    ]
    if floor:
        levels.insert(0, level("bronze", 1, is_floor=True))
    body: dict[str, Any] = {
        "key": key,
        "name": key.title(),
        "validity": TWELVE_MONTHS,
        "downgrade": {"policy": policy, "grace_days": grace_days},
        "levels": levels,
    }
    body.update(extra)
    return body


def with_level(body: dict[str, Any], key: str, **fields: Any) -> dict[str, Any]:
    """``body`` with extra fields on level ``key`` (e.g. a maintain rule)."""
    levels = [{**lv, **fields} if lv["key"] == key else lv for lv in body["levels"]]
    return {**body, "levels": levels}


def maintain(threshold: int) -> dict[str, Any]:
    return {"mode": "all", "criteria": [criterion("points_earned", threshold, window=ROLLING_YEAR)]}


def setup(api: Api, body: dict[str, Any], **program_fields: Any) -> int:
    p = program(api, **program_fields)
    ladder(api, p["id"], body)
    return int(p["id"])


def platinum(api: Api, member: str, *, later: int = 0) -> None:
    """``member`` reaches Platinum on 2024-01-10 and earns ``later`` points on 2024-06-01,
    which is all the check on 2025-01-10 sees."""
    result = activity(api, member, points=3000, at=START)
    assert [c["to"] for c in result["tier_changes"]] == ["platinum"]
    if later:
        activity(api, member, points=later, at=MID)


def view(api: Api, member: str, **params: Any) -> dict[str, Any]:
    return only_ladder(api, member, **params)


def kinds(api: Api, member: str, **params: Any) -> list[tuple[str, str | None, str | None]]:
    """History as (kind, from, to), oldest first."""
    return [(h["kind"], h["from_level"], h["to_level"]) for h in history(api, member, **params)]


def last_change(api: Api, member: str) -> dict[str, Any]:
    return history(api, member)[-1]


# -- R11 earning with upgrade timing -----------------------------------------------------


def earning_ladder(timing: str) -> dict[str, Any]:
    """R11's example: Gold earns 20 %, Diamond 30 % and needs lifetime spend >= 15,000 USD."""
    return {
        "key": "status",
        "name": "Status",
        "upgrade_timing": timing,
        "levels": [
            level("gold", 1, is_floor=True, earn_multiplier="0.2"),
            level("diamond", 2, criterion("spend", 1_500_000), earn_multiplier="0.3"),
        ],
    }


@pytest.mark.parametrize(
    ("timing", "points", "parts"),
    [
        ("lazy", 400, [(200_000, "0.2", 400)]),
        ("eager", 600, [(200_000, "0.3", 600)]),
        ("dynamic", 500, [(100_000, "0.2", 200), (100_000, "0.3", 300)]),
    ],
)
def test_r11_the_upgrade_timing_decides_the_rate_of_the_purchase_that_upgrades(
    api: Api, timing: str, points: int, parts: list[tuple[int, str, int]]
) -> None:
    """R11: a Gold member at 14,000 buys 2,000: lazy 400, eager 600, dynamic 500 points,
    and Diamond in every case. Amounts are USD minor units, earn rate 1 point per dollar."""
    setup(api, earning_ladder(timing))
    first = activity(api, "buyer", "purchase", amount_minor=1_400_000, at=START)
    assert first["points_earned"] == 2800  # 14,000 x 1 x 0.2, no upgrade yet
    assert first["tier_changes"] == []
    result = activity(api, "buyer", "purchase", amount_minor=200_000, at=MID)
    assert result["points_earned"] == points
    assert [(p["amount_minor"], p["rate"], p["points"]) for p in result["earn"]] == parts
    assert result["effects"]["points_earned"] == points
    assert [(c["from"], c["to"], c["kind"]) for c in result["tier_changes"]] == [
        ("gold", "diamond", "upgraded")
    ]
    assert level_key(view(api, "buyer")) == "diamond"
    after = activity(api, "buyer", "purchase", amount_minor=100_000, at="2024-07-01T00:00:00Z")
    assert after["points_earned"] == 300  # now at Diamond's rate, whatever the timing


# -- R13 returns ----------------------------------------------------------------------------


def spend_ladder(reverse: bool) -> dict[str, Any]:
    return {
        "key": "status",
        "name": "Status",
        "reverse_upgrade_on_return": reverse,
        "levels": [
            level("silver", 1, criterion("spend", 100_000)),
            level("gold", 2, criterion("spend", 500_000)),
        ],
    }


def test_r13_a_return_that_undoes_the_qualification_reverses_the_upgrade_it_caused(
    api: Api,
) -> None:
    """R13 with ``reverse_upgrade_on_return: true``: returning the purchase that lifted the
    member to Gold takes Gold away again, recorded in history with the return as source."""
    setup(api, spend_ladder(reverse=True))
    activity(api, "r", "purchase", amount_minor=200_000, at=START)
    big = activity(api, "r", "purchase", amount_minor=400_000, at=MID, key="big")
    assert [c["to"] for c in big["tier_changes"]] == ["gold"]
    back = activity(api, "r", "return", reverses_key="big", at="2024-06-05T00:00:00Z")
    assert back["effects"]["spend"] == -400_000
    assert back["effects"]["orders"] == -1
    assert back["effects"]["points_earned"] == -big["points_earned"] == -4000
    assert [(c["from"], c["to"], c["kind"]) for c in back["tier_changes"]] == [
        ("gold", "silver", "downgraded")
    ]
    assert level_key(view(api, "r")) == "silver"
    entry = last_change(api, "r")
    assert (entry["kind"], entry["source"]) == ("downgraded", "activity")
    assert entry["reason"] == "upgrade reversed by a return"
    assert entry["occurred_at"] == "2024-06-05T00:00:00Z"
    assert entry["activity_id"] is not None


def test_r13_a_return_does_not_reverse_the_upgrade_when_the_ladder_does_not_ask_for_it(
    api: Api,
) -> None:
    """R13/R10 with ``reverse_upgrade_on_return: false``: the return lowers spend but the
    level stays until the next check."""
    setup(api, spend_ladder(reverse=False))
    activity(api, "r", "purchase", amount_minor=200_000, at=START)
    activity(api, "r", "purchase", amount_minor=400_000, at=MID, key="big")
    back = activity(api, "r", "return", reverses_key="big", at="2024-06-05T00:00:00Z")
    assert back["tier_changes"] == []
    current = view(api, "r")
    assert level_key(current) == "gold"
    assert current["to_keep"]["current"] == 200_000
    assert [k for k, _, _ in kinds(api, "r")] == ["upgraded", "upgraded"]


def test_r13_a_return_that_keeps_the_qualification_or_did_not_cause_the_upgrade_changes_nothing(
    api: Api,
) -> None:
    """R13: only a return that undoes the qualification of the upgrade it caused reverses
    it. A partial return that leaves spend above Gold, or the return of the purchase that
    made the member Silver (not Gold), leaves the level alone."""
    setup(api, spend_ladder(reverse=True))
    activity(api, "r", "purchase", amount_minor=200_000, at=START, key="small")
    activity(api, "r", "purchase", amount_minor=400_000, at=MID, key="big")
    partial = activity(
        api, "r", "return", reverses_key="big", amount_minor=50_000, at="2024-06-05T00:00:00Z"
    )
    assert partial["tier_changes"] == []
    assert level_key(view(api, "r")) == "gold"  # 550,000 >= 500,000
    other = activity(api, "r", "return", reverses_key="small", at="2024-06-06T00:00:00Z")
    assert other["tier_changes"] == []
    assert level_key(view(api, "r")) == "gold"  # the Silver purchase did not cause Gold


# -- R14 validity ---------------------------------------------------------------------------


def test_e4_a_new_member_sits_on_the_bronze_floor_with_1000_to_silver(api: Api) -> None:
    """E4, R4, R14: Bronze floor (0), Silver at 1,000, yearly enrolment-anniversary
    validity. A member enrolled on 2021-01-21 with no points is Bronze (the floor never
    expires), next Silver, 1,000 to go."""
    setup(api, e4_ladder())
    enrol(api, "e4", "2021-01-21T00:00:00Z")
    current = view(api, "e4")
    assert level_key(current) == "bronze"
    assert current["next_level"]["key"] == "silver"
    assert current["progress"]["required"] == 1000
    assert current["progress"]["remaining"] == 1000
    assert current["progress"]["percentage"] == 0.0
    assert current["expires_at"] is None  # the floor is permanent (R14)
    assert current["check_due_at"] is None
    # E4's anniversary: the cycle the validity gives, shown although Bronze never expires.
    assert view(api, "e4", as_of="2021-06-01T00:00:00Z")["cycle_end"] == "2022-01-21T23:59:59Z"
    assert view(api, "e4", as_of="2030-03-01T00:00:00Z")["cycle_end"] == "2031-01-21T23:59:59Z"


def e4_ladder() -> dict[str, Any]:
    return {
        "key": "status",
        "name": "Status",
        "validity": {"type": "enrolment_anniversary"},
        "levels": [
            level("bronze", 1, is_floor=True),
            level("silver", 2, criterion("points_earned", 1000)),
        ],
    }


def test_e4_silver_reached_on_the_enrolment_day_expires_at_the_next_anniversary_local(
    api: Api,
) -> None:
    """E4, R14 ``enrolment_anniversary``: enrolled and upgraded on 2021-01-21 (New York) ->
    valid until 2022-01-21 23:59:59 local = 2022-01-22 04:59:59 UTC; checked a second later."""
    setup(api, e4_ladder(), time_zone="America/New_York")
    enrol(api, "e4", "2021-01-21T00:00:00-05:00")
    activity(api, "e4", points=1000, at="2021-01-21T15:00:00Z")
    current = view(api, "e4")
    assert level_key(current) == "silver"
    assert current["achieved_at"] == "2021-01-21T15:00:00Z"
    assert current["expires_at"] == "2022-01-22T04:59:59Z"
    assert current["check_due_at"] == "2022-01-22T05:00:00Z"


def test_e5_fixed_months_expiry_is_start_plus_12_months_minus_one_second_and_upgrades_restart_it(
    api: Api,
) -> None:
    """E5, R14 ``fixed_months``: upgraded 2024-04-15 -> 2025-04-14 23:59:59; upgraded again
    on 2024-10-25 -> 2025-10-24 23:59:59 (an upgrade restarts the validity)."""
    setup(api, silver_gold(validity=TWELVE_MONTHS))
    activity(api, "e5", points=500, at="2024-04-15T00:00:00Z")
    first = view(api, "e5")
    assert level_key(first) == "silver"
    assert first["expires_at"] == "2025-04-14T23:59:59Z"
    activity(api, "e5", points=500, at="2024-10-25T00:00:00Z")
    second = view(api, "e5")
    assert level_key(second) == "gold"
    assert second["achieved_at"] == "2024-10-25T00:00:00Z"
    assert second["expires_at"] == "2025-10-24T23:59:59Z"
    assert second["check_due_at"] == "2025-10-25T00:00:00Z"


def test_r14_a_calendar_year_in_sydney_ends_at_local_midnight(api: Api) -> None:
    """R14/R27 ``calendar_year`` in Australia/Sydney (UTC+11 in summer): the year ends at
    2024-12-31 23:59:59 local = 12:59:59 UTC. A level reached at 00:30 local on New Year's
    Day (still Dec 31 in UTC) belongs to 2025."""
    setup(
        api,
        silver_gold(validity={"type": "calendar_year"}),
        time_zone="Australia/Sydney",
    )
    activity(api, "syd", points=500, at="2024-06-01T00:00:00Z")
    assert view(api, "syd")["expires_at"] == "2024-12-31T12:59:59Z"
    assert view(api, "syd")["check_due_at"] == "2024-12-31T13:00:00Z"
    activity(api, "late", points=500, at="2024-12-31T13:30:00Z")  # 2025-01-01 00:30 local
    assert view(api, "late")["expires_at"] == "2025-12-31T12:59:59Z"


def test_r14_fixed_months_keeps_local_wall_clock_time_across_a_dst_change(api: Api) -> None:
    """R14 ``fixed_months`` in Europe/Berlin: 6 months from 2024-03-15 00:00 CET (UTC+1)
    end at 2024-09-14 23:59:59 CEST (UTC+2) = 21:59:59 UTC, and 6 months from 2024-07-01
    00:00 CEST end at 2024-12-31 23:59:59 CET = 22:59:59 UTC; not a fixed number of hours."""
    setup(
        api,
        silver_gold(validity={"type": "fixed_months", "months": 6}),
        time_zone="Europe/Berlin",
    )
    activity(api, "spring", points=500, at="2024-03-15T00:00:00+01:00")
    assert view(api, "spring")["expires_at"] == "2024-09-14T21:59:59Z"
    activity(api, "summer", points=500, at="2024-07-01T00:00:00+02:00")
    assert view(api, "summer")["expires_at"] == "2024-12-31T22:59:59Z"


def test_r14_a_feb_29_anniversary_falls_on_feb_28_in_other_years(api: Api) -> None:
    """R14 ``enrolment_anniversary`` for a member enrolled on 2024-02-29: the level expires
    on 2025-02-28 23:59:59; renewed (``renewal: always``) each year, on 2026-02-28, then
    2027-02-28, then on the real Feb 29 of 2028."""
    setup(
        api,
        silver_gold(validity={"type": "enrolment_anniversary"}, renewal="always"),
    )
    enrol(api, "leap", "2024-02-29T00:00:00Z")
    activity(api, "leap", points=500, at="2024-03-10T00:00:00Z")
    current = view(api, "leap")
    assert current["expires_at"] == "2025-02-28T23:59:59Z"
    assert current["check_due_at"] == "2025-03-01T00:00:00Z"
    summary = sweep(api, "2027-12-31T00:00:00Z")
    assert summary["events"] == 3
    assert summary["changes"] == {"renewed": 3}
    renewed = [h["occurred_at"] for h in history(api, "leap") if h["kind"] == "renewed"]
    assert renewed == [
        "2025-03-01T00:00:00Z",
        "2026-03-01T00:00:00Z",
        "2027-03-01T00:00:00Z",
    ]
    assert view(api, "leap")["expires_at"] == "2028-02-29T23:59:59Z"


@pytest.mark.parametrize(
    ("validity", "expires_at"),
    [
        ({"type": "fixed_date", "month": 3, "day": 31}, "2025-03-31T23:59:59Z"),
        (
            {"type": "fixed_date", "month": 3, "day": 31, "min_stay_months": 6},
            "2026-03-31T23:59:59Z",
        ),
        ({"type": "calendar_year"}, "2024-12-31T23:59:59Z"),
        ({"type": "calendar_year", "extend_months": 3}, "2025-03-31T23:59:59Z"),
        ({"type": "fixed_year", "month": 4, "day": 1}, "2025-03-31T23:59:59Z"),
        ({"type": "fixed_year", "month": 4, "day": 1, "extend_months": 2}, "2025-05-31T23:59:59Z"),
        ({"type": "fixed_months", "months": 3}, "2025-02-09T23:59:59Z"),
        ({"type": "inactivity", "inactivity_days": 90}, "2025-02-07T23:59:59Z"),
    ],
    ids=[
        "fixed_date",
        "fixed_date-min_stay",
        "calendar_year",
        "calendar_year-extended",
        "fixed_year",
        "fixed_year-extended",
        "fixed_months",
        "inactivity",
    ],
)
def test_r14_each_validity_type_gives_its_expiry(
    api: Api, validity: dict[str, Any], expires_at: str
) -> None:
    """R14: a level reached on 2024-11-10 (UTC) expires at the end of its validity:
    fixed date Mar 31 (with a 6-month minimum stay: the one after 2025-05-10), calendar
    year end (+3 months), fixed year starting Apr 1 (+2 months), 3 months, 90 days idle."""
    setup(api, silver_gold(validity=validity))
    activity(api, "v", points=500, at="2024-11-10T00:00:00Z")
    current = view(api, "v")
    assert current["expires_at"] == expires_at
    assert current["check_due_at"] is not None


def test_r14_a_ladder_without_validity_holds_levels_until_they_change(api: Api) -> None:
    """R14: no validity -> no expiry, no check; a sweep far in the future changes nothing."""
    setup(api, silver_gold())
    activity(api, "forever", points=1000, at=START)
    current = view(api, "forever")
    assert (current["expires_at"], current["check_due_at"]) == (None, None)
    assert current["forecast"]["next_check_at"] is None
    assert sweep(api, "2099-01-01T00:00:00Z")["events"] == 0
    assert level_key(view(api, "forever")) == "gold"


def test_r14_a_level_may_override_the_ladder_validity(api: Api) -> None:
    """R14 "where a platform allows it per level": Gold holds 6 months, Silver the ladder's
    12 months."""
    body = with_level(
        silver_gold(validity=TWELVE_MONTHS), "gold", validity={"type": "fixed_months", "months": 6}
    )
    setup(api, body)
    activity(api, "s", points=500, at=START)
    activity(api, "g", points=1000, at=START)
    assert view(api, "s")["expires_at"] == EXPIRY_1
    assert view(api, "g")["expires_at"] == "2024-07-09T23:59:59Z"


def test_r14_inactivity_validity_restarts_its_clock_with_every_activity(api: Api) -> None:
    """R14 ``inactivity``: 90 days from the last activity, restarted by any activity (here a
    visit that does not change any figure the ladder reads); the check is then due 90 days
    after that activity and, with a rolling-30-day rule, the idle member drops a level."""
    body = {
        "key": "status",
        "name": "Status",
        "validity": {"type": "inactivity", "inactivity_days": 90},
        "downgrade": {"policy": "drop_one"},
        "levels": [
            level("bronze", 1, is_floor=True),
            level(
                "silver",
                2,
                criterion("points_earned", 500, window={"type": "rolling_days", "days": 30}),
            ),
        ],
    }
    setup(api, body)
    activity(api, "idle", points=500, at=START)
    assert view(api, "idle")["expires_at"] == "2024-04-08T23:59:59Z"  # 2024-01-10 + 90 d - 1 s
    activity(api, "idle", "visit", at="2024-03-01T00:00:00Z")
    current = view(api, "idle")
    assert current["expires_at"] == "2024-05-29T23:59:59Z"  # 2024-03-01 + 90 d - 1 s
    assert sweep(api, "2024-05-29T23:59:59Z")["events"] == 0
    assert sweep(api, "2024-05-30T00:00:00Z")["changes"] == {"downgraded": 1}
    assert level_key(view(api, "idle")) == "bronze"


# -- R15 checks and the sweep ------------------------------------------------------------------


def test_r15_a_daily_check_falls_due_the_second_after_expiry(api: Api) -> None:
    """R15 ``daily``: nothing is due at the expiry's last second; at the next second the
    check runs (here: drop one level)."""
    setup(api, ranked())
    platinum(api, "d")
    assert view(api, "d")["check_due_at"] == CHECK_1
    assert sweep(api, EXPIRY_1) == {
        "as_of": EXPIRY_1,
        "standings": 0,
        "events": 0,
        "changes": {},
    }
    assert level_key(view(api, "d")) == "platinum"
    summary = sweep(api, CHECK_1)
    assert (summary["standings"], summary["events"]) == (1, 1)
    assert summary["changes"] == {"downgraded": 1}
    entry = last_change(api, "d")
    assert (entry["kind"], entry["from_level"], entry["to_level"]) == (
        "downgraded",
        "platinum",
        "gold",
    )
    assert (entry["source"], entry["occurred_at"]) == ("sweep", CHECK_1)


def test_r15_a_month_end_check_falls_due_at_the_first_instant_of_the_next_local_month(
    api: Api,
) -> None:
    """R15 ``month_end`` in Europe/Berlin: a level valid until 2024-02-09 23:59:59 local is
    checked when February is over, 2024-03-01 00:00 CET = 2024-02-29 23:00 UTC. Renewed,
    its next cycle (from 2024-02-10) ends on 2024-03-09 and is checked on 2024-04-01 00:00
    CEST = 2024-03-31 22:00 UTC."""
    body = ranked(validity={"type": "fixed_months", "months": 1}, check_schedule="month_end")
    setup(api, body, time_zone="Europe/Berlin")
    activity(api, "me", points=1000, at="2024-01-10T00:00:00+01:00")
    current = view(api, "me")
    assert current["expires_at"] == "2024-02-09T22:59:59Z"
    assert current["check_due_at"] == "2024-02-29T23:00:00Z"
    assert current["forecast"]["next_check_at"] == "2024-02-29T23:00:00Z"
    assert sweep(api, "2024-02-29T22:59:59Z")["events"] == 0
    assert sweep(api, "2024-02-29T23:00:00Z")["changes"] == {"renewed": 1}
    renewed = view(api, "me")
    assert level_key(renewed) == "silver"
    assert renewed["expires_at"] == "2024-03-09T22:59:59Z"
    assert renewed["check_due_at"] == "2024-03-31T22:00:00Z"


def test_r15_sweeping_twice_at_the_same_instant_handles_nothing_the_second_time(
    api: Api,
) -> None:
    """R15: the sweep is idempotent: the second run at the same ``as_of`` handles 0 events
    and leaves status and history exactly as the first run left them."""
    setup(api, ranked())
    platinum(api, "a")
    platinum(api, "b", later=3000)
    first = sweep(api, "2025-06-01T00:00:00Z")
    assert first["events"] == 2
    assert first["changes"] == {"downgraded": 1, "renewed": 1}
    before = {m: (status(api, m)["ladders"], history(api, m)) for m in ("a", "b")}
    second = sweep(api, "2025-06-01T00:00:00Z")
    assert (second["standings"], second["events"], second["changes"]) == (0, 0, {})
    assert {m: (status(api, m)["ladders"], history(api, m)) for m in ("a", "b")} == before


def test_r15_a_late_sweep_handles_every_missed_due_date_in_order_at_its_own_instant(
    api: Api,
) -> None:
    """R15: a sweep run late handles each due date once, in order, measuring the figures
    as of each check: renewed on 2025-01-10 (points from 2024-06-01 still in the window),
    dropped on 2026-01-10, dropped again on 2027-01-10."""
    setup(api, ranked())
    platinum(api, "late", later=3000)
    summary = sweep(api, "2027-06-01T00:00:00Z")
    assert summary["events"] == 3
    assert summary["changes"] == {"renewed": 1, "downgraded": 2}
    assert [(h["kind"], h["to_level"], h["occurred_at"]) for h in history(api, "late")][-3:] == [
        ("renewed", "platinum", CHECK_1),
        ("downgraded", "gold", CHECK_2),
        ("downgraded", "silver", "2027-01-10T00:00:00Z"),
    ]


def test_r15_a_member_who_should_renew_twice_is_renewed_twice_by_one_late_sweep(
    api: Api,
) -> None:
    """R15/R16: with ``renewal: always`` a sweep two years late renews twice, each cycle
    starting the second after the previous one ended."""
    setup(api, ranked(renewal="always"))
    platinum(api, "twice")
    summary = sweep(api, CHECK_2)
    assert (summary["events"], summary["changes"]) == (2, {"renewed": 2})
    renewals = [h["occurred_at"] for h in history(api, "twice") if h["kind"] == "renewed"]
    assert renewals == [CHECK_1, CHECK_2]
    current = view(api, "twice")
    assert current["achieved_at"] == START  # kept across renewals
    assert current["expires_at"] == "2027-01-09T23:59:59Z"
    assert sweep(api, CHECK_2)["events"] == 0


def test_r15_a_late_sweep_equals_step_by_step_sweeps_of_a_twin(api: Api, client: Any) -> None:
    """R15: a twin tenant swept once, late, ends exactly where step-by-step sweeps left the
    first (same history kinds, levels and instants; same status)."""
    from tests.conftest import make_key
    from tierwise.services.tenants import ALL_SCOPES

    twin = Api(client, make_key(client, f"twin-{id(api)}", ALL_SCOPES))
    for tenant in (api, twin):
        setup(tenant, ranked())
        platinum(tenant, "m", later=3000)
    for as_of in (CHECK_1, "2025-08-01T00:00:00Z", CHECK_2, "2026-06-01T00:00:00Z"):
        sweep(api, as_of)
    sweep(twin, "2026-06-01T00:00:00Z")

    def strip(a: Api) -> tuple[Any, ...]:
        entries = [
            (h["kind"], h["from_level"], h["to_level"], h["occurred_at"]) for h in history(a, "m")
        ]
        current = view(a, "m")
        return (
            entries,
            level_key(current),
            current["achieved_at"],
            current["expires_at"],
            current["check_due_at"],
        )

    assert strip(twin) == strip(api)


# -- R16 renewal -------------------------------------------------------------------------------


def test_r16_a_maintain_rule_lower_than_attain_renews_the_level(api: Api) -> None:
    """R16: Platinum needs 3,000 to attain but 1,500 to keep. 1,600 in the window at the
    check renews it; 1,400 does not (drop one)."""
    setup(api, with_level(ranked(), "platinum", maintain=maintain(1500)))
    platinum(api, "keeps", later=1600)
    platinum(api, "fails", later=1400)
    assert view(api, "keeps")["to_keep"]["required"] == 1500
    assert sweep(api, CHECK_1)["changes"] == {"renewed": 1, "downgraded": 1}
    renewed = view(api, "keeps")
    assert level_key(renewed) == "platinum"
    assert renewed["achieved_at"] == START
    assert renewed["expires_at"] == EXPIRY_2
    assert renewed["check_due_at"] == CHECK_2
    assert level_key(view(api, "fails")) == "gold"
    entry = last_change(api, "keeps")
    assert (entry["kind"], entry["from_level"], entry["to_level"], entry["source"]) == (
        "renewed",
        "platinum",
        "platinum",
        "sweep",
    )


def test_r16_without_a_maintain_rule_the_attain_rule_decides_renewal(api: Api) -> None:
    """R16: with no maintain rule the attain rule (3,000) is checked: 1,600 is not enough,
    3,000 is."""
    setup(api, ranked())
    platinum(api, "short", later=1600)
    platinum(api, "enough", later=3000)
    sweep(api, CHECK_1)
    assert level_key(view(api, "short")) == "gold"
    assert level_key(view(api, "enough")) == "platinum"
    assert view(api, "enough")["expires_at"] == EXPIRY_2


def test_r16_renewal_always_renews_without_looking_at_figures(api: Api) -> None:
    """R16 "no renewal rule: always renew": no points in the window, still renewed."""
    setup(api, ranked(renewal="always"))
    platinum(api, "vip")
    assert sweep(api, CHECK_1)["changes"] == {"renewed": 1}
    assert level_key(view(api, "vip")) == "platinum"
    assert view(api, "vip")["expires_at"] == EXPIRY_2


# -- R17 downgrade policies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "later", "lands_on", "kind"),
    [
        ("drop_one", 0, "gold", "downgraded"),
        ("to_qualifying", 1200, "silver", "downgraded"),
        ("to_qualifying", 0, "bronze", "downgraded"),
        ("to_floor", 2500, "bronze", "downgraded"),
        ("hold", 0, "platinum", "renewed"),
    ],
    ids=["drop_one", "to_qualifying-two-ranks", "to_qualifying-to-floor", "to_floor", "hold"],
)
def test_r17_a_failed_check_moves_the_member_by_the_ladder_policy(
    api: Api, policy: str, later: int, lands_on: str, kind: str
) -> None:
    """R17: Platinum fails its check (needs 3,000) with ``later`` points in the window:
    ``drop_one`` -> Gold; ``to_qualifying`` -> the highest level qualified for now (Silver
    with 1,200: two ranks down; Bronze with 0); ``to_floor`` -> Bronze even with 2,500;
    ``hold`` -> stays (renewed)."""
    setup(api, ranked(policy))
    platinum(api, "p", later=later)
    assert sweep(api, CHECK_1)["changes"] == {kind: 1}
    current = view(api, "p")
    assert level_key(current) == lands_on
    entry = last_change(api, "p")
    assert (entry["kind"], entry["from_level"], entry["to_level"]) == (kind, "platinum", lands_on)
    if kind == "downgraded" and lands_on != "bronze":
        # The new level starts a new cycle at the check (R14).
        assert current["achieved_at"] == CHECK_1
        assert current["expires_at"] == EXPIRY_2
    if lands_on == "bronze":
        assert (current["expires_at"], current["check_due_at"]) == (None, None)


def test_r17_to_floor_without_a_floor_level_loses_the_level(api: Api) -> None:
    """R17 ``to_floor`` on a ladder without a floor: "the floor or no level" -> no level,
    recorded as ``lost``."""
    setup(api, ranked("to_floor", floor=False))
    platinum(api, "nofloor")
    assert sweep(api, CHECK_1)["changes"] == {"lost": 1}
    current = view(api, "nofloor")
    assert current["current_level"] is None
    assert current["next_level"]["key"] == "silver"
    assert kinds(api, "nofloor")[-1] == ("lost", "platinum", None)


def test_r17_drop_one_is_stopped_by_the_floor(api: Api) -> None:
    """R17: ``drop_one`` walks down one rank per check until the floor, which never expires:
    a sweep years late drops Gold -> Silver -> Bronze and stops there."""
    setup(api, ranked("drop_one"))
    activity(api, "walk", points=2000, at=START)
    summary = sweep(api, "2035-01-01T00:00:00Z")
    assert (summary["events"], summary["changes"]) == (2, {"downgraded": 2})
    assert kinds(api, "walk")[-2:] == [
        ("downgraded", "gold", "silver"),
        ("downgraded", "silver", "bronze"),
    ]
    current = view(api, "walk")
    assert level_key(current) == "bronze"
    assert current["check_due_at"] is None
    assert sweep(api, "2099-01-01T00:00:00Z")["events"] == 0


def test_r17_drop_one_below_the_lowest_level_without_a_floor_loses_the_level(api: Api) -> None:
    """R17 contrast: the same walk on a ladder without a floor ends with no level."""
    setup(api, ranked("drop_one", floor=False))
    activity(api, "walk", points=2000, at=START)
    assert sweep(api, "2035-01-01T00:00:00Z")["changes"] == {"downgraded": 1, "lost": 1}
    assert view(api, "walk")["current_level"] is None


def test_r17_a_level_that_is_not_downgradable_is_kept(api: Api) -> None:
    """R17 per-level ``downgradable: false``: Platinum with nothing in the window is kept
    (renewed), while Gold on the same ladder drops."""
    setup(api, with_level(ranked(), "platinum", downgradable=False))
    platinum(api, "stuck")
    activity(api, "g", points=2000, at=START)
    assert sweep(api, CHECK_1)["changes"] == {"renewed": 1, "downgraded": 1}
    assert level_key(view(api, "stuck")) == "platinum"
    assert level_key(view(api, "g")) == "silver"


def test_r17_with_grace_days_the_downgrade_happens_when_the_grace_ends(api: Api) -> None:
    """R17 ``grace_days: 30``: the failed check on 2025-01-10 opens a grace period until
    2025-02-09 00:00 (no level change yet, the forecast shows it); the downgrade happens
    at its end and starts Gold's cycle there."""
    setup(api, ranked("drop_one", grace_days=30))
    platinum(api, "g")
    summary = sweep(api, CHECK_1)
    assert (summary["events"], summary["changes"]) == (1, {})
    during = view(api, "g")
    assert level_key(during) == "platinum"
    assert during["forecast"]["grace_until"] == "2025-02-09T00:00:00Z"
    assert during["forecast"]["projected_level"]["key"] == "gold"
    assert [k for k, _, _ in kinds(api, "g")] == ["upgraded", "upgraded"]  # enrolment, upgrade
    assert sweep(api, "2025-02-08T23:59:59Z")["events"] == 0
    assert sweep(api, "2025-02-09T00:00:00Z")["changes"] == {"downgraded": 1}
    after = view(api, "g")
    assert level_key(after) == "gold"
    assert after["forecast"]["grace_until"] is None
    assert after["achieved_at"] == "2025-02-09T00:00:00Z"
    assert after["expires_at"] == "2026-02-08T23:59:59Z"
    assert last_change(api, "g")["occurred_at"] == "2025-02-09T00:00:00Z"


def test_r17_re_qualifying_during_grace_cancels_the_downgrade(api: Api) -> None:
    """R17: an activity during grace that makes the member meet the keep rule again renews
    the level at once (recorded as ``renewed`` with the activity as source); the new
    cycle starts where the old one ended, and the grace end then handles nothing."""
    setup(api, ranked("drop_one", grace_days=30))
    platinum(api, "g")
    sweep(api, CHECK_1)
    small = activity(api, "g", points=500, at="2025-01-15T00:00:00Z")
    assert small["tier_changes"] == []  # not enough: grace keeps running
    assert view(api, "g")["forecast"]["grace_until"] == "2025-02-09T00:00:00Z"
    back = activity(api, "g", points=2500, at="2025-01-20T00:00:00Z")
    assert [(c["from"], c["to"], c["kind"]) for c in back["tier_changes"]] == [
        ("platinum", "platinum", "renewed")
    ]
    current = view(api, "g")
    assert level_key(current) == "platinum"
    assert current["forecast"]["grace_until"] is None
    assert current["expires_at"] == EXPIRY_2
    assert current["check_due_at"] == CHECK_2
    entry = last_change(api, "g")
    assert (entry["kind"], entry["source"], entry["occurred_at"]) == (
        "renewed",
        "activity",
        "2025-01-20T00:00:00Z",
    )
    assert sweep(api, "2025-03-01T00:00:00Z")["events"] == 0
    assert level_key(view(api, "g")) == "platinum"


# -- R18 rollover and credit ----------------------------------------------------------------


def credit_ladder(key: str, credit: bool) -> dict[str, Any]:
    return {
        "key": key,
        "name": key.title(),
        "credit": credit,
        "validity": TWELVE_MONTHS,
        "levels": [
            level("bronze", 1, is_floor=True),
            level("silver", 2, criterion("points_earned", 400, window=ROLLING_YEAR)),
        ],
    }


def test_r18_credit_the_attain_overshoot_counts_toward_keeping_the_level(api: Api) -> None:
    """R18 (Omneo credit): 650 points against Silver's 400 -> credit 250. With 200 more
    points in the held cycle, 200 + 250 = 450 >= 400 keeps Silver; on an identical ladder
    without credit the same member drops to Bronze."""
    p = program(api)
    ladder(api, p["id"], credit_ladder("status", credit=True))
    ladder(api, p["id"], credit_ladder("plain", credit=False))
    activity(api, "c", points=650, at=START)
    with_credit = view(api, "c", ladder="status")
    assert with_credit["forecast"]["credit"] == 250
    assert view(api, "c", ladder="plain")["forecast"]["credit"] == 0
    # Today (long after the window) the keep rule sees only the credit.
    keep = with_credit["forecast"]["remaining_to_keep"][0]
    assert (keep["current"], keep["remaining"]) == (250, 150)
    activity(api, "c", points=200, at=MID)
    assert sweep(api, CHECK_1)["changes"] == {"renewed": 1, "downgraded": 1}
    renewed = view(api, "c", ladder="status")
    assert level_key(renewed) == "silver"
    assert renewed["forecast"]["credit"] == 0  # used for the cycle after the one earning it
    assert level_key(view(api, "c", ladder="plain")) == "bronze"


def rollover_ladder(key: str, rollover: str) -> dict[str, Any]:
    return {
        "key": key,
        "name": key.title(),
        "rollover": rollover,
        "validity": TWELVE_MONTHS,
        "levels": [
            level("bronze", 1, is_floor=True),
            level("silver", 2, criterion("points_earned", 1000, window=ROLLING_YEAR)),
        ],
    }


def test_r18_carry_excess_keeps_the_amount_above_the_threshold_for_the_next_cycle(
    api: Api,
) -> None:
    """R18 ``carry_excess``: 1,600 points at the first check renew Silver (1,000) and carry
    600; at the second check 500 + 600 >= 1,000 renews again (carrying 100). With
    ``reset`` the second check sees only 500 and drops to Bronze."""
    p = program(api)
    ladder(api, p["id"], rollover_ladder("status", "carry_excess"))
    ladder(api, p["id"], rollover_ladder("plain", "reset"))
    activity(api, "r", points=1000, at=START)
    activity(api, "r", points=1600, at=MID)
    sweep(api, CHECK_1)
    assert view(api, "r", ladder="status")["forecast"]["credit"] == 600
    assert view(api, "r", ladder="plain")["forecast"]["credit"] == 0
    activity(api, "r", points=500, at="2025-06-01T00:00:00Z")
    sweep(api, CHECK_2)
    carried = view(api, "r", ladder="status")
    assert level_key(carried) == "silver"
    assert carried["forecast"]["credit"] == 100
    assert level_key(view(api, "r", ladder="plain")) == "bronze"


# -- R19 forecast ---------------------------------------------------------------------------


def test_r19_the_forecast_says_when_the_check_is_what_is_missing_and_what_it_would_decide(
    api: Api,
) -> None:
    """R19: Platinum (attain 3,000, keep 2,500 over a rolling year) reached 30 days ago.
    Today: next check = check_due_at, nothing missing, projected Platinum. Read as of the
    last second before the check, the points have left the window: 2,500 missing and
    projected Gold (drop one), which is what the sweep then does."""
    setup(api, with_level(ranked(), "platinum", maintain=maintain(2500)))
    # Midday, so the check's rolling year (whole local days) surely excludes that day.
    reached = utc_now().replace(hour=12, minute=0, second=0) - timedelta(days=30)
    activity(api, "f", points=3000, at=iso(reached))
    today = view(api, "f")
    forecast = today["forecast"]
    assert forecast["next_check_at"] == today["check_due_at"] is not None
    assert forecast["grace_until"] is None
    assert forecast["projected_level"]["key"] == "platinum"
    [keep] = forecast["remaining_to_keep"]
    assert (keep["metric"], keep["threshold"], keep["current"], keep["remaining"]) == (
        "points_earned",
        2500,
        3000,
        0,
    )
    assert keep["met"] is True
    assert keep["window_label"] == "rolling_days(365)"
    check = today["check_due_at"]
    just_before = iso(datetime.fromisoformat(check) - timedelta(seconds=1))
    eve = view(api, "f", as_of=just_before)["forecast"]
    assert eve["projected_level"]["key"] == "gold"
    [keep] = eve["remaining_to_keep"]
    assert (keep["current"], keep["remaining"], keep["met"]) == (0, 2500, False)
    sweep(api, check)
    assert level_key(view(api, "f")) == "gold"


def test_r19_a_member_without_a_level_or_on_the_floor_has_no_check_to_forecast(api: Api) -> None:
    """R19: the floor never expires: no next check, projected = the floor itself; with no
    level at all there is no forecast."""
    setup(api, ranked())
    enrol(api, "floor", "2024-01-01T00:00:00Z")
    forecast = view(api, "floor")["forecast"]
    assert forecast["next_check_at"] is None
    assert forecast["projected_level"]["key"] == "bronze"
    other = setup(api, ranked(floor=False, key="other"))  # a second program, no floor
    activity(api, "none", points=10, at=START, program_id=other)
    none_view = only_ladder(api, "none", program_id=other)
    assert none_view["current_level"] is None
    assert none_view["forecast"] is None


# -- R20/R21 manual assignment ---------------------------------------------------------------


def test_e7_a_pin_with_an_expiry_is_gone_after_it_and_the_member_is_re_evaluated(
    api: Api,
) -> None:
    """E7, R20: pin Gold with an expiry (E7's 2025-06-01T00:00Z is in the past for the real
    clock and would be refused, so the expiry is one day from now). Until the expiry the
    pin holds; a sweep after it removes the assignment and re-evaluates the member on
    their figures: 1,200 points in the window -> Silver, recorded as ``expired``."""
    setup(api, ranked())
    now = utc_now()
    activity(api, "e7", points=1200, at=iso(now - timedelta(days=5)))
    assert level_key(view(api, "e7")) == "silver"
    expires = now + timedelta(days=1)
    placed = assign(api, "e7", "gold", mode="pin", reason="VIP guest", expires_at=expires)
    assert (placed["level"], placed["assignment_mode"]) == ("gold", "pin")
    assert placed["assignment_expires_at"] == iso(expires)
    assert placed["assigned_at"] is not None
    shown = view(api, "e7")
    assert level_key(shown) == "gold"
    assert shown["assignment"]["mode"] == "pin"
    assert shown["assignment"]["reason"] == "VIP guest"
    assert shown["assignment"]["assigned_at"] == placed["assigned_at"]
    assert shown["assignment"]["expires_at"] == iso(expires)
    assert sweep(api, expires - timedelta(seconds=1))["events"] == 0
    assert level_key(view(api, "e7")) == "gold"
    summary = sweep(api, expires + timedelta(seconds=1))
    assert summary["changes"] == {"expired": 1}
    after = view(api, "e7")
    assert after["assignment"] is None
    assert level_key(after) == "silver"
    entry = last_change(api, "e7")
    assert (entry["kind"], entry["from_level"], entry["to_level"]) == ("expired", "gold", "silver")
    assert (entry["source"], entry["occurred_at"]) == ("sweep", iso(expires))


def test_e7_a_member_with_no_figures_falls_back_to_the_floor_when_the_pin_expires(
    api: Api,
) -> None:
    """E7/R20/R4: a member with no points pinned at Gold lands on the Bronze floor."""
    setup(api, ranked())
    enrol(api, "e7b", "2025-01-01T00:00:00Z")
    expires = utc_now() + timedelta(hours=2)
    assign(api, "e7b", "gold", expires_at=expires)
    sweep(api, expires + timedelta(seconds=1))
    current = view(api, "e7b")
    assert (level_key(current), current["assignment"]) == ("bronze", None)


def test_r20_a_pin_survives_a_failed_check_and_blocks_automatic_moves(api: Api) -> None:
    """R20 ``pin``: a pinned member is not checked (no next check in the forecast), is not
    downgraded by a sweep years later that downgrades an identical unpinned member, and is
    not upgraded by qualifying activity either."""
    setup(api, ranked())
    platinum(api, "pinned")
    platinum(api, "free")
    assign(api, "pinned", "platinum", mode="pin", reason="ambassador")
    pinned = view(api, "pinned")
    assert pinned["forecast"]["next_check_at"] is None
    assert pinned["forecast"]["projected_level"]["key"] == "platinum"
    summary = sweep(api, utc_now() + timedelta(days=800))
    assert summary["changes"] == {"downgraded": 3}  # the free member: P -> G -> S -> B
    assert level_key(view(api, "free")) == "bronze"
    assert level_key(view(api, "pinned")) == "platinum"
    assert view(api, "pinned")["assignment"]["mode"] == "pin"


def test_r20_a_pin_blocks_upgrades(api: Api) -> None:
    """R20 ``pin``: "no automatic moves": a member pinned at Silver who earns 3,000 points
    stays Silver."""
    setup(api, ranked())
    enrol(api, "p", "2025-01-01T00:00:00Z")
    assign(api, "p", "silver", mode="pin")
    result = activity(api, "p", points=3000, at=iso(utc_now() + timedelta(minutes=1)))
    assert result["tier_changes"] == []
    assert level_key(view(api, "p")) == "silver"


def test_r20_a_floor_assignment_lets_upgrades_happen_and_stops_downgrades_below_it(
    api: Api,
) -> None:
    """R20 ``floor``: assigned Gold, the member still moves up to Platinum by activity; at
    the failed check the ``to_floor`` policy would send them to Bronze, but the assignment
    holds them at Gold, and it stays in force."""
    setup(api, ranked("to_floor"))
    enrol(api, "fl", "2025-01-01T00:00:00Z")
    placed = assign(api, "fl", "gold", mode="floor", reason="partner")
    assert placed["level"] == "gold"
    up = activity(api, "fl", points=3000, at=iso(utc_now() + timedelta(minutes=1)))
    assert [(c["from"], c["to"]) for c in up["tier_changes"]] == [("gold", "platinum")]
    current = view(api, "fl")
    assert level_key(current) == "platinum"
    assert current["assignment"]["mode"] == "floor"
    check = current["check_due_at"]
    assert sweep(api, check)["changes"] == {"downgraded": 1}
    after = view(api, "fl")
    assert level_key(after) == "gold"
    assert after["assignment"]["level"] == "gold"
    assert kinds(api, "fl")[-1] == ("downgraded", "platinum", "gold")


def test_r20_a_one_shot_assignment_is_cleared_by_the_next_activity(api: Api) -> None:
    """R20 ``one_shot``: set now (``assigned_at`` shown while in force); the next activity
    clears the assignment and normal rules apply again: the level stays (R10 - falling
    short changes nothing until the check) and upgrades happen."""
    setup(api, ranked())
    enrol(api, "once", "2025-01-01T00:00:00Z")
    assign(api, "once", "gold", mode="one_shot", reason="goodwill")
    shown = view(api, "once")
    assert (level_key(shown), shown["assignment"]["mode"]) == ("gold", "one_shot")
    assert shown["assignment"]["assigned_at"] is not None
    result = activity(api, "once", points=10, at=iso(utc_now() + timedelta(minutes=1)))
    assert result["tier_changes"] == []
    current = view(api, "once")
    assert current["assignment"] is None
    assert level_key(current) == "gold"
    up = activity(api, "once", points=3000, at=iso(utc_now() + timedelta(minutes=2)))
    assert [c["to"] for c in up["tier_changes"]] == ["platinum"]


def test_r21_removing_an_assignment_re_evaluates_the_member_at_once(api: Api) -> None:
    """R21: removing a pin re-evaluates at once, down (1,200 points -> Silver) or up
    (3,000 points, which the pin had held back -> Platinum); recorded as ``removed`` with
    the actor and reason."""
    setup(api, ranked())
    now = utc_now()
    activity(api, "down", points=1200, at=iso(now - timedelta(days=3)))
    assign(api, "down", "gold", mode="pin", reason="trial")
    removed = unassign(api, "down", reason="trial over")
    assert (removed["level"], removed["assignment_mode"]) == ("silver", None)
    current = view(api, "down")
    assert (level_key(current), current["assignment"]) == ("silver", None)
    entry = last_change(api, "down")
    assert (entry["kind"], entry["from_level"], entry["to_level"]) == ("removed", "gold", "silver")
    assert (entry["source"], entry["reason"]) == ("manual", "trial over")
    assert entry["actor"] == api.key.key_id

    enrol(api, "up", "2025-01-01T00:00:00Z")
    assign(api, "up", "silver", mode="pin")
    activity(api, "up", points=3000, at=iso(utc_now() - timedelta(minutes=1)))
    assert level_key(view(api, "up")) == "silver"
    assert unassign(api, "up")["level"] == "platinum"
    assert kinds(api, "up")[-1] == ("removed", "silver", "platinum")


def test_r20_a_member_who_still_qualifies_keeps_the_level_when_a_pin_on_it_expires(
    api: Api,
) -> None:
    """R20/E7: Platinum since 2024 (check due 2025-01-10, never swept), pinned at Platinum
    until tomorrow, and with 3,000 points in the last rolling year. When the pin expires
    the member is re-evaluated: still Platinum. No check dated before the expiry may run
    afterwards (history must stay in time order)."""
    setup(api, ranked())
    platinum(api, "m")
    now = utc_now()
    expires = now + timedelta(days=1)
    assign(api, "m", "platinum", mode="pin", expires_at=expires)
    activity(api, "m", points=3000, at=iso(now - timedelta(days=10)))
    sweep(api, expires + timedelta(seconds=1))
    assert level_key(view(api, "m")) == "platinum"
    instants = [h["occurred_at"] for h in history(api, "m")]
    assert instants == sorted(instants)


def test_r21_removing_a_pin_on_the_members_own_level_does_not_revive_an_old_check(
    api: Api,
) -> None:
    """R21: Platinum since 2024 (check due 2025-01-10, never swept), pinned on Platinum,
    3,000 points in the last rolling year. Removing the pin re-evaluates at once (still
    Platinum); no check dated before the removal runs afterwards."""
    setup(api, ranked())
    platinum(api, "m")
    assign(api, "m", "platinum", mode="pin")
    activity(api, "m", points=3000, at=iso(utc_now() - timedelta(days=10)))
    assert unassign(api, "m")["level"] == "platinum"
    sweep(api, utc_now() + timedelta(days=1))
    assert level_key(view(api, "m")) == "platinum"
    instants = [h["occurred_at"] for h in history(api, "m")]
    assert instants == sorted(instants)


# -- R22 history and level-at ----------------------------------------------------------------


def test_r22_every_kind_of_change_is_recorded_and_level_at_reads_it_back(api: Api) -> None:
    """R22: one member goes through every kind, in time order: upgraded (activity),
    renewed and downgraded (sweep), assigned and removed (manual), assigned again,
    expired (sweep: the assignment ran out, re-evaluated to Silver) and lost (sweep, no
    floor). Each entry names its source; "which level did the member hold at D" is
    answered from this history."""
    setup(api, with_level(ranked("drop_one", floor=False), "gold", maintain=maintain(900)))
    activity(api, "h", points=2000, at=START)
    activity(api, "h", points=999, at="2024-12-01T00:00:00Z")  # keeps Gold (900), not 3000
    sweep(api, "2026-06-01T00:00:00Z")  # renewed 2025-01-10, Gold -> Silver 2026-01-10
    now = utc_now()
    activity(api, "h", points=1000, at=iso(now - timedelta(days=10)))  # Silver-worthy
    assign(api, "h", "gold", mode="floor", reason="apology")
    unassign(api, "h", reason="mistake")  # removed: re-evaluated -> Silver
    expires = now + timedelta(hours=1)
    assign(api, "h", "gold", mode="pin", reason="event", expires_at=expires)
    sweep(api, expires + timedelta(seconds=1))  # expired: re-evaluated -> Silver
    sweep(api, now + timedelta(days=500))  # Silver's check a year later fails -> lost
    entries = history(api, "h")
    assert [(h["kind"], h["from_level"], h["to_level"], h["source"]) for h in entries] == [
        ("upgraded", None, "gold", "activity"),
        ("renewed", "gold", "gold", "sweep"),
        ("downgraded", "gold", "silver", "sweep"),
        ("assigned", "silver", "gold", "manual"),
        ("removed", "gold", "silver", "manual"),
        ("assigned", "silver", "gold", "manual"),
        ("expired", "gold", "silver", "sweep"),
        ("lost", "silver", None, "sweep"),
    ]
    assert {h["kind"] for h in entries} == {
        "assigned",
        "upgraded",
        "renewed",
        "downgraded",
        "expired",
        "lost",
        "removed",
    }
    instants = [h["occurred_at"] for h in entries]
    assert instants == sorted(instants)
    assert instants[:3] == [START, CHECK_1, CHECK_2]
    assert instants[6] == iso(expires)
    manual = [h for h in entries if h["source"] == "manual"]
    assert [h["reason"] for h in manual] == ["apology", "mistake", "event"]
    assert {h["actor"] for h in manual} == {api.key.key_id}
    assert entries[0]["activity_id"] is not None
    assert level_at(api, "h", "2024-01-09T23:59:59Z") is None
    assert level_at(api, "h", START) == "gold"
    assert level_at(api, "h", "2025-06-01T00:00:00Z") == "gold"
    assert level_at(api, "h", CHECK_2) == "silver"
    assert level_at(api, "h", now + timedelta(minutes=30)) == "gold"
    assert level_at(api, "h", expires + timedelta(minutes=1)) == "silver"
    assert level_at(api, "h", now + timedelta(days=500)) is None


def test_r22_level_at_names_the_change_that_started_the_level(api: Api) -> None:
    """R22: the level-at read gives the level, since when, and the history entry id."""
    setup(api, ranked())
    platinum(api, "la")
    sweep(api, CHECK_1)
    response = api.get("/v1/members/la/level-at", params={"at": "2025-06-01T00:00:00Z"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["member_id"] == "la"
    assert body["at"] == "2025-06-01T00:00:00Z"
    [found] = body["ladders"]
    assert (found["ladder"], found["level"], found["since"]) == ("status", "gold", CHECK_1)
    assert found["change_id"] == last_change(api, "la")["id"]
    before = api.get("/v1/members/la/level-at", params={"at": "2024-06-01T00:00:00Z"}).json()
    assert (before["ladders"][0]["level"], before["ladders"][0]["since"]) == ("platinum", START)


def test_r22_a_status_read_as_of_a_past_instant_agrees_with_level_at(api: Api) -> None:
    """R22/R27: a status read ``as_of`` D shows the level the history says was held at D."""
    setup(api, ranked())
    platinum(api, "past", later=3000)
    sweep(api, "2027-06-01T00:00:00Z")
    for at in (START, MID, CHECK_1, "2025-06-01T00:00:00Z", CHECK_2, "2027-06-01T00:00:00Z"):
        assert level_key(view(api, "past", as_of=at)) == level_at(api, "past", at), at


def test_r22_a_status_read_as_of_an_instant_before_a_future_loss_shows_the_level_held_then(
    api: Api,
) -> None:
    """R22/R27: Silver reached 10 days ago on a ladder without a floor; a sweep 2 years
    ahead loses the level in about a year. Read as of 200 days from now, status must show
    Silver, as level-at does."""
    setup(api, ranked("drop_one", floor=False))
    now = utc_now()
    activity(api, "n", points=1000, at=iso(now - timedelta(days=10)))
    assert sweep(api, now + timedelta(days=800))["changes"] == {"lost": 1}
    at = now + timedelta(days=200)
    assert level_at(api, "n", at) == "silver"
    assert level_key(view(api, "n", as_of=iso(at))) == "silver"


def test_r22_a_status_read_as_of_a_past_instant_shows_the_expiry_held_then(api: Api) -> None:
    """R14/R15/R27: ``month_end`` checks, ``renewal: always``. Platinum from 2024-01-10,
    renewed at the check on 2025-02-01 for a cycle 2025-01-10 .. 2026-01-09 23:59:59. Read
    today and read as of 2025-06-01 (inside that cycle) show the same expiry."""
    setup(api, ranked(renewal="always", check_schedule="month_end"))
    platinum(api, "mx")
    assert sweep(api, "2025-02-01T00:00:00Z")["changes"] == {"renewed": 1}
    assert view(api, "mx")["expires_at"] == EXPIRY_2
    assert view(api, "mx", as_of="2025-06-01T00:00:00Z")["expires_at"] == EXPIRY_2


def test_r18_a_status_read_as_of_a_past_instant_shows_the_credit_held_then(api: Api) -> None:
    """R18/R19/R27: the credit of 250 is part of the standing from the upgrade on; a read
    as of 2024-12-01 must count it toward the keep rule like today's read does."""
    p = program(api)
    ladder(api, p["id"], credit_ladder("status", credit=True))
    activity(api, "c", points=650, at=START)
    assert view(api, "c")["forecast"]["credit"] == 250
    then = view(api, "c", as_of="2024-12-01T00:00:00Z")["forecast"]
    assert then["credit"] == 250
    assert then["remaining_to_keep"][0]["current"] == 650 + 250


def test_r13_a_back_dated_upgrade_keeps_the_history_ending_on_the_current_level(
    api: Api,
) -> None:
    """R13/R22: enrolled 2024-01-01; 1,000 points on 2025-06-01 make the member Silver;
    then 3,000 points dated 2024-03-01 arrive late and make them Platinum. Whatever
    instant that upgrade is dated, the history must say the member holds Platinum now,
    and each entry must start where the one before it ended (regression: the upgrade
    used to be dated 2024-03-01, before the Silver entry, and level-at said Silver)."""
    setup(api, ranked())
    enrol(api, "late", "2024-01-01T00:00:00Z")
    activity(api, "late", points=1000, at="2025-06-01T00:00:00Z")
    result = activity(api, "late", points=3000, at="2024-03-01T00:00:00Z")
    assert [c["to"] for c in result["tier_changes"]] == ["platinum"]
    assert level_key(view(api, "late")) == "platinum"
    assert level_at(api, "late", "2025-07-01T00:00:00Z") == "platinum"
    chain = [(h["from_level"], h["to_level"]) for h in history(api, "late")]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chain)), chain
