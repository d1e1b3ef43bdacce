"""CPU per activity of batch ingest, in-process and sequential (a stable figure to compare
code changes with on a shared machine).

Runs the real application in-process (``create_app`` with its lifespan, GC tuning as the
server does it) against a database kept by ``python -m bench --keep-db`` and posts
batches of 1,000 purchases straight through ASGI (no HTTP client in the measured CPU),
shaped as ``python -m bench``'s batch benchmark: 250 members of the seeded ``m0000…``,
4 purchases each, dated now. Prints the app's CPU (``time.process_time``) and the
benchmark database's PostgreSQL backends' CPU (from ``/proc``) per activity::

    .venv/bin/python -m bench.ingest_cpu DATABASE_URL SECRET [--batches 30] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.seed import purchase


def _on_cpu_ns(pid: int) -> int:
    """Nanoseconds process ``pid`` has run (exact, unlike the clock ticks of ``stat``)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


class _StatementCpu:
    """Wraps an asyncpg connection's protocol: the backend's CPU time per round trip,
    summed by statement (first 60 characters)."""

    _OPS = ("bind_execute", "bind_execute_many", "execute", "query", "copy_in", "prepare")

    def __init__(self, inner: Any, pid: int, sums: dict[str, list[float]]) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_pid", pid)
        object.__setattr__(self, "_sums", sums)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in self._OPS:
            return value

        async def timed(*args: Any, **kwargs: Any) -> Any:
            before = _on_cpu_ns(self._pid)
            try:
                return await value(*args, **kwargs)
            finally:
                spent = (_on_cpu_ns(self._pid) - before) / 1e6
                state = args[0] if args else kwargs.get("state", kwargs.get("copy_stmt"))
                sql = str(getattr(state, "query", state))
                key = f"{name}: {' '.join(sql.split())[:70]}"
                entry = self._sums.setdefault(key, [0.0, 0])
                entry[0] += spent
                entry[1] += 1

        return timed

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


def _callgrind(state: str) -> None:
    """Turn valgrind's instrumentation of this process on or off (``--callgrind``)."""
    import subprocess

    subprocess.run(
        ["callgrind_control", "-i", state, str(os.getpid())], check=True, capture_output=True
    )


