"""Capillary v3 tier admin (seed 002 and the platform's tier admin facts): the golden
Platinum draft, the whole lifecycle through the dialect and the same state through the
native API, id stability, mappings, scopes and maker-checker."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi.testclient import TestClient

from tests.api.helpers import activity, criterion, enrol, ladder, level, program
from tests.conftest import Api, make_key
from tests.dialects.conftest import validate
from tests.dialects.test_capillary_v2 import basic
from tierwise.services.tenants import set_maker_checker

BASE = "/compat/capillary"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")

# Seed 002, as the page shows it.
SEED_002: dict[str, Any] = {
    "data": [
        {
            "tierUniqueId": "ut-973-009",
            "objectId": "6a2121936497e74ec3517ad8",
            "name": "Platinum",
            "description": "Premium tier for top spenders",
            "color": "#E5E4E2",
            "serialNumber": 9,
            "eligibility": {
                "kpiType": "CURRENT_POINTS",
                "threshold": 75000.0,
                "upgradeType": "LAZY",
            },
            "meta": {
                "createdBy": "75237721",
                "createdAt": "2026-06-04T06:56:19Z",
                "updatedBy": "75237721",
                "updatedAt": "2026-06-04T06:56:19Z",
            },
            "status": "DRAFT",
            "origin": "MONGO_ONLY",
            "renewal": {
                "periodType": "SLAB_UPGRADE",
                "periodValue": "12",
                "unit": "NUM_MONTHS",
                "criteriaType": "Same as eligibility",
            },
        }
    ],
    "errors": None,
    "warnings": None,
}

PLATINUM = {
    "name": "Platinum",
    "description": "Premium tier for top spenders",
    "color": "#E5E4E2",
    "eligibility": {"kpiType": "CURRENT_POINTS", "threshold": 75000, "upgradeType": "LAZY"},
    "validity": {"periodType": "SLAB_UPGRADE", "periodValue": 12, "unit": "NUM_MONTHS"},
}

NAMES = ("Bronze", "Silver", "Gold", "Emerald", "Sapphire", "Ruby", "Titanium", "Diamond")


def eight_tiers() -> dict[str, Any]:
    """Bronze (floor) to Diamond at 70,000 points balance, lazy upgrades."""
    levels = [level("bronze", 1, is_floor=True, name="Bronze")]
    levels += [
        level(name.lower(), rank, criterion("points_balance", (rank - 1) * 10_000), name=name)
        for rank, name in enumerate(NAMES[1:], start=2)
    ]
    return {
        "key": "status",
        "name": "Status",
        "levels": levels,
        "upgrade_timing": "lazy",
        "validity": {"type": "fixed_months", "months": 12},
    }


class Capillary:
    """Calls under /compat/capillary with HTTP Basic; checks status and schema."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def call(self, method: str, path: str, expect: int, schema: str | None, **kwargs: Any) -> Any:
        headers = {**basic(self.api), **kwargs.pop("headers", {})}
        response = self.api.client.request(method, BASE + path, headers=headers, **kwargs)
        assert response.status_code == expect, response.text
        if expect == 204:
            assert response.content == b""
            return None
        body = response.json()
        return validate(schema if expect < 400 and schema else "capillary_error", body)

    def create(self, body: dict[str, Any], expect: int = 200) -> Any:
        found = self.call("POST", "/v3/tiers", expect, "capillary_v3_create_tier", json=body)
        return found["data"] if expect == 200 else found

    def update(self, tier: str | int, body: dict[str, Any], expect: int = 200) -> Any:
        found = self.call("PUT", f"/v3/tiers/{tier}", expect, "capillary_v3_update_tier", json=body)
        return found["data"] if expect == 200 else found

    def submit(self, tier: str, expect: int = 200) -> Any:
        found = self.call("POST", f"/v3/tiers/{tier}/submit", expect, "capillary_v3_submit_tier")
        return found["data"] if expect == 200 else found

    def review(
        self, tier: str, decision: str, comment: str | None = None, expect: int = 200
    ) -> Any:
        body = {"approvalStatus": decision, **({"comment": comment} if comment else {})}
        found = self.call(
            "POST", f"/v3/tiers/{tier}/approve", expect, "capillary_v3_approve_tier", json=body
        )
        return found["data"] if expect == 200 else found

    def delete(self, tier: str, expect: int = 204) -> Any:
        return self.call("DELETE", f"/v3/tiers/{tier}", expect, None)

    def get(self, tier: str | int, expect: int = 200) -> Any:
        found = self.call("GET", f"/v3/tiers/{tier}", expect, "capillary_v3_get_tier")
        return found["data"] if expect == 200 else found

    def tiers(self, expect: int = 200, **params: Any) -> Any:
        found = self.call("GET", "/v3/tiers", expect, "capillary_v3_list_tiers", params=params)
        return found["data"]["tiers"] if expect == 200 else found

    def approvals(self, **params: Any) -> list[dict[str, Any]]:
        found = self.call(
            "GET", "/v3/tiers/approvals", 200, "capillary_v3_approvals", params=params
        )
        data: list[dict[str, Any]] = found["data"]
        return data


