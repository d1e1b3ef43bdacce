"""R15: the sweep leaves a standing alone while another transaction works on its member
(an activity, an assignment or a go-live locks the member row before it reads the
standing), so neither change overwrites the other; the standing stays due and the next
run handles it. PostgreSQL only: SQLite runs one writer at a time."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.api.helpers import activity, criterion, level, program, sweep
from tests.conftest import Api
from tierwise.settings import Settings

ROLLING_30 = {"type": "rolling_days", "days": 30}


def _ladder() -> dict[str, object]:
    return {
        "key": "status",
        "name": "Status",
        "validity": {"type": "fixed_months", "months": 1},
        "levels": [
            level("bronze", 1, is_floor=True),
            level("silver", 2, criterion("points_earned", 100, window=ROLLING_30)),
        ],
    }


def test_r15_a_sweep_skips_a_standing_whose_member_another_transaction_holds(
    api: Api, settings: Settings
) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's")
    prog = program(api)
    created = api.post(f"/v1/programs/{prog['id']}/ladders", json=_ladder())
    assert created.status_code == 201, created.text
    activity(api, "busy", points=200, at="2025-01-10T12:00:00Z")
    member_id = api.get("/v1/members/busy").json()["id"]
    dsn = make_url(settings.database_url).set(drivername="postgresql")

    async def hold_then_release(release: asyncio.Event, held: asyncio.Event) -> None:
        conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
        try:
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM members WHERE id = $1 FOR UPDATE", member_id)
                held.set()
                # Released by the test, or after a few seconds: a sweep that waited for
                # the lock instead of skipping the standing then handles it, and fails
                # the test instead of hanging it.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(release.wait(), timeout=3)
        finally:
            await conn.close()

    portal = api.client.portal
    assert portal is not None
    release = portal.call(asyncio.Event)
    held = portal.call(asyncio.Event)
    future = portal.start_task_soon(hold_then_release, release, held)
    portal.call(held.wait)
    try:
        assert sweep(api, "2025-03-01T00:00:00Z")["changes"] == {}
    finally:
        portal.call(release.set)
        future.result(timeout=10)
    assert sweep(api, "2025-03-01T00:00:00Z")["changes"] == {"downgraded": 1}
