"""Stored status documents (issue 2, item 11a): a status read served from a stored
document must never differ from the status computed afresh (R5-R7, R19, R27).

The app here does *not* verify documents (the rest of the suite does), so that a test can
see whether a read was served: it overwrites the stored body with a marker (an empty
``ladders`` list) and reads again. A read after any change to what the status depends on
must show the real status, not the marker. PostgreSQL only: SQLite always computes."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.api.helpers import activity, assign, criterion, level, program, sweep, unassign
from tests.conftest import Api, make_key
from tierwise.api.app import create_app
from tierwise.services.runtime import Runtime
from tierwise.services.status_documents import envelope
from tierwise.services.tenants import ALL_SCOPES
from tierwise.settings import Settings

ROLLING_30 = {"type": "rolling_days", "days": 30}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

    def set(self, instant: str) -> None:
        self.now = datetime.fromisoformat(instant)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app_api(settings: Settings, clock: Clock, tenant_name: str) -> Iterator[Api]:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("status documents are stored on PostgreSQL only")
    # Keys are remembered, as in production: the fast path (api/stored_status.py) only
    # serves callers whose key was verified moments ago.
    quiet = settings.model_copy(update={"status_docs_verify": False, "auth_cache_seconds": 60})
    rt = Runtime(quiet, clock=clock)
    with TestClient(create_app(quiet, runtime=rt), raise_server_exceptions=False) as client:
        yield Api(client, make_key(client, tenant_name, ALL_SCOPES))
        assert client.portal is not None
        client.portal.call(rt.close)


def _sql(api: Api, statement: str, **params: Any) -> None:
    rt = api.runtime()

    async def run() -> None:
        async with rt.engine.begin() as conn:
            await conn.execute(text(statement), params)

    assert api.client.portal is not None
    api.client.portal.call(run)


def _mark(api: Api) -> None:
    """Overwrite every stored document of the tenant's members with the marker."""
    _sql(
        api,
        "UPDATE status_docs SET body = '[]' WHERE member_id IN "
        "(SELECT m.id FROM members m JOIN api_keys k ON k.tenant_id = m.tenant_id "
        "WHERE k.key_id = :key_id)",
        key_id=api.key.key_id,
    )