def _pg_cpu(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


async def _run(
    url: str,
    secret: str,
    batches: int,
    members: int,
    profile: bool,
    statements: bool,
    fresh: bool = False,
    callgrind: bool = False,
) -> None:
    import asyncpg

    import tierwise.services.activities as service
    from tierwise.api.app import create_app
    from tierwise.settings import Settings

    settings = Settings(database_url=url, sweep_interval_seconds=0)
    original = service.record
    in_service = [0.0]

    async def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.process_time()
        try:
            return await original(*args, **kwargs)
        finally:
            in_service[0] += time.process_time() - t0

    service.record = timed  # type: ignore[assignment]
    app = create_app(settings)
    rng = random.Random(5)
    names = [f"m{i:04d}" for i in range(1000)][:: 1000 // members][:members]
    if fresh:  # members enrolled by the first batch, who climb the ladder (general path)
        names = [f"fresh-{time.time_ns()}-{i}" for i in range(members)]
    # The warm-up's batches go to other members: with --fresh, the measured ones enrol
    # and climb in the measured batches.
    warm_names = [f"{n}-warm" for n in names] if fresh else names
    nonce = f"cpu-{time.time_ns()}"
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    dbname = dsn.rsplit("/", 1)[1]
    admin = await asyncpg.connect(dsn)
    latest = await admin.fetchval("SELECT max(occurred_at) FROM activities")
    # After every stored activity: a back-dated one takes the late path (R13).
    start = max(datetime.now(UTC), (latest or datetime.now(UTC)) + timedelta(seconds=1))

    def body(b: int, names: list[str] = names) -> bytes:
        acts = [
            purchase(
                names[i % len(names)],
                f"{nonce}-{b}-{i}",
                start + timedelta(milliseconds=b * 1000 + i),
                rng.randrange(1_000, 30_000),
            )
            for i in range(1000)
        ]
        return json.dumps({"activities": acts}).encode()

    headers = [
        (b"authorization", f"Bearer {secret}".encode()),
        (b"content-type", b"application/json"),
    ]

    async def post(raw: bytes) -> None:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/activities/batch",
            "raw_path": b"/v1/activities/batch",
            "query_string": b"",
            "root_path": "",
            "headers": [*headers, (b"content-length", str(len(raw)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        sent = False
        status: list[int] = []
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        if status != [200]:
            raise RuntimeError(f"batch answered {status}: {b''.join(chunks)[:300]!r}")

    async with app.router.lifespan_context(app):
        bodies = [body(b, warm_names) for b in range(3)]
        bodies += [body(b) for b in range(3, batches + 3)]
        for raw in bodies[:3]:  # warm up: caches, pool, prepared statements
            await post(raw)
        pids = [
            r[0]
            for r in await admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                dbname,
            )
        ]
        statement_cpu: dict[str, list[float]] = {}
        if statements:
            from sqlalchemy import event

            def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
                driver: Any = getattr(dbapi_connection, "driver_connection", None)
                protocol = getattr(driver, "_protocol", None)
                if driver is None or isinstance(protocol, _StatementCpu):
                    return
                driver._protocol = _StatementCpu(protocol, driver.get_server_pid(), statement_cpu)

            event.listen(app.state.runtime.engine.sync_engine, "checkout", on_checkout)
        prof = cProfile.Profile(time.process_time) if profile else None
        in_service[0] = 0.0
        pg0, cpu0, wall0 = _pg_cpu(pids), time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        import gc

        gc_time = [0.0, 0.0, 0]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                gc_time[1] = time.process_time()
            else:
                gc_time[0] += time.process_time() - gc_time[1]
                gc_time[2] += 1

        gc.callbacks.append(on_gc)
        per_batch: list[float] = []
        if callgrind:
            _callgrind("on")
        for raw in bodies[3:]:
            t0 = time.process_time()
            await post(raw)
            per_batch.append(time.process_time() - t0)
        if callgrind:
            _callgrind("off")
        if prof:
            prof.disable()
        gc.callbacks.remove(on_gc)
        print(f"gc: {gc_time[2]} collections, {gc_time[0] / batches * 1000:.2f} ms per batch")
        pg1, cpu1, wall1 = _pg_cpu(pids), time.process_time(), time.perf_counter()
    await admin.close()
    n = batches * 1000
    app_ms = (cpu1 - cpu0) / n * 1000
    pg_ms = (pg1 - pg0) / n * 1000
    print(
        f"batches {batches}, load {os.getloadavg()[0]:.2f}: CPU per activity app {app_ms:.4f} ms"
        f" + PostgreSQL {pg_ms:.4f} ms = {app_ms + pg_ms:.4f} ms"
        f" (→ ≤{2 / ((app_ms + pg_ms) / 1000):,.0f}/s on 2 cores);"
        f" wall {(wall1 - wall0) / batches * 1000:.1f} ms per batch;"
        f" app CPU in services.activities.record {in_service[0] / n * 1000:.4f} ms;"
        f" app CPU per batch min {min(per_batch) * 1000:.1f} ms,"
        f" median {sorted(per_batch)[len(per_batch) // 2] * 1000:.1f} ms"
    )
    for sql, (ms, calls) in sorted(statement_cpu.items(), key=lambda kv: -kv[1][0]):
        print(f"{ms / batches:8.2f} ms per batch  {calls / batches:6.1f}x  {sql}")
    if prof:
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("database_url")
    parser.add_argument("secret")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--members", type=int, default=250)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--statements", action="store_true", help="PostgreSQL CPU per statement (schedstat)"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="new members, who climb the ladder in the first batches (the general path)",
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="run under 'valgrind --tool=callgrind --instr-atstart=no': instructions are "
        "counted in the measured batches only (a repeatable figure of the app's work)",
    )
    args = parser.parse_args()
    url = args.database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    asyncio.run(
        _run(
            url,
            args.secret,
            args.batches,
            args.members,
            args.profile,
            args.statements,
            args.fresh,
            args.callgrind,
        )
    )


if __name__ == "__main__":
    main()
