"""Builders for the common test situations: programs, ladders, activities."""

from __future__ import annotations

import itertools
from typing import Any

from tests.conftest import Api

_seq = itertools.count(1)


def criterion(
    metric: str = "points_earned",
    threshold: int = 0,
    *,
    operator: str = ">=",
    window: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "metric": metric,
        "threshold": threshold,
        "operator": operator,
        "window": window or {"type": "lifetime"},
    }


def level(
    key: str, rank: int, *criteria: dict[str, Any], mode: str = "all", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"key": key, "name": key.title(), "rank": rank, **extra}
    if criteria:
        body["attain"] = {"mode": mode, "criteria": list(criteria)}
    return body


def silver_gold(**ladder: Any) -> dict[str, Any]:
    """The E1-E3 ladder: Silver at 500, Gold at 1000 points earned (lifetime), no floor."""
    return {
        "key": "status",
        "name": "Status",
        "levels": [
            level("silver", 1, criterion("points_earned", 500), earn_multiplier="1.5"),
            level("gold", 2, criterion("points_earned", 1000), earn_multiplier="2.0"),
        ],
        **ladder,
    }


def spend_ladder(timing: str, *, silver: int, gold: int, gold_points: int) -> dict[str, Any]:
    """A ladder with a floor that upgrades on spend over 30 rolling days (gold also on
    lifetime points earned), with earn multipliers whose points need rounding (R11), under
    the upgrade timing ``timing``."""
    rolling_30 = {"type": "rolling_days", "days": 30}
    return {
        "key": "status",
        "name": "Status",
        "upgrade_timing": timing,
        "levels": [
            level("base", 1, is_floor=True, earn_multiplier="1.1"),
            level(
                "silver", 2, criterion("spend", silver, window=rolling_30), earn_multiplier="1.5"
            ),
            level(
                "gold",
                3,
                criterion("spend", gold, window=rolling_30),
                criterion("points_earned", gold_points),
                earn_multiplier="2.25",
            ),
        ],
    }


def status_ladder(*levels: dict[str, Any]) -> dict[str, Any]:
    """The body of a ladder keyed ``status`` with ``levels``."""
    return {"key": "status", "name": "Status", "levels": list(levels)}


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


