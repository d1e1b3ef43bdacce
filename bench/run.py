"""Tierwise benchmarks, one command: ``.venv/bin/python -m bench`` (from the repo root).

1. creates a throw-away PostgreSQL database, runs ``tierwise db upgrade``, creates a key;
2. starts ``tierwise serve --workers 2`` and the bare reference app (``bench/bare_app.py``,
   FastAPI + asyncpg, same worker count), both on 127.0.0.1;
3. seeds through the API: a program, a 3-level ladder (points earned lifetime + spend over
   rolling 365 days), 1,000 members with 3 purchases each, one member with 10 and one
   with 10,000 purchases, all spread over three years;
4. measures (a) status reads vs the bare lookup under 32 connections, (c) sequential status
   latency for the 10- and 10,000-activity members, (b) batch ingest and single activity
   POSTs, each beside a bare reference measured in the same run;
5. dissects one status read in-process (SQL statements, time split, profile);
6. prints the table, stops the servers and drops the database.

See docs/performance.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):  # ``python bench/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import anatomy as anatomy_mod
from bench import whatif as whatif_mod
from bench.load import (
    ActivityPostSpec,
    GetSpec,
    LoadResult,
    RawConnection,
    percentiles_ms,
    read_each,
    run_async,
    run_load,
    run_wrk_bodies,
    split_url,
    wrk_path,
    wrk_version,
)
from bench.seed import Seeded, ingest_payloads, seed

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
CONNECTIONS = 32
ISSUE_BARE_RPS = 2000.0  # the bare reference measured on the issue's standard machine
TARGET_READ_RATIO = 0.75
TARGET_SINGLE = 1000.0
TARGET_BATCH = 20000.0
TARGET_HISTORY = 1.3


def say(message: str) -> None:
    print(f"· {message}", flush=True)


# -- PostgreSQL ----------------------------------------------------------------------------


def admin_url_default() -> str:
    return os.environ.get(
        "TIERWISE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


def database_url(admin_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(admin_url).set(drivername="postgresql", database=name)
    return url.render_as_string(hide_password=False)


async def _pg(url: str, *statements: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [await conn.fetch(statement) for statement in statements]
    finally:
        await conn.close()


def pg(url: str, *statements: str) -> list[Any]:
    return asyncio.run(_pg(url, *statements))


# -- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tierwise_command() -> list[str]:
    script = Path(sys.executable).with_name("tierwise")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from tierwise.cli import main; main()"]


def run_cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        tierwise_command() + args,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tierwise {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""


def start_server(name: str, cmd: list[str], env: dict[str, str], port: int, logdir: Path) -> Server:
    log = logdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(name, f"http://127.0.0.1:{port}", proc, log)


def wait_ready(server: Server, path: str, timeout: float = 90) -> None:
    host, port = split_url(server.url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{server.tail()}")

        async def probe() -> int:
            conn = RawConnection(host, port)
            try:
                status, _ = await asyncio.wait_for(conn.request("GET", path), 5)
                return status
            finally:
                await conn.close()

        try:
            if asyncio.run(probe()) == 200:
                return
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{server.name} not ready after {timeout}s:\n{server.tail()}")


def stop_server(server: Server) -> None:
    """SIGTERM the server we started (its own process group), SIGKILL if it lingers."""
    if server.proc.poll() is not None:
        return
    try:
        os.killpg(server.proc.pid, signal.SIGTERM)
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
    except ProcessLookupError:
        pass


# -- CPU accounting (from /proc) ------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[str, int, float] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def process_tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for pid in _all_pids():
        found = _stat(pid)
        if found is not None:
            parents.setdefault(found[1], []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def postgres_pids(database: str) -> list[int]:
    """Backends serving ``database`` (their process title names it); other sessions'
    work on a shared server is left out, and so are the shared background writers."""
    out = []
    for pid in _all_pids():
        found = _stat(pid)
        if found is None or found[0] != "postgres":
            continue
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f" {database} " in title:
            out.append(pid)
    return out


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    return {pid: found[2] for pid in pids if (found := _stat(pid)) is not None}


@dataclass
class Measured:
    load: LoadResult
    app_cpu_ms: float  # per request (or per activity for batches)
    pg_cpu_ms: float


def with_cpu(
    server: Server, database: str, work: Callable[[], LoadResult], per: int | None = None
) -> Measured:
    """CPU the server's processes and our database's backends spent during ``work``
    (processes that appeared meanwhile count whole)."""
    a0 = cpu_seconds(process_tree(server.proc.pid))
    p0 = cpu_seconds(postgres_pids(database))
    result = work()
    a1 = cpu_seconds(process_tree(server.proc.pid))
    p1 = cpu_seconds(postgres_pids(database))
    app_cpu = sum(v - a0.get(p, 0.0) for p, v in a1.items())
    pg_cpu = sum(v - p0.get(p, 0.0) for p, v in p1.items())
    count = per if per is not None else max(result.requests, 1)
    return Measured(result, app_cpu / count * 1000, pg_cpu / count * 1000)


def combine(items: list[Measured]) -> Measured:
    """Several rounds of one benchmark as one: summed requests and time, mean latencies."""
    loads = [m.load for m in items]
    n = len(items)
    total = sum(m.load.requests for m in items) or 1
    return Measured(
        LoadResult(
            client=loads[0].client,
            connections=loads[0].connections,
            seconds=sum(x.seconds for x in loads),
            requests=sum(x.requests for x in loads),
            errors=sum(x.errors for x in loads),
            p50_ms=sum(x.p50_ms for x in loads) / n,
            p95_ms=sum(x.p95_ms for x in loads) / n,
            p99_ms=sum(x.p99_ms for x in loads) / n,
        ),
        sum(m.app_cpu_ms * m.load.requests for m in items) / total,
        sum(m.pg_cpu_ms * m.load.requests for m in items) / total,
    )


# -- benchmarks ------------------------------------------------------------------------------


@dataclass
class Context:
    tw: Server
    bare: Server
    secret: str
    seeded: Seeded
    member_ids: dict[str, int]
    client: str
    seconds: float
    rounds: int
    database: str
    url: str
    batch_members: list[str]
    """The batch senders' members (``BATCH_MEMBERS`` each), whom nothing else writes to."""
    single_members: list[str]
    """The single benchmark's members."""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


