"""Single activities: the group commit (services/group_commit.py) and the fast path in
front of the router (api/fast_activity.py), issue 2 item 11b.

Whatever way a single activity takes, its client must get the answer it would have had
alone: R12 (idempotency, also for repeats inside one group), R2/R9 (immediate upgrades in
arrival order), and the API's error shape for every refusal (issue 2 §8), with nothing of
a refused activity written and nothing of the others lost.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import activity, activity_body, error_of, history, only_ladder, silver_gold
from tests.api.helpers import ladder as add_ladder
from tests.api.helpers import program as add_program
from tests.conftest import Api, make_key
from tierwise.api.app import TierwiseApp, create_app
from tierwise.api.routes.activities import command
from tierwise.api.schemas import ActivityIn
from tierwise.domain.errors import Conflict, NotFound
from tierwise.services.activities import ActivityCommand, Outcome, record
from tierwise.services.group_commit import GroupCommit
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.tenants import ALL_SCOPES, KeyVerifier
from tierwise.settings import Settings


@pytest.fixture
def fast_api(settings: Settings, tenant_name: str) -> Iterator[Api]:
    """An app whose keys are remembered for a minute, as in production (the suite's own
    app verifies every key against the database)."""
    remembered = settings.model_copy(update={"auth_cache_seconds": 60})
    with TestClient(create_app(remembered), raise_server_exceptions=False) as client:
        yield Api(client, make_key(client, tenant_name, ALL_SCOPES))


def _app(api: Api) -> TierwiseApp:
    app = api.client.app
    assert isinstance(app, TierwiseApp)
    return app


def _groups(api: Api) -> GroupCommit:
    groups = _app(api).state.activity_groups
    assert isinstance(groups, GroupCommit)
    return groups


def _concurrently(api: Api, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """POST every body at once, from one event loop, through the real ASGI app."""

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as c:
            return list(
                await asyncio.gather(
                    *(c.post("/v1/activities", json=b, headers=api.headers) for b in bodies)
                )
            )

    assert api.client.portal is not None
    return api.client.portal.call(go)


def _silver_gold(api: Api) -> None:
    add_ladder(api, add_program(api)["id"], silver_gold())


def _run(api: Api, fn: Any, *args: Any) -> Any:
    assert api.client.portal is not None
    return api.client.portal.call(fn, *args)


def _caller(api: Api) -> Caller:
    async def go() -> Caller:
        return await KeyVerifier(api.runtime()).by_secret(api.key.secret)

    caller: Caller = _run(api, go)
    return caller


def _commands(bodies: list[dict[str, Any]]) -> list[ActivityCommand]:
    return [command(ActivityIn.model_validate(b)) for b in bodies]


def _submit_together(
    api: Api, bodies: list[dict[str, Any]]
) -> tuple[GroupCommit, list[Outcome | BaseException]]:
    """Submit every command before the group commit runs any: they form one group."""
    rt: Runtime = api.runtime()
    groups = GroupCommit(partial(record, rt))
    caller = _caller(api)

    async def go() -> list[Outcome | BaseException]:
        return list(
            await asyncio.gather(
                *(groups.submit(caller, c) for c in _commands(bodies)), return_exceptions=True
            )
        )

    outcomes: list[Outcome | BaseException] = _run(api, go)
    return groups, outcomes


# -- the group commit ------------------------------------------------------------------------


def test_activities_submitted_together_are_recorded_as_one_group_in_arrival_order(
    api: Api,
) -> None:
    """R2, R9: 600 then 500 points — Silver at the first, Gold at the second, each
    activity's result showing the level it left the member at."""
    _silver_gold(api)
    bodies = [
        activity_body("ann", points=600, at="2025-01-10T12:00:00Z"),
        activity_body("bob", points=100, at="2025-01-10T12:00:00Z"),
        activity_body("ann", points=500, at="2025-01-11T12:00:00Z"),
    ]
    groups, outcomes = _submit_together(api, bodies)
    assert groups.stats.groups == 1 and groups.stats.largest == 3 and groups.stats.split == 0
    assert all(isinstance(o, Outcome) and not o.replayed for o in outcomes)
    assert [(e["to_level"], e["occurred_at"]) for e in history(api, "ann")] == [
        ("silver", "2025-01-10T12:00:00Z"),
        ("gold", "2025-01-11T12:00:00Z"),
    ]
    assert only_ladder(api, "ann")["current_level"]["key"] == "gold"
    assert only_ladder(api, "bob")["current_level"] is None


