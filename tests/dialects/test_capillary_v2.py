"""Capillary v2 ``GET /v2/customers/{userId}/tierDetails`` (seed 001): golden test, the
fetchDataForAllPrograms truth table, time zones, no level / no expiry, bad input."""

from __future__ import annotations

import base64
import re
from typing import Any

from fastapi.testclient import TestClient

from tests.api.helpers import activity, criterion, enrol, ladder, level, program
from tests.conftest import Api, make_key
from tests.dialects.conftest import validate
from tierwise.api.app import create_app
from tierwise.settings import Settings

BASE = "/compat/capillary"
PLAIN = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")

# Seed 001, as the page shows it.
SEED_001: dict[str, Any] = {
    "entityId": 566881933,
    "entityType": "CUSTOMER",
    "programTiers": [
        {
            "programId": 973,
            "currentTierName": "Diamond",
            "currentTierSerialNumber": 8,
            "tierExpiryDate": "2125-03-26 23:59:59",
            "tierExpiryDateISO": "2125-03-26T23:59:59Z",
            "nextTierName": "",
            "nextTierSerialNumber": -1,
        }
    ],
    "warnings": [],
}

NAMES = ("Bronze", "Silver", "Gold", "Platinum", "Titanium", "Emerald", "Ruby", "Diamond")


def basic(api: Api) -> dict[str, str]:
    """HTTP Basic with our key id and secret, the way a Capillary client sends it."""
    token = base64.b64encode(f"{api.key.key_id}:{api.key.secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def eight_levels(**extra: Any) -> dict[str, Any]:
    """Bronze (floor) to Diamond at 7,000 lifetime points; 12-month validity."""
    levels = [level("bronze", 1, is_floor=True, name="Bronze")]
    levels += [
        level(name.lower(), rank, criterion("points_earned", (rank - 1) * 1000), name=name)
        for rank, name in enumerate(NAMES[1:], start=2)
    ]
    return {
        "key": "status",
        "name": "Status",
        "levels": levels,
        "validity": {"type": "fixed_months", "months": 12},
        **extra,
    }


def tier_details(api: Api, user: int | str, expect: int = 200, **params: Any) -> Any:
    response = api.get(f"{BASE}/v2/customers/{user}/tierDetails", params=params, headers=basic(api))
    assert response.status_code == expect, response.text
    body = response.json()
    validate("capillary_v2_tier_details" if expect == 200 else "capillary_error", body)
    return body


def diamond_customer(api: Api) -> tuple[int, int]:
    """A program with eight levels and a customer who reached Diamond on 2025-03-27."""
    pid = program(api, name="Main")["id"]
    ladder(api, pid, eight_levels())
    member = enrol(api, "cust-1", "2024-01-01T00:00:00Z")
    activity(api, "cust-1", points=7000, at="2025-03-27T00:00:00Z")
    return pid, member["id"]


def test_seed_001_a_diamond_top_tier_customer_with_an_expiry(api: Api) -> None:
    pid, member_id = diamond_customer(api)
    body = tier_details(api, member_id, programId=pid)
    assert body["entityId"] == member_id
    entry = body["programTiers"][0]
    assert PLAIN.match(entry["tierExpiryDate"])
    assert entry["programId"] == pid
    assert entry["tierExpiryDate"] == "2026-03-26 23:59:59"
    assert entry["tierExpiryDateISO"] == "2026-03-26T23:59:59Z"
    ids_and_times = {"entityId", "programId", "tierExpiryDate", "tierExpiryDateISO"}

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ids_and_times}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    assert strip(body) == strip(SEED_001)
    assert list(body) == list(SEED_001)
    assert list(entry) == list(SEED_001["programTiers"][0])


def test_r5_below_the_top_the_next_tier_is_named_with_its_serial(api: Api) -> None:
    pid = program(api)["id"]
    ladder(api, pid, eight_levels())
    member = enrol(api, "cust-2", "2024-01-01T00:00:00Z")
    activity(api, "cust-2", points=2500, at="2025-03-27T00:00:00Z")
    entry = tier_details(api, member["id"])["programTiers"][0]
    assert entry["currentTierName"] == "Gold"
    assert entry["currentTierSerialNumber"] == 3
    assert entry["nextTierName"] == "Platinum"
    assert entry["nextTierSerialNumber"] == 4


