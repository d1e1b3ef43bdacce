"""The worked examples of semantics.md §9, through the HTTP API."""

from __future__ import annotations

from tests.api.helpers import activity, criterion, ladder, level, only_ladder, program, silver_gold
from tests.conftest import Api


def test_e1_member_with_650_points_is_silver_and_65_percent_to_gold(api: Api) -> None:
    """E1, R5, R6: progress is measured from zero, 650/1000 = 65.0 %."""
    p = program(api)
    ladder(api, p["id"], silver_gold())
    activity(api, "m1", points=650)
    view = only_ladder(api, "m1")
    assert view["current_level"]["key"] == "silver"
    assert view["next_level"]["key"] == "gold"
    assert view["progress"]["required"] == 1000
    assert view["progress"]["remaining"] == 350
    assert view["progress"]["percentage"] == 65.0
    assert view["progress"]["metric"] == "points_earned"
    assert view["progress"]["window"] == "lifetime"


def test_e2_member_with_1200_points_is_gold_with_no_next_level(api: Api) -> None:
    """E2, R3, R5: one activity may jump two levels; at the top next and progress are null."""
    p = program(api)
    ladder(api, p["id"], silver_gold())
    result = activity(api, "m2", points=1200)
    assert [c["to"] for c in result["tier_changes"]] == ["gold"]
    view = only_ladder(api, "m2")
    assert view["current_level"]["key"] == "gold"
    assert view["next_level"] is None
    assert view["progress"] is None


def test_e3_member_below_every_threshold_without_floor_has_no_level(api: Api) -> None:
    """E3, R4, R5: no floor -> current null, next is the lowest level."""
    p = program(api)
    ladder(api, p["id"], silver_gold())
    activity(api, "m3", points=300)
    view = only_ladder(api, "m3")
    assert view["current_level"] is None
    assert view["next_level"]["key"] == "silver"
    assert view["progress"]["required"] == 500
    assert view["progress"]["remaining"] == 200
    assert view["progress"]["percentage"] == 60.0


def test_e6_all_rule_needs_every_criterion(api: Api) -> None:
    """E6, R7: gold needs spend >= 2000 AND nights >= 10; every criterion has its gap."""
    p = program(api)
    ladder(
        api,
        p["id"],
        {
            "key": "status",
            "name": "Status",
            "levels": [
                level("silver", 1, criterion("spend", 1000)),
                level("gold", 2, criterion("spend", 2000), criterion("counter:nights", 10)),
            ],
        },
    )
    activity(api, "m6", "purchase", amount_minor=2500)
    activity(api, "m6", "counter", counter="nights", quantity=8)
    view = only_ladder(api, "m6")
    assert view["current_level"]["key"] == "silver"
    crit = {c["metric"]: c for c in view["progress"]["criteria"]}
    assert crit["spend"]["met"] is True
    assert crit["counter:nights"]["current"] == 8
    assert crit["counter:nights"]["remaining"] == 2
    assert view["progress"]["mode"] == "all"
    activity(api, "m6", "counter", counter="nights", quantity=4)
    assert only_ladder(api, "m6")["current_level"]["key"] == "gold"
