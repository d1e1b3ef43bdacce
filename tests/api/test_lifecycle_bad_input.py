"""Bad input to the lifecycle endpoints (R15, R20-R22, R27): each request is refused with
a clear 4xx and a stable ``error.code``, and nothing changes - checked by reading the
members' status, history and level-at back, and by a later valid sweep still finding
the work it would have found."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.api.helpers import (
    activity,
    assign,
    criterion,
    enrol,
    error_of,
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
from tests.conftest import Api

ROLLING_YEAR = {"type": "rolling_days", "days": 365}
CHECK = "2025-01-10T00:00:00Z"  # when the known member's Platinum is checked
MEMBERS = ("known", "pinned", "fresh")


def status_ladder() -> dict[str, Any]:
    """Bronze floor < Silver < Gold < Platinum (not assignable); 12-month validity."""
    return {
        "key": "status",
        "name": "Status",
        "validity": {"type": "fixed_months", "months": 12},
        "levels": [
            level("bronze", 1, is_floor=True),
            level("silver", 2, criterion("points_earned", 1000, window=ROLLING_YEAR)),
            level("gold", 3, criterion("points_earned", 2000, window=ROLLING_YEAR)),
            level(
                "platinum",
                4,
                criterion("points_earned", 3000, window=ROLLING_YEAR),
                is_assignable=False,
            ),
        ],
    }


@pytest.fixture
def world(api: Api) -> Api:
    """ "known": Platinum since 2024-01-10, check due 2025-01-10 (not swept yet);
    "pinned": pinned at Gold until tomorrow; "fresh": enrolled, on the floor."""
    p = program(api)
    ladder(api, p["id"], status_ladder())
    activity(api, "known", points=3000, at="2024-01-10T00:00:00Z")
    enrol(api, "pinned", "2025-01-01T00:00:00Z")
    assign(api, "pinned", "gold", mode="pin", expires_at=utc_now() + timedelta(days=1))
    enrol(api, "fresh", "2025-01-01T00:00:00Z")
    return api


def snapshot(api: Api) -> dict[str, Any]:
    """Everything a refused lifecycle request could have changed, read back."""
    found: dict[str, Any] = {}
    for member in MEMBERS:
        found[member] = {
            "status": api.get(f"/v1/members/{member}/status").json()["ladders"],
            "history": history(api, member),
            "level_at": api.get(
                f"/v1/members/{member}/level-at", params={"at": "2099-01-01T00:00:00Z"}
            ).json(),
        }
    found["ghost"] = api.get("/v1/members/ghost/status").status_code
    return found


def refused(api: Api, response: Any, status: int, code: str, before: dict[str, Any]) -> None:
    error_of(response, status, code)
    assert snapshot(api) == before


# -- assignments ------------------------------------------------------------------------


def test_r20_an_unknown_level_in_an_assignment_is_refused(world: Api) -> None:
    """R20: assigning a level the ladder does not have -> 422 ``unknown_level`` naming the
    field; the member keeps their level and history."""
    before = snapshot(world)
    response = world.post(
        "/v1/members/known/assignments", json={"level": "diamond", "reason": "typo"}
    )
    error = error_of(response, 422, "unknown_level")
    assert error["field"] == "level"
    assert "diamond" in error["message"]
    assert snapshot(world) == before


def test_r20_a_level_that_is_not_assignable_is_refused(world: Api) -> None:
    """R20: only ``is_assignable`` levels may be set by hand -> 422 ``level_not_assignable``."""
    before = snapshot(world)
    response = world.post(
        "/v1/members/fresh/assignments",
        json={"level": "platinum", "mode": "floor", "reason": "gift"},
    )
    error = error_of(response, 422, "level_not_assignable")
    assert error["field"] == "level"
    assert snapshot(world) == before


@pytest.mark.parametrize(
    "expires_at",
    ["2025-06-01T00:00:00Z", "2000-01-01T00:00:00+02:00"],
    ids=["e7-expiry-now-past", "long-ago"],
)
def test_r20_an_assignment_expiry_in_the_past_is_refused(world: Api, expires_at: str) -> None:
    """R20/E7: an expiry that has already passed -> 422 ``expiry_in_past`` on
    ``expires_at``; nothing is assigned."""
    before = snapshot(world)
    response = world.post(
        "/v1/members/fresh/assignments",
        json={"level": "gold", "reason": "late", "expires_at": expires_at},
    )
    error = error_of(response, 422, "expiry_in_past")
    assert error["field"] == "expires_at"
    assert snapshot(world) == before


def test_r20_an_expiry_a_second_ago_is_in_the_past(world: Api) -> None:
    """R20: the boundary: an expiry just before the server's clock is refused too."""
    before = snapshot(world)
    response = world.post(
        "/v1/members/fresh/assignments",
        json={"level": "gold", "reason": "x", "expires_at": iso(utc_now() - timedelta(seconds=1))},
    )
    refused(world, response, 422, "expiry_in_past", before)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"level": "gold", "reason": "x", "expires_at": "2099-01-01T00:00:00"}, "expires_at"),
        ({"level": "gold", "reason": "x", "expires_at": "someday"}, "expires_at"),
        ({"level": "gold", "reason": "x", "mode": "forever"}, "mode"),
        ({"level": "gold", "reason": ""}, "reason"),
        ({"level": "gold"}, "reason"),
        ({"reason": "x"}, "level"),
        ({"level": "gold", "reason": "x", "colour": "red"}, "colour"),
    ],
    ids=[
        "naive-expiry",
        "expiry-not-a-time",
        "unknown-mode",
        "empty-reason",
        "no-reason",
        "no-level",
        "unknown-field",
    ],
)
def test_r20_a_malformed_assignment_is_a_validation_error(
    world: Api, body: dict[str, Any], field: str
) -> None:
    """R20/R27: shape errors -> 422 ``validation_error`` naming the field."""
    before = snapshot(world)
    response = world.post("/v1/members/fresh/assignments", json=body)
    error = error_of(response, 422, "validation_error")
    assert error["field"] == field
    assert snapshot(world) == before


