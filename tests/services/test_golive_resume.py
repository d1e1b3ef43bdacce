"""The go-live re-evaluation job is resumable (R25): it commits its cursor with every
batch, so a runner that stops (an exception, a process that dies mid-batch) leaves a job
that the next run finishes, handling every member exactly once.

The ladder, members and the submitted draft are made through the HTTP API; the approval
goes through the service (``versions.approve``), which queues the job without running it,
so the test drives ``golive.run_job`` itself with a small batch size.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import activity, history, ladder, level_key, only_ladder, program
from tests.conftest import Api
from tierwise.db.repos.versions import JobRow
from tierwise.services import golive
from tierwise.services import versions as version_service
from tierwise.services.runtime import Runtime
from tierwise.services.standing import Standings
from tierwise.services.tenants import operator
from tierwise.settings import Settings

BATCH = 2

# live: Silver 500, Gold 1,000; the draft: Silver 300, Gold 1,250, downgrades applied now.
# Members in creation (= id) order, so batches of two are [a b] [c d] [e f] [g].
POINTS = {"a": 1200, "b": 900, "c": 400, "d": 1300, "e": 350, "f": 100, "g": 1100}
BEFORE = {"a": "gold", "b": "silver", "c": None, "d": "gold", "e": None, "f": None, "g": "gold"}
AFTER = {
    "a": "silver",
    "b": "silver",
    "c": "silver",
    "d": "gold",
    "e": "silver",
    "f": None,
    "g": "silver",
}
MOVED = {m for m in POINTS if BEFORE[m] != AFTER[m]}  # a, c, e, g


class Interrupted(Exception):
    """Stands for a runner that stops: a crash, a deploy, a killed process."""


def ladder_body(silver: int, gold: int) -> dict[str, Any]:
    def level(key: str, rank: int, threshold: int) -> dict[str, Any]:
        criterion = {
            "metric": "points_earned",
            "threshold": threshold,
            "operator": ">=",
            "window": {"type": "lifetime"},
        }
        return {
            "key": key,
            "name": key.title(),
            "rank": rank,
            "attain": {"mode": "all", "criteria": [criterion]},
        }

    return {
        "key": "status",
        "name": "Status",
        "levels": [level("silver", 1, silver), level("gold", 2, gold)],
    }


def levels(api: Api) -> dict[str, str | None]:
    return {member: level_key(only_ladder(api, member)) for member in POINTS}


def definition_changes(api: Api, member: str) -> list[dict[str, Any]]:
    return [h for h in history(api, member) if h["source"] == "definition"]


def read_job(api: Api, job_uuid: str) -> dict[str, Any]:
    response = api.get(f"/v1/jobs/{job_uuid}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def queued_job(api: Api, client: TestClient, tenant_name: str) -> str:
    """Members placed under the live ladder, a draft submitted and approved (downgrades
    applied now); the uuid of the go-live job, not yet run."""
    pid = program(api)["id"]
    ladder(api, pid, ladder_body(500, 1000))
    for member, points in POINTS.items():
        activity(api, member, points=points)
    assert levels(api) == BEFORE
    response = api.post(f"/v1/programs/{pid}/ladders/status/versions", json=ladder_body(300, 1250))
    assert response.status_code == 201, response.text
    number = response.json()["number"]
    response = api.post(f"/v1/programs/{pid}/ladders/status/versions/{number}/submit")
    assert response.status_code == 200, response.text

    rt = api.runtime()

    async def approve() -> str | None:
        caller = await operator(rt, tenant_name)
        published = await version_service.approve(
            rt, caller, pid, "status", number, apply_downgrades_now=True
        )
        return published.job_uuid

    job_uuid = client.portal.call(approve)
    assert job_uuid is not None
    job = read_job(api, job_uuid)
    assert (job["state"], job["done"], job["total"]) == ("pending", 0, len(POINTS))
    assert levels(api) == BEFORE  # approval queued the job; nobody has moved yet
    return job_uuid


def run(
    client: TestClient,
    rt: Runtime,
    job_uuid: str,
    progress: Callable[[int, int], None] | None = None,
) -> JobRow:
    return client.portal.call(
        lambda: golive.run_job(rt, job_uuid, batch_size=BATCH, progress=progress)
    )


def assert_finished_once(api: Api, job_uuid: str) -> None:
    """Every member handled exactly once: one definition change per moved member, none
    for the others, the job done over all members with the right change counts."""
    assert levels(api) == AFTER
    for member in POINTS:
        changes = definition_changes(api, member)
        if member in MOVED:
            assert len(changes) == 1, (member, changes)
            assert (changes[0]["from_level"], changes[0]["to_level"]) == (
                BEFORE[member],
                AFTER[member],
            )
            expected_kind = "upgraded" if BEFORE[member] is None else "downgraded"
            assert changes[0]["kind"] == expected_kind
        else:
            assert changes == [], (member, changes)
    job = read_job(api, job_uuid)
    assert (job["state"], job["done"], job["total"]) == ("done", len(POINTS), len(POINTS))
    assert job["changes"] == {"upgraded": 2, "downgraded": 2}
    assert job["finished_at"] is not None


def test_r25_a_job_stopped_after_its_first_batch_resumes_where_it_stopped(
    api: Api, client: TestClient, tenant_name: str
) -> None:
    job_uuid = queued_job(api, client, tenant_name)
    rt = api.runtime()
    seen: list[tuple[int, int]] = []

    def stop(done: int, total: int) -> None:
        seen.append((done, total))
        raise Interrupted

    with pytest.raises(Interrupted):
        run(client, rt, job_uuid, stop)
    assert seen == [(BATCH, len(POINTS))]

    halfway = read_job(api, job_uuid)
    assert (halfway["state"], halfway["done"], halfway["total"]) == ("running", 2, 7)
    assert halfway["changes"] == {"downgraded": 1}  # a
    assert halfway["finished_at"] is None
    assert levels(api) == {**BEFORE, "a": "silver"}

    resumed: list[tuple[int, int]] = []
    final = run(client, rt, job_uuid, lambda done, total: resumed.append((done, total)))
    assert resumed[0] == (2 * BATCH, len(POINTS))  # from the cursor, not from the start
    assert resumed[-1] == (len(POINTS), len(POINTS))
    assert [done for done, _ in resumed] == sorted(done for done, _ in resumed)
    assert (final.state, final.done, final.total) == ("done", 7, 7)
    assert_finished_once(api, job_uuid)

    again = run(client, rt, job_uuid)  # a finished job is left as it is
    assert (again.state, again.done, again.changes) == ("done", 7, final.changes)
    assert_finished_once(api, job_uuid)


class _DiesInSecondBatch(Standings):
    """Standings whose second flush writes everything, then the process "dies" before the
    batch commits."""

    flushes = 0

    async def flush(self) -> None:
        await super().flush()
        type(self).flushes += 1
        if type(self).flushes == 2:
            raise Interrupted


def test_r25_a_runner_that_dies_mid_batch_loses_that_batch_and_a_new_process_finishes(
    api: Api,
    client: TestClient,
    tenant_name: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second batch is written and then lost with its transaction; a fresh runtime
    (a new process) resumes after the first batch and handles c and d once."""
    job_uuid = queued_job(api, client, tenant_name)
    monkeypatch.setattr(golive, "Standings", _DiesInSecondBatch)
    _DiesInSecondBatch.flushes = 0
    with pytest.raises(Interrupted):
        run(client, api.runtime(), job_uuid)
    monkeypatch.undo()

    halfway = read_job(api, job_uuid)
    assert (halfway["state"], halfway["done"]) == ("running", 2)
    assert halfway["changes"] == {"downgraded": 1}
    assert levels(api) == {**BEFORE, "a": "silver"}  # c's upgrade was rolled back
    assert definition_changes(api, "c") == []

    async def new_process() -> JobRow:
        rt = Runtime(settings)
        try:
            return await golive.run_job(rt, job_uuid, batch_size=BATCH)
        finally:
            await rt.close()

    final = asyncio.run(new_process())
    assert (final.state, final.done, final.total) == ("done", 7, 7)
    assert_finished_once(api, job_uuid)


ON_POSTGRES = os.environ.get("TIERWISE_TEST_DATABASE_URL", "").startswith("postgres")


def test_r25_two_runners_on_one_job_finish_it_together_handling_each_member_once(
    api: Api, client: TestClient, tenant_name: str
) -> None:
    """Two runners at once (the approving request's background task and the periodic
    sweep's ``run_pending`` can both pick up a job): both end without error with the
    finished job, and nobody is moved twice."""
    job_uuid = queued_job(api, client, tenant_name)
    rt = api.runtime()

    async def both() -> list[JobRow | BaseException]:
        return list(
            await asyncio.gather(
                golive.run_job(rt, job_uuid, batch_size=1),
                golive.run_job(rt, job_uuid, batch_size=1),
                return_exceptions=True,
            )
        )

    results = client.portal.call(both)
    assert_finished_once(api, job_uuid)
    assert [(r.state, r.done) if isinstance(r, JobRow) else repr(r) for r in results] == [
        ("done", 7),
        ("done", 7),
    ]
