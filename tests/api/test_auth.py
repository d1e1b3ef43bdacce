"""Credentials, scopes and tenant isolation (issue 2 §7, semantics §1 "nothing crosses
tenants", R12 idempotency keys per tenant).

Keys are accepted as ``Authorization: Bearer <secret>``, ``X-API-Key: <secret>`` or HTTP
Basic ``key_id:secret``; every route checks one ``resource:action`` scope; another
tenant's ids answer exactly like ids that do not exist.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import (
    activity,
    activity_body,
    criterion,
    error_of,
    ladder,
    level,
    program,
)
from tests.conftest import Api, make_key
from tierwise.services.runtime import Runtime
from tierwise.services.tenants import ALL_SCOPES, NewKey, revoke_key

AT = "2025-03-01T12:00:00Z"
MISSING_ID = 2**62  # the largest program id the API accepts; never allocated in tests


def basic(key_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()


STYLES: dict[str, Callable[[NewKey], dict[str, str]]] = {
    "bearer": lambda k: {"Authorization": f"Bearer {k.secret}"},
    "x-api-key": lambda k: {"X-API-Key": k.secret},
    "basic": lambda k: {"Authorization": basic(k.key_id, k.secret)},
}


def status_ladder() -> dict[str, Any]:
    return {
        "key": "status",
        "name": "Status",
        "levels": [
            level("silver", 1, criterion("spend", 1000)),
            level("gold", 2, criterion("spend", 5000)),
        ],
    }


@dataclass
class Tenant:
    api: Api
    name: str
    program_id: int
    purchase_id: str


@pytest.fixture
def tenant(api: Api, tenant_name: str) -> Tenant:
    """A tenant with a program, a ladder and a member "alice" who bought 2000."""
    p = program(api)
    ladder(api, p["id"], status_ladder())
    bought = activity(api, "alice", "purchase", amount_minor=2000, key="alice-1", at=AT)
    return Tenant(api=api, name=tenant_name, program_id=p["id"], purchase_id=bought["id"])


def runtime(client: TestClient) -> Runtime:
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return rt


def revoke(client: TestClient, key: NewKey) -> None:
    """Revoke as the CLI does: in the database, without touching the API's verifier."""
    assert client.portal is not None
    rt = runtime(client)
    client.portal.call(lambda: revoke_key(rt, key.key_id))


def snapshot(api: Api, program_id: int) -> dict[str, Any]:
    reads = {
        "programs": api.get("/v1/programs"),
        "ladders": api.get(f"/v1/programs/{program_id}/ladders"),
        "status": api.get("/v1/members/alice/status", params={"as_of": "2099-01-01T00:00:00Z"}),
        "history": api.get("/v1/members/alice/history"),
        "bob": api.get("/v1/members/bob/status"),
    }
    return {name: (r.status_code, r.json()) for name, r in reads.items()}


# -- the three credential styles ---------------------------------------------------------


@pytest.mark.parametrize("style", STYLES.values(), ids=list(STYLES))
def test_each_credential_style_authenticates_as_the_keys_tenant(
    client: TestClient, tenant: Tenant, style: Callable[[NewKey], dict[str, str]]
) -> None:
    """Issue 2 §7: Bearer secret, X-API-Key secret and Basic key_id:secret all work."""
    response = client.get("/v1/programs", headers=style(tenant.api.key))
    assert response.status_code == 200, response.text
    assert [p["id"] for p in response.json()] == [tenant.program_id]


@pytest.mark.parametrize("style", STYLES.values(), ids=list(STYLES))
def test_each_credential_style_can_write(
    client: TestClient, tenant: Tenant, style: Callable[[NewKey], dict[str, str]]
) -> None:
    """The credential style does not matter to the write path either."""
    body = activity_body("carol", "visit", at=AT)
    response = client.post("/v1/activities", json=body, headers=style(tenant.api.key))
    assert response.status_code == 201, response.text
    status = tenant.api.get("/v1/members/carol/status")
    assert status.status_code == 200, status.text