def test_a_refused_activity_in_a_group_gets_its_own_error_and_the_others_are_recorded(
    api: Api,
) -> None:
    """The group's transaction fails on the bad return; it is then recorded one by one:
    the return answers activity_not_found (as alone), the others are stored once."""
    _silver_gold(api)
    good = [activity_body(f"m{i}", points=600) for i in range(4)]
    bad = activity_body("m0", "return", reverses_key="never-sent")
    groups, outcomes = _submit_together(api, [good[0], good[1], bad, good[2], good[3]])
    assert groups.stats.split == 1
    error = outcomes[2]
    assert isinstance(error, NotFound) and error.code == "activity_not_found"
    for outcome in outcomes[:2] + outcomes[3:]:
        assert isinstance(outcome, Outcome) and not outcome.replayed
    for i in range(4):
        assert only_ladder(api, f"m{i}")["current_level"]["key"] == "silver"
        assert len(history(api, f"m{i}")) == 1
    # Each good activity was stored once: sending it again replays it.
    for body in good:
        response = api.post("/v1/activities", json=body)
        assert response.status_code == 200 and response.headers["Idempotent-Replayed"] == "true"


def test_a_key_repeated_within_a_group_is_recorded_once(api: Api) -> None:
    """R12 inside one group: the repeat answers the first result, replayed."""
    _silver_gold(api)
    body = activity_body("ann", points=600, key="same-key")
    _, outcomes = _submit_together(api, [body, dict(body)])
    first, repeat = outcomes
    assert isinstance(first, Outcome) and isinstance(repeat, Outcome)
    assert (first.replayed, repeat.replayed) == (False, True)
    assert repeat.result == first.result
    assert only_ladder(api, "ann")["progress"]["criteria"][0]["current"] == 600


def test_a_key_reused_with_another_body_within_a_group_is_refused_alone(api: Api) -> None:
    """R12: the same key with a different body is 409 for that request only."""
    _silver_gold(api)
    first = activity_body("ann", points=600, key="k-reused")
    other = activity_body("ann", points=700, key="k-reused")
    bystander = activity_body("bob", points=100)
    _, outcomes = _submit_together(api, [first, other, bystander])
    assert isinstance(outcomes[0], Outcome) and not outcomes[0].replayed
    assert isinstance(outcomes[1], Conflict) and outcomes[1].code == "idempotency_key_reused"
    assert isinstance(outcomes[2], Outcome) and not outcomes[2].replayed
    assert only_ladder(api, "ann")["progress"]["criteria"][0]["current"] == 600


def test_a_burst_of_single_posts_is_answered_one_by_one(fast_api: Api) -> None:
    """Concurrent POSTs through the app: every request gets its own 201 and activity id,
    and the totals count each activity once."""
    _silver_gold(fast_api)
    bodies = [activity_body(f"m{i % 5}", points=100) for i in range(40)]
    responses = _concurrently(fast_api, bodies)
    assert [r.status_code for r in responses] == [201] * 40
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 40
    for i in range(5):
        assert only_ladder(fast_api, f"m{i}")["progress"]["criteria"][0]["current"] == 800
    stats = _groups(fast_api).stats
    assert stats.activities >= 40 and stats.split == 0


# -- the fast path ---------------------------------------------------------------------------


