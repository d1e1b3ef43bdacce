"""Late (back-dated) activities and the instants at which they make a member qualify.

R13: a late activity counts in every window it falls in, so a member may first qualify
at any later activity, not only at the late activity's own instant or the latest one.
R9: the upgrade is as of the activity at which the member qualifies (the earliest). Both
the single POST and the batch path (and, on PostgreSQL, the COPY path of large batches)
check every such instant.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import activity, activity_body, batch, criterion, history, level
from tests.api.helpers import ladder as add_ladder
from tests.api.helpers import program as add_program
from tests.conftest import Api

ROLLING_30 = {"type": "rolling_days", "days": 30}
LIFETIME = {"type": "lifetime"}


def _setup(
    api: Api, window: dict[str, Any], *, timing: str = "lazy", metric: str = "points_earned"
) -> int:
    p = add_program(api)
    add_ladder(
        api,
        p["id"],
        {
            "key": "status",
            "name": "Status",
            "upgrade_timing": timing,
            "levels": [
                level("base", 1, is_floor=True),
                level(
                    "silver",
                    2,
                    criterion(metric, 50_000 if metric == "spend" else 500, window=window),
                    earn_multiplier="2",
                ),
            ],
        },
    )
    return int(p["id"])


def _changes(api: Api, member: str) -> list[tuple[str | None, str]]:
    return [(e["to_level"], e["occurred_at"]) for e in history(api, member)]


def _silver_at(api: Api, member: str, at: str) -> None:
    assert _changes(api, member) == [("base", _enrolled(api, member)), ("silver", at)]


def _enrolled(api: Api, member: str) -> str:
    first = history(api, member)[0]
    assert first["to_level"] == "base"
    return str(first["occurred_at"])


@pytest.mark.parametrize("window", [ROLLING_30, LIFETIME], ids=["rolling", "lifetime"])
def test_a_late_activity_in_a_batch_completes_a_total_at_an_intermediate_activity(
    api: Api, window: dict[str, Any]
) -> None:
    """The activity at which the member first qualifies is in the same batch, before the
    late one: 250 (Jan 5, late) + 300 (Jan 10) >= 500 as of Jan 10."""
    _setup(api, window)
    results = batch(
        api,
        [
            activity_body("m", points=300, at="2025-01-10T12:00:00Z"),
            activity_body("m", points=10, at="2025-03-01T12:00:00Z"),
            activity_body("m", points=250, at="2025-01-05T12:00:00Z"),
        ],
    )["results"]
    assert [r["tier_changes"] for r in results[:2]] == [[], []]
    assert [(c["to"], c["at"]) for c in results[2]["tier_changes"]] == [
        ("silver", "2025-01-10T12:00:00Z")
    ]
    _silver_at(api, "m", "2025-01-10T12:00:00Z")


@pytest.mark.parametrize("window", [ROLLING_30, LIFETIME], ids=["rolling", "lifetime"])
def test_a_late_activity_upgrades_as_of_the_stored_activity_where_the_member_qualifies(
    api: Api, window: dict[str, Any]
) -> None:
    """Stored activities on Jan 10, Jan 20 and Mar 1; the late 250 (Jan 5) makes the member
    qualify at the Jan 10 one, not at the latest (lifetime) or never (rolling)."""
    _setup(api, window)
    activity(api, "m", points=300, at="2025-01-10T12:00:00Z")
    activity(api, "m", points=20, at="2025-01-20T12:00:00Z")
    activity(api, "m", points=10, at="2025-03-01T12:00:00Z")
    result = activity(api, "m", points=250, at="2025-01-05T12:00:00Z")
    assert [(c["to"], c["at"]) for c in result["tier_changes"]] == [
        ("silver", "2025-01-10T12:00:00Z")
    ]
    _silver_at(api, "m", "2025-01-10T12:00:00Z")


def test_the_upgrade_is_dated_at_the_qualifying_instant_within_its_day(api: Api) -> None:
    """A late activity earlier on the same day as the stored one that completes the total:
    at 08:00 only the late 250 counts; at 12:00 the member has 550."""
    _setup(api, ROLLING_30)
    activity(api, "m", points=300, at="2025-01-10T12:00:00Z")
    activity(api, "m", points=10, at="2025-03-01T12:00:00Z")
    activity(api, "m", points=250, at="2025-01-10T08:00:00Z")
    _silver_at(api, "m", "2025-01-10T12:00:00Z")


def test_the_first_qualifying_instant_wins_over_later_ones(api: Api) -> None:
    """With 300 (Jan 10) and 300 (Jan 20) stored, the late 250 completes the total at
    both: the upgrade is as of the earlier."""
    _setup(api, LIFETIME)
    activity(api, "m", points=300, at="2025-01-10T12:00:00Z")
    activity(api, "m", points=100, at="2025-01-20T12:00:00Z")
    activity(api, "m", points=10, at="2025-03-01T12:00:00Z")
    assert [to for to, _ in _changes(api, "m")] == ["base"]
    activity(api, "m", points=250, at="2025-01-05T12:00:00Z")
    _silver_at(api, "m", "2025-01-10T12:00:00Z")


@pytest.mark.parametrize(
    ("late", "points"),
    [("2025-01-05T12:00:00Z", 150), ("2024-12-01T12:00:00Z", 250)],
    ids=["too-small", "outside-every-window"],
)
def test_a_late_activity_that_qualifies_at_no_instant_upgrades_nobody(
    api: Api, late: str, points: int
) -> None:
    """450 at most within 30 days; or 250 on Dec 1, which no window holding the Jan 10
    300 reaches."""
    _setup(api, ROLLING_30)
    activity(api, "m", points=300, at="2025-01-10T12:00:00Z")
    activity(api, "m", points=10, at="2025-03-01T12:00:00Z")
    result = activity(api, "m", points=points, at=late)
    assert result["tier_changes"] == []
    assert [to for to, _ in _changes(api, "m")] == ["base"]
    done = batch(api, [activity_body("n", points=300, at="2025-01-10T12:00:00Z")])
    assert done["results"][0]["tier_changes"] == []
    results = batch(
        api,
        [
            activity_body("n", points=10, at="2025-03-01T12:00:00Z"),
            activity_body("n", points=points, at=late),
        ],
    )["results"]
    assert [r["tier_changes"] for r in results] == [[], []]
    assert [to for to, _ in _changes(api, "n")] == ["base"]


def test_two_late_activities_in_one_batch_complete_a_total_together(api: Api) -> None:
    """Neither late activity qualifies the member alone; the second one does, as of the
    stored Jan 10 activity (the stored instants are read once per member and batch)."""
    _setup(api, ROLLING_30)
    activity(api, "m", points=300, at="2025-01-10T12:00:00Z")
    activity(api, "m", points=10, at="2025-03-01T12:00:00Z")
    results = batch(
        api,
        [
            activity_body("m", points=100, at="2025-01-08T12:00:00Z"),
            activity_body("m", points=100, at="2025-01-02T12:00:00Z"),
        ],
    )["results"]
    assert results[0]["tier_changes"] == []
    assert [(c["to"], c["at"]) for c in results[1]["tier_changes"]] == [
        ("silver", "2025-01-10T12:00:00Z")
    ]
    _silver_at(api, "m", "2025-01-10T12:00:00Z")


@pytest.mark.parametrize("timing", ["lazy", "eager", "dynamic"])
def test_every_upgrade_timing_upgrades_a_late_purchase_at_the_qualifying_instant(
    api: Api, timing: str
) -> None:
    """The late purchase is before the upgrade, so it earns at the old rate whatever the
    timing (R11 applies to the purchase at whose instant the member moves up)."""
    _setup(api, ROLLING_30, timing=timing, metric="spend")
    activity(api, "m", "purchase", amount_minor=30000, at="2025-01-10T12:00:00Z")
    activity(api, "m", points=10, at="2025-03-01T12:00:00Z")
    result = activity(api, "m", "purchase", amount_minor=25000, at="2025-01-05T12:00:00Z")
    assert result["points_earned"] == 250
    assert [(c["to"], c["at"]) for c in result["tier_changes"]] == [
        ("silver", "2025-01-10T12:00:00Z")
    ]
    _silver_at(api, "m", "2025-01-10T12:00:00Z")


@pytest.mark.parametrize("timing", ["lazy", "eager", "dynamic"])
def test_a_large_batch_upgrades_late_activities_at_intermediate_instants(
    api: Api, timing: str
) -> None:
    """Enough rows for the PostgreSQL COPY path: 30 members, each with the intermediate
    activity stored (even members) or in the batch (odd members)."""
    _setup(api, ROLLING_30, timing=timing, metric="spend")
    members = [f"m{i}" for i in range(30)]
    for member in members[::2]:
        activity(api, member, "purchase", amount_minor=30000, at="2025-01-10T12:00:00Z")
    items = []
    for i, member in enumerate(members):
        if i % 2:
            items.append(
                activity_body(member, "purchase", amount_minor=30000, at="2025-01-10T12:00:00Z")
            )
        items.append(activity_body(member, points=10, at="2025-03-01T12:00:00Z"))
        items.append(
            activity_body(member, "purchase", amount_minor=25000, at="2025-01-05T12:00:00Z")
        )
        # A late activity that qualifies at no instant (outside every window).
        items.append(activity_body(member, points=1, at="2024-11-01T12:00:00Z"))
    assert len(items) >= 64
    results = batch(api, items)["results"]
    upgrades = [c for r in results for c in r["tier_changes"] if c["to"] == "silver"]
    assert len(upgrades) == len(members)
    assert {c["at"] for c in upgrades} == {"2025-01-10T12:00:00Z"}
    for member in members:
        assert _changes(api, member)[-1] == ("silver", "2025-01-10T12:00:00Z")
