"""Property-based tests (hypothesis) of lifecycle invariants, through the HTTP API.

- R15: sweeping twice at the same instant equals sweeping once; sweeping in steps equals
  one late sweep.
- R10: qualification alone (activities, including returns and back-dated ones) never
  lowers a level.
- R4/R17/R20: nobody sits below the floor level (or below a ``floor`` assignment) after
  any sweep.
- R17: ``drop_one`` moves exactly one rank per downgrade.
- R22/R27: the level at instant D read from /level-at equals the level a status read
  ``as_of`` D returns.

Every example builds its own tenant (a fresh API key), program and ladder, so examples
never see each other's members or sweeps. Instants are whole days from a base date; some
properties place the base around the real clock so that both the "past" and the
"future" paths of the status read are exercised.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.api.helpers import (
    activity,
    activity_body,
    assign,
    batch,
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
    sweep,
    utc_now,
)
from tests.conftest import Api, make_key
from tierwise.services.tenants import ALL_SCOPES

FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ROLLING_YEAR = {"type": "rolling_days", "days": 365}
RANKS = {"bronze": 1, "silver": 2, "gold": 3, "platinum": 4}
PAST_BASE = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Config:
    policy: str
    grace_days: int
    renewal: str
    floor: bool
    months: int
    schedule: str
    rollover: str
    credit: bool
    maintain: int | None

    def ladder(self) -> dict[str, Any]:
        platinum: dict[str, Any] = {}
        if self.maintain is not None:
            platinum["maintain"] = {
                "mode": "all",
                "criteria": [criterion("points_earned", self.maintain, window=ROLLING_YEAR)],
            }
        levels = [
            level("silver", 2, criterion("points_earned", 1000, window=ROLLING_YEAR)),
            level("gold", 3, criterion("points_earned", 2000, window=ROLLING_YEAR)),
            level("platinum", 4, criterion("points_earned", 3000, window=ROLLING_YEAR), **platinum),
        ]
        if self.floor:
            levels.insert(0, level("bronze", 1, is_floor=True))
        return {
            "key": "status",
            "name": "Status",
            "validity": {"type": "fixed_months", "months": self.months},
            "check_schedule": self.schedule,
            "renewal": self.renewal,
            "downgrade": {"policy": self.policy, "grace_days": self.grace_days},
            "rollover": self.rollover,
            "credit": self.credit,
            "levels": levels,
        }


def configs(
    *,
    policy: st.SearchStrategy[str] | None = None,
    floor: st.SearchStrategy[bool] | None = None,
) -> st.SearchStrategy[Config]:
    return st.builds(
        Config,
        policy=policy
        if policy is not None
        else st.sampled_from(["drop_one", "to_qualifying", "to_floor", "hold"]),
        grace_days=st.sampled_from([0, 0, 20]),
        renewal=st.sampled_from(["maintain", "maintain", "always"]),
        floor=floor if floor is not None else st.booleans(),
        months=st.sampled_from([3, 6, 12]),
        schedule=st.sampled_from(["daily", "month_end"]),
        rollover=st.sampled_from(["reset", "carry_excess"]),
        credit=st.booleans(),
        maintain=st.sampled_from([None, None, 1500]),
    )


MEMBERS = ("m1", "m2")
# (member index, day offset, points)
ACTIVITY = st.tuples(
    st.integers(0, len(MEMBERS) - 1),
    st.integers(0, 700),
    st.sampled_from([300, 700, 1000, 1500, 2200, 3000]),
)
ACTIVITIES = st.lists(ACTIVITY, min_size=1, max_size=6)
SWEEP_DAYS = st.lists(st.integers(0, 1500), min_size=1, max_size=3)


def tenant(client: TestClient) -> Api:
    """A fresh tenant with every scope: nothing from other examples is visible."""
    return Api(client, make_key(client, f"prop-{uuid.uuid4().hex[:12]}", ALL_SCOPES))


def build(api: Api, config: Config) -> None:
    p = program(api)
    ladder(api, p["id"], config.ladder())


def record(
    api: Api, activities: list[tuple[int, int, int]], base: datetime, *, ordered: bool = False
) -> None:
    """Record the activities in one batch, in the drawn order (so some are back-dated)
    unless ``ordered``; each member is enrolled at their earliest activity."""
    chosen = sorted(activities, key=lambda a: a[1]) if ordered else activities
    batch(
        api,
        [
            activity_body(MEMBERS[member], points=points, at=iso(base + timedelta(days=day)))
            for member, day, points in chosen
        ],
    )


def members_of(activities: list[tuple[int, int, int]]) -> list[str]:
    return sorted({MEMBERS[m] for m, _, _ in activities})


def standing(api: Api, member: str) -> tuple[Any, ...]:
    """Everything the sweep may change for ``member``: the stored standing and history."""
    view = only_ladder(api, member)
    forecast = view["forecast"] or {}
    entries = [
        (h["kind"], h["from_level"], h["to_level"], h["source"], h["occurred_at"])
        for h in history(api, member)
    ]
    return (
        level_key(view),
        view["achieved_at"],
        view["expires_at"],
        view["check_due_at"],
        forecast.get("grace_until"),
        forecast.get("credit"),
        entries,
    )


def rank(key: str | None) -> int:
    return 0 if key is None else RANKS[key]


# -- R15 --------------------------------------------------------------------------------


@FAST
@given(config=configs(), activities=ACTIVITIES, sweep_day=st.integers(0, 1500))
def test_sweeping_twice_equals_sweeping_once(
    client: TestClient, config: Config, activities: list[tuple[int, int, int]], sweep_day: int
) -> None:
    """R15: a second sweep at the same ``as_of`` handles 0 events and changes nothing."""
    api = tenant(client)
    build(api, config)
    record(api, activities, PAST_BASE)
    as_of = PAST_BASE + timedelta(days=sweep_day)
    sweep(api, as_of)
    once = {m: standing(api, m) for m in members_of(activities)}
    again = sweep(api, as_of)
    assert (again["standings"], again["events"], again["changes"]) == (0, 0, {})
    assert {m: standing(api, m) for m in members_of(activities)} == once


@FAST
@given(config=configs(), activities=ACTIVITIES, sweep_days=SWEEP_DAYS)
def test_sweeping_in_steps_equals_one_late_sweep(
    client: TestClient,
    config: Config,
    activities: list[tuple[int, int, int]],
    sweep_days: list[int],
) -> None:
    """R15: sweeps at T1 < T2 < ... leave every member where one sweep at the last
    instant leaves an identical member of a twin tenant (each due date handled once, in
    order, measured at its own instant)."""
    steps, late = tenant(client), tenant(client)
    for api in (steps, late):
        build(api, config)
        record(api, activities, PAST_BASE)
    days = sorted(sweep_days)
    for day in days:
        sweep(steps, PAST_BASE + timedelta(days=day))
    sweep(late, PAST_BASE + timedelta(days=days[-1]))
    for member in members_of(activities):
        assert standing(steps, member) == standing(late, member), member


# -- R10 --------------------------------------------------------------------------------


PURCHASE_OR_POINTS = st.one_of(
    st.tuples(st.just("points"), st.integers(0, 500), st.sampled_from([300, 800, 1500, 3000])),
    st.tuples(
        st.just("purchase"), st.integers(0, 500), st.sampled_from([50_000, 120_000, 250_000])
    ),
    st.tuples(st.just("redeem"), st.integers(0, 500), st.just(100)),
    st.tuples(st.just("return"), st.integers(0, 500), st.integers(0, 10)),
)


@FAST
@given(steps=st.lists(PURCHASE_OR_POINTS, min_size=1, max_size=8))
def test_qualification_alone_never_lowers_a_level(
    client: TestClient, steps: list[tuple[str, int, int]]
) -> None:
    """R10: activities in any order (back-dated ones too), redemptions and returns (on a
    ladder that does not reverse upgrades) never move a member down; only checks do."""
    api = tenant(client)
    build(api, Config("drop_one", 0, "maintain", False, 12, "daily", "reset", False, None))
    enrol(api, "q", iso(PAST_BASE))
    purchases: list[str] = []
    current = 0
    for kind, day, value in steps:
        at = iso(PAST_BASE + timedelta(days=day))
        if kind == "points":
            activity(api, "q", points=value, at=at)
        elif kind == "purchase":
            purchases.append(activity(api, "q", "purchase", amount_minor=value, at=at)["id"])
        elif kind == "redeem":
            activity(api, "q", "points_redemption", points=value, at=at, expect=None)
        elif purchases:
            target = purchases.pop(value % len(purchases))
            activity(api, "q", "return", reverses=target, at=at)
        now = rank(level_key(only_ladder(api, "q")))
        assert now >= current, (kind, day, value)
        current = now
    assert all(h["kind"] == "upgraded" for h in history(api, "q"))


# -- R4/R17/R20 -------------------------------------------------------------------------


@FAST
@given(
    config=configs(floor=st.just(True)),
    activities=ACTIVITIES,
    sweep_days=SWEEP_DAYS,
    floor_level=st.sampled_from([None, "silver", "gold"]),
)
def test_nobody_sits_below_the_floor_after_any_sweep(
    client: TestClient,
    config: Config,
    activities: list[tuple[int, int, int]],
    sweep_days: list[int],
    floor_level: str | None,
) -> None:
    """R4/R17: with a floor level every member holds a level after every sweep, and no
    history entry leads to "no level". R20: a member with a ``floor`` assignment never
    sits below the assigned level while it is in force."""
    api = tenant(client)
    build(api, config)
    base = utc_now() - timedelta(days=400)
    record(api, activities, base)
    if floor_level is not None:
        assign(api, MEMBERS[activities[0][0]], floor_level, mode="floor")
    for day in sorted(sweep_days):
        sweep(api, base + timedelta(days=day))
        for member in members_of(activities):
            view = only_ladder(api, member)
            assert view["current_level"] is not None, member
            assignment = view["assignment"]
            if assignment is not None and assignment["mode"] == "floor":
                assert rank(level_key(view)) >= rank(assignment["level"]), member
            assert all(h["to_level"] is not None for h in history(api, member))


@FAST
@given(config=configs(policy=st.just("drop_one")), activities=ACTIVITIES, sweep_days=SWEEP_DAYS)
def test_drop_one_moves_exactly_one_rank(
    client: TestClient,
    config: Config,
    activities: list[tuple[int, int, int]],
    sweep_days: list[int],
) -> None:
    """R17 ``drop_one``: every downgrade by a sweep is exactly one rank; without a floor,
    only the lowest level (Silver) can be lost."""
    api = tenant(client)
    build(api, config)
    record(api, activities, PAST_BASE)
    for day in sorted(sweep_days):
        sweep(api, PAST_BASE + timedelta(days=day))
    for member in members_of(activities):
        for entry in history(api, member):
            if entry["source"] != "sweep":
                continue
            if entry["kind"] == "downgraded":
                assert rank(entry["from_level"]) - rank(entry["to_level"]) == 1, entry
            if entry["kind"] == "lost":
                assert entry["from_level"] == "silver", entry


# -- R22/R27 ----------------------------------------------------------------------------


def compare_level_at_with_status(api: Api, members: list[str], instants: list[datetime]) -> None:
    for member in members:
        for at in instants:
            from_history = level_at(api, member, at)
            from_status = level_key(only_ladder(api, member, as_of=iso(at)))
            assert from_history == from_status, (member, iso(at))


@FAST
@given(
    config=configs(floor=st.just(True)),
    activities=ACTIVITIES,
    sweep_days=SWEEP_DAYS,
    read_days=st.lists(st.integers(0, 1500), min_size=1, max_size=3),
)
def test_level_at_equals_the_status_read_as_of_the_same_instant(
    client: TestClient,
    config: Config,
    activities: list[tuple[int, int, int]],
    sweep_days: list[int],
    read_days: list[int],
) -> None:
    """R22/R27: for any instant D (before and after the real clock), /level-at and a
    status read ``as_of`` D name the same level. Floor ladders; activities recorded in
    time order before the sweeps (see the next test for the general case)."""
    api = tenant(client)
    build(api, config)
    base = utc_now() - timedelta(days=400)
    record(api, activities, base, ordered=True)
    for day in sorted(sweep_days):
        sweep(api, base + timedelta(days=day))
    reads = [base + timedelta(days=d, hours=6) for d in read_days]
    compare_level_at_with_status(api, members_of(activities), reads)


@FAST
@given(
    config=configs(),
    activities=ACTIVITIES,
    sweep_days=SWEEP_DAYS,
    read_days=st.lists(st.integers(0, 1500), min_size=1, max_size=3),
)
@example(
    config=Config("drop_one", 0, "maintain", False, 12, "daily", "reset", False, None),
    activities=[(0, 390, 1000)],
    sweep_days=[1200],
    read_days=[600],
)
def test_level_at_equals_the_status_read_as_of_the_same_instant_on_any_ladder(
    client: TestClient,
    config: Config,
    activities: list[tuple[int, int, int]],
    sweep_days: list[int],
    read_days: list[int],
) -> None:
    """R22/R27, general case: ladders with or without a floor. The explicit example is a
    Silver member (day 390 = 10 days ago) who loses the level about a year from now."""
    api = tenant(client)
    build(api, config)
    base = utc_now() - timedelta(days=400)
    record(api, activities, base, ordered=True)
    for day in sorted(sweep_days):
        sweep(api, base + timedelta(days=day))
    reads = [base + timedelta(days=d, hours=6) for d in read_days]
    compare_level_at_with_status(api, members_of(activities), reads)
