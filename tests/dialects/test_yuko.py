"""The Yuko dialect (seed 000) under /compat/yuko: golden, schema and bad-input tests.

Every response is validated against the JSON Schema written from the page
(``schemas/yuko_*.json``).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import (
    activity,
    assign,
    criterion,
    ladder,
    level,
    program,
    silver_gold,
    sweep,
    unassign,
)
from tests.conftest import Api, make_key
from tests.dialects.conftest import validate

BASE = "/compat/yuko/api/v1/public"
CUSTOMER = "9049402769586"  # the page's example customer id

SEED_EXAMPLE: dict[str, Any] = {
    "data": {
        "current_tier": {
            "id": "7fb39c85-3a3f-4247-8333-2e05a9c8ae28",
            "name": "Silver",
            "threshold_value": 500,
            "multiplier": 1.5,
            "icon_url": None,
            "benefits": [],
        },
        "next_tier": {
            "id": "8ac40d96-4b4e-5358-9444-3f16bab9bf39",
            "name": "Gold",
            "threshold_value": 1000,
            "multiplier": 2.0,
            "benefits": [],
        },
        "progress_to_next_tier": {
            "current_value": 650,
            "required_value": 1000,
            "remaining_value": 350,
            "progress_percentage": 65.0,
            "threshold_type": "total_earned_points",
        },
    }
}


def customer_tier(api: Api, customer: str = CUSTOMER) -> dict[str, Any]:
    response = api.get(f"{BASE}/customers/tier", params={"customer_id": customer})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = validate("yuko_customer_tier", response.json())
    return body


def tiers(api: Api) -> list[dict[str, Any]]:
    response = api.get(f"{BASE}/tiers")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = validate("yuko_tiers", response.json())["data"]
    return found


def memberships(api: Api, customer: str = CUSTOMER) -> list[dict[str, Any]]:
    response = api.get(f"{BASE}/customers/memberships", params={"customer_id": customer})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = validate("yuko_memberships", response.json())["data"]
    return found


def yuko_error(response: Any, status: int, code: str) -> str:
    """Assert a Yuko-shaped error; return its message."""
    assert response.status_code == status, response.text
    body = validate("yuko_error", response.json())
    assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    return message


def is_uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def without_ids(body: dict[str, Any]) -> dict[str, Any]:
    """The body with every tier id checked for UUID form and blanked."""
    data = dict(body["data"])
    for name in ("current_tier", "next_tier"):
        if data[name] is not None:
            assert is_uuid(data[name]["id"]), data[name]
            data[name] = {**data[name], "id": "<uuid>"}
    return {"data": data}


def e1(api: Api) -> dict[str, Any]:
    """The page's situation: Silver 500 x1.5, Gold 1000 x2.0, a customer at 650 points."""
    p = program(api)
    ladder(api, p["id"], silver_gold())
    activity(api, CUSTOMER, points=650)
    return p


# -- golden ---------------------------------------------------------------------------------


def test_seed_000_customer_at_650_points_matches_the_page_example(api: Api) -> None:
    """Seed 000 / E1, R5, R6: Silver, next Gold, 650 of 1,000 = 65.0 %; the response equals
    the page's example field for field (types included) except the tier ids (UUIDs)."""
    e1(api)
    body = customer_tier(api)
    assert without_ids(body) == without_ids(SEED_EXAMPLE)
    data = body["data"]
    assert isinstance(data["current_tier"]["multiplier"], float)
    assert isinstance(data["next_tier"]["multiplier"], float)
    assert isinstance(data["progress_to_next_tier"]["progress_percentage"], float)
    assert "icon_url" not in data["next_tier"]  # the page lists no icon_url for next_tier
    assert data["current_tier"]["id"] != data["next_tier"]["id"]