def _read(api: Api, member: str = "m1", **params: Any) -> dict[str, Any]:
    response = api.get(f"/v1/members/{member}/status", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _served(api: Api, member: str = "m1") -> bool:
    """Whether the next read comes from the stored document (the marker shows)."""
    _mark(api)
    ladders: list[Any] = _read(api, member)["ladders"]
    return ladders == []


def _setup(api: Api, **ladder: Any) -> dict[str, Any]:
    prog = program(api)
    body = {
        "key": "status",
        "name": "Status",
        "validity": {"type": "fixed_months", "months": 12},
        "levels": [
            level("bronze", 1, is_floor=True),
            level("silver", 2, criterion("points_earned", 500, window=ROLLING_30)),
            level("gold", 3, criterion("points_earned", 1000), is_assignable=True),
        ],
        **ladder,
    }
    response = api.post(f"/v1/programs/{prog['id']}/ladders", json=body)
    assert response.status_code == 201, response.text
    activity(api, "m1", points=600, at="2026-03-09T10:00:00Z")
    return prog


def _level(view: dict[str, Any]) -> str | None:
    current = view["ladders"][0]["current_level"]
    return None if current is None else str(current["key"])


def test_a_second_read_is_served_from_the_stored_document(app_api: Api, clock: Clock) -> None:
    _setup(app_api)
    first = _read(app_api)
    assert _level(first) == "silver"
    again = _read(app_api)
    assert again == first  # same clock, same answer
    assert _served(app_api)
    clock.set("2026-03-10T12:30:00+00:00")
    assert _read(app_api)["as_of"] == "2026-03-10T12:30:00Z"  # R27: as_of is the read's


def test_the_served_document_is_byte_for_byte_the_computed_response(app_api: Api) -> None:
    _setup(app_api)
    computed = app_api.get("/v1/members/m1/status")
    served = app_api.get("/v1/members/m1/status")
    assert served.content == computed.content
    assert served.headers["content-type"] == "application/json"


def test_envelope_matches_the_response_model_encoding() -> None:
    from tierwise.api.schemas import StatusOut

    at = datetime(2026, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)
    model = StatusOut(member_id='a "quoted" \u00e9 id', program_id=7, as_of=at, ladders=[])
    assert envelope(model.member_id, 7, at, b"[]") == model.model_dump_json().encode()


Change = Callable[[Api, Clock, dict[str, Any]], None]


def _activity(api: Api, clock: Clock, prog: dict[str, Any]) -> None:
    activity(api, "m1", points=500, at="2026-03-10T11:00:00Z")


def _visit(api: Api, clock: Clock, prog: dict[str, Any]) -> None:
    activity(api, "m1", "visit", at="2026-03-10T11:00:00Z")


def _return(api: Api, clock: Clock, prog: dict[str, Any]) -> None:
    activity(api, "m1", "purchase", amount_minor=1000, key="big", at="2026-03-10T11:00:00Z")
    _read(api)
    _mark(api)
    activity(api, "m1", "return", reverses_key="big", at="2026-03-10T11:30:00Z")


def _assignment(api: Api, clock: Clock, prog: dict[str, Any]) -> None:
    assign(api, "m1", "gold", mode="pin")


def _unassignment(api: Api, clock: Clock, prog: dict[str, Any]) -> None:
    assign(api, "m1", "gold", mode="pin")
    _read(api)
    _mark(api)
    unassign(api, "m1")


def _publish(api: Api, clock: Clock, prog: dict[str, Any]) -> None:
    response = api.get(f"/v1/programs/{prog['id']}/ladders/status")
    assert response.status_code == 200, response.text
    definition = response.json()["definition"]
    for item in definition["levels"]:
        if item["key"] == "silver":
            item["attain"]["criteria"][0]["threshold"] = 700
    put = api.put(f"/v1/programs/{prog['id']}/ladders/status", json=definition)
    assert put.status_code == 200, put.text


def _program_edit(api: Api, clock: Clock, prog: dict[str, Any]) -> None:
    response = api.patch(f"/v1/programs/{prog['id']}", json={"earn_rate": "2"})
    assert response.status_code == 200, response.text


def _midnight(api: Api, clock: Clock, prog: dict[str, Any]) -> None:
    clock.set("2026-03-11T00:00:00+00:00")


def _expiry_and_sweep(api: Api, clock: Clock, prog: dict[str, Any]) -> None:
    clock.set("2027-03-09T09:59:59+00:00")
    _read(api)
    _mark(api)
    clock.set("2027-03-09T10:00:00+00:00")
    sweep(api, "2027-03-09T10:00:00Z")


CHANGES: dict[str, Change] = {
    "activity": _activity,
    "visit (orders and spend untouched)": _visit,
    "return (R13)": _return,
    "assignment (R20)": _assignment,
    "removal of an assignment (R21)": _unassignment,
    "ladder published (R25)": _publish,
    "program edited": _program_edit,
    "local midnight (rolling window moves)": _midnight,
    "expiry passed, then swept (R15)": _expiry_and_sweep,
}


@pytest.mark.parametrize("change", list(CHANGES.values()), ids=list(CHANGES))
def test_no_document_outlives_a_change(app_api: Api, clock: Clock, change: Change) -> None:
    prog = _setup(app_api)
    _read(app_api)
    _mark(app_api)
    change(app_api, clock, prog)
    served = _read(app_api)
    assert served["ladders"] != [], "a stale stored document was served"
    fresh = _read(app_api, as_of=clock.now.isoformat())
    assert served["ladders"] == fresh["ladders"]


def test_reads_as_of_an_instant_or_of_one_ladder_are_computed(app_api: Api) -> None:
    _setup(app_api)
    _read(app_api)
    _mark(app_api)
    assert _read(app_api, as_of="2026-03-10T12:00:00Z")["ladders"] != []
    assert _read(app_api, ladder="status")["ladders"] != []
    assert _read(app_api)["ladders"] == []


def test_a_future_dated_activity_keeps_the_status_computed(app_api: Api, clock: Clock) -> None:
    _setup(app_api)
    clock.set("2026-03-08T12:00:00+00:00")  # the member's activity lies ahead
    _read(app_api)
    assert not _served(app_api)


def test_every_credential_style_reads_the_same_status(app_api: Api) -> None:
    _setup(app_api)
    expected = _read(app_api)["ladders"]
    key = app_api.key
    basic = base64.b64encode(f"{key.key_id}:{key.secret}".encode()).decode()
    for headers in (
        {"X-API-Key": key.secret},
        {"Authorization": f"Basic {basic}"},
        {"Authorization": f"Bearer {key.secret}"},
    ):
        response = app_api.client.get("/v1/members/m1/status", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["ladders"] == expected


def test_the_fast_path_never_bypasses_auth_scope_or_tenancy(app_api: Api) -> None:
    _setup(app_api)
    _read(app_api)  # stores the document
    client = app_api.client
    no_key = client.get("/v1/members/m1/status")
    assert no_key.status_code == 401
    wrong = client.get("/v1/members/m1/status", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    writer = make_key(client, app_api.key.tenant, ["activities:write"])
    headers = {"Authorization": f"Bearer {writer.secret}"}
    assert client.get("/v1/members/m1/status", headers=headers).status_code == 403
    assert client.get("/v1/members/m1/status", headers=headers).status_code == 403
    other = Api(client, make_key(client, f"other-{app_api.key.tenant}", ALL_SCOPES))
    assert other.get("/v1/members/m1/status").status_code == 404
    assert other.get("/v1/members/m1/status").status_code == 404
    assert app_api.get("/v1/members/nobody/status").status_code == 404
