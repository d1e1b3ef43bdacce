"""The Omneo dialect (seed 003) under /compat/omneo: golden, schema and bad-input tests.

Most tests run on an app whose clock the test sets (``frozen``), so that the seed's
timeline (tiers defined in 2020, a profile created on 2021-01-21 at 01:07:28) is
reproduced exactly. Every response is validated against the JSON Schema written from the
page (``schemas/omneo_*.json``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import activity, assign, criterion, ladder, level, only_ladder, program
from tests.conftest import Api, make_key
from tests.dialects.conftest import validate
from tierwise.api.app import create_app
from tierwise.services.runtime import Runtime
from tierwise.services.tenants import ALL_SCOPES
from tierwise.settings import Settings

BASE = "/compat/omneo/api/v3"
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
ROLLING_365 = {"type": "rolling_days", "days": 365}

# The page's example (seed 003), wrapped in ``data`` as the page's response schema says.
SEED_EXAMPLE: dict[str, Any] = {
    "data": {
        "id": 663,
        "profile_id": "92441ab4-331a-41dc-b598-9fa22311b3",
        "current_tier": {
            "id": 1,
            "name": "Bronze",
            "handle": "bronze",
            "is_floor": True,
            "value_min": 0,
            "value_maintain": 0,
            "is_assignable": False,
            "internal_notes": None,
            "description": None,
            "short_description": "Bronze",
            "long_description": "<p>Bronze Tier </p>",
            "terms_conditions": None,
            "icon": None,
            "image_url": None,
            "earn_instructions": None,
            "tags": [],
            "created_at": "2020-05-15 11:18:24",
            "updated_at": "2020-11-19 11:18:24",
        },
        "next_tier": {
            "id": 2,
            "name": "Silver",
            "handle": "silver",
            "is_floor": False,
            "value_min": 1000,
            "value_maintain": 1000,
            "is_assignable": True,
            "internal_notes": None,
            "description": None,
            "short_description": "★",
            "long_description": "<p>Silver Tier</p>",
            "terms_conditions": None,
            "icon": None,
            "image_url": None,
            "earn_instructions": None,
            "tags": [],
            "created_at": "2020-05-15 11:19:04",
            "updated_at": "2020-11-19 11:17:47",
        },
        "prev_tier": None,
        "is_floor": True,
        "current_credit": 0,
        "current_progress": 0,
        "current_remain": 0,
        "next_progress": 0,
        "next_remain": 1000,
        "total_points_12m": 0,
        "total_points_achievement": None,
        "anniversary_at": "2022-01-21 23:59:59",
        "assigned_at": None,
        "achieved_at": "2021-01-21 00:00:00",
        "created_at": "2021-01-21 01:07:28",
        "updated_at": "2021-01-21 01:07:28",
    }
}


class Clock:
    """A clock the test moves: ``clock.set("2021-01-21T01:07:28Z")``."""

    def __init__(self) -> None:
        self.now = datetime(2020, 5, 15, 11, 18, 24, tzinfo=UTC)

    def set(self, instant: str) -> None:
        self.now = datetime.fromisoformat(instant)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def frozen(settings: Settings, clock: Clock, tenant_name: str) -> Iterator[Api]:
    """A fresh tenant on an app whose clock is ``clock``."""
    rt = Runtime(settings, clock=clock)
    with TestClient(create_app(settings, runtime=rt), raise_server_exceptions=False) as client:
        yield Api(client, make_key(client, tenant_name, ALL_SCOPES))
        assert client.portal is not None
        client.portal.call(rt.close)


def omneo_ladder(**extra: Any) -> dict[str, Any]:
    """The page's tiers: Bronze floor (0) and Silver (1,000 tier points in the last 365
    days, 1,000 to maintain by the anniversary), yearly enrolment-anniversary validity,
    Omneo-style credit (R18)."""
    return {
        "key": "status",
        "name": "Status",
        "validity": {"type": "enrolment_anniversary"},
        "credit": True,
        "levels": [
            level(
                "bronze",
                1,
                criterion("points_earned", 0, window=ROLLING_365),
                is_floor=True,
                is_assignable=False,
                short_description="Bronze",
                long_description="<p>Bronze Tier </p>",
            ),
            level(
                "silver",
                2,
                criterion("points_earned", 1000, window=ROLLING_365),
                maintain={
                    "mode": "all",
                    "criteria": [
                        criterion("points_earned", 1000, window={"type": "since_tier_start"})
                    ],
                },
                short_description="★",
                long_description="<p>Silver Tier</p>",
            ),
        ],
        **extra,
    }


def enrol(api: Api, member: str, enrolled_at: str) -> str:
    """Enrol ``member``; returns the profile id (the member UUID)."""
    response = api.put(f"/v1/members/{member}", json={"enrolled_at": enrolled_at})
    assert response.status_code in (200, 201), response.text
    profile: str = response.json()["uuid"]
    return profile


def profile_tiers(api: Api, profile: str) -> dict[str, Any]:
    response = api.get(f"{BASE}/profiles/{profile}/tiers")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = validate("omneo_profile_tiers", response.json())
    return body


def definitions(api: Api) -> list[dict[str, Any]]:
    response = api.get(f"{BASE}/tiers/definitions")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = validate("omneo_tier_definitions", response.json())["data"]
    return found


def omneo_error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = validate("omneo_error", response.json())
    message: str = body["message"]
    return message


def blank_ids_and_tier_times(body: dict[str, Any]) -> dict[str, Any]:
    """The body with the record's ids and the tiers' ids and timestamps checked for form
    and blanked (the record's own timestamps are kept: the test controls the clock)."""
    data = dict(body["data"])
    assert isinstance(data["id"], int)
    data["id"] = "<int>"
    data["profile_id"] = "<uuid>"
    for name in ("current_tier", "next_tier", "prev_tier"):
        tier = data[name]
        if tier is None:
            continue
        assert isinstance(tier["id"], int)
        assert STAMP.match(tier["created_at"]) and STAMP.match(tier["updated_at"])
        data[name] = {**tier, "id": "<int>", "created_at": "<ts>", "updated_at": "<ts>"}
    return {"data": data}


def setup(api: Api, clock: Clock, **program_fields: Any) -> dict[str, Any]:
    """Program and ladder defined on 2020-05-15 11:18:24 (the page's Bronze created_at)."""
    clock.set("2020-05-15T11:18:24+00:00")
    p = program(api, **program_fields)
    ladder(api, p["id"], omneo_ladder())
    return p


# -- golden ---------------------------------------------------------------------------------


def test_seed_003_new_profile_on_the_bronze_floor_matches_the_page_example(
    frozen: Api, clock: Clock
) -> None:
    """Seed 003 / E4, R4, R14: a profile created 2021-01-21 01:07:28, enrolled that day,
    no points: Bronze floor, next Silver 1,000 to go, anniversary 2022-01-21 23:59:59. The
    response equals the page's example field for field, except ids (integers, a UUID) and
    the tiers' timestamps (``YYYY-MM-DD HH:MM:SS``)."""
    setup(frozen, clock)
    clock.set("2021-01-21T01:07:28+00:00")
    profile = enrol(frozen, "p1", "2021-01-21T00:00:00Z")
    body = profile_tiers(frozen, profile)
    assert blank_ids_and_tier_times(body) == blank_ids_and_tier_times(SEED_EXAMPLE)
    data = body["data"]
    assert data["profile_id"] == profile and uuid.UUID(profile)
    assert data["current_tier"]["created_at"] == "2020-05-15 11:18:24"
    native = only_ladder(frozen, "p1")
    assert data["current_tier"]["id"] == native["current_level"]["id"]
    assert data["next_tier"]["id"] == native["next_level"]["id"]


def test_the_record_id_is_stable_and_the_profile_id_case_insensitive(
    frozen: Api, clock: Clock
) -> None:
    setup(frozen, clock)
    clock.set("2021-01-21T01:07:28+00:00")
    profile = enrol(frozen, "p1", "2021-01-21T00:00:00Z")
    first = profile_tiers(frozen, profile)["data"]
    clock.set("2021-03-01T00:00:00+00:00")
    activity(frozen, "p1", points=1200, at="2021-02-01T00:00:00Z")
    second = profile_tiers(frozen, profile.upper())["data"]
    assert second["id"] == first["id"]
    assert second["profile_id"] == profile
    assert second["current_tier"]["handle"] == "silver"
    assert second["updated_at"] == "2021-03-01 00:00:00"
    assert second["created_at"] == first["created_at"] == "2021-01-21 01:07:28"


def test_a_profile_that_reached_silver_shows_credit_progress_and_the_anniversary(
    frozen: Api, clock: Clock
) -> None:
    """R18, R19: 300 + 950 tier points reach Silver on 2024-03-01 with 250 credit (1,250
    over 1,000); 100 more since. Figures agree with the native status read."""
    setup(frozen, clock)
    clock.set("2024-01-10T09:00:00+00:00")
    profile = enrol(frozen, "p2", "2024-01-10T00:00:00Z")
    clock.set("2024-06-01T12:00:00+00:00")
    activity(frozen, "p2", points=300, at="2024-02-01T00:00:00Z")
    activity(frozen, "p2", points=950, at="2024-03-01T00:00:00Z")
    activity(frozen, "p2", points=100, at="2024-04-01T00:00:00Z")
    data = profile_tiers(frozen, profile)["data"]
    native = only_ladder(frozen, "p2")
    assert data["current_tier"]["handle"] == "silver"
    assert data["current_tier"]["id"] == native["current_level"]["id"]
    assert data["prev_tier"]["handle"] == "bronze"
    assert data["prev_tier"]["id"] == native["previous_level"]["id"]
    assert data["next_tier"] is None
    assert data["is_floor"] is False
    assert data["current_credit"] == native["forecast"]["credit"] == 250
    assert data["current_progress"] == 1050  # tier points since the tier start (R18)
    assert data["current_remain"] == native["to_keep"]["remaining"]
    assert data["next_progress"] == 1350  # no next tier: tier points in the last 365 days
    assert data["next_remain"] == 0
    assert data["total_points_12m"] == 1350
    assert data["total_points_achievement"] == 1050
    assert data["achieved_at"] == "2024-03-01 00:00:00" and native["achieved_at"].startswith(
        "2024-03-01T00:00:00"
    )
    assert data["anniversary_at"] == "2025-01-10 23:59:59"  # the enrolment anniversary
    assert native["expires_at"] == "2025-01-10T23:59:59Z"
    assert data["assigned_at"] is None


def test_a_maintain_goal_not_yet_met_shows_what_remains(frozen: Api, clock: Clock) -> None:
    """R16, R19: maintain 2,000 since the tier start; current_remain is the engine's
    remaining-to-keep (credit counted), current_progress the tier points since the start."""
    clock.set("2020-05-15T11:18:24+00:00")
    p = program(frozen)
    body = omneo_ladder()
    body["levels"][1]["maintain"]["criteria"][0]["threshold"] = 2000
    ladder(frozen, p["id"], body)
    clock.set("2024-01-10T09:00:00+00:00")
    profile = enrol(frozen, "p3", "2024-01-10T00:00:00Z")
    activity(frozen, "p3", points=1000, at="2024-01-10T10:00:00Z")
    clock.set("2024-06-01T00:00:00+00:00")
    activity(frozen, "p3", points=300, at="2024-05-01T00:00:00Z")
    data = profile_tiers(frozen, profile)["data"]
    native = only_ladder(frozen, "p3")
    assert data["current_tier"]["value_maintain"] == 2000
    assert data["current_credit"] == 0
    assert data["current_progress"] == 1300
    assert data["current_remain"] == native["to_keep"]["remaining"] == 700


def test_a_bronze_profile_in_sydney_sees_local_dates_and_its_way_to_silver(
    frozen: Api, clock: Clock
) -> None:
    """R6, R14, R27: dates render in the program's zone (the anniversary ends at 23:59:59
    local); next_progress counts tier points over the last 365 days."""
    setup(frozen, clock, time_zone="Australia/Sydney")
    clock.set("2024-02-01T00:00:00+00:00")
    profile = enrol(frozen, "syd", "2024-01-20T13:30:00Z")  # 2024-01-21 00:30 in Sydney
    activity(frozen, "syd", points=400, at="2024-01-25T00:00:00Z")
    data = profile_tiers(frozen, profile)["data"]
    assert data["current_tier"]["handle"] == "bronze"
    assert data["achieved_at"] == "2024-01-21 00:30:00"
    assert data["anniversary_at"] == "2025-01-21 23:59:59"
    assert data["next_progress"] == 400
    assert data["next_remain"] == 600
    assert data["current_progress"] == 400
    assert data["total_points_12m"] == 400
    assert data["total_points_achievement"] is None  # the floor is placed, not achieved
    assert data["created_at"] == data["updated_at"] == "2024-02-01 00:00:00"  # UTC


def test_a_manually_assigned_tier_shows_assigned_at(frozen: Api, clock: Clock) -> None:
    """R20: assigned_at is the assignment's time while it is in force."""
    setup(frozen, clock)
    clock.set("2024-01-10T09:00:00+00:00")
    profile = enrol(frozen, "vip", "2024-01-10T00:00:00Z")
    clock.set("2024-02-02T08:30:00+00:00")
    assign(frozen, "vip", "silver", mode="pin", reason="VIP guest")
    data = profile_tiers(frozen, profile)["data"]
    assert data["current_tier"]["handle"] == "silver"
    assert data["prev_tier"]["handle"] == "bronze"
    assert data["assigned_at"] == "2024-02-02 08:30:00"
    assert data["achieved_at"] == "2024-02-02 08:30:00"


def test_tier_definitions_list_every_tier_lowest_first(frozen: Api, clock: Clock) -> None:
    """Tier definitions: our stable integer level ids, keys as handles, value_min and
    value_maintain (the attain threshold when there is no maintain rule), descriptions."""
    p = setup(frozen, clock)
    found = definitions(frozen)
    ids = frozen.get(f"/v1/programs/{p['id']}/ladders/status").json()["level_ids"]
    assert [(t["id"], t["handle"]) for t in found] == [
        (ids["bronze"], "bronze"),
        (ids["silver"], "silver"),
    ]
    bronze, silver = found
    assert (bronze["value_min"], bronze["value_maintain"]) == (0, 0)
    assert (silver["value_min"], silver["value_maintain"]) == (1000, 1000)
    assert bronze["is_floor"] is True and silver["is_floor"] is False
    assert bronze["is_assignable"] is False and silver["is_assignable"] is True
    assert silver["short_description"] == "★"
    assert bronze["created_at"] == "2020-05-15 11:18:24"
    assert {k: v for k, v in bronze.items() if k not in ("id", "updated_at")} == {
        k: v
        for k, v in SEED_EXAMPLE["data"]["current_tier"].items()
        if k not in ("id", "updated_at")
    }


def test_tier_definitions_carry_every_display_field(api: Api) -> None:
    p = program(api)
    ladder(
        api,
        p["id"],
        {
            "key": "status",
            "name": "Status",
            "levels": [
                level(
                    "gold",
                    1,
                    criterion("points_earned", 500),
                    maintain={"criteria": [criterion("points_earned", 400)]},
                    internal_notes="top customers",
                    description="Gold tier",
                    terms="T&Cs apply",
                    icon_url="https://cdn.example.com/gold.svg",
                    image_url="https://cdn.example.com/gold.jpg",
                    earn_instructions="Earn 500 points",
                    tags=["vip", "gold"],
                )
            ],
        },
    )
    [gold] = definitions(api)
    assert gold | {"id": 0, "created_at": "", "updated_at": ""} == {
        "id": 0,
        "name": "Gold",
        "handle": "gold",
        "is_floor": False,
        "value_min": 500,
        "value_maintain": 400,
        "is_assignable": True,
        "internal_notes": "top customers",
        "description": "Gold tier",
        "short_description": None,
        "long_description": None,
        "terms_conditions": "T&Cs apply",
        "icon": "https://cdn.example.com/gold.svg",
        "image_url": "https://cdn.example.com/gold.jpg",
        "earn_instructions": "Earn 500 points",
        "tags": ["vip", "gold"],
        "created_at": "",
        "updated_at": "",
    }


def test_a_spend_ladder_shows_whole_currency_units(api: Api) -> None:
    """R8: spend is stored in minor units; Omneo shows whole currency units."""
    p = program(api, currency="AUD")
    ladder(
        api,
        p["id"],
        {
            "key": "status",
            "name": "Status",
            "levels": [
                level("bronze", 1, is_floor=True),
                level("silver", 2, criterion("spend", 50_000, window=ROLLING_365)),
            ],
        },
    )
    profile = enrol(api, "s", datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z"))
    activity(api, "s", "purchase", amount_minor=12_345, at=datetime.now(UTC).isoformat())
    data = profile_tiers(api, profile)["data"]
    assert data["next_tier"]["value_min"] == 500
    assert data["next_progress"] == 123
    assert data["next_remain"] == 377


# -- auth and bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "profile",
    ["abc", "123", "92441ab4-331a-41dc-b598-9fa22311b3", "0" * 32, "x" * 300, "%00"],
)
def test_a_malformed_profile_id_is_a_404_in_omneos_shape(api: Api, profile: str) -> None:
    """Never a 422 or a 500: a profile id that is not a UUID names no profile."""
    program(api)
    omneo_error(api.get(f"{BASE}/profiles/{profile}/tiers"), 404)


def test_an_unknown_profile_is_a_404(api: Api) -> None:
    p = program(api)
    ladder(api, p["id"], omneo_ladder())
    message = omneo_error(api.get(f"{BASE}/profiles/{uuid.uuid4()}/tiers"), 404)
    assert "profile" in message.lower() or "member" in message.lower()


def test_another_tenants_profile_is_unknown(client: TestClient, api: Api) -> None:
    p = program(api)
    ladder(api, p["id"], omneo_ladder())
    profile = enrol(api, "mine", "2024-01-01T00:00:00Z")
    stranger = Api(client, make_key(client, f"other-{uuid.uuid4().hex[:8]}", ALL_SCOPES))
    program(stranger)
    omneo_error(stranger.get(f"{BASE}/profiles/{profile}/tiers"), 404)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer tw_wrong"}, {"Authorization": "Basic !!"}],
    ids=["missing", "wrong", "garbled"],
)
def test_a_missing_or_wrong_token_is_a_401(client: TestClient, api: Api, headers: Any) -> None:
    program(api)
    for path in (f"profiles/{uuid.uuid4()}/tiers", "tiers/definitions"):
        response = client.get(f"{BASE}/{path}", headers=headers)
        assert omneo_error(response, 401) == "Unauthenticated."
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_token_without_tiers_read_is_a_403(client: TestClient, api: Api) -> None:
    p = program(api)
    ladder(api, p["id"], omneo_ladder())
    profile = enrol(api, "m", "2024-01-01T00:00:00Z")
    other = make_key(client, api.key.tenant, ["members:read"])
    headers = {"Authorization": f"Bearer {other.secret}"}
    for path in (f"profiles/{profile}/tiers", "tiers/definitions"):
        assert "tiers:read" in omneo_error(client.get(f"{BASE}/{path}", headers=headers), 403)
    reader = Api(client, make_key(client, api.key.tenant, ["tiers:read"]))
    assert profile_tiers(reader, profile)["data"]["profile_id"] == profile


def test_unknown_paths_and_methods_answer_in_omneos_shape(api: Api) -> None:
    program(api)
    omneo_error(api.get(f"{BASE}/nothing"), 404)
    omneo_error(api.post(f"{BASE}/tiers/definitions"), 405)


def test_a_tenant_without_a_program_gets_a_404(api: Api) -> None:
    omneo_error(api.get(f"{BASE}/tiers/definitions"), 404)


def test_a_program_without_a_ladder_has_no_tiers(api: Api) -> None:
    program(api)
    assert definitions(api) == []
    profile = enrol(api, "m", "2024-01-01T00:00:00Z")
    data = profile_tiers(api, profile)["data"]
    assert (data["current_tier"], data["next_tier"], data["prev_tier"]) == (None, None, None)
    assert data["anniversary_at"] is None and data["achieved_at"] is None
