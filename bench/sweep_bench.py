"""Sweep benchmark (issue 3): N members whose checks are all due, on PostgreSQL.

    .venv/bin/python -m bench.sweep_bench --members 1000000

Seeds with set-based SQL (members, standings, daily buckets), then times
``tierwise.services.sweep.sweep`` and, as the bare reference in the same run, one
set-based SQL aggregate over the same buckets (what any sweep must at least read).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy import text

from tierwise.db.migrate import upgrade
from tierwise.domain.ladder import Ladder
from tierwise.services.programs import ProgramSpec, create_ladder, create_program
from tierwise.services.runtime import Runtime
from tierwise.services.sweep import sweep
from tierwise.services.tenants import create_key, operator
from tierwise.settings import Settings

ADMIN = "postgresql://127.0.0.1:5432/postgres"
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)

LADDER = {
    "key": "status",
    "name": "Status",
    "validity": {"type": "fixed_months", "months": 12},
    "downgrade": {"policy": "drop_one"},
    "levels": [
        {"key": "bronze", "name": "Bronze", "rank": 1, "is_floor": True},
        {
            "key": "silver",
            "name": "Silver",
            "rank": 2,
            "attain": {
                "criteria": [
                    {
                        "metric": "points_earned",
                        "window": {"type": "rolling_days", "days": 365},
                        "threshold": 500,
                    }
                ]
            },
        },
        {
            "key": "gold",
            "name": "Gold",
            "rank": 3,
            "attain": {
                "criteria": [
                    {
                        "metric": "points_earned",
                        "window": {"type": "rolling_days", "days": 365},
                        "threshold": 1000,
                    }
                ]
            },
        },
    ],
}


async def seed(url: str, members: int) -> tuple[int, int]:
    rt = Runtime(Settings(database_url=url))
    try:
        await create_key(rt, tenant="bench", scopes=["all"])
        caller = await operator(rt, "bench")
        program = await create_program(rt, caller, ProgramSpec(name="Bench"))
        row = await create_ladder(rt, caller, program.id, Ladder.model_validate(LADDER))
        async with rt.engine.begin() as conn:
            params = {
                "t": caller.tenant_id,
                "p": program.id,
                "l": row.id,
                "n": members,
                "due": AS_OF - timedelta(days=1),
                "start": AS_OF - timedelta(days=366),
                "exp": AS_OF - timedelta(days=1, seconds=1),
            }
            await conn.execute(
                text(
                    "INSERT INTO members (uuid, tenant_id, external_id, enrolled_at, "
                    "last_activity_at, created_at, updated_at) SELECT gen_random_uuid()::text, :t, "
                    "'m' || g, CAST(:start AS timestamptz), CAST(:start AS timestamptz) + interval '30 days', CAST(:start AS timestamptz), CAST(:start AS timestamptz) "
                    "FROM generate_series(1, :n) g"
                ),
                params,
            )
            await conn.execute(
                text(
                    "INSERT INTO member_tiers (tenant_id, member_id, ladder_id, level_key, "
                    "previous_level_key, achieved_at, cycle_start, expires_at, check_due_at, "
                    "due_at, grace_until, credit, assignment, created_at, updated_at) "
                    "SELECT :t, id, :l, CASE WHEN id % 2 = 0 THEN 'gold' ELSE 'silver' END, "
                    "'bronze', CAST(:start AS timestamptz), CAST(:start AS timestamptz), CAST(:exp AS timestamptz), CAST(:due AS timestamptz), CAST(:due AS timestamptz), NULL, 0, NULL, CAST(:start AS timestamptz), CAST(:start AS timestamptz) "
                    "FROM members WHERE tenant_id = :t"
                ),
                params,
            )
            # Activity in the window: a third keep their level, the rest fall short.
            await conn.execute(
                text(
                    "INSERT INTO metric_days (member_id, program_id, metric, day, value) "
                    "SELECT id, :p, 'points_earned', (CAST(:start AS timestamptz) + interval '30 days')::date, "
                    "CASE WHEN id % 3 = 0 THEN 1200 ELSE 300 END FROM members WHERE tenant_id = :t"
                ),
                params,
            )
            await conn.execute(
                text(
                    "INSERT INTO metric_totals (member_id, program_id, metric, value) "
                    "SELECT id, :p, 'points_earned', CASE WHEN id % 3 = 0 THEN 1200 ELSE 300 END "
                    "FROM members WHERE tenant_id = :t"
                ),
                params,
            )
        async with rt.engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
        return caller.tenant_id, program.id
    finally:
        await rt.close()


def _time_statements(rt: Runtime) -> dict[str, tuple[int, float]]:
    """Total time per statement kind, from SQLAlchemy's cursor events."""
    from sqlalchemy import event

    totals: dict[str, tuple[int, float]] = {}

    @event.listens_for(rt.engine.sync_engine, "before_cursor_execute")
    def _before(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        conn.info["t0"] = time.perf_counter()

    @event.listens_for(rt.engine.sync_engine, "after_cursor_execute")
    def _after(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        key = " ".join(statement.split())[:90]
        count, seconds = totals.get(key, (0, 0.0))
        totals[key] = (count + 1, seconds + time.perf_counter() - conn.info["t0"])

    return totals


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--sql-timing", action="store_true", help="time each SQL statement")
    args = parser.parse_args()
    name = f"tierwise_sweep_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://127.0.0.1:5432/{name}"
    try:
        await asyncio.to_thread(upgrade, Settings(database_url=url))
        started = time.perf_counter()
        _, program_id = await seed(url, args.members)
        print(f"seeded {args.members:,} due members in {time.perf_counter() - started:.1f} s")
        conn = await asyncpg.connect(f"postgresql://127.0.0.1:5432/{name}")
        started = time.perf_counter()
        await conn.fetch(
            "SELECT d.member_id, sum(d.value) FROM metric_days d JOIN member_tiers t "
            "ON t.member_id = d.member_id WHERE t.due_at <= $1 AND d.program_id = $2 "
            "AND d.day >= ($1::timestamptz - interval '365 days')::date GROUP BY d.member_id",
            AS_OF,
            program_id,
        )
        bare = time.perf_counter() - started
        await conn.close()
        rt = Runtime(Settings(database_url=url, db_pool_size=max(2, args.workers)))
        timings = _time_statements(rt) if args.sql_timing else None
        started = time.perf_counter()
        summaries = await asyncio.gather(
            *[sweep(rt, as_of=AS_OF, batch_size=args.batch_size) for _ in range(args.workers)]
        )
        took = time.perf_counter() - started
        again = await sweep(rt, as_of=AS_OF)
        await rt.close()
        if timings is not None:
            for statement, (count, seconds) in sorted(timings.items(), key=lambda x: -x[1][1])[:8]:
                print(f"  {seconds:6.2f} s  {count:6d}x  {statement}")
        handled = sum(s.standings for s in summaries)
        changes: dict[str, int] = {}
        for s in summaries:
            for k, v in s.changes.items():
                changes[k] = changes.get(k, 0) + v
        print(
            f"sweep: {handled:,} standings in {took:.1f} s = {handled / took:,.0f}/s; "
            f"changes {changes}; second sweep handled {again.standings}"
        )
        print(
            f"bare set-based aggregate of the same figures: {bare:.2f} s; "
            f"ratio sweep/bare = {took / bare:.1f}"
        )
        per_million = took / handled * 1_000_000
        print(
            f"projected for 1,000,000 due members: {per_million:.0f} s (target <= 60 s): "
            f"{'PASS' if per_million <= 60 else 'MISS'}"
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