def load_with_cpu(ctx: Context, server: Server, spec: GetSpec | ActivityPostSpec) -> Measured:
    def work() -> LoadResult:
        return run_load(
            server.url, spec, connections=CONNECTIONS, seconds=ctx.seconds, client=ctx.client
        )

    return with_cpu(server, ctx.database, work)


def bare_reads(ctx: Context) -> GetSpec:
    """The bare reference's reads: one primary-key lookup per seeded member."""
    return GetSpec([f"/members/{ctx.member_ids[m]}" for m in ctx.seeded.members])


def bench_reads(ctx: Context) -> tuple[Measured, Measured]:
    """(a) status reads vs the bare primary-key lookup, 32 connections, alternating rounds."""
    tw_spec = GetSpec([f"/v1/members/{m}/status" for m in ctx.seeded.members], ctx.auth)
    bare_spec = bare_reads(ctx)
    runs: dict[str, list[Measured]] = {"tw": [], "bare": []}
    targets = {"tw": (ctx.tw, tw_spec), "bare": (ctx.bare, bare_spec)}
    for name, (server, spec) in targets.items():  # warm-up, discarded
        # Every member once first: the seed's activities left each member's stored status
        # document to be rebuilt by its first read (a one-off cost, not the steady state
        # of reads; 2 s of random reads covered only part of 3,000 members on a slow day).
        errors = read_each(server.url, spec, connections=CONNECTIONS)
        if errors:
            say(f"(a) {name}: {errors} errors while reading every member once")
        run_load(server.url, spec, connections=CONNECTIONS, seconds=2, client=ctx.client)
        say(f"(a) warmed up {name}")
    for r in range(ctx.rounds):
        order = ["bare", "tw"] if r % 2 == 0 else ["tw", "bare"]
        for name in order:
            server, spec = targets[name]
            measured = load_with_cpu(ctx, server, spec)
            runs[name].append(measured)
            say(
                f"(a) round {r + 1} {name}: {measured.load.rps:,.0f} req/s, "
                f"{measured.load.errors} errors"
            )
    return combine(runs["tw"]), combine(runs["bare"])


@dataclass
class Latency:
    light: dict[str, float]
    heavy: dict[str, float]
    bare: dict[str, float]
    light_level: str | None
    heavy_level: str | None
    requests: int


async def _latency(ctx: Context, n: int) -> Latency:
    tw = await RawConnection(*split_url(ctx.tw.url)).open()
    bare = await RawConnection(*split_url(ctx.bare.url)).open()
    targets = {
        "light": (tw, f"/v1/members/{ctx.seeded.light}/status", ctx.auth),
        "heavy": (tw, f"/v1/members/{ctx.seeded.heavy}/status", ctx.auth),
        "bare": (bare, f"/members/{ctx.member_ids[ctx.seeded.light]}", {}),
    }
    samples: dict[str, list[float]] = {k: [] for k in targets}
    levels: dict[str, str | None] = {}
    try:
        for i in range(n + 30):
            order = list(targets)
            random.shuffle(order)
            for name in order:
                conn, path, headers = targets[name]
                t0 = time.perf_counter()
                status, body = await conn.request("GET", path, headers=headers)
                elapsed = time.perf_counter() - t0
                if status != 200:
                    raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
                if i >= 30:
                    samples[name].append(elapsed)
                elif name != "bare" and name not in levels:
                    ladders = json.loads(body)["ladders"]
                    current = ladders[0]["current_level"] if ladders else None
                    levels[name] = current["key"] if current else None
    finally:
        await tw.close()
        await bare.close()
    return Latency(
        light=percentiles_ms(samples["light"]),
        heavy=percentiles_ms(samples["heavy"]),
        bare=percentiles_ms(samples["bare"]),
        light_level=levels.get("light"),
        heavy_level=levels.get("heavy"),
        requests=n,
    )


