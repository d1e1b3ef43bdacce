"""Review of the activity path against R9 and R13 (late activities)."""

from __future__ import annotations

from tests.api.helpers import activity, criterion, history, level, only_ladder
from tests.api.helpers import ladder as add_ladder
from tests.api.helpers import program as add_program
from tests.conftest import Api

ROLLING_30 = {"type": "rolling_days", "days": 30}


def test_review_a_late_activity_completes_a_rolling_total_at_a_later_activity(
    api: Api,
) -> None:
    """R13: late activities count in the windows they fall in; R9: the upgrade is as of the
    activity at which the member qualifies. 250 (late, Jan 5) + 300 (Jan 10) = 550 >= 500
    inside 30 days, so the member held silver from Jan 10."""
    p = add_program(api)
    add_ladder(
        api,
        p["id"],
        {
            "key": "status",
            "name": "Status",
            "levels": [level("silver", 1, criterion("points_earned", 500, window=ROLLING_30))],
        },
    )
    activity(api, "m", points=300, at="2025-01-10T12:00:00Z")
    activity(api, "m", points=10, at="2025-03-01T12:00:00Z")  # the latest activity
    activity(api, "m", points=250, at="2025-01-05T12:00:00Z")  # late
    changes = [(e["to_level"], e["occurred_at"]) for e in history(api, "m")]
    assert changes == [("silver", "2025-01-10T12:00:00Z")]
    assert only_ladder(api, "m")["current_level"]["key"] == "silver"


def test_review_earn_parts_render_whole_rates_without_an_exponent(api: Api) -> None:
    """R11/R8: the earn parts say which rate applied, as a plain decimal string."""
    p = add_program(api, earn_rate="10")
    add_ladder(
        api,
        p["id"],
        {
            "key": "status",
            "name": "Status",
            "levels": [level("base", 1, is_floor=True, earn_multiplier="2")],
        },
    )
    done = activity(api, "m", "purchase", amount_minor=1000, at="2025-01-10T12:00:00Z")
    assert done["points_earned"] == 200
    assert [part["rate"] for part in done["earn"]] == ["20"]
