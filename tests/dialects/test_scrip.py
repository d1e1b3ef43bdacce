"""The Scrip dialect (seed 004): tiers and participants' levels under ``/compat/scrip``.

Golden test against the seed page, JSON Schemas for every response, the create → read →
patch → read round trip, a participant set to a level with an expiry (R20) that the
sweep removes (R15), and bad input in Scrip's error shape.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import activity, enrol, iso, ladder, level, program, status, sweep, utc_now
from tests.conftest import Api, make_key
from tests.dialects.conftest import validate

BASE = "/compat/scrip/v1"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

SEED: dict[str, Any] = {
    "created_at": "2024-01-15T10:30:00Z",
    "display_name": "Loyalty Status",
    "id": "550e8400-e29b-41d4-a716-446655440000",
    "key": "status",
    "levels": [
        {
            "benefits": {},
            "color": "#FFD700",
            "created_at": "2024-01-15T10:30:00Z",
            "display_name": "Gold",
            "icon_url": "<string>",
            "id": "550e8400-e29b-41d4-a716-446655440002",
            "key": "gold",
            "qualification": {},
            "rank": 2,
            "updated_at": "2024-01-15T10:30:00Z",
        }
    ],
    "lifecycle": {},
    "program_id": "550e8400-e29b-41d4-a716-446655440001",
    "updated_at": "2024-01-15T10:30:00Z",
}
"""The example of seed page 004, verbatim (``icon_url`` is the page's own placeholder)."""

IDS = ("id", "program_id")
TIMES = ("created_at", "updated_at")


# -- helpers ---------------------------------------------------------------------------------


def x_api_key(api: Api) -> dict[str, str]:
    """Scrip's own header (``Api`` sends ``Authorization: Bearer`` by default)."""
    return {"X-API-Key": api.key.secret}


def scrip(api: Api, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
    """A Scrip call with ``X-API-Key``; asserts the status, returns the JSON (or None)."""
    response = api.client.request(method, BASE + path, headers=x_api_key(api), **kwargs)
    assert response.status_code == expect, response.text
    return response.json() if response.content else None


def scrip_error(response: Any, status_code: int, code: str) -> dict[str, Any]:
    """Assert a Scrip error ``{code, message, details}``; returns ``details``."""
    assert response.status_code == status_code, response.text
    body = validate("scrip_error", response.json())
    assert body["code"] == code, body
    details: dict[str, Any] = body["details"]
    return details


def tier(api: Api, program_uuid: str, key: str) -> dict[str, Any]:
    body: dict[str, Any] = validate(
        "scrip_tier", scrip(api, "GET", f"/programs/{program_uuid}/tiers/{key}")
    )
    return body


def create(api: Api, program_uuid: str, body: dict[str, Any], *, expect: int = 201) -> Any:
    found = scrip(api, "POST", f"/programs/{program_uuid}/tiers", json=body, expect=expect)
    if expect == 201:
        validate("scrip_tier", found)
    return found


def patch(api: Api, program_uuid: str, key: str, body: dict[str, Any], *, expect: int = 200) -> Any:
    found = scrip(api, "PATCH", f"/programs/{program_uuid}/tiers/{key}", json=body, expect=expect)
    if expect == 200:
        validate("scrip_tier", found)
    return found


def native_definition(api: Api, program_id: int, key: str) -> dict[str, Any]:
    response = api.get(f"/v1/programs/{program_id}/ladders/{key}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def without_ids_and_times(body: Any) -> Any:
    """``body`` with ids and timestamps blanked after checking their form."""
    if isinstance(body, list):
        return [without_ids_and_times(item) for item in body]
    if not isinstance(body, dict):
        return body
    found: dict[str, Any] = {}
    for name, value in body.items():
        if name in IDS:
            assert isinstance(value, str) and UUID.match(value), (name, value)
            found[name] = "<uuid>"
        elif name in TIMES:
            assert isinstance(value, str) and RFC3339.match(value), (name, value)
            found[name] = "<time>"
        else:
            found[name] = without_ids_and_times(value)
    return found


@pytest.fixture
def prog(api: Api) -> dict[str, Any]:
    """A USD program in UTC: ``{"id": int, "uuid": str, …}``."""
    return program(api)


LOYALTY: dict[str, Any] = {
    "key": "loyalty",
    "display_name": "Loyalty Status",
    "levels": [
        {
            "key": "silver",
            "rank": 1,
            "display_name": "Silver",
            "qualification": {
                "mode": "ALL",
                "criteria": [{"counter": "spend", "operator": ">=", "threshold": 500}],
            },
            "benefits": {"points_multiplier": 1.5},
        },
        {
            "key": "gold",
            "rank": 2,
            "display_name": "Gold",
            "color": "#FFD700",
            "icon_url": "https://cdn.example.com/gold.png",
            "qualification": {
                "mode": "ALL",
                "criteria": [
                    {"counter": "spend", "operator": ">=", "threshold": 2000},
                    {"counter": "nights", "operator": ">=", "threshold": 10},
                ],
            },
            "benefits": {"points_multiplier": 2.0, "lounge_access": True, "tagline": "Gold!"},
        },
    ],
    "lifecycle": {
        "retention": {"mode": "PERIOD_BASED"},
        "qualification_period": {"type": "CALENDAR_YEAR"},
        "status_validity": {"extend_months": 1},
        "downgrade_policy": {"mode": "DROP_TO_QUALIFYING", "grace_days": 30},
        "counters": {"rollover": "NONE", "qualifying": ["spend", "nights"]},
    },
}
"""The example of Scrip's tiers guide (hotel-style: spend and nights in a calendar year)."""


# -- golden ----------------------------------------------------------------------------------


def test_golden_seed_situation_built_natively_reads_as_the_seed_page(
    api: Api, prog: dict[str, Any]
) -> None:
    """Seed 004: a ``status`` tier "Loyalty Status" with a ``gold`` level (#FFD700, rank 2)."""
    native = ladder(
        api,
        prog["id"],
        {
            "key": "status",
            "name": "Loyalty Status",
            "levels": [
                level("gold", 2, color="#FFD700", icon_url="<string>", name="Gold"),
            ],
        },
    )
    body = tier(api, prog["uuid"], "status")
    assert without_ids_and_times(body) == without_ids_and_times(SEED)
    assert body["id"] == native["uuid"]
    assert body["program_id"] == prog["uuid"]
    assert body["levels"][0]["id"] != body["id"]
    # Ids are stable: the same object always shows the same id.
    assert tier(api, prog["uuid"], "status") == body


def test_golden_seed_situation_created_through_scrip_reads_the_same(
    api: Api, prog: dict[str, Any]
) -> None:
    sent = {
        "key": "status",
        "display_name": "Loyalty Status",
        "levels": [
            {
                "key": "gold",
                "rank": 2,
                "display_name": "Gold",
                "color": "#FFD700",
                "icon_url": "<string>",
                "benefits": {},
                "qualification": {},
            },
        ],
        "lifecycle": {},
    }
    created = create(api, prog["uuid"], sent)
    assert without_ids_and_times(created) == without_ids_and_times(SEED)
    assert tier(api, prog["uuid"], "status") == created
    definition = native_definition(api, prog["id"], "status")["definition"]
    assert definition["name"] == "Loyalty Status"
    assert definition["validity"]["type"] == "none"
    assert definition["levels"][0]["attain"] is None


def test_bearer_is_accepted_as_well_as_x_api_key(api: Api, prog: dict[str, Any]) -> None:
    create(api, prog["uuid"], LOYALTY)
    response = api.get(f"{BASE}/programs/{prog['uuid']}/tiers/loyalty")  # Bearer
    assert response.status_code == 200, response.text
    assert response.json() == tier(api, prog["uuid"], "loyalty")


# -- definitions -----------------------------------------------------------------------------


def test_create_maps_the_guide_example_onto_our_ladder(api: Api, prog: dict[str, Any]) -> None:
    created = create(api, prog["uuid"], LOYALTY)
    silver, gold = created["levels"]
    assert (silver["key"], silver["rank"], gold["key"], gold["rank"]) == ("silver", 1, "gold", 2)
    assert gold["qualification"] == LOYALTY["levels"][1]["qualification"]
    assert gold["benefits"] == {"points_multiplier": 2.0, "lounge_access": True, "tagline": "Gold!"}
    assert "color" not in silver and "icon_url" not in silver  # omitted when unset
    assert created["lifecycle"] == {
        "counters": {"qualifying": ["nights", "spend"], "rollover": "NONE"},
        "downgrade_policy": {"grace_days": 30, "mode": "DROP_TO_QUALIFYING"},
        "qualification_period": {"type": "CALENDAR_YEAR"},
        "retention": {"duration": "8760h", "mode": "PERIOD_BASED"},
        "status_validity": {"extend_months": 1},
    }
    definition = native_definition(api, prog["id"], "loyalty")["definition"]
    assert definition["validity"] == {
        "type": "calendar_year",
        "months": None,
        "month": None,
        "day": None,
        "min_stay_months": None,
        "extend_months": 1,
        "inactivity_days": None,
    }
    assert definition["downgrade"] == {"policy": "to_qualifying", "grace_days": 30}
    assert definition["rollover"] == "reset"
    native_gold = definition["levels"][1]
    spend, nights = native_gold["attain"]["criteria"]
    assert (spend["metric"], spend["threshold"]) == ("spend", 200000)  # USD minor units (R8)
    assert (nights["metric"], nights["threshold"]) == ("counter:nights", 10)
    assert spend["window"]["type"] == nights["window"]["type"] == "calendar_year"
    assert native_gold["attain"]["mode"] == "all"
    assert {b["name"]: b["value"] for b in native_gold["benefits"]} == {
        "points_multiplier": "2.0",
        "lounge_access": "true",
        "tagline": "Gold!",
    }


def test_create_read_patch_read_round_trip(api: Api, prog: dict[str, Any]) -> None:
    created = create(api, prog["uuid"], LOYALTY)
    assert tier(api, prog["uuid"], "loyalty") == created
    before = {lv["key"]: lv for lv in created["levels"]}

    patched = patch(
        api,
        prog["uuid"],
        "loyalty",
        {
            "display_name": "Status",
            "levels": [
                {
                    "key": "gold",
                    "qualification": {
                        "mode": "ANY",
                        "criteria": [{"counter": "spend", "operator": ">=", "threshold": 2500}],
                    },
                },
                {
                    "key": "platinum",
                    "rank": 3,
                    "display_name": "Platinum",
                    "qualification": {
                        "mode": "ALL",
                        "criteria": [{"counter": "spend", "operator": ">=", "threshold": 5000.5}],
                    },
                },
            ],
            "lifecycle": {"downgrade_policy": {"mode": "DROP_ONE"}},
        },
    )
    assert tier(api, prog["uuid"], "loyalty") == patched
    assert patched["id"] == created["id"] and patched["display_name"] == "Status"
    after = {lv["key"]: lv for lv in patched["levels"]}
    assert [lv["key"] for lv in patched["levels"]] == ["silver", "gold", "platinum"]
    assert after["gold"]["qualification"] == {
        "criteria": [{"counter": "spend", "operator": ">=", "threshold": 2500}],
        "mode": "ANY",
    }
    assert after["platinum"]["qualification"]["criteria"][0]["threshold"] == 5000.5
    # Untouched fields and levels stay as they were; ids are stable.
    assert after["silver"] == before["silver"]
    assert after["gold"]["id"] == before["gold"]["id"]
    assert after["gold"]["benefits"] == before["gold"]["benefits"]
    assert after["gold"]["color"] == "#FFD700"
    assert patched["lifecycle"]["downgrade_policy"] == {"grace_days": 30, "mode": "DROP_ONE"}
    assert patched["lifecycle"]["qualification_period"] == {"type": "CALENDAR_YEAR"}
    assert patched["lifecycle"]["status_validity"] == {"extend_months": 1}
    assert patched["lifecycle"]["counters"]["qualifying"] == ["spend"]
    # A new live version of the ladder (R24), the old one a snapshot.
    native = native_definition(api, prog["id"], "loyalty")
    assert native["version"] == 2
    assert native["definition"]["downgrade"]["policy"] == "drop_one"
    platinum = native["definition"]["levels"][2]["attain"]["criteria"][0]
    assert (platinum["threshold"], platinum["window"]["type"]) == (500050, "calendar_year")

    # An empty PATCH changes nothing and publishes nothing.
    assert patch(api, prog["uuid"], "loyalty", {}) == patched
    assert native_definition(api, prog["id"], "loyalty")["version"] == 2
    # lifecycle {} turns the tier rules-only; qualification {} removes auto-advancement.
    cleared = patch(
        api,
        prog["uuid"],
        "loyalty",
        {
            "lifecycle": {},
            "levels": [{"key": "platinum", "qualification": {}}],
        },
    )
    assert cleared["lifecycle"] == {}
    assert cleared["levels"][2]["qualification"] == {}
    definition = native_definition(api, prog["id"], "loyalty")["definition"]
    assert definition["validity"]["type"] == "none"
    assert definition["levels"][0]["attain"]["criteria"][0]["window"]["type"] == "lifetime"


def test_patch_merges_lifecycle_parts_field_by_field(api: Api, prog: dict[str, Any]) -> None:
    create(api, prog["uuid"], LOYALTY)
    patched = patch(
        api,
        prog["uuid"],
        "loyalty",
        {
            "lifecycle": {
                "qualification_period": {"type": "FIXED_YEAR", "start_month": 2, "start_day": 1},
                "downgrade_policy": {"min_level": "silver"},
                "counters": {"rollover": "EXCESS"},
                "retention": None,
            }
        },
    )
    assert patched["lifecycle"] == {
        "counters": {"qualifying": ["nights", "spend"], "rollover": "EXCESS"},
        "downgrade_policy": {"grace_days": 30, "min_level": "silver", "mode": "DROP_TO_QUALIFYING"},
        "qualification_period": {"start_day": 1, "start_month": 2, "type": "FIXED_YEAR"},
        "retention": {"duration": "8760h", "mode": "PERIOD_BASED"},
        "status_validity": {"extend_months": 1},
    }
    definition = native_definition(api, prog["id"], "loyalty")["definition"]
    assert (
        definition["validity"]["type"],
        definition["validity"]["month"],
        definition["validity"]["day"],
    ) == ("fixed_year", 2, 1)
    assert definition["rollover"] == "carry_excess"
    assert [lv["is_floor"] for lv in definition["levels"]] == [True, False]
    window = definition["levels"][1]["attain"]["criteria"][0]["window"]
    assert (window["type"], window["month"], window["day"]) == ("fixed_year", 2, 1)
    # Back to CALENDAR_YEAR: the start fields go with FIXED_YEAR.
    again = patch(
        api,
        prog["uuid"],
        "loyalty",
        {
            "lifecycle": {
                "qualification_period": {"type": "CALENDAR_YEAR"},
                "downgrade_policy": {"min_level": None},
            }
        },
    )
    assert again["lifecycle"]["qualification_period"] == {"type": "CALENDAR_YEAR"}
    assert "min_level" not in again["lifecycle"]["downgrade_policy"]


@pytest.mark.parametrize(
    ("lifecycle", "validity", "shown"),
    [
        (
            {"retention": {"mode": "PERIOD_BASED", "duration": "8760h"}},
            {"type": "fixed_months", "months": 12},
            {
                "retention": {"duration": "8760h", "mode": "PERIOD_BASED"},
                "qualification_period": {"type": "NONE"},
            },
        ),
        (
            {"retention": {"mode": "PERIOD_BASED", "duration": "2160h"}},
            {"type": "fixed_months", "months": 3},
            {"retention": {"duration": "2160h", "mode": "PERIOD_BASED"}},
        ),
        (
            {"retention": {"mode": "PERIOD_BASED", "duration": "17520h0m0s"}},
            {"type": "fixed_months", "months": 24},
            {"retention": {"duration": "17520h", "mode": "PERIOD_BASED"}},
        ),
        (
            {"retention": {"mode": "ACTIVITY_REFRESH", "duration": "2160h"}},
            {"type": "inactivity", "inactivity_days": 90},
            {"retention": {"duration": "2160h", "mode": "ACTIVITY_REFRESH"}},
        ),
        (
            {"retention": {"mode": "ACTIVITY_REFRESH", "duration": "36h720m"}},
            {"type": "inactivity", "inactivity_days": 2},
            {"retention": {"duration": "48h", "mode": "ACTIVITY_REFRESH"}},
        ),
        (
            {
                "qualification_period": {"type": "FIXED_YEAR", "start_month": 4, "start_day": 6},
                "status_validity": {"extend_months": 2},
            },
            {"type": "fixed_year", "month": 4, "day": 6, "extend_months": 2},
            {
                "retention": {"duration": "8760h", "mode": "PERIOD_BASED"},
                "status_validity": {"extend_months": 2},
            },
        ),
        (
            {"downgrade_policy": {"mode": "HOLD"}},
            {"type": "none"},
            {
                "retention": {"mode": "PERIOD_BASED"},
                "downgrade_policy": {"grace_days": 0, "mode": "HOLD"},
            },
        ),
    ],
)
def test_lifecycle_maps_onto_validity(
    api: Api,
    prog: dict[str, Any],
    lifecycle: dict[str, Any],
    validity: dict[str, Any],
    shown: dict[str, Any],
) -> None:
    body = {"key": "track", "levels": [{"key": "member", "rank": 1}], "lifecycle": lifecycle}
    created = create(api, prog["uuid"], body)
    for part, value in shown.items():
        assert created["lifecycle"][part] == value, part
    definition = native_definition(api, prog["id"], "track")["definition"]
    assert {k: v for k, v in definition["validity"].items() if v is not None} == validity
    # What GET shows creates the same ladder again (under another key).
    again = create(api, prog["uuid"], {**body, "key": "track2", "lifecycle": created["lifecycle"]})
    assert again["lifecycle"] == created["lifecycle"]


def test_counters_map_to_metrics(api: Api, prog: dict[str, Any]) -> None:
    criteria = [
        {"counter": "points_earned", "operator": ">", "threshold": 100},
        {"counter": "orders", "operator": ">=", "threshold": 3},
        {"counter": "visits", "operator": "<", "threshold": 50},
        {"counter": "ytd_nights", "operator": "==", "threshold": 7},
        {"counter": "counter:spend", "operator": ">=", "threshold": 1},
        {"counter": "spend", "operator": ">=", "threshold": 19.99},
    ]
    created = create(
        api,
        prog["uuid"],
        {
            "key": "c",
            "levels": [
                {"key": "one", "rank": 1, "qualification": {"mode": "ANY", "criteria": criteria}},
            ],
        },
    )
    assert created["levels"][0]["qualification"] == {"criteria": criteria, "mode": "ANY"}
    native = native_definition(api, prog["id"], "c")["definition"]["levels"][0]["attain"]
    assert [(c["metric"], c["threshold"]) for c in native["criteria"]] == [
        ("points_earned", 100),
        ("orders", 3),
        ("visits", 50),
        ("counter:ytd_nights", 7),
        ("counter:spend", 1),
        ("spend", 1999),
    ]


def test_list_tiers_envelope_and_cursor(api: Api, prog: dict[str, Any]) -> None:
    for key in ("a", "b", "c"):
        create(api, prog["uuid"], {"key": key, "levels": [{"key": "one", "rank": 1}]})
    first = validate(
        "scrip_tier_list", scrip(api, "GET", f"/programs/{prog['uuid']}/tiers", params={"limit": 2})
    )
    for item in first["data"]:
        validate("scrip_tier", item)
    assert [t["key"] for t in first["data"]] == ["a", "b"]
    assert first["pagination"]["has_more"] is True
    second = validate(
        "scrip_tier_list",
        scrip(
            api,
            "GET",
            f"/programs/{prog['uuid']}/tiers",
            params={"limit": 2, "cursor": first["pagination"]["next_cursor"]},
        ),
    )
    assert [t["key"] for t in second["data"]] == ["c"]
    assert second["pagination"] == {"has_more": False, "next_cursor": None}
    whole = validate("scrip_tier_list", scrip(api, "GET", f"/programs/{prog['uuid']}/tiers"))
    assert [t["key"] for t in whole["data"]] == ["a", "b", "c"]
    assert whole["data"][2] == tier(api, prog["uuid"], "c")


# -- participants ----------------------------------------------------------------------------


def participant(api: Api, external_id: str) -> str:
    """Enrol a member; its UUID is the Scrip participant id."""
    member_uuid: str = enrol(api, external_id, "2024-01-01T00:00:00Z")["uuid"]
    return member_uuid


def state_path(member_uuid: str, key: str = "loyalty") -> str:
    return f"/participants/{member_uuid}/state/tiers/{key}"


def test_put_gold_with_expiry_then_read_native_and_sweep_removes_it(
    api: Api, prog: dict[str, Any]
) -> None:
    """R20: a pinned assignment with expiry; R15: the sweep removes it after expires_at."""
    create(api, prog["uuid"], LOYALTY)
    who = participant(api, "ada")
    expires = utc_now() + timedelta(hours=1)
    params = {"program_id": prog["uuid"]}
    put = validate(
        "scrip_participant_tier",
        scrip(
            api,
            "PUT",
            state_path(who),
            params=params,
            json={"level": "gold", "expires_at": iso(expires)},
        ),
    )
    assert put["level"] == "gold" and put["rank"] == 2
    assert put["expires_at"] == iso(expires)
    assert put["benefits"] == {"points_multiplier": 2.0, "lounge_access": True, "tagline": "Gold!"}
    assert RFC3339.match(put["acquired_at"])
    got = validate("scrip_participant_tier", scrip(api, "GET", state_path(who), params=params))
    assert got == put
    listed = validate(
        "scrip_participant_tier_list",
        scrip(api, "GET", f"/participants/{who}/state/tiers", params=params),
    )
    assert listed == {"data": [{**put, "key": "loyalty"}]}

    native = status(api, "ada")["ladders"][0]
    assert native["current_level"]["key"] == "gold"
    assert native["assignment"]["mode"] == "pin"
    assert native["assignment"]["expires_at"] == iso(expires)

    sweep(api, expires - timedelta(seconds=1))
    assert scrip(api, "GET", state_path(who), params=params)["level"] == "gold"
    summary = sweep(api, expires + timedelta(seconds=1))
    assert summary["events"] >= 1
    response = api.client.get(BASE + state_path(who), params=params, headers=x_api_key(api))
    assert scrip_error(response, 404, "not_found")["reason"] == "no_level"
    after = status(api, "ada")["ladders"][0]
    assert after["current_level"] is None and after["assignment"] is None


def test_put_without_expiry_and_delete_reevaluates(api: Api, prog: dict[str, Any]) -> None:
    """R21: removing the assignment re-evaluates the participant on their figures."""
    create(
        api,
        prog["uuid"],
        {
            "key": "points",
            "levels": [
                {
                    "key": "silver",
                    "rank": 1,
                    "qualification": {
                        "criteria": [
                            {"counter": "points_earned", "operator": ">=", "threshold": 500}
                        ]
                    },
                },
                {
                    "key": "gold",
                    "rank": 2,
                    "qualification": {
                        "criteria": [
                            {"counter": "points_earned", "operator": ">=", "threshold": 1000}
                        ]
                    },
                },
            ],
        },
    )
    who = participant(api, "bo")
    activity(api, "bo", points=650, at=iso(utc_now() - timedelta(minutes=5)))
    params = {"program_id": prog["uuid"]}
    assert scrip(api, "GET", state_path(who, "points"), params=params)["level"] == "silver"
    put = scrip(api, "PUT", state_path(who, "points"), params=params, json={"level": "gold"})
    assert put["level"] == "gold" and "expires_at" not in put
    assert scrip(api, "DELETE", state_path(who, "points"), params=params, expect=204) is None
    assert scrip(api, "GET", state_path(who, "points"), params=params)["level"] == "silver"
    response = api.client.delete(
        BASE + state_path(who, "points"), params=params, headers=x_api_key(api)
    )
    assert scrip_error(response, 404, "not_found")["reason"] == "no_assignment"


# -- bad input -------------------------------------------------------------------------------


def test_unknown_program_tier_and_participant_are_not_found(api: Api, prog: dict[str, Any]) -> None:
    create(api, prog["uuid"], LOYALTY)
    who = participant(api, "cy")
    nobody = str(uuid.uuid4())
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("GET", f"/programs/{nobody}/tiers/loyalty", {}, "program_not_found"),
        ("GET", f"/programs/{nobody}/tiers", {}, "program_not_found"),
        ("GET", f"/programs/{prog['uuid']}/tiers/nope", {}, "ladder_not_found"),
        ("GET", f"/programs/{prog['uuid']}/tiers/NO%00PE", {}, "ladder_not_found"),
        ("PATCH", f"/programs/{prog['uuid']}/tiers/nope", {"json": {}}, "ladder_not_found"),
        ("GET", state_path(nobody), {"params": {"program_id": prog["uuid"]}}, "member_not_found"),
        (
            "GET",
            state_path(who, "nope"),
            {"params": {"program_id": prog["uuid"]}},
            "ladder_not_found",
        ),
        ("GET", state_path(who), {"params": {"program_id": nobody}}, "program_not_found"),
        ("GET", state_path(who), {"params": {"program_id": prog["uuid"]}}, "no_level"),
        (
            "PUT",
            state_path(nobody),
            {"params": {"program_id": prog["uuid"]}, "json": {"level": "gold"}},
            "member_not_found",
        ),
        ("DELETE", state_path(who), {"params": {"program_id": prog["uuid"]}}, "no_assignment"),
        ("GET", "/nothing/here", {}, "not_found"),
    ]
    for method, path, kwargs, reason in cases:
        response = api.client.request(method, BASE + path, headers=x_api_key(api), **kwargs)
        assert scrip_error(response, 404, "not_found")["reason"] == reason, (method, path)


def test_malformed_ids_and_missing_program_id_are_bad_requests(
    api: Api, prog: dict[str, Any]
) -> None:
    create(api, prog["uuid"], LOYALTY)
    who = participant(api, "di")
    cases: list[tuple[str, str, dict[str, Any], str, str]] = [
        ("GET", "/programs/42/tiers/loyalty", {}, "programId", "invalid"),
        ("POST", "/programs/not-a-uuid/tiers", {"json": LOYALTY}, "programId", "invalid"),
        ("GET", state_path("ada"), {"params": {"program_id": prog["uuid"]}}, "id", "invalid"),
        ("GET", state_path(who), {"params": {"program_id": "x"}}, "program_id", "invalid"),
        ("GET", state_path(who), {}, "program_id", "required"),
        ("PUT", state_path(who), {"json": {"level": "gold"}}, "program_id", "required"),
    ]
    for method, path, kwargs, field, reason in cases:
        response = api.client.request(method, BASE + path, headers=x_api_key(api), **kwargs)
        details = scrip_error(response, 400, "bad_request")
        assert (details["field"], details["reason"]) == (field, reason), (method, path)
        assert details["expected"] == "uuid"


@pytest.mark.parametrize(
    ("lifecycle", "field"),
    [
        ({"retention": {"mode": "PERIOD_BASED", "duration": "36h"}}, "duration"),
        ({"retention": {"mode": "PERIOD_BASED", "duration": "1000h"}}, "duration"),
        ({"retention": {"mode": "PERIOD_BASED", "duration": "90m"}}, "duration"),
        ({"retention": {"mode": "PERIOD_BASED", "duration": "-720h"}}, "duration"),
        ({"retention": {"mode": "PERIOD_BASED", "duration": "0h"}}, "duration"),
        ({"retention": {"mode": "PERIOD_BASED", "duration": "a year"}}, "duration"),
        ({"retention": {"mode": "PERIOD_BASED", "duration": "105120h"}}, "duration"),
        ({"retention": {"mode": "ACTIVITY_REFRESH", "duration": "25h"}}, "duration"),
        ({"retention": {"mode": "ACTIVITY_REFRESH"}}, "duration"),
        (
            {
                "retention": {"mode": "PERIOD_BASED", "duration": "2160h"},
                "qualification_period": {"type": "CALENDAR_YEAR"},
            },
            "duration",
        ),
        ({"status_validity": {"extend_months": 1}}, "extend_months"),
        ({"qualification_period": {"type": "FIXED_YEAR", "start_month": 2}}, "start_day"),
        (
            {"qualification_period": {"type": "FIXED_YEAR", "start_month": 2, "start_day": 30}},
            "start_day",
        ),
        ({"qualification_period": {"type": "NONE", "start_month": 2}}, "type"),
        ({"downgrade_policy": {"min_level": "gold"}}, "min_level"),
        ({"downgrade_policy": {"min_level": "bronze"}}, "min_level"),
        ({"counters": {"qualifying": ["miles"]}}, "qualifying.0"),
        ({"retention": {"mode": "FOREVER"}}, "mode"),
    ],
)
def test_bad_lifecycle_is_a_clear_bad_request(
    api: Api, prog: dict[str, Any], lifecycle: dict[str, Any], field: str
) -> None:
    response = api.client.post(
        f"{BASE}/programs/{prog['uuid']}/tiers",
        json={**LOYALTY, "lifecycle": lifecycle},
        headers=x_api_key(api),
    )
    details = scrip_error(response, 400, "bad_request")
    assert details["field"].endswith(field), details
    assert response.json()["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key": "t", "levels": []}, "levels"),
        ({"key": "t"}, "levels"),
        ({"key": "T!", "levels": [{"key": "a", "rank": 1}]}, "key"),
        ({"key": "t", "levels": [{"key": "a"}]}, "levels.0.rank"),
        ({"key": "t", "levels": [{"key": "a", "rank": 1}, {"key": "a", "rank": 2}]}, "levels"),
        (
            {
                "key": "t",
                "levels": [
                    {
                        "key": "a",
                        "rank": 1,
                        "qualification": {
                            "criteria": [{"counter": "Bad Name", "operator": ">=", "threshold": 1}]
                        },
                    }
                ],
            },
            "counter",
        ),
        (
            {
                "key": "t",
                "levels": [
                    {
                        "key": "a",
                        "rank": 1,
                        "qualification": {
                            "criteria": [{"counter": "orders", "operator": ">=", "threshold": 1.5}]
                        },
                    }
                ],
            },
            "threshold",
        ),
        (
            {
                "key": "t",
                "levels": [
                    {
                        "key": "a",
                        "rank": 1,
                        "qualification": {
                            "criteria": [{"counter": "spend", "operator": ">=", "threshold": 1.001}]
                        },
                    }
                ],
            },
            "threshold",
        ),
        (
            {
                "key": "t",
                "levels": [
                    {
                        "key": "a",
                        "rank": 1,
                        "qualification": {
                            "criteria": [{"counter": "orders", "operator": "!=", "threshold": 1}]
                        },
                    }
                ],
            },
            "operator",
        ),
        (
            {"key": "t", "levels": [{"key": "a", "rank": 1, "benefits": {"x": "\u0000"}}]},
            "levels.0",
        ),
        (
            {"key": "t", "levels": [{"key": "a", "rank": 1, "benefits": {"x": "y" * 300}}]},
            "benefits.x",
        ),
        ({"key": "t", "levels": [{"key": "a", "rank": 1}], "status": "ACTIVE"}, "status"),
    ],
)
def test_bad_tier_bodies_are_bad_requests(
    api: Api, prog: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    response = api.client.post(
        f"{BASE}/programs/{prog['uuid']}/tiers", json=body, headers=x_api_key(api)
    )
    details = scrip_error(response, 400, "bad_request")
    assert field in details["field"], details


def test_engine_rules_and_conflicts_answer_in_scrip_shape(api: Api, prog: dict[str, Any]) -> None:
    create(api, prog["uuid"], LOYALTY)
    path = f"{BASE}/programs/{prog['uuid']}/tiers"
    headers = x_api_key(api)
    # R1: thresholds on the same counter must not decrease with rank.
    decreasing = {
        "key": "r1",
        "levels": [
            {
                "key": "a",
                "rank": 1,
                "qualification": {
                    "criteria": [{"counter": "orders", "operator": ">=", "threshold": 10}]
                },
            },
            {
                "key": "b",
                "rank": 2,
                "qualification": {
                    "criteria": [{"counter": "orders", "operator": ">=", "threshold": 5}]
                },
            },
        ],
    }
    details = scrip_error(
        api.client.post(path, json=decreasing, headers=headers), 400, "bad_request"
    )
    assert details["reason"] == "ladder_invalid"
    assert (
        scrip_error(api.client.post(path, json=LOYALTY, headers=headers), 409, "conflict")["reason"]
        == "ladder_exists"
    )
    rank_clash = {"levels": [{"key": "platinum", "rank": 2}]}
    assert (
        scrip_error(
            api.client.patch(f"{path}/loyalty", json=rank_clash, headers=headers), 409, "conflict"
        )["reason"]
        == "rank_conflict"
    )
    scrip_error(
        api.client.patch(f"{path}/loyalty", json={"key": "other"}, headers=headers),
        400,
        "bad_request",
    )
    malformed = api.client.post(
        path, content=b"{not json", headers={**headers, "Content-Type": "application/json"}
    )
    assert scrip_error(malformed, 400, "bad_request")["reason"] == "malformed_json"
    scrip_error(api.client.put(path, json={}, headers=headers), 405, "method_not_allowed")


def test_bad_participant_writes(api: Api, prog: dict[str, Any]) -> None:
    create(api, prog["uuid"], LOYALTY)
    who = participant(api, "ed")
    url = BASE + state_path(who)
    params = {"program_id": prog["uuid"]}
    headers = x_api_key(api)
    cases = [
        ({"level": "diamond"}, "level"),
        ({}, "level"),
        ({"level": "gold", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"level": "gold", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"level": "gold", "expires_at": "tomorrow"}, "expires_at"),
        ({"level": "gold", "tier": "x"}, "tier"),
    ]
    for body, field in cases:
        response = api.client.put(url, params=params, json=body, headers=headers)
        assert scrip_error(response, 400, "bad_request")["field"] == field, body


def test_credentials_and_scopes(
    api: Api, client: TestClient, tenant_name: str, prog: dict[str, Any]
) -> None:
    create(api, prog["uuid"], LOYALTY)
    who = participant(api, "flo")
    read = f"{BASE}/programs/{prog['uuid']}/tiers/loyalty"
    state = BASE + state_path(who)
    params = {"program_id": prog["uuid"]}

    for headers in ({}, {"X-API-Key": "tw_wrong"}, {"Authorization": "Bearer tw_wrong"}):
        response = client.get(read, headers=headers)
        scrip_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"

    tiers_only = make_key(client, tenant_name, ["tiers:read", "tiers:write"])
    programs_only = make_key(client, tenant_name, ["programs:read", "programs:write"])
    as_tiers = {"X-API-Key": tiers_only.secret}
    as_programs = {"X-API-Key": programs_only.secret}
    # Definitions need programs:*, participants' levels tiers:*.
    assert scrip_error(client.get(read, headers=as_tiers), 403, "forbidden")["scope"] == (
        "programs:read"
    )
    scrip_error(client.patch(read, json={}, headers=as_tiers), 403, "forbidden")
    scrip_error(
        client.post(f"{BASE}/programs/{prog['uuid']}/tiers", json=LOYALTY, headers=as_tiers),
        403,
        "forbidden",
    )
    scrip_error(client.get(state, params=params, headers=as_programs), 403, "forbidden")
    scrip_error(
        client.put(state, params=params, json={"level": "gold"}, headers=as_programs),
        403,
        "forbidden",
    )
    scrip_error(client.delete(state, params=params, headers=as_programs), 403, "forbidden")
    assert client.get(read, headers=as_programs).status_code == 200
    assert (
        client.put(state, params=params, json={"level": "gold"}, headers=as_tiers).status_code
        == 200
    )

    # Another tenant's key sees none of it.
    stranger = make_key(client, f"{tenant_name}-other", ["programs:read", "tiers:read"])
    response = client.get(read, headers={"X-API-Key": stranger.secret})
    assert scrip_error(response, 404, "not_found")["reason"] == "program_not_found"
    response = client.get(state, params=params, headers={"X-API-Key": stranger.secret})
    scrip_error(response, 404, "not_found")