def bench_latency(ctx: Context, n: int) -> Latency:
    """(c) sequential status reads, the 10- and 10,000-activity members interleaved."""
    return run_async(_latency(ctx, n))


@dataclass
class Ingest:
    activities: int
    seconds: float
    batches: int
    errors: int

    @property
    def per_second(self) -> float:
        return self.activities / self.seconds if self.seconds else 0.0


async def _ingest(
    url: str, path: str, headers: dict[str, str], payloads: list[list[bytes]], seconds: float
) -> Ingest:
    host, port = split_url(url)
    headers = {**headers, "Content-Type": "application/json"}
    accepted = 0
    batches = 0
    errors = 0
    start = time.perf_counter()
    deadline = start + seconds
    finished = start

    async def worker(bodies: list[bytes]) -> None:
        nonlocal accepted, batches, errors, finished
        conn = await RawConnection(host, port).open()
        try:
            for body in bodies:
                if time.perf_counter() >= deadline:
                    break
                status, answer = await conn.request("POST", path, headers=headers, body=body)
                if status != 200:
                    errors += 1
                    say(f"batch answered {status}: {answer[:200]!r}")
                    continue
                accepted += int(orjson.loads(answer)["accepted"])
                batches += 1
                finished = max(finished, time.perf_counter())
        finally:
            await conn.close()

    await asyncio.gather(*(worker(bodies) for bodies in payloads))
    return Ingest(accepted, finished - start, batches, errors)


BATCH_WARM_UP_SECONDS = 3.0
MACHINE_SECONDS = 3.0
"""How long the bare reference reads run just before and just after the measured batch
run, to gauge the machine's speed at that time (``Batch.machine_rps``)."""
BATCH_MEMBERS = 250
"""Members per batch body (each with 1,000 / 250 = 4 purchases), whatever the number of
batches in flight: per-member work (locks, state reads, bucket rows) is a fixed share of
every batch."""
SINGLE_MEMBERS = 1000
BATCH_RATE_CAP = 160_000.0
"""Activities per second the prepared batch bodies last for: wrk must not run out. At
8 s that is about 1,300 bodies of ~190 KB per server (~245 MB), built before the
server's warm-up, written to a temporary folder and dropped after its run."""


def ingest(
    ctx: Context,
    server: Server,
    path: str,
    headers: dict[str, str],
    payloads: list[list[bytes]],
    seconds: float,
) -> Ingest:
    """Send ``payloads`` (one list per connection, in order) for ``seconds``: with wrk when
    it is the client, else with the asyncio client (which reads every answer's count)."""
    if ctx.client != "wrk":
        return run_async(_ingest(server.url, path, headers, payloads, seconds))
    sent = run_wrk_bodies(server.url, path, headers, payloads, seconds)
    if sent.exhausted:  # it stopped: the figure is low, never high
        say("a batch sender ran out of bodies (raise BATCH_RATE_CAP): the figure is too low")
    answered = sent.load.requests - sent.non_2xx
    return Ingest(answered * 1000, sent.load.seconds, answered, sent.load.errors)


def check_stored(ctx: Context, done: Ingest, table: str, prefix: str, in_flight: int) -> None:
    """wrk reads no answer: the rows stored under ``prefix`` must cover every batch
    answered 200, and no more than those and the ``in_flight`` batches cut off at the end
    (a body never repeats, so a 200 is never a replay)."""
    [[row]] = pg(ctx.url, f"SELECT count(*) FROM {table} WHERE idempotency_key LIKE '{prefix}-%'")
    stored = int(row[0])
    if not done.activities <= stored <= done.activities + in_flight * 1000:
        raise RuntimeError(
            f"{done.batches} batches answered 200 but {stored} activities stored under {prefix}"
        )