# -- 401 -----------------------------------------------------------------------------------


def wrong(key: NewKey) -> NewKey:
    return NewKey(
        key_id=key.key_id, secret=key.secret[:-4] + "xxxx", tenant=key.tenant, scopes=key.scopes
    )


UNAUTHENTICATED: dict[str, Callable[[NewKey], dict[str, str]]] = {
    "no credentials": lambda k: {},
    "empty bearer": lambda k: {"Authorization": "Bearer "},
    "unknown scheme": lambda k: {"Authorization": f"Token {k.secret}"},
    "wrong bearer secret": lambda k: STYLES["bearer"](wrong(k)),
    "wrong x-api-key secret": lambda k: STYLES["x-api-key"](wrong(k)),
    "wrong basic secret": lambda k: STYLES["basic"](wrong(k)),
    "basic with another key id": lambda k: {"Authorization": basic("key_0000", k.secret)},
    "basic without a password": lambda k: {"Authorization": basic(k.key_id, "")},
    "basic with the secret as user": lambda k: {
        "Authorization": "Basic " + base64.b64encode(k.secret.encode()).decode()
    },
    "key id sent as a bearer secret": lambda k: {"Authorization": f"Bearer {k.key_id}"},
}


@pytest.mark.parametrize("headers", UNAUTHENTICATED.values(), ids=list(UNAUTHENTICATED))
def test_missing_or_wrong_credentials_are_401_and_nothing_is_written(
    client: TestClient, tenant: Tenant, headers: Callable[[NewKey], dict[str, str]]
) -> None:
    """Issue 2 §7: a missing or wrong key is 401 ``unauthenticated``, for reads and writes."""
    before = snapshot(tenant.api, tenant.program_id)
    sent = headers(tenant.api.key)
    read = client.get("/v1/programs", headers=sent)
    error_of(read, 401, "unauthenticated")
    assert read.headers["WWW-Authenticate"] == "Bearer"
    write = client.post(
        "/v1/activities",
        json=activity_body("bob", "purchase", amount_minor=9000, at=AT),
        headers=sent,
    )
    error_of(write, 401, "unauthenticated")
    assert snapshot(tenant.api, tenant.program_id) == before


@pytest.mark.parametrize("style", STYLES.values(), ids=list(STYLES))
def test_a_revoked_key_is_401_in_every_style_and_other_keys_keep_working(
    client: TestClient, tenant: Tenant, style: Callable[[NewKey], dict[str, str]]
) -> None:
    """Issue 2 §7: revoking a key (``revoke_key``) refuses it at once (the test settings
    cache verified keys for 0 s); the tenant's other keys are unaffected."""
    doomed = make_key(client, tenant.name, ALL_SCOPES)
    assert client.get("/v1/programs", headers=style(doomed)).status_code == 200
    before = snapshot(tenant.api, tenant.program_id)
    revoke(client, doomed)
    error_of(client.get("/v1/programs", headers=style(doomed)), 401, "unauthenticated")
    write = client.post(
        "/v1/activities",
        json=activity_body("bob", "purchase", amount_minor=9000, at=AT),
        headers=style(doomed),
    )
    error_of(write, 401, "unauthenticated")
    assert snapshot(tenant.api, tenant.program_id) == before
    assert client.get("/v1/programs", headers=style(tenant.api.key)).status_code == 200


def test_revoking_a_key_twice_is_refused(client: TestClient, tenant: Tenant) -> None:
    """A revoked key is no longer active: revoking it again says so."""
    from tierwise.domain.errors import NotFound

    doomed = make_key(client, tenant.name, ["programs:read"])
    revoke(client, doomed)
    with pytest.raises(NotFound) as raised:
        revoke(client, doomed)
    assert raised.value.code == "key_not_found"


