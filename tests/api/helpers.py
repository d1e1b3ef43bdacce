"""Builders for the common test situations: programs, ladders, activities."""

from __future__ import annotations

import itertools
from typing import Any

from tests.conftest import Api

_seq = itertools.count(1)


def criterion(metric: str = "points_earned", threshold: int = 0, *, operator: str = ">=",
              window: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metric": metric, "threshold": threshold, "operator": operator,
            "window": window or {"type": "lifetime"}}


def level(key: str, rank: int, *criteria: dict[str, Any], mode: str = "all",
          **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"key": key, "name": key.title(), "rank": rank, **extra}
    if criteria:
        body["attain"] = {"mode": mode, "criteria": list(criteria)}
    return body


def silver_gold(**ladder: Any) -> dict[str, Any]:
    """The E1-E3 ladder: Silver at 500, Gold at 1000 points earned (lifetime), no floor."""
    return {"key": "status", "name": "Status", "levels": [
        level("silver", 1, criterion("points_earned", 500), earn_multiplier="1.5"),
        level("gold", 2, criterion("points_earned", 1000), earn_multiplier="2.0"),
    ], **ladder}


def program(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"name": "Main", "time_zone": "UTC", "currency": "USD", "earn_rate": "1", **fields}
    response = api.post("/v1/programs", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def ladder(api: Api, program_id: int, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post(f"/v1/programs/{program_id}/ladders", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def activity(api: Api, member: str, type_: str = "points_credit", *,
             at: str = "2025-01-10T12:00:00Z", key: str | None = None,
             expect: int | None = 201, **fields: Any) -> dict[str, Any]:
    body = {"type": type_, "member_id": member, "occurred_at": at,
            "idempotency_key": key or f"k-{next(_seq)}", **fields}
    response = api.post("/v1/activities", json=body)
    if expect is not None:
        assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


def status(api: Api, member: str, **params: Any) -> dict[str, Any]:
    response = api.get(f"/v1/members/{member}/status", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def only_ladder(api: Api, member: str, **params: Any) -> dict[str, Any]:
    body = status(api, member, **params)
    assert len(body["ladders"]) == 1
    result: dict[str, Any] = body["ladders"][0]
    return result