@dataclass
class Batch:
    tierwise: Ingest
    tierwise_cpu: Measured
    bare: Ingest
    bare_cpu: Measured
    warm_up: Ingest
    machine_rps: tuple[float, float]
    """The bare reference's reads per second just before and just after tierwise's
    measured batch run: this VM's speed changes over minutes, so the reads of benchmark
    (a), minutes earlier, can misjudge it (the verdict takes the larger factor)."""


def machine_rps(ctx: Context) -> float:
    """The bare reference's status-read rate now (benchmark (a)'s load, ``MACHINE_SECONDS``)."""
    found = run_load(
        ctx.bare.url,
        bare_reads(ctx),
        connections=CONNECTIONS,
        seconds=MACHINE_SECONDS,
        client=ctx.client,
    )
    return found.rps


def bench_batch(ctx: Context, workers: int) -> Batch:
    """(b) batches of 1,000 purchases over ``BATCH_MEMBERS`` members each, ``workers`` in
    flight, each sender with its own members (so batches never wait on each other's
    member locks); then the bare batch insert alike. Returns both measured runs and
    tierwise's warm-up.

    Each run follows a warm-up of ``BATCH_WARM_UP_SECONDS`` with the same load for other
    members (connections, prepared statements, caches). The measured members start where
    the seed left them (3 purchases over three years: mostly no level) and climb during the run:
    a member's first batch lifts them to silver and about the eighth to gold, so about 2
    of a member's ~32 batches take the general path for the lifting purchase.

    The bare reference's reads run just before and just after tierwise's measured run
    (``machine_rps``), to gauge the machine's speed at that time."""
    # After every stored activity (the single benchmark's are dated now), so that no
    # purchase is late (R13); the last ones are dated a few minutes ahead.
    start = datetime.now(UTC) + timedelta(seconds=1)
    nonce = uuid.uuid4().hex[:8]
    size = BATCH_MEMBERS * workers
    seeded = ctx.batch_members  # fewer than ``size`` only with a smaller --members
    members = seeded + [f"bm-{nonce}-{i}" for i in range(size - len(seeded))]
    warm_members = [f"wm-{nonce}-{i}" for i in range(size)]

    def batches(seconds: float) -> int:
        return 2 + math.ceil(BATCH_RATE_CAP * seconds / 1000 / workers)

    out: list[tuple[Ingest, Measured]] = []
    warm_ups: list[Ingest] = []
    machine: list[float] = []
    for server, path, headers, name in (
        (ctx.tw, "/v1/activities/batch", ctx.auth, "tierwise"),
        (ctx.bare, "/writes/batch", {}, "bare"),
    ):
        table = "activities" if name == "tierwise" else "bench_bare_writes"
        payloads = ingest_payloads(
            members,
            workers=workers,
            batches=batches(ctx.seconds),
            nonce=f"batch-{name}-{nonce}",
            start=start,
        )
        warm = ingest_payloads(
            warm_members,
            workers=workers,
            batches=batches(BATCH_WARM_UP_SECONDS),
            nonce=f"warm-{name}-{nonce}",
            start=start,
        )
        warm_up = ingest(ctx, server, path, headers, warm, BATCH_WARM_UP_SECONDS)
        del warm
        if ctx.client == "wrk":
            check_stored(ctx, warm_up, table, f"warm-{name}-{nonce}", workers)
        warm_ups.append(warm_up)
        say(
            f"(b) batch {server.name} warm-up: {warm_up.per_second:,.0f} activities/s "
            f"({warm_up.batches} batches, {warm_up.errors} errors)"
        )
        box: list[Ingest] = []

        def work(
            s: Server = server,
            p: str = path,
            h: dict[str, str] = headers,
            pl: list[list[bytes]] = payloads,
            b: list[Ingest] = box,
        ) -> LoadResult:
            b.append(ingest(ctx, s, p, h, pl, ctx.seconds))
            return LoadResult(ctx.client, workers, b[0].seconds, b[0].batches, b[0].errors, 0, 0, 0)

        if name == "tierwise":
            machine.append(machine_rps(ctx))
        measured = with_cpu(server, ctx.database, work, per=1)
        if name == "tierwise":
            machine.append(machine_rps(ctx))
        done = box[0]
        if ctx.client == "wrk":
            check_stored(ctx, done, table, f"batch-{name}-{nonce}", workers)
        per_activity = max(done.activities, 1)
        measured.app_cpu_ms /= per_activity
        measured.pg_cpu_ms /= per_activity
        out.append((done, measured))
        del payloads, work  # the bodies (~245 MB at 8 s) before the next server's
        say(
            f"(b) batch {server.name}: {done.per_second:,.0f} activities/s "
            f"({done.batches} batches, {done.errors} errors)"
        )
    return Batch(out[0][0], out[0][1], out[1][0], out[1][1], warm_ups[0], (machine[0], machine[1]))


