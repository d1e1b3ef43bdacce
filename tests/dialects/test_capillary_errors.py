"""Bad input under /compat/capillary: the platform's error envelope and status, never a
500 (unknown tiers are 9056 / HTTP 404, conflicts 999999 / HTTP 409)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Api
from tests.dialects.conftest import validate
from tests.dialects.test_capillary_v2 import basic
from tests.dialects.test_capillary_v3 import PLATINUM, setup_973

BASE = "/compat/capillary"


def error(response: Any, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = validate("capillary_error", response.json())
    assert body["errors"][0]["code"] == code, body
    return body


@pytest.mark.parametrize(
    "tier_id",
    [
        "999999999",
        "ut-1-001",
        "ut-999999-009",
        "0123456789abcdef01234567",
        "nope",
        "ut-x-1",
        "6A2121936497E74EC3517AD8",
        "-1",
        "9" * 40,
    ],
)
def test_unknown_or_malformed_tier_ids_are_9056_everywhere(api: Api, tier_id: str) -> None:
    _, pid = setup_973(api)
    h = basic(api)
    client = api.client
    error(client.get(f"{BASE}/v3/tiers/{tier_id}", headers=h), 404, 9056)
    error(client.put(f"{BASE}/v3/tiers/{tier_id}", headers=h, json={"name": "X"}), 404, 9056)
    error(client.delete(f"{BASE}/v3/tiers/{tier_id}", headers=h), 404, 9056)
    error(client.post(f"{BASE}/v3/tiers/{tier_id}/submit", headers=h), 404, 9056)
    error(
        client.post(
            f"{BASE}/v3/tiers/{tier_id}/approve", headers=h, json={"approvalStatus": "APPROVE"}
        ),
        404,
        9056,
    )
    listed = client.get(f"{BASE}/v3/tiers", headers=h, params={"programId": pid, "tier": tier_id})
    assert listed.status_code == 200
    assert validate("capillary_v3_list_tiers", listed.json())["data"]["tiers"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "X", "eligibility": {"kpiType": "VISITS", "threshold": 1}}, "kpiType"),
        (
            {"name": "X", "eligibility": {"kpiType": "CURRENT_POINTS", "threshold": 1.5}},
            "threshold",
        ),
        ({"name": "X", "eligibility": {"kpiType": "CURRENT_POINTS", "threshold": -1}}, "threshold"),
        (
            {"name": "X", "eligibility": {"kpiType": "TRACKER_VALUE_BASED", "threshold": 1}},
            "trackerName",
        ),
        ({"name": "X", "color": "red"}, "color"),
        ({"name": ""}, "name"),
        ({"description": "no name"}, "name"),
        ({"name": "X", "downgrade": {}}, "downgrade"),
        ({"name": "X", "validity": {"periodType": "FIXED", "periodValue": 3}}, "validity"),
        ({"name": "X", "validity": {"periodType": "SLAB_UPGRADE", "periodValue": 0}}, "validity"),
        ({"name": "X", "validity": {"periodType": "SLAB_UPGRADE", "periodValue": 500}}, "validity"),
        ({"name": "X", "validity": {"periodType": "SLAB_UPGRADE", "periodValue": "x"}}, "validity"),
        (
            {
                "name": "X",
                "validity": {"periodType": "SLAB_UPGRADE", "periodValue": 6, "unit": "NUM_DAYS"},
            },
            "validity",
        ),
        (
            {"name": "X", "eligibility": {"kpiType": "CUMULATIVE_PURCHASES", "threshold": 0.001}},
            "threshold",
        ),
        (
            {
                "name": "X",
                "renewal": {
                    "periodType": "SLAB_UPGRADE",
                    "periodValue": "6",
                    "criteriaType": "Custom",
                },
            },
            "criteriaType",
        ),
        ({"name": "X", "serialNumber": 12}, "serialNumber"),
        ({"name": "X", "eligibility": {"kpiType": "CURRENT_POINTS", "threshold": 5}}, "thresholds"),
        ({"name": "X", "programId": "abc"}, "programId"),
        ([1, 2], ""),
    ],
)
def test_bad_tier_bodies_are_400(api: Api, body: Any, field: str) -> None:
    _, pid = setup_973(api)
    if isinstance(body, dict) and "programId" not in body:
        body = {"programId": pid, **body}
    response = api.client.post(f"{BASE}/v3/tiers", headers=basic(api), json=body)
    found = error(response, 400, 400)
    assert field in found["errors"][0]["message"] or not field, found


def test_malformed_requests_answer_in_the_platform_shape(api: Api, client: TestClient) -> None:
    _, pid = setup_973(api)
    h = basic(api)
    error(
        client.post(
            f"{BASE}/v3/tiers", headers={**h, "Content-Type": "application/json"}, content=b"{nope"
        ),
        400,
        400,
    )
    error(
        client.post(
            f"{BASE}/v3/tiers", headers={**h, "Content-Type": "text/plain"}, content=b"name=x"
        ),
        415,
        415,
    )
    created = client.post(f"{BASE}/v3/tiers", headers=h, json={"programId": pid, **PLATINUM})
    object_id = created.json()["data"]["objectId"]
    error(
        client.post(
            f"{BASE}/v3/tiers/{object_id}/approve", headers=h, json={"approvalStatus": "approve"}
        ),
        400,
        400,
    )
    error(
        client.post(
            f"{BASE}/v3/tiers/{object_id}/approve", headers=h, json={"approvalStatus": "APPROVE"}
        ),
        409,
        999999,
    )
    error(
        client.get(f"{BASE}/v3/tiers", headers=h, params={"programId": pid, "status": "DRAFT"}),
        400,
        9057,
    )
    error(client.get(f"{BASE}/v3/tiers", headers=h, params={"programId": 10**12}), 404, 404)
    error(client.get(f"{BASE}/v3/tiers", headers=h, params={"programId": "x"}), 400, 400)
    error(
        client.post(f"{BASE}/v3/tiers", headers=h, json={"programId": 10**12, **PLATINUM}), 404, 404
    )
    error(client.get(f"{BASE}/v3/nothing", headers=h), 404, 404)
    error(client.patch(f"{BASE}/v3/tiers/{object_id}", headers=h, json={}), 405, 405)
    error(
        client.put(f"{BASE}/v3/tiers/{object_id}", headers=h, json={"programId": pid + 1}), 400, 400
    )


def test_wrong_credentials_are_401_in_the_platform_shape(api: Api, client: TestClient) -> None:
    _, pid = setup_973(api)
    bad = base64.b64encode(f"{api.key.key_id}:wrong".encode()).decode()
    for headers in (
        {},
        {"Authorization": f"Basic {bad}"},
        {"Authorization": "Basic"},
        {"Authorization": "Bearer nope"},
    ):
        for method, path in (
            ("GET", "/v3/tiers"),
            ("POST", "/v3/tiers"),
            ("GET", "/v3/tiers/approvals"),
            ("DELETE", "/v3/tiers/1"),
        ):
            response = client.request(
                method, BASE + path, headers=headers, params={"programId": pid}
            )
            error(response, 401, 401)
            assert response.headers["www-authenticate"] == 'Basic realm="tierwise"'
