"""The set-based re-evaluation (R25, impact preview) answers as the member-by-member one.

On PostgreSQL the go-live job and the impact preview sum members' figures in the database
(``qualify_sql``) and decide once per distinct situation (``reevaluation.Decider``); the
reference is the Python path, which loads each member's buckets and decides each member
with ``verdict``. A varied population (a zone with daylight saving, activity over two
years and some after the instant evaluated, several window types, operators, ANY/ALL,
built-in metrics and a custom counter (stored apart, revision e7b3d1f9a2c4),
maintain rules, pins and floor assignments, a level the new version removes) must get
the same figures, verdicts and preview from both. On SQLite both are the Python path.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import activity_body, assign, batch, criterion, enrol, level, program
from tests.conftest import Api
from tierwise.db.repos import programs as programs_repo
from tierwise.domain.calendar import zone
from tierwise.domain.evaluation import qualified_level
from tierwise.domain.ladder import Ladder
from tierwise.domain.lifecycle import enter
from tierwise.domain.state import Assignment, AssignmentMode, TierState
from tierwise.domain.windows import resolve
from tierwise.services import golive, qualify_sql, reevaluation
from tierwise.services import versions as version_service
from tierwise.services.runtime import Runtime
from tierwise.services.tenants import operator
from tierwise.settings import Settings

ZONE = "America/New_York"
MEMBERS = 60


def rolling(days: int) -> dict[str, Any]:
    return {"type": "rolling_days", "days": days}


def live_body() -> dict[str, Any]:
    return {
        "key": "status",
        "name": "Status",
        "validity": {"type": "fixed_months", "months": 12},
        "downgrade": {"policy": "to_qualifying"},
        "levels": [
            level("bronze", 1, is_floor=True),
            level(
                "silver",
                2,
                criterion("points_earned", 300, window=rolling(90)),
                criterion("visits", 3, window={"type": "calendar_year"}),
                criterion("counter:reviews", 3, window=rolling(90)),
                mode="any",
            ),
            level(
                "gold",
                3,
                criterion("points_earned", 1000, window={"type": "rolling_months", "months": 12}),
                criterion("points_earned", 1500, operator=">"),
                maintain={
                    "criteria": [
                        criterion(
                            "points_earned",
                            800,
                            window={"type": "fixed_year", "month": 4, "day": 1},
                        )
                    ]
                },
            ),
            level("platinum", 4, criterion("points_earned", 700, window=rolling(30))),
        ],
    }


def draft_body() -> Ladder:
    """Other thresholds, other operators, a downgrade policy, and platinum removed."""
    body = live_body()
    body["downgrade"] = {"policy": "drop_one"}
    body["levels"] = [
        level("bronze", 1, is_floor=True),
        level(
            "silver",
            2,
            criterion("points_earned", 400, window=rolling(60)),
            criterion("visits", 4, window={"type": "calendar_year"}),
            criterion("visits", 0, operator="==", window=rolling(7)),
            mode="any",
        ),
        level(
            "gold",
            3,
            criterion("points_earned", 1200, window={"type": "rolling_months", "months": 6}),
            criterion("visits", 9, operator="<", window=rolling(365)),
            criterion("counter:reviews", 1),
            maintain={
                "mode": "any",
                "criteria": [
                    criterion(
                        "points_earned", 900, window={"type": "fixed_year", "month": 4, "day": 1}
                    ),
                    criterion("points_earned", 2000),
                ],
            },
        ),
    ]
    return Ladder.model_validate(body)


@pytest.fixture
def world(api: Api) -> tuple[int, datetime]:
    """A program in New York with the live ladder and a varied population; returns the
    program id and the instant to evaluate at (some members have activity after it)."""
    pid = program(api, time_zone=ZONE)["id"]
    response = api.post(f"/v1/programs/{pid}/ladders", json=live_body())
    assert response.status_code == 201, response.text
    rng = random.Random(4)
    now = datetime.now(UTC).replace(microsecond=0)
    at = now - timedelta(days=2)
    bodies = []
    for i in range(MEMBERS):
        member = f"m{i:03d}"
        if i % 9 == 4:  # enrolled, no activity
            enrol(api, member, (at - timedelta(days=400 + i)).isoformat())
            continue
        for _ in range(rng.randrange(1, 7)):
            # Mostly in the past two years; some near local midnights; some after ``at``.
            when = at - timedelta(days=rng.randrange(0, 730), seconds=rng.randrange(86400))
            if rng.random() < 0.1:
                when = at + timedelta(seconds=rng.randrange(1, 86400))
            kind = rng.choice(["points_credit", "points_credit", "visit", "counter"])
            fields: dict[str, Any] = (
                {"points": rng.choice([50, 150, 400, 700, 1200])}
                if kind == "points_credit"
                else {"counter": "reviews", "quantity": rng.randrange(1, 3)}
                if kind == "counter"
                else {}
            )
            bodies.append(activity_body(member, kind, at=when.isoformat(), **fields))
    # Activity right at, just after and just before every window's first local midnight.
    edges = sorted(
        {
            span.start
            for ladder in (Ladder.model_validate(live_body()), draft_body())
            for _, window in ladder.measure_keys()
            if (span := resolve(window, as_of=at, tz=zone(ZONE), enrolled_at=at, tier_start=None))
            and span.start is not None
        }
    )
    assert len(edges) >= 5
    for j, edge in enumerate(edges * 3):
        member = f"m{(7 * j) % MEMBERS:03d}"
        for when in (edge, edge + timedelta(hours=1), edge - timedelta(seconds=1), at):
            bodies.append(
                activity_body(member, "points_credit", at=when.isoformat(), points=100 + j)
            )
            bodies.append(activity_body(member, "visit", at=when.isoformat()))
    for start in range(0, len(bodies), 50):
        batch(api, bodies[start : start + 50])
    for n, i in enumerate(range(0, MEMBERS, 5)):
        mode = "pin" if n % 2 else "floor"
        assign(api, f"m{i:03d}", ["silver", "gold", "platinum"][n // 2 % 3], mode=mode)
    return pid, at


def _call(client: TestClient, fn: Any) -> Any:
    assert client.portal is not None
    return client.portal.call(fn)


def test_sql_figures_and_verdicts_match_the_python_path(
    api: Api, client: TestClient, tenant_name: str, world: tuple[int, datetime]
) -> None:
    pid, at = world
    rt = api.runtime()
    draft = draft_body()

    async def compare() -> int:
        caller = await operator(rt, tenant_name)
        async with rt.transaction() as conn:
            program_row = next(
                p for p in await programs_repo.programs_of(conn, caller.tenant_id) if p.id == pid
            )
            row = (
                await programs_repo.ladders(
                    conn, rt.definitions, tenant_id=caller.tenant_id, program_id=pid
                )
            )[0]
            assert row.definition is not None
            found = await reevaluation.batch(
                conn, tenant_id=caller.tenant_id, ladder_id=row.id, after_id=0, limit=10_000
            )
            assert len(found.members) == MEMBERS
            states = found.states
            assert {s.level_key for s in states.values()} >= {"bronze", "silver", "gold"}
            later = [m for m in found.members if not qualify_sql.exact_in_sql(m, at)]
            assert 0 < len(later) < MEMBERS  # both paths are exercised
            for ladder in (row.definition, draft):
                keys = ladder.measure_keys()
                fast = await reevaluation.measures_of(
                    conn,
                    program=program_row,
                    ladder=ladder,
                    members=found.members,
                    states=states,
                    at=at,
                )
                slow = await reevaluation.measure_in_python(
                    conn,
                    program=program_row,
                    keys=keys,
                    members=found.members,
                    states=states,
                    at=at,
                )
                assert {m: dict(v) for m, v in fast.items()} == {
                    m: dict(v) for m, v in slow.items()
                }
                assert any(any(v.values()) for v in slow.values())
                for now in (True, False):
                    verdicts = await reevaluation.evaluate(
                        conn,
                        program=program_row,
                        ladder=ladder,
                        old=row.definition,
                        members=found.members,
                        states=states,
                        at=at,
                        downgrades_now=now,
                    )
                    expected = [
                        reevaluation.verdict(
                            m,
                            states.get(m.id, TierState()),
                            ladder,
                            row.definition,
                            qualified_level(ladder, slow[m.id]),
                            slow[m.id],
                            downgrades_now=now,
                        )
                        for m in found.members
                    ]
                    assert verdicts == expected
            return len(later)

    assert _call(client, compare) > 0


def test_the_preview_matches_the_python_path(
    api: Api,
    client: TestClient,
    tenant_name: str,
    world: tuple[int, datetime],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pid, at = world
    rt = Runtime(settings, clock=lambda: at)

    async def draft() -> int:
        caller = await operator(rt, tenant_name)
        return (await version_service.create_draft(rt, caller, pid, draft_body())).number

    async def run(batch_size: int) -> dict[str, Any]:
        caller = await operator(rt, tenant_name)
        found = await golive.preview(
            rt, caller, pid, "status", number, sample_size=5, batch_size=batch_size
        )
        return {k: v for k, v in asdict(found).items() if k != "computed_at"}

    try:
        number = _call(client, draft)
        fast = _call(client, lambda: run(golive.PREVIEW_BATCH))
        fast_small = _call(client, lambda: run(7))
        monkeypatch.setattr(qualify_sql, "shared_spans", lambda *a, **k: None)
        monkeypatch.setattr(reevaluation.Decider, "decide", reevaluation.Decider.decide_one)
        slow = _call(client, lambda: run(7))
    finally:
        _call(client, rt.close)
    assert fast["members"] == MEMBERS and fast["up"] + fast["down"] > 5
    assert fast == slow
    assert fast_small == slow


VALIDITIES: list[dict[str, Any]] = [
    {"type": "none"},
    {"type": "fixed_months", "months": 12},
    {"type": "enrolment_anniversary"},
    {"type": "fixed_date", "month": 3, "day": 31, "min_stay_months": 6},
    {"type": "calendar_year", "extend_months": 2},
    {"type": "fixed_year", "month": 7, "day": 1},
    {"type": "inactivity", "inactivity_days": 90},
]


def test_entered_is_enter() -> None:
    """``golive.entered`` builds the state ``lifecycle.enter`` does, for every validity
    type, per-level validity, check schedule, zone, and standings with assignments,
    grace, credit and later instants."""
    rng = random.Random(7)
    base = datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    assignment = Assignment("gold", AssignmentMode.FLOOR, "vip", "ops", base, base)
    cases = 0
    for validity in VALIDITIES:
        for schedule in ("daily", "month_end"):
            body = live_body()
            body["validity"] = validity
            body["check_schedule"] = schedule
            body["levels"][2]["validity"] = rng.choice(VALIDITIES)
            ladder = Ladder.model_validate(body)
            for _ in range(40):
                tz = zone(rng.choice(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]))
                at = base + timedelta(days=rng.randrange(800), seconds=rng.randrange(86400))
                enrolled = at - timedelta(days=rng.randrange(1, 900), seconds=rng.randrange(86400))
                last = rng.choice([None, at - timedelta(hours=rng.randrange(1, 2000))])
                state = TierState(
                    rng.choice([None, "bronze", "silver", "gold"]),
                    enrolled,
                    enrolled + timedelta(days=3),
                    at + timedelta(days=9),
                    at + timedelta(days=10),
                    rng.choice([None, "silver"]),
                    rng.choice([None, assignment]),
                    rng.choice([None, at + timedelta(days=1)]),
                    rng.choice([0, 250]),
                )
                for target in (None, *ladder.levels):
                    expected = enter(
                        ladder,
                        state,
                        target,
                        at,
                        tz=tz,
                        enrolled_at=enrolled,
                        last_activity_at=last,
                    )
                    found = golive.entered(
                        ladder,
                        state,
                        target,
                        at,
                        tz=tz,
                        enrolled_at=enrolled,
                        last_activity_at=last,
                    )
                    assert found == expected
                    cases += 1
    assert cases > 2000