def bench_single(ctx: Context) -> tuple[Measured, Measured]:
    """(b) one purchase per POST, unique idempotency keys, random members, 32 connections."""
    nonce = uuid.uuid4().hex[:8]
    members = ctx.single_members
    tw_spec = ActivityPostSpec("/v1/activities", members, f"one-{nonce}", ctx.auth)
    bare_spec = ActivityPostSpec("/writes", members, f"bare-{nonce}")
    run_load(
        ctx.tw.url,
        ActivityPostSpec("/v1/activities", members, f"warm-{nonce}", ctx.auth),
        connections=CONNECTIONS,
        seconds=2,
        client=ctx.client,
    )
    results = []
    for server, spec in ((ctx.tw, tw_spec), (ctx.bare, bare_spec)):
        measured = load_with_cpu(ctx, server, spec)
        say(f"(b) single {server.name}: {measured.load.rps:,.0f}/s, {measured.load.errors} errors")
        results.append(measured)
    return results[0], results[1]


# -- report ----------------------------------------------------------------------------------


def div(a: float, b: float, default: float = 0.0) -> float:
    return a / b if b else default


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cpu_row(label: str, tw: Measured, bare: Measured, unit: str) -> list[str]:
    """CPU per request and the throughput it allows when CPU-bound on this machine's cores
    (robust to noisy neighbours: they steal wall time, not our CPU time). The ratio
    column holds the capacity ratio, comparable with the target ratio of (a)."""
    cores = os.cpu_count() or 1

    def cell(m: Measured) -> str:
        total = m.app_cpu_ms + m.pg_cpu_ms
        cap = cores * 1000 / total if total > 0 else 0.0
        digits = 3 if total < 0.1 else 2
        return f"{m.app_cpu_ms:.{digits}f} + {m.pg_cpu_ms:.{digits}f} ms → ≤{cap:,.0f} {unit}"

    tw_total = tw.app_cpu_ms + tw.pg_cpu_ms
    bare_total = bare.app_cpu_ms + bare.pg_cpu_ms
    ratio = f"({bare_total / tw_total:.2f})" if tw_total > 0 else ""
    return [label, cell(tw), cell(bare), ratio, "", ""]