def error_code(body: dict[str, Any]) -> int:
    code: int = body["errors"][0]["code"]
    return code


def settle(api: Api) -> None:
    """Wait for the go-live jobs approval started in the background."""
    app: Any = api.client.app

    async def wait() -> None:
        while app.state.background:
            await asyncio.gather(*list(app.state.background))

    assert api.client.portal is not None
    api.client.portal.call(wait)


def native_versions(api: Api, pid: int, key: str = "status") -> list[dict[str, Any]]:
    response = api.get(f"/v1/programs/{pid}/ladders/{key}/versions")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def setup_973(api: Api) -> tuple[Capillary, int]:
    pid = program(api, name="Program 973")["id"]
    ladder(api, pid, eight_tiers())
    return Capillary(api), pid


def test_seed_002_a_platinum_draft_equals_the_page_but_for_ids_and_timestamps(api: Api) -> None:
    cap, pid = setup_973(api)
    created = cap.create({"programId": pid, **PLATINUM})
    assert created["tierUniqueId"] == f"ut-{pid}-009"
    body = cap.call("GET", f"/v3/tiers/ut-{pid}-009", 200, "capillary_v3_get_tier")
    entry = body["data"][0]
    assert entry["tierUniqueId"] == f"ut-{pid}-009"
    assert OBJECT_ID.match(entry["objectId"])
    assert entry["objectId"] == created["objectId"]
    for field in ("createdAt", "updatedAt"):
        assert ISO.match(entry["meta"][field])
    assert entry["meta"]["createdBy"] == entry["meta"]["updatedBy"] == api.key.key_id

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: strip(v)
                for k, v in value.items()
                if k
                not in {
                    "tierUniqueId",
                    "objectId",
                    "createdAt",
                    "updatedAt",
                    "createdBy",
                    "updatedBy",
                }
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    assert strip(body) == strip(SEED_002)
    assert set(entry) == set(SEED_002["data"][0])
    assert set(entry["meta"]) == set(SEED_002["data"][0]["meta"])