def twin_programs(
    api: Api, names: tuple[str, str], ladders: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two programs alike (EUR, an earn rate with a long fraction), each with ``ladders``:
    the same activities recorded in each, one way and another, must come out the same."""
    found = []
    for name in names:
        created = program(api, name=name, currency="EUR", earn_rate="0.333333")
        for body in ladders:
            ladder(api, created["id"], body)
        found.append(created)
    return found[0], found[1]


def activity(
    api: Api,
    member: str,
    type_: str = "points_credit",
    *,
    at: str = "2025-01-10T12:00:00Z",
    key: str | None = None,
    expect: int | None = 201,
    **fields: Any,
) -> dict[str, Any]:
    body = {
        "type": type_,
        "member_id": member,
        "occurred_at": at,
        "idempotency_key": key or f"k-{next(_seq)}",
        **fields,
    }
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


# -- added for the bad-input, auth and activity tests ----------------------------------


def activity_body(
    member: str,
    type_: str = "points_credit",
    *,
    at: str = "2025-01-10T12:00:00Z",
    key: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The JSON body of one activity (for batches and raw requests)."""
    return {
        "type": type_,
        "member_id": member,
        "occurred_at": at,
        "idempotency_key": key or f"k-{next(_seq)}",
        **fields,
    }


def batch(api: Api, activities: list[dict[str, Any]], *, expect: int = 200) -> dict[str, Any]:
    response = api.post("/v1/activities/batch", json={"activities": activities})
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


def history(api: Api, member: str, **params: Any) -> list[dict[str, Any]]:
    response = api.get(f"/v1/members/{member}/history", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert ``response`` is the native error ``code`` with ``status``; return the error."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == code, body
    assert isinstance(error["message"], str) and error["message"], body
    return error


METER_METRICS = ("spend", "orders", "points_earned", "points_balance")


def meter(
    metrics: tuple[str, ...] = METER_METRICS, window: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ladder that only measures: one level nobody reaches, with a criterion per metric,
    so the status read shows every figure (R7). Add it after the earning ladder."""
    return {
        "key": "meter",
        "name": "Meter",
        "levels": [
            level("unreachable", 1, *(criterion(m, 10**15, window=window) for m in metrics)),
        ],
    }


def figures(api: Api, member: str, *, ladder_key: str = "meter", **params: Any) -> dict[str, int]:
    """``{metric: current}`` from the progress of ladder ``ladder_key`` (see ``meter``)."""
    view = only_ladder(api, member, ladder=ladder_key, **params)
    found: dict[str, int] = {}
    for part in (view["progress"], view["to_keep"]):
        for c in (part or {}).get("criteria", []):
            found[c["metric"]] = c["current"]
    return found


# -- added for the lifecycle tests (R14-R22): sweeps, assignments, level-at ---------------

from datetime import UTC, datetime  # noqa: E402  (kept inside this block)


def iso(instant: datetime) -> str:
    """An aware instant as the API renders it: ISO 8601, UTC, ``Z``."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utc_now() -> datetime:
    """The real clock, whole seconds (the API's own "now" for assignments)."""
    return datetime.now(UTC).replace(microsecond=0)


def sweep(api: Api, as_of: str | datetime, *, expect: int = 200) -> dict[str, Any]:
    """POST /v1/sweeps as of ``as_of``; the summary (standings, events, changes)."""
    when = iso(as_of) if isinstance(as_of, datetime) else as_of
    response = api.post("/v1/sweeps", json={"as_of": when})
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


def assign(
    api: Api,
    member: str,
    level_key: str,
    *,
    mode: str = "pin",
    reason: str = "test assignment",
    expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    """POST /v1/members/{member}/assignments (R20)."""
    body = {"level": level_key, "mode": mode, "reason": reason, **fields}
    if isinstance(body.get("expires_at"), datetime):
        body["expires_at"] = iso(body["expires_at"])
    response = api.post(f"/v1/members/{member}/assignments", json=body)
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


def unassign(api: Api, member: str, *, expect: int = 200, **params: Any) -> dict[str, Any]:
    """DELETE /v1/members/{member}/assignments (R21)."""
    response = api.delete(f"/v1/members/{member}/assignments", params=params)
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


def enrol(api: Api, member: str, enrolled_at: str) -> dict[str, Any]:
    """PUT /v1/members/{member} with an enrolment date."""
    response = api.put(f"/v1/members/{member}", json={"enrolled_at": enrolled_at})
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


def level_at(api: Api, member: str, at: str | datetime, **params: Any) -> str | None:
    """The level key the single ladder's history says ``member`` held at ``at`` (R22)."""
    when = iso(at) if isinstance(at, datetime) else at
    response = api.get(f"/v1/members/{member}/level-at", params={"at": when, **params})
    assert response.status_code == 200, response.text
    ladders = response.json()["ladders"]
    assert len(ladders) == 1, ladders
    found: str | None = ladders[0]["level"]
    return found


def level_key(view: dict[str, Any]) -> str | None:
    """The current level key of one ladder's status view (None when no level)."""
    current = view["current_level"]
    return None if current is None else str(current["key"])


# -- added for the tests that record the same activities by two paths ------------------


def comparable_result(result: dict[str, Any]) -> dict[str, Any]:
    """An activity's result without what differs between two recordings of the same
    activity (its id, the ids of the activities its level changes name)."""
    changes = [{k: v for k, v in c.items() if k != "activity_uuid"} for c in result["tier_changes"]]
    return {
        "type": result["type"],
        "occurred_at": result["occurred_at"],
        "effects": result["effects"],
        "points_earned": result["points_earned"],
        "earn": result["earn"],
        "reverses": result["reverses"],
        "tier_changes": changes,
    }


def history_rows(api: Api, member: str, program_id: int) -> list[tuple[Any, ...]]:
    """A member's history in a program as (from, to, kind, at, no activity caused it) rows."""
    return [
        (e["from_level"], e["to_level"], e["kind"], e["occurred_at"], e["activity_id"] is None)
        for e in history(api, member, program_id=program_id)
    ]