def test_tier_ids_are_the_level_uuids_and_stay_stable(api: Api) -> None:
    """Ids are stable: the same level shows the same UUID in every endpoint and across
    ladder versions (renaming a level publishes a new version)."""
    p = e1(api)
    before = customer_tier(api)["data"]
    listed = {t["name"]: t["id"] for t in tiers(api)}
    assert listed == {
        "Silver": before["current_tier"]["id"],
        "Gold": before["next_tier"]["id"],
    }
    renamed = silver_gold()
    renamed["levels"][1]["name"] = "Golden"
    response = api.put(f"/v1/programs/{p['id']}/ladders/status", json=renamed)
    assert response.status_code == 200, response.text
    after = customer_tier(api)["data"]
    assert after["next_tier"]["name"] == "Golden"
    assert after["next_tier"]["id"] == before["next_tier"]["id"]
    assert after["current_tier"]["id"] == before["current_tier"]["id"]


def test_at_the_top_tier_next_and_progress_are_null(api: Api) -> None:
    """E2, R5: at the highest tier next_tier and progress_to_next_tier are null."""
    p = program(api)
    ladder(api, p["id"], silver_gold())
    activity(api, CUSTOMER, points=1200)
    data = customer_tier(api)["data"]
    assert data["current_tier"]["name"] == "Gold"
    assert data["next_tier"] is None
    assert data["progress_to_next_tier"] is None


def test_below_every_threshold_the_current_tier_is_null(api: Api) -> None:
    """E3, R4, R5: no tier reached -> current_tier null, next the lowest tier, 60.0 %."""
    p = program(api)
    ladder(api, p["id"], silver_gold())
    activity(api, CUSTOMER, points=300)
    data = customer_tier(api)["data"]
    assert data["current_tier"] is None
    assert data["next_tier"]["name"] == "Silver"
    assert data["progress_to_next_tier"] == {
        "current_value": 300,
        "required_value": 500,
        "remaining_value": 200,
        "progress_percentage": 60.0,
        "threshold_type": "total_earned_points",
    }


def test_spend_tiers_show_total_amount_spents_in_whole_currency_units(api: Api) -> None:
    """R6, R8: spend is stored in minor units; Yuko shows whole currency units (reached
    amounts rounded down, required ones up) and the enum spelling total_amount_spents."""
    p = program(api, currency="USD")
    ladder(
        api,
        p["id"],
        {
            "key": "status",
            "name": "Status",
            "levels": [
                level("silver", 1, criterion("spend", 50_000)),
                level("gold", 2, criterion("spend", 100_000)),
            ],
        },
    )
    activity(api, CUSTOMER, "purchase", amount_minor=65_050)
    data = customer_tier(api)["data"]
    assert data["current_tier"]["threshold_value"] == 500
    assert data["next_tier"]["threshold_value"] == 1000
    assert data["progress_to_next_tier"] == {
        "current_value": 650,
        "required_value": 1000,
        "remaining_value": 350,
        "progress_percentage": 65.05,
        "threshold_type": "total_amount_spents",
    }


def test_tiers_are_listed_by_threshold_with_icons_and_benefits(api: Api) -> None:
    """GET /tiers: every tier of the default program's first ladder, sorted by
    threshold_value, with icon_url (null when unset) and benefits in Yuko's names."""
    p = program(api)
    benefits = [
        {"name": "Free shipping", "type": "free_shipping"},
        {"name": "10% off", "type": "percentage_discount", "value": "10"},
    ]
    body = {
        "key": "status",
        "name": "Status",
        "levels": [
            level("bronze", 1, criterion("points_earned", 100)),
            level("silver", 2, criterion("points_earned", 500), earn_multiplier="1.5"),
            level(
                "gold",
                3,
                criterion("points_earned", 1000),
                earn_multiplier="2.0",
                icon_url="https://cdn.example.com/gold.png",
                benefits=benefits,
            ),
        ],
    }
    ladder(api, p["id"], body)
    ladder(api, p["id"], {**silver_gold(), "key": "other", "name": "Other"})  # not the first
    listed = tiers(api)
    assert [t["name"] for t in listed] == ["Bronze", "Silver", "Gold"]
    assert [t["threshold_value"] for t in listed] == [100, 500, 1000]
    assert listed[0]["icon_url"] is None
    assert listed[2]["icon_url"] == "https://cdn.example.com/gold.png"
    assert listed[2]["multiplier"] == 2.0
    assert listed[2]["benefits"] == [
        {"name": "Free shipping", "benefit_type": "free_shipping", "benefit_value": None},
        {"name": "10% off", "benefit_type": "percentage_discount", "benefit_value": "10"},
    ]
    activity(api, CUSTOMER, points=650)
    data = customer_tier(api)["data"]
    assert data["next_tier"]["benefits"] == listed[2]["benefits"]
    assert "icon_url" not in data["next_tier"]