def test_r24_the_v3_lifecycle_end_to_end_and_the_same_state_natively(api: Api) -> None:
    cap, pid = setup_973(api)
    member = enrol(api, "whale", "2024-01-01T00:00:00Z")
    activity(api, "whale", points=95_000)

    created = cap.create({"programId": pid, **PLATINUM})
    object_id, unique = created["objectId"], created["tierUniqueId"]
    assert (created["status"], created["slabId"], created["version"]) == ("DRAFT", None, 1)
    assert created["validity"] == {
        "periodType": "SLAB_UPGRADE",
        "periodValue": 12,
        "renewal": {"criteriaType": "Same as eligibility"},
        "unit": "NUM_MONTHS",
    }
    assert created["programId"] == pid and created["parentId"] is None

    updated = cap.update(
        object_id,
        {
            "description": "Premium tier for top spenders — updated",
            "eligibility": {"threshold": 80000},
        },
    )
    assert updated["objectId"] == object_id
    assert updated["eligibility"]["threshold"] == 80000.0
    assert updated["eligibility"]["kpiType"] == "CURRENT_POINTS"

    assert cap.submit(object_id)["status"] == "PENDING_APPROVAL"
    queue = cap.approvals(programId=pid)
    assert [item["objectId"] for item in queue] == [object_id]
    cap.update(object_id, {"name": "Nope"}, expect=409)  # pending: the engine refuses edits
    cap.delete(object_id, expect=409)

    rejected = cap.review(object_id, "REJECT", "Threshold needs review before publishing")
    assert rejected["status"] == "REJECTED"
    assert rejected["rejectionComment"] == "Threshold needs review before publishing"
    assert rejected["meta"]["rejectedBy"] == api.key.key_id
    [seen] = cap.get(unique)
    assert (seen["status"], seen["rejectionComment"]) == ("REJECTED", rejected["rejectionComment"])
    assert cap.approvals(programId=pid) == []

    again = cap.update(object_id, {"eligibility": {"threshold": 90000}})
    assert again["status"] == "DRAFT" and "rejectionComment" not in again
    assert cap.submit(object_id)["status"] == "PENDING_APPROVAL"
    approved = cap.review(object_id, "APPROVE")
    assert approved["status"] == "ACTIVE"
    assert approved["objectId"] == object_id and approved["tierUniqueId"] == unique
    slab_id = approved["slabId"]
    assert isinstance(slab_id, int)
    assert approved["meta"]["approvedBy"] == api.key.key_id
    settle(api)

    [live] = cap.get(slab_id)
    assert (live["status"], live["origin"], live["slabId"]) == ("LIVE", "BOTH", slab_id)
    assert live["objectId"] == object_id and live["tierUniqueId"] == unique
    assert ISO.match(live["tierStartDate"])
    assert live["customerCount"] == 1 and ISO.match(live["countRefreshedAt"])
    assert cap.get(unique) == [live]

    edit = cap.update(slab_id, {"description": "Now with lounge access"})
    assert edit["status"] == "DRAFT" and edit["slabId"] == slab_id
    assert edit["parentId"] == object_id and edit["version"] == 2
    assert edit["objectId"] != object_id and edit["tierUniqueId"] == unique
    both = cap.get(slab_id)
    assert [(e["status"], e["origin"], e["objectId"]) for e in both] == [
        ("LIVE", "BOTH", object_id),
        ("DRAFT", "BOTH", edit["objectId"]),
    ]
    assert both[0]["description"] == "Premium tier for top spenders — updated"
    assert both[1]["description"] == "Now with lounge access"
    assert [e["status"] for e in cap.get(unique)] == ["DRAFT"]
    listed = [(e["name"], e["status"]) for e in cap.tiers(programId=pid)]
    assert listed[-2:] == [("Platinum", "LIVE"), ("Platinum", "DRAFT")]
    assert len(listed) == 10
    assert [e["status"] for e in cap.tiers(programId=pid, tier=slab_id)] == ["LIVE", "DRAFT"]

    conflict = cap.delete(object_id, expect=409)
    assert error_code(conflict) == 999999
    assert conflict["errors"][0]["message"].startswith("TIER_NOT_DELETABLE_NON_DRAFT")

    versions = native_versions(api, pid)
    assert [v["state"] for v in versions] == ["snapshot", "live", "draft"]
    platinum = [lv for lv in versions[1]["definition"]["levels"] if lv["name"] == "Platinum"]
    assert platinum[0]["attain"]["criteria"][0]["threshold"] == 90000
    assert platinum[0]["attain"]["criteria"][0]["metric"] == "points_balance"
    assert versions[1]["audit"]["rejection_comment"] == "Threshold needs review before publishing"
    assert versions[2]["definition"]["levels"][-1]["description"] == "Now with lounge access"
    status = api.get("/v1/members/whale/status").json()["ladders"][0]
    assert status["current_level"]["name"] == "Platinum"
    assert status["current_level"]["id"] == slab_id
    counts = api.get(f"/v1/programs/{pid}/ladders/status/counts").json()
    assert counts["levels"][platinum[0]["key"]] == live["customerCount"]

    cap.delete(edit["objectId"])
    assert [e["status"] for e in cap.get(slab_id)] == ["LIVE"]
    assert error_code(cap.get(edit["objectId"], expect=404)) == 9056
    assert [v["state"] for v in native_versions(api, pid)] == ["snapshot", "live", "deleted"]
    assert member["id"]