# -- 403: one scope per route --------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str
    body: Callable[[Tenant], Any] | None = None


def _ladder_body(t: Tenant) -> dict[str, Any]:
    return {**status_ladder(), "key": "second"}


ROUTES: dict[str, Route] = {
    "create program": Route("POST", "/v1/programs", "programs:write", lambda t: {"name": "P2"}),
    "list programs": Route("GET", "/v1/programs", "programs:read"),
    "read program": Route("GET", "/v1/programs/{pid}", "programs:read"),
    "update program": Route(
        "PATCH", "/v1/programs/{pid}", "programs:write", lambda t: {"name": "Renamed"}
    ),
    "create ladder": Route("POST", "/v1/programs/{pid}/ladders", "programs:write", _ladder_body),
    "list ladders": Route("GET", "/v1/programs/{pid}/ladders", "programs:read"),
    "read ladder": Route("GET", "/v1/programs/{pid}/ladders/status", "programs:read"),
    "replace ladder": Route(
        "PUT",
        "/v1/programs/{pid}/ladders/status",
        "programs:write",
        lambda t: {**status_ladder(), "name": "Renamed"},
    ),
    "record activity": Route(
        "POST",
        "/v1/activities",
        "activities:write",
        lambda t: activity_body("bob", "purchase", amount_minor=9000, at=AT),
    ),
    "record batch": Route(
        "POST",
        "/v1/activities/batch",
        "activities:write",
        lambda t: {"activities": [activity_body("bob", "purchase", amount_minor=9000, at=AT)]},
    ),
    "enrol member": Route("PUT", "/v1/members/bob", "members:write", lambda t: {"enrolled_at": AT}),
    "member status": Route("GET", "/v1/members/alice/status", "members:read"),
    "member history": Route("GET", "/v1/members/alice/history", "members:read"),
}


def call(client: TestClient, route: Route, tenant: Tenant, headers: dict[str, str]) -> Any:
    path = route.path.format(pid=tenant.program_id)
    body = route.body(tenant) if route.body else None
    return client.request(route.method, path, json=body, headers=headers)


@pytest.mark.parametrize("route", ROUTES.values(), ids=list(ROUTES))
def test_a_key_without_the_routes_scope_is_403_and_nothing_is_written(
    client: TestClient, tenant: Tenant, route: Route
) -> None:
    """Issue 2 §7: every route checks its scope: a key holding every scope but that one
    is refused with 403 ``missing_scope`` naming the scope, and nothing is written."""
    others = [s for s in ALL_SCOPES if s != route.scope]
    key = make_key(client, tenant.name, others)
    before = snapshot(tenant.api, tenant.program_id)
    error = error_of(call(client, route, tenant, STYLES["bearer"](key)), 403, "missing_scope")
    assert error["details"] == {"scope": route.scope}
    assert route.scope in error["message"]
    assert snapshot(tenant.api, tenant.program_id) == before


@pytest.mark.parametrize("route", ROUTES.values(), ids=list(ROUTES))
def test_a_key_with_only_the_routes_scope_is_let_through(
    client: TestClient, tenant: Tenant, route: Route
) -> None:
    """Issue 2 §7: the one scope a route names is enough for it."""
    key = make_key(client, tenant.name, [route.scope])
    response = call(client, route, tenant, STYLES["x-api-key"](key))
    assert response.status_code in (200, 201), response.text