def test_an_empty_program_lists_no_tiers_and_shows_null_tiers(api: Api) -> None:
    """A default program without a ladder: no tiers, and a known customer has none."""
    program(api)
    assert tiers(api) == []
    api.put(f"/v1/members/{CUSTOMER}", json={"enrolled_at": "2025-01-01T00:00:00Z"})
    assert customer_tier(api)["data"] == {
        "current_tier": None,
        "next_tier": None,
        "progress_to_next_tier": None,
    }
    assert memberships(api) == []


# -- memberships ----------------------------------------------------------------------------


def test_memberships_list_the_active_tier_first_then_ended_ones(api: Api) -> None:
    """R14, R22: Silver on 2025-01-10, Gold on 2025-02-01 (12-month validity): Gold is
    active until 2026-01-31 23:59:59, Silver ended when Gold began."""
    p = program(api)
    ladder(api, p["id"], silver_gold(validity={"type": "fixed_months", "months": 12}))
    activity(api, CUSTOMER, points=500, at="2025-01-10T12:00:00Z")
    activity(api, CUSTOMER, points=600, at="2025-02-01T00:00:00Z")
    found = memberships(api)
    assert [(m["tier"]["name"], m["status"]) for m in found] == [
        ("Gold", "active"),
        ("Silver", "ended"),
    ]
    gold, silver = found
    assert gold["started_at"] == "2025-02-01T00:00:00Z"
    assert gold["ended_at"] is None
    assert gold["expires_at"] == "2026-01-31T23:59:59Z"
    assert gold["assigned"] is False
    assert silver["started_at"] == "2025-01-10T12:00:00Z"
    assert silver["ended_at"] == "2025-02-01T00:00:00Z"
    assert silver["expires_at"] is None
    assert gold["tier"] == customer_tier(api)["data"]["current_tier"]


def test_a_renewal_continues_the_membership_and_a_downgrade_ends_it(api: Api) -> None:
    """R16, R17, R22: a renewal keeps one Gold membership; a failed check ends it."""
    p = program(api)
    rolling = {"type": "rolling_days", "days": 365}
    ladder(
        api,
        p["id"],
        {
            "key": "status",
            "name": "Status",
            "validity": {"type": "fixed_months", "months": 12},
            "downgrade": {"policy": "to_qualifying"},
            "levels": [
                level("silver", 1, criterion("points_earned", 500, window=rolling)),
                level("gold", 2, criterion("points_earned", 1000, window=rolling)),
            ],
        },
    )
    activity(api, CUSTOMER, points=1000, at="2023-01-01T00:00:00Z")
    activity(api, CUSTOMER, points=1000, at="2023-12-01T00:00:00Z")
    sweep(api, "2024-01-01T00:00:01Z")  # renewed: 2,000 in the last 365 days
    assert [m["status"] for m in memberships(api)] == ["active"]
    activity(api, CUSTOMER, points=600, at="2024-06-01T00:00:00Z")
    sweep(api, "2025-01-01T00:00:01Z")  # 600 in the last 365 days: down to Silver
    found = memberships(api)
    assert [(m["tier"]["name"], m["status"]) for m in found] == [
        ("Silver", "active"),
        ("Gold", "ended"),
    ]
    assert found[1]["started_at"] == "2023-01-01T00:00:00Z"
    assert found[1]["ended_at"] == found[0]["started_at"]