def test_ids_are_stable_and_serials_are_never_reused(api: Api) -> None:
    cap, pid = setup_973(api)
    first = cap.create({"programId": pid, **PLATINUM})
    assert cap.get(first["objectId"])[0]["objectId"] == first["objectId"]
    cap.delete(first["objectId"])
    assert error_code(cap.get(first["tierUniqueId"], expect=404)) == 9056
    second = cap.create({"programId": pid, **PLATINUM})
    assert second["tierUniqueId"] == f"ut-{pid}-010"
    assert second["objectId"] != first["objectId"]
    assert cap.get(second["tierUniqueId"])[0]["objectId"] == second["objectId"]
    assert cap.tiers(programId=pid, tier=f"ut-{pid}-010")[0]["objectId"] == second["objectId"]
    existing = cap.tiers(programId=pid)
    assert [e["tierUniqueId"] for e in existing[:8]] == [f"ut-{pid}-{n:03d}" for n in range(1, 9)]
    assert [e["serialNumber"] for e in existing] == list(range(1, 10))
    assert existing[0]["eligibility"] == {"kpiType": "CURRENT_POINTS", "upgradeType": "LAZY"}


def test_one_open_draft_a_program_and_at_most_fifty_tiers(api: Api) -> None:
    cap, pid = setup_973(api)
    cap.create({"programId": pid, **PLATINUM})
    busy = cap.create({"programId": pid, **PLATINUM, "name": "Other"}, expect=409)
    assert error_code(busy) == 999999
    assert busy["errors"][0]["message"].startswith("TIER_DRAFT_IN_PROGRESS")
    slab = cap.tiers(programId=pid)[1]["slabId"]
    assert error_code(cap.update(slab, {"color": "#000000"}, expect=409)) == 999999

    full = program(api, name="Full")["id"]
    ladder(
        api,
        full,
        {
            "key": "status",
            "name": "S",
            "levels": [level(f"l{n}", n, criterion("points_earned", n)) for n in range(1, 51)],
        },
    )
    limit = cap.create({"programId": full, **PLATINUM}, expect=409)
    assert limit["errors"][0]["message"].startswith("TIER_LIMIT_EXCEEDED")


def test_a_program_without_tiers_gets_its_ladder_from_the_first_tier(api: Api) -> None:
    cap = Capillary(api)
    pid = program(api, name="Fresh", currency="EUR")["id"]
    no_kpi = {"programId": pid, "name": "X", "eligibility": {"threshold": 1}}
    assert cap.create(no_kpi, expect=400)["errors"][0]["message"].startswith("eligibility.kpiType")
    base = cap.create({"programId": pid, "name": "Base", "color": "#CD7F32"})
    assert base["eligibility"] == {"upgradeType": "EAGER"}
    assert base["validity"] is None
    cap.submit(base["objectId"])
    live = cap.review(base["objectId"], "APPROVE")
    settle(api)
    assert native_versions(api, pid, "tiers")[0]["definition"]["levels"][0]["is_floor"] is True
    gold = cap.create(
        {
            "programId": pid,
            "name": "Gold Member",
            "eligibility": {
                "kpiType": "CUMULATIVE_PURCHASES",
                "threshold": 1999.99,
                "upgradeType": "DYNAMIC",
            },
            "renewal": {
                "periodType": "FIXED_CUSTOMER_REGISTRATION",
                "criteriaType": "Same as eligibility",
            },
        }
    )
    assert gold["eligibility"] == {
        "kpiType": "CUMULATIVE_PURCHASES",
        "threshold": 1999.99,
        "upgradeType": "DYNAMIC",
    }
    assert gold["validity"]["periodType"] == "FIXED_CUSTOMER_REGISTRATION"
    draft = native_versions(api, pid, "tiers")[-1]["definition"]
    assert draft["upgrade_timing"] == "dynamic"
    assert draft["levels"][1]["key"] == "gold-member"
    assert draft["levels"][1]["attain"]["criteria"][0] == {
        "metric": "spend",
        "window": {"type": "lifetime", "days": None, "months": None, "month": None, "day": None},
        "operator": ">=",
        "threshold": 199999,
    }
    # upgradeType is ladder-wide: the draft changes it for the live base tier too.
    assert [e["status"] for e in cap.get(live["slabId"])] == ["LIVE", "DRAFT"]
    cap.update(
        gold["objectId"],
        {
            "eligibility": {
                "kpiType": "TRACKER_VALUE_BASED",
                "threshold": 12,
                "conditions": [{"trackerName": "visits.store"}],
            }
        },
    )
    [entry] = cap.get(gold["tierUniqueId"])
    assert entry["eligibility"] == {
        "kpiType": "TRACKER_VALUE_BASED",
        "threshold": 12.0,
        "upgradeType": "DYNAMIC",
        "conditions": [{"trackerName": "visits.store"}],
    }
    assert entry["origin"] == "MONGO_ONLY" and "slabId" not in entry