def test_every_v1_route_needs_exactly_one_scope(client: TestClient, tenant_name: str) -> None:
    """Issue 2 §7, checked over the whole OpenAPI description (so routes added later are
    covered): no route answers without credentials, and for each route exactly one
    scope, when missing from an otherwise all-powerful key, makes it answer 403."""
    keys = {
        scope: make_key(
            client, f"{tenant_name}-minus-{scope}", [s for s in ALL_SCOPES if s != scope]
        )
        for scope in ALL_SCOPES
    }
    paths = client.get("/openapi.json").json()["paths"]
    checked = 0
    for path, operations in paths.items():
        if not path.startswith("/v1/"):
            continue
        concrete = path.replace("{program_id}", "1").replace("{member_id}", "nobody")
        concrete = concrete.replace("{key}", "status")
        for method in operations:
            anonymous = client.request(method.upper(), concrete, json={})
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            refused = [
                scope
                for scope, key in keys.items()
                if (
                    r := client.request(
                        method.upper(), concrete, json={}, headers=STYLES["bearer"](key)
                    )
                ).status_code
                == 403
                and r.json()["error"]["code"] == "missing_scope"
            ]
            assert len(refused) == 1, (method, path, refused)
            checked += 1
    assert checked >= len(ROUTES)


# -- tenant isolation ----------------------------------------------------------------------


@pytest.fixture
def outsider(client: TestClient) -> Api:
    """Another tenant, with its own program (so it has a default program)."""
    other = Api(client, make_key(client, f"outsider-{uuid.uuid4().hex[:10]}", ALL_SCOPES))
    program(other, name="Outsider")
    return other


def same_answer(theirs: Any, missing: Any, their_id: Any, missing_id: Any) -> None:
    """Two responses are the same but for the id each names."""
    assert theirs.status_code == missing.status_code == 404, (theirs.text, missing.text)
    assert theirs.headers["content-type"] == missing.headers["content-type"]
    a = json.dumps(theirs.json(), sort_keys=True).replace(str(their_id), "<id>")
    b = json.dumps(missing.json(), sort_keys=True).replace(str(missing_id), "<id>")
    assert a == b


PROGRAM_REQUESTS: dict[str, Callable[[Api, int], Any]] = {
    "read program": lambda a, pid: a.get(f"/v1/programs/{pid}"),
    "update program": lambda a, pid: a.patch(f"/v1/programs/{pid}", json={"name": "Mine now"}),
    "list ladders": lambda a, pid: a.get(f"/v1/programs/{pid}/ladders"),
    "read ladder": lambda a, pid: a.get(f"/v1/programs/{pid}/ladders/status"),
    "create ladder": lambda a, pid: a.post(
        f"/v1/programs/{pid}/ladders", json={**status_ladder(), "key": "planted"}
    ),
    "replace ladder": lambda a, pid: a.put(
        f"/v1/programs/{pid}/ladders/status", json={**status_ladder(), "name": "Hijacked"}
    ),
    "activity in that program": lambda a, pid: a.post(
        "/v1/activities", json=activity_body("mallory", "visit", at=AT, program_id=pid)
    ),
    "batch in that program": lambda a, pid: a.post(
        "/v1/activities/batch",
        json={"activities": [activity_body("mallory", "visit", at=AT, program_id=pid)]},
    ),
    "status in that program": lambda a, pid: a.get(
        "/v1/members/alice/status", params={"program_id": pid}
    ),
}


@pytest.mark.parametrize("request_", PROGRAM_REQUESTS.values(), ids=list(PROGRAM_REQUESTS))
def test_another_tenants_program_id_answers_like_one_that_does_not_exist(
    tenant: Tenant, outsider: Api, request_: Callable[[Api, int], Any]
) -> None:
    """Issue 2 §7: another tenant's program id is 404 exactly like a missing id (same
    status, code, message shape), and the owner's data is untouched."""
    if request_ is PROGRAM_REQUESTS["status in that program"]:
        activity(outsider, "alice", "visit", at=AT)  # so that only the program is foreign
    before = snapshot(tenant.api, tenant.program_id)
    theirs = request_(outsider, tenant.program_id)
    missing = request_(outsider, MISSING_ID)
    same_answer(theirs, missing, tenant.program_id, MISSING_ID)
    assert theirs.json()["error"]["code"] == "program_not_found"
    assert snapshot(tenant.api, tenant.program_id) == before


