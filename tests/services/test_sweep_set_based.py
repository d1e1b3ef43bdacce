"""The sweep's set-based path (PostgreSQL: window sums for a whole batch in one
statement, every write of a batch in one statement) leaves standings, history and outbox
events exactly as the general path does.

Two twin tenants get the same ladder and activities; one is swept with the set-based
path, the other with ``SET_BASED`` off (the general path, as on SQLite), at the same
instants. On SQLite both take the general path, so the comparison holds trivially.

The ladders vary what decides the path: windows whose edges fall inside a day (a tier
start at 12:00, activities after the check instant) need single activities and go the
general way; lifetime and rolling windows sum whole days; late sweeps handle several
events of one standing, assignments expire.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.api.helpers import (
    activity_body,
    assign,
    batch,
    criterion,
    history,
    iso,
    ladder,
    level,
    level_key,
    only_ladder,
    program,
    sweep,
    utc_now,
)
from tests.conftest import Api, make_key
from tierwise.services import sweep as sweep_service
from tierwise.services.tenants import ALL_SCOPES

EXAMPLES = settings(
    max_examples=30,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

WINDOWS = [
    {"type": "rolling_days", "days": 365},
    {"type": "rolling_days", "days": 90},
    {"type": "rolling_months", "months": 12},
    {"type": "lifetime"},
    {"type": "calendar_year"},
    {"type": "since_tier_start"},
    {"type": "anniversary_year"},
]
MEMBERS = ("m1", "m2", "m3")
# (member index, day offset, hour, points)
ACTIVITY = st.tuples(
    st.integers(0, len(MEMBERS) - 1),
    st.integers(0, 700),
    st.sampled_from([0, 12, 23]),
    st.sampled_from([300, 700, 1000, 1500, 2200, 3000]),
)


def ladder_body(
    window: dict[str, Any],
    maintain_window: dict[str, Any],
    policy: str,
    grace_days: int,
    months: int,
    schedule: str,
    rollover: str,
    credit: bool,
    floor: bool,
    maintain_metric: str = "points_earned",
) -> dict[str, Any]:
    # A custom counter is summed apart from the built-in metrics (revision e7b3d1f9a2c4).
    keep = 1500 if maintain_metric == "points_earned" else 5
    levels = [
        level("silver", 2, criterion("points_earned", 1000, window=window), is_assignable=True),
        level("gold", 3, criterion("points_earned", 2000, window=window), is_assignable=True),
        level(
            "platinum",
            4,
            criterion("points_earned", 3000, window=window),
            maintain={
                "mode": "all",
                "criteria": [criterion(maintain_metric, keep, window=maintain_window)],
            },
        ),
    ]
    if floor:
        levels.insert(0, level("bronze", 1, is_floor=True))
    return {
        "key": "status",
        "name": "Status",
        "validity": {"type": "fixed_months", "months": months},
        "check_schedule": schedule,
        "downgrade": {"policy": policy, "grace_days": grace_days},
        "rollover": rollover,
        "credit": credit,
        "levels": levels,
    }


LADDERS = st.builds(
    ladder_body,
    window=st.sampled_from(WINDOWS),
    maintain_window=st.sampled_from(WINDOWS),
    policy=st.sampled_from(["drop_one", "to_qualifying", "to_floor", "hold"]),
    grace_days=st.sampled_from([0, 0, 20]),
    months=st.sampled_from([3, 12]),
    schedule=st.sampled_from(["daily", "month_end"]),
    rollover=st.sampled_from(["reset", "carry_excess"]),
    credit=st.booleans(),
    floor=st.booleans(),
    maintain_metric=st.sampled_from(["points_earned", "counter:reviews"]),
)


def tenant(client: TestClient) -> Api:
    return Api(client, make_key(client, f"setb-{uuid.uuid4().hex[:12]}", ALL_SCOPES))


def outbox(api: Api, member: str) -> list[tuple[Any, ...]]:
    """The member's outbox events, in order. Payloads are compared as JSON values (the
    general path writes small batches through SQLAlchemy, with spaces after separators),
    with what differs between twin tenants replaced: the program id, activity ids, and
    the ``change_id`` by the position of its history entry."""
    rt = api.runtime()
    changes = {h["id"]: n for n, h in enumerate(history(api, member))}

    async def read() -> list[tuple[Any, ...]]:
        async with rt.transaction() as conn:
            rows = await conn.execute(
                text(
                    "SELECT e.type, CAST(e.payload AS TEXT), e.occurred_at, e.published_at "
                    "FROM events e JOIN members m ON m.id = e.member_id "
                    "JOIN tenants t ON t.id = m.tenant_id "
                    "WHERE t.name = :tenant AND m.external_id = :member ORDER BY e.id"
                ),
                {"tenant": api.key.tenant, "member": member},
            )
            return [tuple(row) for row in rows]

    assert api.client.portal is not None
    found = api.client.portal.call(read)
    assert len(found) == len(changes)
    events = []
    for kind, raw, occurred_at, published in found:
        payload = json.loads(raw)
        payload["change_id"] = changes[payload["change_id"]]
        payload["program_id"] = "P"
        if payload["activity_id"] is not None:
            payload["activity_id"] = "A"
        if payload["source"] == "manual":  # the real clock and the caller's key
            payload["at"] = payload["actor"] = occurred_at = None
        events.append((kind, payload, occurred_at, published))
    return events


def everything(api: Api, member: str) -> tuple[Any, ...]:
    view = only_ladder(api, member)
    forecast = view["forecast"] or {}
    # A manual assignment is made at the real clock, by the caller's key.
    entries = [
        (
            h["kind"],
            h["from_level"],
            h["to_level"],
            h["source"],
            None if h["source"] == "manual" else h["occurred_at"],
            h.get("reason"),
            None if h["source"] == "manual" else h.get("actor"),
        )
        for h in history(api, member)
    ]
    held = view["assignment"]
    if held is not None:
        held = {k: v for k, v in held.items() if k not in ("assigned_at", "actor")}
    return (
        level_key(view),
        view["achieved_at"],
        view["expires_at"],
        view["check_due_at"],
        held,
        forecast.get("grace_until"),
        forecast.get("credit"),
        entries,
        outbox(api, member),
    )


@EXAMPLES
@given(
    body=LADDERS,
    activities=st.lists(ACTIVITY, min_size=1, max_size=8),
    sweep_days=st.lists(st.integers(0, 1500), min_size=1, max_size=3),
    assignment=st.sampled_from([None, ("silver", "pin"), ("gold", "floor"), ("gold", "pin")]),
    expires_in=st.integers(1, 400),
)
def test_set_based_sweep_equals_the_general_path(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    body: dict[str, Any],
    activities: list[tuple[int, int, int, int]],
    sweep_days: list[int],
    assignment: tuple[str, str] | None,
    expires_in: int,
) -> None:
    base = utc_now().replace(hour=0, minute=0, second=0) - timedelta(days=800)
    # Both twins' assignments are made at the same instant (the runtime's clock).
    now = utc_now()
    monkeypatch.setattr(client.app.state.runtime, "clock", lambda: now)  # type: ignore[attr-defined]
    expires_at = now + timedelta(seconds=expires_in)
    twins = tenant(client), tenant(client)
    for api in twins:
        p = program(api)
        ladder(api, p["id"], body)
        at = [iso(base + timedelta(days=day, hours=hour)) for _, day, hour, _ in activities]
        batch(
            api,
            [
                activity_body(MEMBERS[a[0]], points=a[3], at=when)
                for a, when in zip(activities, at, strict=True)
            ]
            + [
                activity_body(
                    MEMBERS[a[0]], "counter", counter="reviews", quantity=a[3] // 300, at=when
                )
                for a, when in zip(activities, at, strict=True)
            ],
        )
        if assignment is not None:
            key, mode = assignment
            assign(
                api,
                MEMBERS[activities[0][0]],
                key,
                mode=mode,
                expires_at=expires_at,
            )
    set_based, general = twins
    members = sorted({MEMBERS[a[0]] for a in activities})
    for day in sorted(sweep_days):
        as_of = base + timedelta(days=day, hours=6)
        if assignment is not None and day == sorted(sweep_days)[-1]:
            as_of = max(as_of, now + timedelta(days=expires_in))
        monkeypatch.setattr(sweep_service, "SET_BASED", True)
        first = sweep(set_based, as_of)
        monkeypatch.setattr(sweep_service, "SET_BASED", False)
        second = sweep(general, as_of)
        assert first == second
    for member in members:
        assert everything(set_based, member) == everything(general, member), member


def _swept_twins(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    body: dict[str, Any],
    bodies: list[dict[str, Any]],
    as_of: datetime,
) -> tuple[Api, Api, dict[str, Any]]:
    """Twin tenants with ``body`` and the activities ``bodies``, swept at ``as_of`` on the
    set-based and on the general path; both sweeps' summaries must match (the first is
    returned)."""
    twins = tenant(client), tenant(client)
    for api in twins:
        p = program(api)
        ladder(api, p["id"], body)
        batch(api, bodies)
    set_based, general = twins
    monkeypatch.setattr(sweep_service, "SET_BASED", True)
    first = sweep(set_based, as_of)
    monkeypatch.setattr(sweep_service, "SET_BASED", False)
    second = sweep(general, as_of)
    assert first == second
    return set_based, general, first


def test_a_late_sweep_handles_every_missed_check_in_order(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A standing with several checks due by ``as_of``: the first on the set-based path,
    the rest on the general one, in order, as the general path alone does."""
    body = ladder_body(
        {"type": "rolling_days", "days": 365},
        {"type": "rolling_days", "days": 365},
        "drop_one",
        0,
        3,
        "daily",
        "reset",
        False,
        True,
    )
    base = datetime(2023, 1, 1, tzinfo=UTC)
    bodies = [
        activity_body("m1", points=3200, at=iso(base)),
        activity_body("m2", points=3200, at=iso(base + timedelta(hours=12))),
        activity_body("m2", points=1500, at=iso(base + timedelta(days=200))),
    ]
    set_based, general, first = _swept_twins(
        client, monkeypatch, body, bodies, base + timedelta(days=900)
    )
    assert first["events"] > first["standings"]
    for member in ("m1", "m2"):
        assert everything(set_based, member) == everything(general, member), member


def test_a_counter_in_a_maintain_rule_is_summed_by_both_paths(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The set-based sums read a custom counter's buckets apart from the built-in metrics'
    (revision e7b3d1f9a2c4): platinum kept with 6 reviews in the year, lost with 2."""
    body = ladder_body(
        {"type": "lifetime"},
        {"type": "rolling_days", "days": 365},
        "drop_one",
        0,
        12,
        "daily",
        "reset",
        False,
        True,
        maintain_metric="counter:reviews",
    )
    base = datetime(2024, 1, 1, tzinfo=UTC)
    later = base + timedelta(days=30)
    bodies = [
        activity_body("m1", points=3200, at=iso(base)),
        activity_body("m2", points=3200, at=iso(base)),
        activity_body("m1", "counter", counter="reviews", quantity=6, at=iso(later)),
        activity_body("m2", "counter", counter="reviews", quantity=2, at=iso(later)),
    ]
    set_based, general, _ = _swept_twins(
        client, monkeypatch, body, bodies, base + timedelta(days=366)
    )
    assert [level_key(only_ladder(set_based, m)) for m in ("m1", "m2")] == ["platinum", "gold"]
    for member in ("m1", "m2"):
        assert everything(set_based, member) == everything(general, member), member
