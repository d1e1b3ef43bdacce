"""Reads as of a past instant (R27) of a level whose validity runs on inactivity (R14).

The standing a history row keeps is the one the last level change left; an inactivity
expiry moves with every later activity, so a past read must take the clock as it stood
then: from the last activity at or before the instant asked for, not the latest one.
"""

from __future__ import annotations

from typing import Any

from tests.api.helpers import activity, criterion, level, only_ladder
from tests.api.helpers import ladder as add_ladder
from tests.api.helpers import program as add_program
from tests.conftest import Api

INACTIVE_90 = {
    "key": "status",
    "name": "Status",
    "validity": {"type": "inactivity", "inactivity_days": 90},
    "downgrade": {"policy": "drop_one"},
    "levels": [
        level("bronze", 1, is_floor=True),
        level("silver", 2, criterion("points_earned", 500)),
    ],
}


def _view(api: Api, member: str, as_of: str) -> dict[str, Any]:
    return only_ladder(api, member, as_of=as_of)


def test_r14_r27_a_past_read_shows_the_inactivity_expiry_as_it_stood_then(api: Api) -> None:
    add_ladder(api, add_program(api)["id"], INACTIVE_90)
    activity(api, "idle", points=500, at="2024-01-10T00:00:00Z")  # silver
    activity(api, "idle", "visit", at="2024-03-01T00:00:00Z")  # restarts the clock
    activity(api, "idle", "visit", at="2024-04-01T00:00:00Z")  # and again
    # Before the first visit: 90 days from the upgrade.
    assert _view(api, "idle", "2024-02-01T00:00:00Z")["expires_at"] == "2024-04-08T23:59:59Z"
    # After the first visit, before the second: 90 days from 2024-03-01.
    assert _view(api, "idle", "2024-03-15T00:00:00Z")["expires_at"] == "2024-05-29T23:59:59Z"
    # After both: 90 days from 2024-04-01, as the current read says.
    assert _view(api, "idle", "2024-04-02T00:00:00Z")["expires_at"] == "2024-06-29T23:59:59Z"
    assert only_ladder(api, "idle")["expires_at"] == "2024-06-29T23:59:59Z"


def test_r14_r27_a_late_activity_moves_the_past_clock_too(api: Api) -> None:
    """A back-dated visit (R13) recorded after the others counts in every read as of an
    instant after it occurred."""
    add_ladder(api, add_program(api)["id"], INACTIVE_90)
    activity(api, "late", points=500, at="2024-01-10T00:00:00Z")
    activity(api, "late", "visit", at="2024-04-01T00:00:00Z")
    activity(api, "late", "visit", at="2024-02-01T00:00:00Z")  # sent last, occurred earlier
    assert _view(api, "late", "2024-01-20T00:00:00Z")["expires_at"] == "2024-04-08T23:59:59Z"
    assert _view(api, "late", "2024-02-10T00:00:00Z")["expires_at"] == "2024-04-30T23:59:59Z"
    assert _view(api, "late", "2024-05-01T00:00:00Z")["expires_at"] == "2024-06-29T23:59:59Z"