def test_r4_a_floor_member_without_expiry_and_a_member_without_a_level(api: Api) -> None:
    pid = program(api)["id"]
    ladder(api, pid, eight_levels())
    member = enrol(api, "new", "2024-01-01T00:00:00Z")
    entry = tier_details(api, member["id"])["programTiers"][0]
    assert entry["currentTierName"] == "Bronze"
    assert entry["currentTierSerialNumber"] == 1
    assert entry["tierExpiryDate"] is None
    assert entry["tierExpiryDateISO"] is None
    assert (entry["nextTierName"], entry["nextTierSerialNumber"]) == ("Silver", 2)

    other = program(api, name="No floor")["id"]
    ladder(
        api,
        other,
        {
            "key": "status",
            "name": "Status",
            "levels": [
                level("silver", 1, criterion("points_earned", 500), name="Silver"),
                level("gold", 2, criterion("points_earned", 1000), name="Gold"),
            ],
        },
    )
    entry = tier_details(api, member["id"], programId=other)["programTiers"][0]
    assert entry == {
        "programId": other,
        "currentTierName": "",
        "currentTierSerialNumber": -1,
        "tierExpiryDate": None,
        "tierExpiryDateISO": None,
        "nextTierName": "Silver",
        "nextTierSerialNumber": 1,
    }


def test_fetch_data_for_all_programs_truth_table(api: Api) -> None:
    first, member_id = diamond_customer(api)
    second = program(api, name="Second")["id"]
    ladder(api, second, eight_levels())
    program(api, name="Without tiers")

    def programs(**params: Any) -> list[int]:
        body = tier_details(api, member_id, **params)
        return [entry["programId"] for entry in body["programTiers"]]

    assert programs(fetchDataForAllPrograms="true", programId=second) == [first, second]
    assert programs(fetchDataForAllPrograms="true") == [first, second]
    assert programs(fetchDataForAllPrograms="false", programId=second) == [second]
    assert programs(programId=second) == [second]
    assert programs(fetchDataForAllPrograms="false") == [first]  # the default program
    assert programs() == [first]


def test_timestamps_follow_the_server_time_zone(
    client: TestClient, settings: Settings, tenant_name: str
) -> None:
    india = settings.model_copy(update={"server_time_zone": "Asia/Kolkata"})
    with TestClient(create_app(india), raise_server_exceptions=False) as other:
        from tierwise.services.tenants import ALL_SCOPES

        api = Api(other, make_key(other, tenant_name, ALL_SCOPES))
        pid, member_id = diamond_customer(api)
        entry = tier_details(api, member_id, programId=pid)["programTiers"][0]
    assert entry["tierExpiryDate"] == "2026-03-27 05:29:59"
    assert entry["tierExpiryDateISO"] == "2026-03-27T05:29:59+05:30"


def test_unknown_customer_program_and_bad_input_answer_in_the_platform_shape(api: Api) -> None:
    pid, member_id = diamond_customer(api)
    body = tier_details(api, 999_999_999_999, expect=404)
    assert body["data"] is None and body["warnings"] is None
    assert body["errors"][0]["code"] == 8015
    assert tier_details(api, "abc", expect=400)["errors"][0]["code"] == 400
    assert tier_details(api, member_id, expect=400, programId="x")["errors"][0]["code"] == 400
    assert tier_details(api, member_id, expect=404, programId=pid + 1000)["errors"][0]["code"]
    assert tier_details(api, member_id, expect=400, entityType="GROUP")["errors"][0]["code"]


def test_credentials_scopes_and_tenants(api: Api, client: TestClient, tenant_name: str) -> None:
    _, member_id = diamond_customer(api)
    path = f"{BASE}/v2/customers/{member_id}/tierDetails"
    wrong = base64.b64encode(f"{api.key.key_id}:nope".encode()).decode()
    for headers in ({}, {"Authorization": f"Basic {wrong}"}, {"Authorization": "Basic !!"}):
        response = client.get(path, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Basic")
        assert validate("capillary_error", response.json())["errors"][0]["code"] == 401
    reader = Api(client, make_key(client, tenant_name, ["members:read"]))
    assert reader.get(path, headers=basic(reader)).status_code == 200
    writer = Api(client, make_key(client, tenant_name, ["activities:write"]))
    response = writer.get(path, headers=basic(writer))
    assert response.status_code == 403
    validate("capillary_error", response.json())
    stranger = Api(client, make_key(client, tenant_name + "-other", ["tiers:read"]))
    response = stranger.get(path, headers=basic(stranger))
    assert response.status_code == 404
    assert validate("capillary_error", response.json())["errors"][0]["code"] == 8015