def revision() -> str:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="length of each measured load run (default 8)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds of benchmark (a) (default 2)"
    )
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (auto: wrk if installed)",
    )
    parser.add_argument(
        "--members",
        type=int,
        default=None,
        help="seeded members (default: 250 per batch sender, then 1,000 for the single "
        "benchmark, so that it lifts none of the batch members before their run)",
    )
    parser.add_argument(
        "--heavy", type=int, default=10_000, help="activities of the heavy member (default 10,000)"
    )
    parser.add_argument("--latency-requests", type=int, default=300)
    parser.add_argument(
        "--batch-workers",
        type=int,
        default=8,
        help="batches in flight, each on its own connection (default 8: with 4, the kernel "
        "often hands 3 or all 4 connections to one of the two workers and the cores idle)",
    )
    parser.add_argument(
        "--postgres-url",
        default=admin_url_default(),
        help="server to create the throw-away database on "
        "(default $TIERWISE_BENCH_POSTGRES_URL or "
        "postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument(
        "--no-anatomy", action="store_true", help="skip the in-process dissection of requests"
    )
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="also measure the suggested optimisations in-process "
        "(bench/whatif.py; 2-5 more minutes)",
    )
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    client = args.client
    if client == "auto":
        client = "wrk" if wrk_path() else "python"
    if client == "wrk" and not wrk_path():
        parser.error("wrk is not installed (apt-get install -y wrk)")
    started = time.monotonic()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"Tierwise benchmarks — {when}, code {revision()}\nmachine: {machine()}\nload: "
        f"{wrk_version() if client == 'wrk' else 'python asyncio client (wrk not found)'}"
        f", {CONNECTIONS} connections; servers: {WORKERS} uvicorn workers each\n"
        f"load average before the run: {load_average()} (other work on the machine "
        "lowers every figure; the CPU-per-request rows are the least affected)\n",
        flush=True,
    )
    if client == "python":
        say(
            "NOTE: the Python load client shares the 2 cores with the servers and "
            "PostgreSQL and costs more CPU per request than wrk: throughput figures are "
            "lower than with wrk (install it: apt-get install -y wrk)"
        )

    name = f"tierwise_bench_{uuid.uuid4().hex[:10]}"
    db_url = database_url(args.postgres_url, name)
    pg(args.postgres_url, f'CREATE DATABASE "{name}"')
    say(f"created database {name}")
    servers: list[Server] = []
    completed = False
    logdir = Path(tempfile.mkdtemp(prefix="tierwise-bench-"))
    try:
        env = {
            **os.environ,
            "TIERWISE_DATABASE_URL": db_url,
            "TIERWISE_SWEEP_INTERVAL_SECONDS": "0",
            "COLUMNS": "200",
            "NO_COLOR": "1",
            "TERM": "dumb",
            "PYTHONPATH": str(ROOT),
        }
        run_cli(["db", "upgrade"], env)
        say("tierwise db upgrade: done")
        out = run_cli(
            ["keys", "create", "--tenant", "bench", "--scopes", "all", "--name", "bench"], env
        )
        match = re.search(r"secret:\s+(\S+)", out)
        if match is None:
            raise RuntimeError(f"no secret in: {out}")
        secret = match.group(1)
        from bench.bare_app import SCHEMA_SQL

        pg(db_url, SCHEMA_SQL)
        say("key created; bare write table created")

        tw_port, bare_port = free_port(), free_port()
        servers.append(
            start_server(
                "tierwise",
                [
                    *tierwise_command(),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(tw_port),
                    "--workers",
                    str(WORKERS),
                    "--no-migrate",
                ],
                env,
                tw_port,
                logdir,
            )
        )
        bare_env = {
            **env,
            "BENCH_BARE_DSN": db_url,
            "BENCH_BARE_POOL_MAX": "20",
        }  # = tierwise's pool_size 10 + overflow 10
        servers.append(
            start_server(
                "bare",
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench.bare_app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(bare_port),
                    "--workers",
                    str(WORKERS),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                bare_env,
                bare_port,
                logdir,
            )
        )
        tw, bare = servers
        wait_ready(tw, "/healthz")
        wait_ready(bare, "/healthz")
        say(f"servers up: tierwise {tw.url}, bare {bare.url}")

        members = args.members or BATCH_MEMBERS * args.batch_workers + SINGLE_MEMBERS
        seeded = run_async(seed(tw.url, secret, members=members, heavy=args.heavy))
        say(
            f"seeded {seeded.activities:,} activities for {len(seeded.members) + 2:,} members "
            f"in {seeded.seconds:.1f} s ({seeded.activities / seeded.seconds:,.0f}/s)"
        )
        # Statistics, as PostgreSQL's autovacuum (on by default) gives a production
        # database; the server here may run without it (this machine's CI config turns it
        # off), and plans chosen without statistics are not what users would measure.
        [[autovacuum], *_] = pg(db_url, "SHOW autovacuum", "ANALYZE")
        say(f"analysed the seeded database (autovacuum {autovacuum['autovacuum']} on the server)")
        [rows, counts] = pg(
            db_url,
            "SELECT id, external_id FROM members",
            "SELECT m.external_id, count(*) AS n FROM activities a JOIN members m "
            f"ON m.id = a.member_id WHERE m.external_id IN ('{seeded.light}', "
            f"'{seeded.heavy}') GROUP BY m.external_id",
        )
        member_ids = {r["external_id"]: r["id"] for r in rows}
        stored = {r["external_id"]: r["n"] for r in counts}
        say(
            f"stored activities: {seeded.light} {stored.get(seeded.light)}, "
            f"{seeded.heavy} {stored.get(seeded.heavy)}"
        )

        batch_members = seeded.members[: BATCH_MEMBERS * args.batch_workers]
        ctx = Context(
            tw,
            bare,
            secret,
            seeded,
            member_ids,
            client,
            args.seconds,
            args.rounds,
            name,
            db_url,
            batch_members,
            seeded.members[len(batch_members) :] or seeded.members,
        )
        reads_tw, reads_bare = bench_reads(ctx)
        latency = bench_latency(ctx, args.latency_requests)
        say(
            f"(c) p50 light {latency.light['p50_ms']:.2f} ms, heavy "
            f"{latency.heavy['p50_ms']:.2f} ms, bare {latency.bare['p50_ms']:.2f} ms"
        )
        # Single activities before batches: the batches write over a million rows, whose
        # autovacuum would otherwise run (and be counted) during the single benchmark.
        single_tw, single_bare = bench_single(ctx)
        batch = bench_batch(ctx, args.batch_workers)
        batch_tw, batch_tw_cpu, batch_bare, batch_bare_cpu, batch_warm = (
            batch.tierwise,
            batch.tierwise_cpu,
            batch.bare,
            batch.bare_cpu,
            batch.warm_up,
        )
        for server in servers:
            stop_server(server)

        found: list[anatomy_mod.Dissection] = []
        if not args.no_anatomy:
            say("dissecting requests in-process (SQL statements, time split, CPU profile)")
            light_n = f"{stored.get(seeded.light, 10):,}"
            heavy_n = f"{stored.get(seeded.heavy, args.heavy):,}"
            found = anatomy_mod.dissect(
                db_url,
                secret,
                [
                    anatomy_mod.status_probe(
                        f"GET /v1/members/{{id}}/status, member with {light_n} activities",
                        seeded.light,
                    ),
                    anatomy_mod.status_probe(
                        f"GET /v1/members/{{id}}/status, member with {heavy_n} activities",
                        seeded.heavy,
                    ),
                    anatomy_mod.single_probe(seeded.members),
                    anatomy_mod.batch_probe(seeded.members),
                ],
            )
        variants: list[whatif_mod.Variant] = []
        if args.what_if:
            say("what-if: measuring the suggested optimisations in-process")
            variants = whatif_mod.what_if(
                db_url, secret, seeded.light, seeded.heavy, seeded.members
            )
        if args.keep_db:
            say(f"key secret (for python -m bench.anatomy): {secret}")
        completed = True
    finally:
        for server in servers:
            stop_server(server)
        if args.keep_db:
            say(f"kept database {name}: {db_url}")
        else:
            pg(args.postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            say(f"dropped database {name}")
        if completed:
            shutil.rmtree(logdir, ignore_errors=True)
        else:
            say(f"server logs kept in {logdir}")

    factor = reads_bare.load.rps / ISSUE_BARE_RPS or 1.0
    # Targets are judged on figures scaled down to the standard machine, never up: a
    # bare figure below the standard one says as much about other load (or the Python
    # client) as about the machine.
    scale = max(factor, 1.0)
    # The batch figure is scaled by the larger of the two factors: (a)'s, and the one of
    # the bare reads around its own run. Those reads follow heavy writes, which may slow
    # them (a smaller factor, a kinder verdict); (a)'s reads run minutes earlier, while
    # the VM's speed drifts (in one run here (a) saw it slower than the batch ran).
    batch_factor = sum(batch.machine_rps) / 2 / ISSUE_BARE_RPS or 1.0
    batch_scale = max(batch_factor, factor, 1.0)
    read_ratio = div(reads_tw.load.rps, reads_bare.load.rps)
    hist_p50 = div(latency.heavy["p50_ms"], latency.light["p50_ms"], default=float("inf"))
    hist_p95 = div(latency.heavy["p95_ms"], latency.light["p95_ms"], default=float("inf"))
    single_ratio = div(single_tw.load.rps, single_bare.load.rps)
    batch_ratio = div(batch_tw.per_second, batch_bare.per_second)
    checks = {
        "a_read_ratio": read_ratio >= TARGET_READ_RATIO,
        "b_single": single_tw.load.rps / scale >= TARGET_SINGLE,
        "b_batch": batch_tw.per_second / batch_scale >= TARGET_BATCH,
        "c_history_ratio": hist_p50 <= TARGET_HISTORY,
    }
    rows_out = [
        ["benchmark", "tierwise", "bare reference", "ratio", "target", "result"],
        [
            f"(a) GET /v1/members/{{id}}/status, {CONNECTIONS} conns",
            f"{reads_tw.load.rps:,.0f} req/s",
            f"{reads_bare.load.rps:,.0f} req/s (pk lookup)",
            f"{read_ratio:.2f}",
            f"ratio ≥ {TARGET_READ_RATIO}",
            verdict(checks["a_read_ratio"]),
        ],
        [
            "    latency p50 / p99 under load",
            f"{reads_tw.load.p50_ms:.1f} / {reads_tw.load.p99_ms:.1f} ms",
            f"{reads_bare.load.p50_ms:.1f} / {reads_bare.load.p99_ms:.1f} ms",
            "",
            "",
            "",
        ],
        cpu_row("    CPU per request: app + PostgreSQL", reads_tw, reads_bare, "req/s"),
        [
            f"(b) POST /v1/activities, {CONNECTIONS} conns",
            f"{single_tw.load.rps:,.0f} activities/s",
            f"{single_bare.load.rps:,.0f}/s (1-row insert)",
            f"{single_ratio:.2f}",
            f"≥ {TARGET_SINGLE:,.0f}/s std",
            verdict(checks["b_single"]),
        ],
        cpu_row("    CPU per activity: app + PostgreSQL", single_tw, single_bare, "/s"),
        [
            f"(b) POST /v1/activities/batch ×1,000, {args.batch_workers} in flight",
            f"{batch_tw.per_second:,.0f} activities/s",
            f"{batch_bare.per_second:,.0f}/s (executemany)",
            f"{batch_ratio:.2f}",
            f"≥ {TARGET_BATCH:,.0f}/s std",
            verdict(checks["b_batch"]),
        ],
        cpu_row("    CPU per activity: app + PostgreSQL", batch_tw_cpu, batch_bare_cpu, "/s"),
        [
            f"(c) status p50 / p95, {stored.get(seeded.light, 10):,} activities",
            f"{latency.light['p50_ms']:.2f} / {latency.light['p95_ms']:.2f} ms",
            f"{latency.bare['p50_ms']:.2f} / {latency.bare['p95_ms']:.2f} ms (pk lookup)",
            f"{div(latency.light['p50_ms'], latency.bare['p50_ms']):.2f}",
            "",
            "",
        ],
        [
            f"(c) status p50 / p95, {stored.get(seeded.heavy, args.heavy):,} activities",
            f"{latency.heavy['p50_ms']:.2f} / {latency.heavy['p95_ms']:.2f} ms",
            "",
            f"{div(latency.heavy['p50_ms'], latency.bare['p50_ms']):.2f}",
            "",
            "",
        ],
        [
            f"(c) history ratio {stored.get(seeded.heavy, args.heavy):,} / "
            f"{stored.get(seeded.light, 10):,} (p50; p95)",
            f"{hist_p50:.2f}; {hist_p95:.2f}",
            "",
            "",
            f"p50 ratio ≤ {TARGET_HISTORY}",
            verdict(checks["c_history_ratio"]),
        ],
    ]
    print()
    print(table(rows_out))
    print()
    print(
        f"Machine factor: the bare reference did {reads_bare.load.rps:,.0f} req/s here, "
        f"{factor:.2f}× the ≈{ISSUE_BARE_RPS:,.0f} req/s of the issue's standard machine. "
        f"Absolute figures scaled to that machine (never up): single "
        f"{single_tw.load.rps / scale:,.0f}/s, batch {batch_tw.per_second / batch_scale:,.0f}/s; "
        "targets marked std are judged on these. The batch figure is scaled by the larger "
        f"of that factor and the bare reads' just before and after its run "
        f"({batch.machine_rps[0]:,.0f} and {batch.machine_rps[1]:,.0f} req/s, factor "
        f"{batch_factor:.2f})."
    )
    busy = (batch_tw_cpu.app_cpu_ms + batch_tw_cpu.pg_cpu_ms) * batch_tw.per_second / 1000
    print(
        f"Batch ingest after a {BATCH_WARM_UP_SECONDS:.0f} s warm-up, in which it did "
        f"{batch_warm.per_second:,.0f} activities/s here for other members, who climbed "
        f"from nothing; {batch_warm.errors} errors in the warm-up."
    )
    print(
        f"Batch ingest kept {busy:.2f} of {os.cpu_count() or 1} cores busy with the app and "
        "PostgreSQL (the rest: the load generator, other work, idle)."
    )
    print(
        "Ratios in brackets: the throughput ratio the CPU costs predict when both are "
        "CPU-bound on an otherwise idle machine (bare CPU / tierwise CPU; the load "
        "generator's own CPU is not counted)."
    )
    print(
        f"Errors: reads {reads_tw.load.errors}, bare {reads_bare.load.errors}; single "
        f"{single_tw.load.errors}, bare {single_bare.load.errors}; batches "
        f"{batch_tw.errors}, bare {batch_bare.errors}."
    )
    print(
        f"Levels: {seeded.light} → {latency.light_level}, {seeded.heavy} → {latency.heavy_level}."
    )
    if found:
        print()
        print(anatomy_mod.render(found, top_for=len(found)))
    if variants:
        print()
        print(whatif_mod.render(variants))
    elapsed = time.monotonic() - started
    print(
        f"\nLoad average after the run: {load_average()}. Total {elapsed:.0f} s. "
        + ", ".join(f"{k} {verdict(v)}" for k, v in checks.items())
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "when": when,
                    "revision": revision(),
                    "machine": machine(),
                    "client": client,
                    "reads": {
                        "tierwise": asdict(reads_tw),
                        "bare": asdict(reads_bare),
                        "ratio": read_ratio,
                    },
                    "single": {"tierwise": asdict(single_tw), "bare": asdict(single_bare)},
                    "batch": {
                        "tierwise": asdict(batch_tw),
                        "bare": asdict(batch_bare),
                        "tierwise_cpu": asdict(batch_tw_cpu),
                        "bare_cpu": asdict(batch_bare_cpu),
                        "warm_up": asdict(batch_warm),
                        "machine_rps": batch.machine_rps,
                        "machine_factor": batch_factor,
                    },
                    "machine_factor": factor,
                    "latency": asdict(latency),
                    "history_ratio_p50": hist_p50,
                    "history_ratio_p95": hist_p95,
                    "checks": checks,
                    "anatomy": [a.summary() for a in found],
                    "what_if": [asdict(v) for v in variants],
                },
                indent=2,
                default=str,
            )
        )
    return 1 if args.strict and not all(checks.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