def test_a_manual_assignment_starts_an_assigned_membership(api: Api) -> None:
    """R20, R21, R22: pinning Gold on a Silver customer ends the Silver membership and
    starts an assigned Gold one; removing the assignment re-evaluates (back to Silver)."""
    p = program(api)
    ladder(api, p["id"], silver_gold())
    activity(api, CUSTOMER, points=650)
    assign(api, CUSTOMER, "gold", mode="pin", reason="VIP")
    found = memberships(api)
    assert [(m["tier"]["name"], m["status"], m["assigned"]) for m in found] == [
        ("Gold", "active", True),
        ("Silver", "ended", False),
    ]
    assert customer_tier(api)["data"]["current_tier"]["name"] == "Gold"
    unassign(api, CUSTOMER)
    found = memberships(api)
    assert [(m["tier"]["name"], m["status"], m["assigned"]) for m in found] == [
        ("Silver", "active", False),
        ("Gold", "ended", True),
        ("Silver", "ended", False),
    ]


# -- auth and bad input ---------------------------------------------------------------------


def test_an_unknown_customer_is_a_404_in_yukos_shape(api: Api) -> None:
    e1(api)
    for path in ("customers/tier", "customers/memberships"):
        response = api.get(f"{BASE}/{path}", params={"customer_id": "no-such-customer"})
        assert "no-such-customer" in yuko_error(response, 404, "customer_not_found")


@pytest.mark.parametrize("customer", ["", "x" * 129, "bad\x00id"])
def test_a_customer_id_that_cannot_exist_is_an_unknown_customer(api: Api, customer: str) -> None:
    """Malformed ids answer 404 like unknown ones, never 422 or 500."""
    e1(api)
    response = api.get(f"{BASE}/customers/tier", params={"customer_id": customer})
    yuko_error(response, 404, "customer_not_found")


def test_a_missing_customer_id_is_a_400_invalid_request(api: Api) -> None:
    e1(api)
    for path in ("customers/tier", "customers/memberships"):
        message = yuko_error(api.get(f"{BASE}/{path}"), 400, "invalid_request")
        assert "customer_id" in message


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer tw_not-a-real-key"},
        {"Authorization": "Bearer"},
        {"Authorization": "Token abc"},
    ],
    ids=["missing", "wrong", "empty", "other-scheme"],
)
def test_a_missing_or_wrong_token_is_a_401(client: TestClient, api: Api, headers: Any) -> None:
    e1(api)
    for path in ("customers/tier?customer_id=1", "tiers", "customers/memberships?customer_id=1"):
        response = client.get(f"{BASE}/{path}", headers=headers)
        yuko_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_token_without_tiers_read_is_a_403(client: TestClient, api: Api) -> None:
    """The page requires the tiers scope with read access."""
    e1(api)
    other = make_key(client, api.key.tenant, ["members:read", "programs:read"])
    headers = {"Authorization": f"Bearer {other.secret}"}
    for path in ("customers/tier?customer_id=1", "tiers", "customers/memberships?customer_id=1"):
        response = client.get(f"{BASE}/{path}", headers=headers)
        assert "tiers:read" in yuko_error(response, 403, "insufficient_scope")
    reader = make_key(client, api.key.tenant, ["tiers:read"])
    response = client.get(
        f"{BASE}/customers/tier",
        params={"customer_id": CUSTOMER},
        headers={"Authorization": f"Bearer {reader.secret}"},
    )
    assert response.status_code == 200, response.text
    validate("yuko_customer_tier", response.json())


def test_other_tenants_customers_are_unknown(client: TestClient, api: Api) -> None:
    e1(api)
    stranger = Api(client, make_key(client, f"other-{uuid.uuid4().hex[:8]}", ["tiers:read"]))
    program(Api(client, make_key(client, stranger.key.tenant, ["programs:write"])))
    response = stranger.get(f"{BASE}/customers/tier", params={"customer_id": CUSTOMER})
    yuko_error(response, 404, "customer_not_found")


def test_unknown_paths_and_methods_answer_in_yukos_shape(api: Api) -> None:
    e1(api)
    yuko_error(api.get(f"{BASE}/nothing-here"), 404, "not_found")
    yuko_error(
        api.post(f"{BASE}/customers/tier", params={"customer_id": CUSTOMER}),
        405,
        "method_not_allowed",
    )


def test_a_tenant_without_a_program_gets_a_404(api: Api) -> None:
    yuko_error(api.get(f"{BASE}/tiers"), 404, "not_found")