def test_the_fast_path_answers_as_the_route_does(fast_api: Api) -> None:
    """A bearer request is served by the fast path; HTTP Basic goes through the router.
    Both answer 201 with the same document, and a repeat answers 200 replayed (R12)."""
    _silver_gold(fast_api)
    fast = _app(fast_api).fast_activity
    basic = base64.b64encode(f"{fast_api.key.key_id}:{fast_api.key.secret}".encode()).decode()
    routed_headers = {"Authorization": f"Basic {basic}"}

    before = fast.served
    by_fast = fast_api.client.post(
        "/v1/activities", json=activity_body("ann", points=600), headers=fast_api.headers
    )
    assert fast.served == before + 1
    by_route = fast_api.client.post(
        "/v1/activities", json=activity_body("bob", points=600), headers=routed_headers
    )
    assert fast.served == before + 1
    assert by_fast.status_code == by_route.status_code == 201
    assert by_fast.headers["content-type"] == by_route.headers["content-type"]
    a, b = by_fast.json(), by_route.json()
    assert set(a) == set(b)
    for name in ("type", "replayed", "earn", "level_changes", "points"):
        assert a.get(name) == b.get(name), name

    body = activity_body("cat", points=100, key="twice")
    first = fast_api.client.post("/v1/activities", json=body, headers=routed_headers)
    again = fast_api.client.post("/v1/activities", json=body, headers=fast_api.headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert {**again.json(), "replayed": False} == first.json()


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("not json", 400, "malformed_json"),
        ("text/plain", 415, "unsupported_media_type"),
        ("missing field", 422, "validation_error"),
        ("unknown return", 404, "activity_not_found"),
        ("unknown key", 401, "unauthenticated"),
        ("no scope", 403, "missing_scope"),
        ("declared too large", 413, "body_too_large"),
    ],
)
def test_what_the_fast_path_cannot_answer_gets_the_routes_error(
    fast_api: Api, case: str, status: int, code: str
) -> None:
    _silver_gold(fast_api)
    activity(fast_api, "ann", points=100)  # remembers the key, as a warm server does
    headers = dict(fast_api.headers)
    content = activity_body("ann", points=100)
    raw: bytes | None = None
    if case == "not json":
        raw, headers["Content-Type"] = b'{"type": ', "application/json"
    elif case == "text/plain":
        raw, headers["Content-Type"] = activity_json(content), "text/plain"
    elif case == "missing field":
        del content["member_id"]
    elif case == "unknown return":
        content = activity_body("ann", "return", reverses_key="never-sent")
    elif case == "unknown key":
        headers["Authorization"] = "Bearer tw_not-a-key"
    elif case == "no scope":
        reader = make_key(fast_api.client, fast_api.key.tenant, ["members:read"])
        headers["Authorization"] = f"Bearer {reader.secret}"
    elif case == "declared too large":
        raw, headers["Content-Length"] = activity_json(content), str(10 * 1024 * 1024)
    if raw is None:
        response = fast_api.client.post("/v1/activities", json=content, headers=headers)
    else:
        response = fast_api.client.post("/v1/activities", content=raw, headers=headers)
    error_of(response, status, code)
    # Nothing of the refused request was written: ann still has her first 100 points.
    assert only_ladder(fast_api, "ann")["progress"]["criteria"][0]["current"] == 100


def activity_json(body: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(body)


def test_the_fast_path_records_a_batch_as_the_route_does(fast_api: Api) -> None:
    """A batch with a bearer key is served by the fast path, one with HTTP Basic by the
    route: the same counts and results, and a repeat answers every result replayed."""
    _silver_gold(fast_api)
    fast = _app(fast_api).fast_activity
    basic = base64.b64encode(f"{fast_api.key.key_id}:{fast_api.key.secret}".encode()).decode()
    items = [activity_body(f"b{i % 3}", points=200) for i in range(9)]

    before = fast.served
    by_route = fast_api.client.post(
        "/v1/activities/batch",
        json={"activities": items},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert fast.served == before
    again = fast_api.client.post(
        "/v1/activities/batch", json={"activities": items}, headers=fast_api.headers
    )
    assert fast.served == before + 1
    assert by_route.status_code == again.status_code == 200
    first, repeat = by_route.json(), again.json()
    assert (first["accepted"], first["duplicates"]) == (9, 0)
    assert (repeat["accepted"], repeat["duplicates"]) == (0, 9)
    assert [{**r, "replayed": False} for r in repeat["results"]] == first["results"]

    fresh = [activity_body(f"c{i % 3}", points=200) for i in range(9)]
    served = fast_api.client.post(
        "/v1/activities/batch", json={"activities": fresh}, headers=fast_api.headers
    )
    assert fast.served == before + 2
    assert served.json()["accepted"] == 9
    assert only_ladder(fast_api, "c0")["current_level"]["key"] == "silver"  # 600 points


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("bad item", 422, "validation_error"),
        ("unknown return", 404, "activity_not_found"),
    ],
)
def test_a_batch_the_fast_path_cannot_answer_gets_the_routes_error(
    fast_api: Api, case: str, status: int, code: str
) -> None:
    """All or nothing: the refused batch stores none of its activities."""
    _silver_gold(fast_api)
    activity(fast_api, "ann", points=100)
    items = [activity_body("ann", points=100) for _ in range(3)]
    if case == "bad item":
        del items[1]["member_id"]
    else:
        items.append(activity_body("ann", "return", reverses_key="never-sent"))
    response = fast_api.client.post(
        "/v1/activities/batch", json={"activities": items}, headers=fast_api.headers
    )
    error = error_of(response, status, code)
    if case == "unknown return":
        assert error["details"]["index"] == 3
    assert only_ladder(fast_api, "ann")["progress"]["criteria"][0]["current"] == 100