def test_r20_assigning_to_an_unknown_member_does_not_create_them(world: Api) -> None:
    """R20: the member must exist -> 404 ``member_not_found``; no member appears."""
    before = snapshot(world)
    response = world.post("/v1/members/ghost/assignments", json={"level": "gold", "reason": "x"})
    refused(world, response, 404, "member_not_found", before)


def test_r20_an_unknown_ladder_in_an_assignment_is_not_found(world: Api) -> None:
    """R20: naming a ladder the program does not have -> 404 ``ladder_not_found``."""
    before = snapshot(world)
    response = world.post(
        "/v1/members/fresh/assignments",
        json={"level": "gold", "reason": "x", "ladder": "nope"},
    )
    refused(world, response, 404, "ladder_not_found", before)


def test_r20_with_several_ladders_the_assignment_must_name_one(api: Api) -> None:
    """R20: a program with two ladders -> 422 ``ladder_required`` when none is named."""
    p = program(api)
    ladder(api, p["id"], status_ladder())
    ladder(api, p["id"], {**status_ladder(), "key": "second", "name": "Second"})
    enrol(api, "two", "2025-01-01T00:00:00Z")
    before = (api.get("/v1/members/two/status").json()["ladders"], history(api, "two"))
    response = api.post("/v1/members/two/assignments", json={"level": "gold", "reason": "x"})
    error_of(response, 422, "ladder_required")
    assert (api.get("/v1/members/two/status").json()["ladders"], history(api, "two")) == before


# -- removal ----------------------------------------------------------------------------


def test_r21_removing_an_assignment_that_does_not_exist_is_not_found(world: Api) -> None:
    """R21: DELETE without an assignment -> 404 ``no_assignment``; the member is not
    re-evaluated (Platinum stays, although a re-evaluation today would drop it)."""
    before = snapshot(world)
    response = world.delete("/v1/members/known/assignments")
    refused(world, response, 404, "no_assignment", before)
    assert level_key(only_ladder(world, "known")) == "platinum"


def test_r21_removing_an_assignment_of_an_unknown_member_is_not_found(world: Api) -> None:
    before = snapshot(world)
    response = world.delete("/v1/members/ghost/assignments")
    refused(world, response, 404, "member_not_found", before)


# -- sweeps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "as_of",
    [
        "yesterday",
        "2025-13-01T00:00:00Z",
        "2025-01-10T25:00:00Z",
        "2025-01-10T00:00:00",
        "",
        [CHECK],
        {"at": CHECK},
        True,
    ],
    ids=["word", "month-13", "hour-25", "naive", "empty", "list", "object", "boolean"],
)
def test_r15_a_sweep_as_of_that_is_not_a_time_is_refused_and_sweeps_nothing(
    world: Api, as_of: Any
) -> None:
    """R15/R27: ``as_of`` must be an instant with an offset -> 422 ``validation_error``
    on ``as_of``; no standing is handled, so a valid sweep afterwards still finds the
    known member's due check."""
    before = snapshot(world)
    response = world.post("/v1/sweeps", json={"as_of": as_of})
    error = error_of(response, 422, "validation_error")
    assert error["field"] == "as_of"
    assert snapshot(world) == before
    assert sweep(world, CHECK)["events"] == 1


def test_r15_a_sweep_with_unknown_fields_is_refused(world: Api) -> None:
    """R15: the sweep body is strict: a misspelt ``asof`` is not silently "now"."""
    before = snapshot(world)
    response = world.post("/v1/sweeps", json={"asof": CHECK})
    error = error_of(response, 422, "validation_error")
    assert error["field"] == "asof"
    assert snapshot(world) == before


# -- level-at ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [{}, {"at": "2025-01-10T00:00:00"}, {"at": "soon"}],
    ids=["missing", "naive", "not-a-time"],
)
def test_r22_level_at_needs_an_instant_with_an_offset(world: Api, params: dict[str, Any]) -> None:
    """R22/R27: ``at`` is required and must be an aware instant -> 422."""
    response = world.get("/v1/members/known/level-at", params=params)
    error = error_of(response, 422, "validation_error")
    assert error["field"] == "at"


def test_r22_level_at_of_an_unknown_member_is_not_found(world: Api) -> None:
    response = world.get("/v1/members/ghost/level-at", params={"at": CHECK})
    error_of(response, 404, "member_not_found")