def test_maker_checker_and_scopes(api: Api, client: TestClient, tenant_name: str) -> None:
    cap, pid = setup_973(api)
    created = cap.create({"programId": pid, **PLATINUM})
    cap.submit(created["objectId"])
    assert client.portal is not None
    client.portal.call(lambda: set_maker_checker(api.runtime(), tenant_name, True))
    refused = cap.review(created["objectId"], "APPROVE", expect=403)
    assert error_code(refused) == 403

    reader = Capillary(Api(client, make_key(client, tenant_name, ["tiers:read"])))
    assert reader.get(created["tierUniqueId"])[0]["status"] == "PENDING_APPROVAL"
    assert error_code(reader.create({"programId": pid, **PLATINUM}, expect=403)) == 403
    maker = Capillary(Api(client, make_key(client, tenant_name, ["programs:write"])))
    assert error_code(maker.review(created["objectId"], "APPROVE", expect=403)) == 403
    checker = Capillary(Api(client, make_key(client, tenant_name, ["programs:approve"])))
    assert checker.review(created["objectId"], "APPROVE")["status"] == "ACTIVE"
    settle(api)
    stranger = Capillary(Api(client, make_key(client, tenant_name + "-x", ["tiers:read"])))
    assert error_code(stranger.get(created["objectId"], expect=404)) == 9056


def test_snapshots_positions_and_an_update_that_changes_nothing(api: Api) -> None:
    cap, pid = setup_973(api)
    before = cap.tiers(programId=pid)
    assert [e["status"] for e in before] == ["LIVE"] * 8
    unchanged = cap.update(
        before[1]["slabId"], {"color": before[1].get("color")} if before[1].get("color") else {}
    )
    assert unchanged["status"] == "ACTIVE" and unchanged["objectId"] == before[1]["objectId"]
    assert [v["state"] for v in native_versions(api, pid)] == ["live"]

    copper = cap.create(
        {
            "programId": pid,
            "name": "Copper",
            "serialNumber": 2,
            "eligibility": {"threshold": 5000},
        }
    )
    assert copper["serialNumber"] == 2
    assert copper["eligibility"]["kpiType"] == "CURRENT_POINTS"
    listed = cap.tiers(programId=pid)
    drafts = [(e["name"], e["serialNumber"]) for e in listed if e["status"] == "DRAFT"]
    assert drafts[:2] == [("Silver", 3), ("Gold", 4)] and drafts[-1] == ("Copper", 2)
    assert ("Bronze", 1) not in drafts
    cap.submit(copper["objectId"])
    cap.review(copper["objectId"], "APPROVE")
    settle(api)
    [old_bronze] = cap.get(before[0]["objectId"])
    assert old_bronze["status"] == "SNAPSHOT" and old_bronze["origin"] == "BOTH"
    assert [e["serialNumber"] for e in cap.tiers(programId=pid)] == list(range(1, 10))
    assert cap.tiers(programId=pid)[1]["name"] == "Copper"
