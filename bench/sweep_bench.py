"""Sweep benchmark (issue 3): N members whose checks are all due, on PostgreSQL.

    .venv/bin/python -m bench.sweep_bench --members 1000000

Seeds with set-based SQL (members, standings, daily buckets), then times the sweep and,
as the bare reference in the same run, one set-based SQL aggregate over the same buckets
(what any sweep must at least read).

``--workers N`` runs the sweep as ``tierwise sweep --workers N`` does: N processes, each
claiming its own batches (``FOR UPDATE SKIP LOCKED``). ``--spread DAYS`` spreads the
members' tier starts (and so their due instants) over that many days instead of giving
everyone the same instant, so that nothing computed for one member serves the next.
Besides the wall time the run reports CPU seconds: the sweep processes' own and the
PostgreSQL server's (this database's backends plus the WAL writer, checkpointer and
background writer), which tell where the time goes even on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import text

from tierwise.db.migrate import upgrade
from tierwise.domain.ladder import Ladder
from tierwise.services.programs import ProgramSpec, create_ladder, create_program
from tierwise.services.runtime import Runtime
from tierwise.services.sweep import SweepSummary, sweep
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


async def seed(url: str, members: int, spread_days: int = 0) -> tuple[int, int]:
    """``members`` members, each holding Silver or Gold since 366 days (minus up to
    ``spread_days - 1`` days) before ``AS_OF``, so that every check is due by ``AS_OF``."""
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
                "spread": max(1, spread_days),
                "start": AS_OF - timedelta(days=366),
            }
            # Member g started on start - (g % spread) days; with fixed_months(12) its
            # level expires a year later minus one second and its check is due then.
            shift = "(CAST(:start AS timestamptz) - ((g % :spread) * interval '1 day'))"
            await conn.execute(
                text(
                    "INSERT INTO members (uuid, tenant_id, external_id, enrolled_at, "
                    "last_activity_at, created_at, updated_at) SELECT gen_random_uuid()::text, "
                    f":t, 'm' || g, {shift}, {shift} + interval '30 days', {shift}, {shift} "
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
                    "'bronze', enrolled_at, enrolled_at, "
                    "enrolled_at + interval '12 months' - interval '1 second', "
                    "enrolled_at + interval '12 months', enrolled_at + interval '12 months', "
                    "NULL, 0, NULL, enrolled_at, enrolled_at "
                    "FROM members WHERE tenant_id = :t"
                ),
                params,
            )
            # Activity in the window: a third keep their level, the rest fall short.
            await conn.execute(
                text(
                    "INSERT INTO member_days (member_id, program_id, day, points_earned) "
                    "SELECT id, :p, last_activity_at::date, "
                    "CASE WHEN id % 3 = 0 THEN 1200 ELSE 300 END FROM members WHERE tenant_id = :t"
                ),
                params,
            )
            await conn.execute(
                text(
                    "INSERT INTO member_totals (member_id, program_id, points_earned) "
                    "SELECT id, :p, CASE WHEN id % 3 = 0 THEN 1200 ELSE 300 END "
                    "FROM members WHERE tenant_id = :t"
                ),
                params,
            )
        async with rt.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
        return caller.tenant_id, program.id
    finally:
        await rt.close()


# -- measuring ----------------------------------------------------------------------------

_AUXILIARY = ("walwriter", "checkpointer", "background writer")


def _postgres_processes(database: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL process serving ``database`` (backends,
    autovacuum workers) and by the server's WAL writer, checkpointer and background
    writer. Needs the server on this machine (``/proc``); empty when it is not."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().decode(errors="replace")
            if not command.startswith("postgres"):
                continue
            if database not in command and not any(a in command for a in _AUXILIARY):
                continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            found[int(pid)] = (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return found


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


class Sampler:
    """Sampled every 0.2 s while the sweep runs: the CPU seconds PostgreSQL spends for
    one database (a backend's count leaves ``/proc`` with it when its connection
    closes), and the largest resident memory of a process doing the sweep (this one,
    or its worker processes)."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.first = _postgres_processes(database)
        self.last = dict(self.first)
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        self.last.update(_postgres_processes(self.database))
        me = os.getpid()
        for pid in [me, *_children(me)]:
            self.peak_mb = max(self.peak_mb, _rss_mb(pid))

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def stop(self) -> float:
        """Stop; returns PostgreSQL's CPU seconds."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(cpu - self.first.get(pid, 0.0) for pid, cpu in self.last.items())


def _backend_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _time_statements(rt: Runtime) -> dict[str, list[float]]:
    """Per statement: count, wall seconds and the CPU seconds of the PostgreSQL backend
    that ran it, from SQLAlchemy's cursor events and, for the work done on the asyncpg
    connection directly, from wrappers around its methods."""
    from sqlalchemy import event

    totals: dict[str, list[float]] = {}

    def add(statement: str, seconds: float, cpu: float) -> None:
        key = " ".join(statement.split())[:80]
        entry = totals.setdefault(key, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += seconds
        entry[2] += cpu

    @event.listens_for(rt.engine.sync_engine, "before_cursor_execute")
    def _before(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        pid = conn.connection.driver_connection.get_server_pid()
        conn.info["t0"] = (time.perf_counter(), pid, _backend_cpu(pid))

    @event.listens_for(rt.engine.sync_engine, "after_cursor_execute")
    def _after(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        started, pid, cpu = conn.info["t0"]
        add(statement, time.perf_counter() - started, _backend_cpu(pid) - cpu)

    def wrap(name: str, label: Any) -> None:
        original = getattr(asyncpg.Connection, name)

        async def timed(self, first, *args, **kwargs):  # type: ignore[no-untyped-def]
            pid = self.get_server_pid()
            started, cpu = time.perf_counter(), _backend_cpu(pid)
            try:
                return await original(self, first, *args, **kwargs)
            finally:
                add(label(first), time.perf_counter() - started, _backend_cpu(pid) - cpu)

        setattr(asyncpg.Connection, name, timed)

    wrap("fetch", lambda sql: f"[driver] {sql}")
    wrap("execute", lambda sql: f"[driver] {sql}")
    wrap("copy_records_to_table", lambda table: f"[driver] COPY {table}")
    return totals


# -- the run ------------------------------------------------------------------------------


async def _sweep_here(
    url: str, workers: int, batch_size: int, sql_timing: bool, profile: bool
) -> tuple[list[SweepSummary], dict[str, list[float]] | None]:
    rt = Runtime(Settings(database_url=url, db_pool_size=max(2, workers)))
    timings = _time_statements(rt) if sql_timing else None
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        summaries = await asyncio.gather(
            *[sweep(rt, as_of=AS_OF, batch_size=batch_size) for _ in range(workers)]
        )
    finally:
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        await rt.close()
    return list(summaries), timings


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument(
        "--workers", type=int, default=2, help="sweep processes (tierwise sweep --workers)"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the workers as coroutines of this process instead",
    )
    parser.add_argument("--spread", type=int, default=0, help="spread due instants over DAYS")
    parser.add_argument("--sql-timing", action="store_true", help="time each SQL statement")
    parser.add_argument("--profile", action="store_true", help="cProfile the sweep")
    args = parser.parse_args()
    name = f"tierwise_sweep_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://127.0.0.1:5432/{name}"
    try:
        await asyncio.to_thread(upgrade, Settings(database_url=url))
        started = time.perf_counter()
        _, program_id = await seed(url, args.members, args.spread)
        print(f"seeded {args.members:,} due members in {time.perf_counter() - started:.1f} s")
        conn = await asyncpg.connect(f"postgresql://127.0.0.1:5432/{name}")
        started = time.perf_counter()
        await conn.fetch(
            "SELECT d.member_id, sum(d.points_earned) FROM member_days d JOIN member_tiers t "
            "ON t.member_id = d.member_id WHERE t.due_at <= $1 AND d.program_id = $2 "
            "AND d.day >= ($1::timestamptz - interval '365 days')::date GROUP BY d.member_id",
            AS_OF,
            program_id,
        )
        bare = time.perf_counter() - started
        await conn.close()
        in_process = args.in_process or args.workers == 1 or args.sql_timing or args.profile
        timings = None
        sampler = Sampler(name)
        cpu_before = time.process_time()
        started = time.perf_counter()
        if in_process:
            summaries, timings = await _sweep_here(
                url, args.workers, args.batch_size, args.sql_timing, args.profile
            )
            summary = _merge(summaries)
            sweep_cpu = time.process_time() - cpu_before
        else:
            summary, sweep_cpu = await asyncio.to_thread(_sweep_in_processes, url, args)
            sweep_cpu += time.process_time() - cpu_before
        took = time.perf_counter() - started
        pg = sampler.stop()
        peak_mb = sampler.peak_mb
        if in_process:
            rt = Runtime(Settings(database_url=url))
            again = await sweep(rt, as_of=AS_OF)
            await rt.close()
            start_up = 0.0
        else:
            # The second sweep finds nothing: its CPU is what starting the workers costs.
            again, start_up = await asyncio.to_thread(_sweep_in_processes, url, args)
            sweep_cpu -= start_up
        if timings is not None:
            print("  wall s  server CPU s   count  statement")
            for statement, (count, seconds, cpu) in sorted(timings.items(), key=lambda x: -x[1][1])[
                :10
            ]:
                print(f"  {seconds:6.2f}  {cpu:12.2f}  {count:6.0f}  {statement}")
        handled = summary.standings
        mode = "coroutines" if in_process else "processes"
        print(
            f"sweep ({args.workers} {mode}, batches of {args.batch_size}): {handled:,} standings "
            f"in {took:.1f} s = {handled / took:,.0f}/s; changes {summary.changes}; "
            f"second sweep handled {again.standings}"
        )
        if start_up:
            print(f"(starting the {args.workers} worker processes took {start_up:.1f} s of CPU)")
        print(
            f"CPU: sweep {sweep_cpu:.1f} s ({sweep_cpu / handled * 1e6:.0f} us/standing), "
            f"PostgreSQL {pg:.1f} s ({pg / handled * 1e6:.0f} us/standing); "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
            f"peak memory of a sweep process {peak_mb:.0f} MB"
        )
        cores = os.cpu_count() or 1
        print(
            f"on {cores} otherwise idle CPUs the same CPU work would take at least "
            f"{(sweep_cpu + pg) / cores:.1f} s (projected for 1,000,000: "
            f"{(sweep_cpu + pg) / cores / handled * 1_000_000:.0f} s)"
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


def _sweep_in_processes(url: str, args: argparse.Namespace) -> tuple[SweepSummary, float]:
    """``tierwise sweep --workers N``; returns the summary and the workers' CPU seconds."""
    from tierwise.services.sweep import sweep_in_processes

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = sweep_in_processes(
        Settings(database_url=url), as_of=AS_OF, batch_size=args.batch_size, workers=args.workers
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return summary, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def _merge(summaries: list[SweepSummary]) -> SweepSummary:
    merged = SweepSummary(as_of=AS_OF)
    for s in summaries:
        merged.standings += s.standings
        merged.events += s.events
        merged.batches += s.batches
        for kind, count in s.changes.items():
            merged.changes[kind] = merged.changes.get(kind, 0) + count
    return merged


if __name__ == "__main__":
    asyncio.run(main())