MEMBER_REQUESTS: dict[str, Callable[[Api, str], Any]] = {
    "status": lambda a, m: a.get(f"/v1/members/{m}/status"),
    "status as of": lambda a, m: a.get(f"/v1/members/{m}/status", params={"as_of": AT}),
    "history": lambda a, m: a.get(f"/v1/members/{m}/history"),
}


@pytest.mark.parametrize("request_", MEMBER_REQUESTS.values(), ids=list(MEMBER_REQUESTS))
def test_another_tenants_member_id_answers_like_one_that_does_not_exist(
    tenant: Tenant, outsider: Api, request_: Callable[[Api, str], Any]
) -> None:
    """Issue 2 §7: member ids are per tenant: "alice" of another tenant is not found, in
    exactly the words used for a member nobody has."""
    theirs = request_(outsider, "alice")
    missing = request_(outsider, "zed")
    same_answer(theirs, missing, "alice", "zed")
    assert theirs.json()["error"]["code"] == "member_not_found"


def test_another_tenants_activity_cannot_be_returned(tenant: Tenant, outsider: Api) -> None:
    """Issue 2 §7, R13: returning another tenant's purchase, by id or by idempotency key,
    is 404 ``activity_not_found`` exactly like an activity that does not exist; the owner's
    spend is unchanged."""
    activity(outsider, "alice", "visit", at=AT)
    before = snapshot(tenant.api, tenant.program_id)
    by_id = [
        outsider.post(
            "/v1/activities", json=activity_body("alice", "return", at=AT, reverses=target)
        )
        for target in (tenant.purchase_id, "00000000-0000-4000-8000-000000000000")
    ]
    same_answer(by_id[0], by_id[1], tenant.purchase_id, "00000000-0000-4000-8000-000000000000")
    assert by_id[0].json()["error"]["code"] == "activity_not_found"
    by_key = [
        outsider.post(
            "/v1/activities", json=activity_body("alice", "return", at=AT, reverses_key=target)
        )
        for target in ("alice-1", "never-used")
    ]
    same_answer(by_key[0], by_key[1], "alice-1", "never-used")
    assert snapshot(tenant.api, tenant.program_id) == before


def test_idempotency_keys_belong_to_one_tenant(tenant: Tenant, outsider: Api) -> None:
    """R12, issue 2 §3: an idempotency key is per tenant: another tenant may use the same
    key with another body (201, not 409), and the first tenant's activity is untouched."""
    body = activity_body("alice", "visit", at=AT, key="alice-1")
    response = outsider.post("/v1/activities", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["replayed"] is False
    replay = tenant.api.post(
        "/v1/activities",
        json=activity_body("alice", "purchase", at=AT, key="alice-1", amount_minor=2000),
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["id"] == tenant.purchase_id


def test_the_same_member_id_in_two_tenants_is_two_members(tenant: Tenant, outsider: Api) -> None:
    """Semantics §1: members are identified inside a tenant; "alice" enrolled by another
    tenant is a new member there and leaves the first tenant's "alice" alone."""
    before = snapshot(tenant.api, tenant.program_id)
    enrolled = outsider.put("/v1/members/alice", json={"enrolled_at": AT})
    assert enrolled.status_code == 201, enrolled.text
    outsider_view = outsider.get("/v1/members/alice/status").json()
    assert outsider_view["program_id"] != tenant.program_id
    assert snapshot(tenant.api, tenant.program_id) == before


def test_listing_programs_shows_only_the_callers_own(tenant: Tenant, outsider: Api) -> None:
    """Issue 2 §7: every query is confined to the key's tenant."""
    mine = [p["id"] for p in tenant.api.get("/v1/programs").json()]
    theirs = [p["id"] for p in outsider.get("/v1/programs").json()]
    assert mine == [tenant.program_id]
    assert len(theirs) == 1
    assert tenant.program_id not in theirs
