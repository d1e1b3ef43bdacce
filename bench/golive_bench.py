"""Impact preview and go-live benchmark (issue 4), on PostgreSQL.

    .venv/bin/python -m bench.golive_bench --members 100000 [--sql-timing] [--profile]

Seeds N members with standings and daily buckets (the sweep benchmark's seeding), opens a
draft of the ladder that raises every threshold, and times (1) the impact preview over
all members and (2) the go-live re-evaluation job after approval with
``apply_downgrades_now`` (every member evaluated, movers written). As the bare reference
in the same run: one set-based SQL aggregate of the same figures. Prints figures, the
ratios, the CPU seconds of this process and of PostgreSQL (for this database) during
each, and a projection for 1,000,000 members against the targets (30 s and 90 s).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
import uuid

import asyncpg

from bench.sweep_bench import ADMIN, LADDER, Sampler, _time_statements, seed
from tierwise.db.migrate import upgrade
from tierwise.domain.ladder import Ladder
from tierwise.services import versions
from tierwise.services.golive import preview, run_job
from tierwise.services.runtime import Runtime
from tierwise.services.tenants import operator
from tierwise.settings import Settings


def _raised() -> Ladder:
    body = {**LADDER, "levels": [dict(level) for level in LADDER["levels"]]}  # type: ignore[index]
    for level in body["levels"]:
        for criterion in level.get("attain", {}).get("criteria", []):
            criterion["threshold"] = int(criterion["threshold"] * 1.5)
    return Ladder.model_validate(body)


def _report_cpu(label: str, n: int, took: float, own: float, pg: float) -> None:
    cores = os.cpu_count() or 1
    print(
        f"  {label} CPU: this process {own:.1f} s ({own / n * 1e6:.0f} us/member), "
        f"PostgreSQL {pg:.1f} s ({pg / n * 1e6:.0f} us/member); on {cores} idle CPUs at "
        f"least {(own + pg) / cores:.1f} s (1,000,000: {(own + pg) / cores / n * 1e6:.0f} s); "
        f"load average {os.getloadavg()[0]:.1f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--sql-timing", action="store_true", help="time each SQL statement")
    parser.add_argument("--profile", action="store_true", help="cProfile preview and job")
    parser.add_argument(
        "--index",
        action="append",
        default=[],
        help="DDL run after seeding (e.g. an index to measure); repeatable",
    )
    args = parser.parse_args()
    name = f"tierwise_golive_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://127.0.0.1:5432/{name}"
    try:
        await asyncio.to_thread(upgrade, Settings(database_url=url))
        _, program_id = await seed(url, args.members)
        conn = await asyncpg.connect(f"postgresql://127.0.0.1:5432/{name}")
        for ddl in args.index:
            await conn.execute(ddl)
        if args.index:
            await conn.execute("ANALYZE")
        started = time.perf_counter()
        await conn.fetch(
            "SELECT member_id, sum(spend), sum(orders), sum(points_earned), sum(points_balance) "
            "FROM member_days WHERE program_id = $1 GROUP BY member_id",
            program_id,
        )
        bare = time.perf_counter() - started
        await conn.close()
        rt = Runtime(Settings(database_url=url, sweep_interval_seconds=0))
        # Open the connections the job uses at once (it keeps two transactions in
        # flight) up front, so that the pool never has to open one mid-run on a server
        # that other clients may have filled.
        held = [await rt.engine.connect() for _ in range(4)]
        for held_conn in held:
            await held_conn.close()
        timings = _time_statements(rt) if args.sql_timing else None
        profiler = cProfile.Profile() if args.profile else None
        caller = await operator(rt, "bench")
        draft = await versions.create_draft(rt, caller, program_id, _raised())
        sampler, cpu = Sampler(name), time.process_time()
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        found = await preview(rt, caller, program_id, "status", draft.number)
        if profiler is not None:
            profiler.disable()
        took_preview = time.perf_counter() - started
        preview_cpu, preview_pg = time.process_time() - cpu, sampler.stop()
        await versions.submit(rt, caller, program_id, "status", draft.number)
        published = await versions.approve(
            rt, caller, program_id, "status", draft.number, apply_downgrades_now=True
        )
        assert published.job_uuid is not None
        sampler, cpu = Sampler(name), time.process_time()
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        job = await run_job(rt, published.job_uuid)
        if profiler is not None:
            profiler.disable()
        took_job = time.perf_counter() - started
        job_cpu, job_pg = time.process_time() - cpu, sampler.stop()
        await rt.close()
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        if timings is not None:
            print("  wall s  server CPU s   count  statement")
            ranked = sorted(timings.items(), key=lambda x: -x[1][1])[:12]
            for statement, (count, seconds, server) in ranked:
                print(f"  {seconds:6.2f}  {server:12.2f}  {count:6.0f}  {statement}")
        n = args.members
        print(f"members: {n:,}; bare set-based aggregate of their figures: {bare:.2f} s")
        print(
            f"impact preview: {took_preview:.1f} s = {n / took_preview:,.0f} members/s "
            f"(up {found.up}, down {found.down}, stay {found.stay}); "
            f"ratio preview/bare {took_preview / bare:.0f}"
        )
        _report_cpu("preview", n, took_preview, preview_cpu, preview_pg)
        print(
            f"go-live job: {took_job:.1f} s = {n / took_job:,.0f} members/s "
            f"(changes {job.changes}); ratio job/bare {took_job / bare:.0f}"
        )
        _report_cpu("go-live", n, took_job, job_cpu, job_pg)
        for label, took, target in (("preview", took_preview, 30), ("go-live", took_job, 90)):
            projected = took / n * 1_000_000
            verdict = "PASS" if projected <= target else "MISS"
            print(
                f"projected {label} for 1,000,000 members: {projected:.0f} s "
                f"(target <= {target} s): {verdict}"
            )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
