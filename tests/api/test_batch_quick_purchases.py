"""The batch fast path's quick purchases (``routes.activities.batch_commands``) record what
the models' path records, and hash alike: a repeat sent through either path is a replay
(R12), whichever path stored it first."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import activity_body, silver_gold
from tests.api.helpers import ladder as add_ladder
from tests.api.helpers import program as add_program
from tests.conftest import Api, make_key
from tierwise.api.app import TierwiseApp, create_app
from tierwise.services.tenants import ALL_SCOPES
from tierwise.settings import Settings


@pytest.fixture
def fast_api(settings: Settings, tenant_name: str) -> Iterator[Api]:
    """Keys remembered for a minute, as in production (so the fast path serves)."""
    remembered = settings.model_copy(update={"auth_cache_seconds": 60})
    with TestClient(create_app(remembered), raise_server_exceptions=False) as client:
        yield Api(client, make_key(client, tenant_name, ALL_SCOPES))


def _served(api: Api) -> int:
    app = api.client.app
    assert isinstance(app, TierwiseApp)
    return app.fast_activity.served


def _usual(member: str, key: str, at: str, amount: int) -> dict[str, Any]:
    return activity_body(member, "purchase", at=at, key=key, amount_minor=amount, currency="USD")


def _items(prefix: str) -> list[dict[str, Any]]:
    return [
        _usual(f"{prefix}-a", f"{prefix}-1", "2025-01-10T12:00:00Z", 2500),
        _usual(f"{prefix}-a", f"{prefix}-2", "2025-01-10T12:00:00.000001Z", 40000),
        _usual(f'{prefix}-"ü"', f"{prefix}-3 ✓\\", "2025-01-11T08:30:15.250000Z", 1),
        # Not usual: through ActivityIn, in place.
        _usual(f"{prefix}-a", f"{prefix}-4", "2025-01-11T09:00:00+00:00", 700),
        _usual(f"{prefix}-b", f"{prefix}-5", "2025-01-11T10:00:00.5Z", 300),
        activity_body(f"{prefix}-b", "purchase", key=f"{prefix}-6", amount_minor=900),
        activity_body(f"{prefix}-b", "visit", key=f"{prefix}-7"),
        _usual(f"{prefix}-b", f"{prefix}-8", "2025-01-12T23:59:59.999999Z", 12345),
    ]


def _basic(api: Api) -> dict[str, str]:
    token = base64.b64encode(f"{api.key.key_id}:{api.key.secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_quick_purchases_replay_through_every_path(fast_api: Api) -> None:
    add_ladder(fast_api, add_program(fast_api)["id"], silver_gold())
    items = _items("q")
    before = _served(fast_api)
    first = fast_api.post("/v1/activities/batch", json={"activities": items})
    assert first.status_code == 200, first.text
    assert _served(fast_api) == before + 1
    answer = first.json()
    assert (answer["accepted"], answer["duplicates"]) == (len(items), 0)
    keys = [i["idempotency_key"] for i in items]
    assert [r["idempotency_key"] for r in answer["results"]] == keys
    assert answer["results"][1]["occurred_at"] == "2025-01-10T12:00:00.000001Z"
    assert answer["results"][2]["member_id"] == 'q-"ü"'

    # Each one alone (ActivityIn's hash): a replay of the stored result, not a conflict.
    for item, result in zip(items, answer["results"], strict=True):
        single = fast_api.post("/v1/activities", json=item)
        assert single.status_code == 200, single.text
        assert single.headers["Idempotent-Replayed"] == "true"
        assert single.json() == {**result, "replayed": True}

    # The whole batch through the route (ActivityBatchIn): every one a replay.
    again = fast_api.client.post(
        "/v1/activities/batch", json={"activities": items}, headers=_basic(fast_api)
    )
    assert again.status_code == 200, again.text
    assert again.json() == {
        "accepted": 0,
        "duplicates": len(items),
        "results": [{**r, "replayed": True} for r in answer["results"]],
    }

    # A used key with another body is refused (the route's error), nothing is written.
    changed = [*items[:2], {**items[2], "amount_minor": 2}]
    refused = fast_api.post("/v1/activities/batch", json={"activities": changed})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "idempotency_key_reused"


def test_the_route_first_then_quick_purchases_replay(fast_api: Api) -> None:
    add_ladder(fast_api, add_program(fast_api)["id"], silver_gold())
    items = _items("r")
    by_route = fast_api.client.post(
        "/v1/activities/batch", json={"activities": items}, headers=_basic(fast_api)
    )
    assert by_route.status_code == 200, by_route.text
    before = _served(fast_api)
    again = fast_api.post("/v1/activities/batch", json={"activities": items})
    assert _served(fast_api) == before + 1
    assert again.status_code == 200, again.text
    assert again.json() == {
        "accepted": 0,
        "duplicates": len(items),
        "results": [{**r, "replayed": True} for r in by_route.json()["results"]],
    }


def test_a_bad_quick_looking_item_gets_the_routes_error(fast_api: Api) -> None:
    add_ladder(fast_api, add_program(fast_api)["id"], silver_gold())
    items = _items("e")
    items[2] = {**items[2], "occurred_at": "2025-02-30T12:00:00Z"}
    before = _served(fast_api)
    refused = fast_api.post("/v1/activities/batch", json={"activities": items})
    assert _served(fast_api) == before
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "validation_error"
    assert "occurred_at" in error["field"]
    assert fast_api.get("/v1/members/e-a/status").status_code == 404
