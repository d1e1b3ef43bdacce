"""Anatomy of a request: the SQL it issues and where its time goes.

Runs the real application in-process (``create_app(settings)`` with its lifespan) against
the benchmark database, drives it through ``httpx.ASGITransport`` one request at a time,
and measures, per kind of request (a *probe*):

- every round trip to PostgreSQL of one request, counted at the asyncpg protocol (so
  statements sent through SQLAlchemy, statements sent on the raw driver connection,
  ``BEGIN``/``COMMIT``/``ROLLBACK``, statement preparations and ``COPY`` all count);
- the wall time of the whole ASGI call, of the service function inside it
  (``services.status.member_status`` or ``services.activities.record``) and of the SQL
  statements inside that;
- a cProfile (CPU time) of the same loop, summed by package and by function.

Nothing in ``src/`` is changed: the service functions are wrapped for the duration of the
run and restored afterwards. Run it on its own against a database kept by
``python -m bench --keep-db``::

    .venv/bin/python -m bench.anatomy DATABASE_URL SECRET MEMBER [MEMBER ...]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Request = tuple[str, str, bytes | None]  # method, path, JSON body


@dataclass
class Probe:
    """A kind of request to dissect: ``make(i)`` gives the i-th request (unique keys)."""

    label: str
    make: Callable[[int], Request]
    requests: int


def status_probe(label: str, member: str, requests: int = 150) -> Probe:
    return Probe(label, lambda _i: ("GET", f"/v1/members/{member}/status", None), requests)


def _purchase(member: str, key: str) -> dict[str, Any]:
    return {
        "type": "purchase",
        "member_id": member,
        "idempotency_key": key,
        "occurred_at": datetime.now(UTC).isoformat(),
        "amount_minor": 2500,
        "currency": "USD",
    }


def single_probe(members: list[str], requests: int = 60) -> Probe:
    nonce = f"anat-{time.time_ns()}"

    def make(i: int) -> Request:
        body = _purchase(members[i % len(members)], f"{nonce}-{i}")
        return "POST", "/v1/activities", json.dumps(body).encode()

    return Probe("POST /v1/activities (one purchase)", make, requests)


def batch_probe(members: list[str], requests: int = 1) -> Probe:
    nonce = f"anatb-{time.time_ns()}"

    def make(i: int) -> Request:
        acts = [
            _purchase(members[(i * 1000 + j) % len(members)], f"{nonce}-{i}-{j}")
            for j in range(1000)
        ]
        return "POST", "/v1/activities/batch", json.dumps({"activities": acts}).encode()

    return Probe("POST /v1/activities/batch (1,000 purchases)", make, requests)


@dataclass
class Statement:
    sql: str
    rows: int
    ms: float
    param_sets: int = 1  # > 1: one executemany of this many parameter sets
    binds: int = 0

    def describe(self) -> str:
        sets = "?" if self.param_sets == 0 else str(self.param_sets)
        shape = (
            f"executemany ×{sets}"
            if self.param_sets != 1
            else (f"{self.binds} binds" if self.binds > 20 else "")
        )
        return summarise_sql(self.sql) + (f" ({shape})" if shape else "")


_ROUND_TRIPS = (
    "prepare",
    "bind_execute",
    "bind_execute_many",
    "bind",
    "execute",
    "close_portal",
    "query",
    "copy_out",
    "copy_in",
    "close_statement",
)


class CountingProtocol:
    """Stands in for an asyncpg connection's protocol and logs every network operation
    (each is one round trip: messages out, then wait for the server's answer)."""

    def __init__(self, inner: Any, sink: Callable[[Statement], None]) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_sink", sink)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in _ROUND_TRIPS:
            return value

        async def logged(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            result = await value(*args, **kwargs)
            elapsed = (time.perf_counter() - t0) * 1000
            self._sink(_statement(name, args, kwargs, result, elapsed))
            return result

        return logged

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


def _statement(
    op: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any, ms: float
) -> Statement:
    first = args[0] if args else next(iter(kwargs.values()), None)
    if op in ("query", "copy_out", "copy_in"):
        sql = str(kwargs.get("query", kwargs.get("copy_stmt", first)))
    elif op == "prepare":
        sql = f"PREPARE {kwargs.get('query', args[1] if len(args) > 1 else '')}"
    else:
        state = kwargs.get("state", first)
        sql = str(getattr(state, "query", op))
        if op == "close_statement":
            sql = f"DEALLOCATE {sql}"
    rows = -1
    data = result[0] if isinstance(result, tuple) and result else result
    if isinstance(data, list):
        rows = len(data)
    binds = max((int(n) for n in re.findall(r"\$(\d+)", sql)), default=0)
    sets = 1
    if op == "bind_execute_many":
        many = kwargs.get("args", args[1] if len(args) > 1 else None)
        # an iterator's size is unknown (we must not consume it): shown as "×?"
        sets = len(many) if isinstance(many, list | tuple) else 0
    return Statement(sql, rows, ms, sets, binds)


def instrument(engine: Any, sink: Callable[[Statement], None]) -> Callable[[], None]:
    """Log the round trips of every connection ``engine`` checks out; returns an undo."""
    from sqlalchemy import event

    wrapped: list[tuple[Any, Any]] = []

    def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        driver: Any = getattr(dbapi_connection, "driver_connection", None)
        protocol = getattr(driver, "_protocol", None)
        if driver is None or protocol is None or isinstance(protocol, CountingProtocol):
            return
        driver._protocol = CountingProtocol(protocol, sink)
        wrapped.append((driver, protocol))

    event.listen(engine, "checkout", on_checkout)

    def undo() -> None:
        event.remove(engine, "checkout", on_checkout)
        for driver, protocol in wrapped:
            driver._protocol = protocol

    return undo


_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|PREPARE|DEALLOCATE|SELECT 1\s*$)", re.I)


@dataclass
class Dissection:
    label: str
    statements: list[Statement]
    requests: int
    asgi_ms: float
    service_ms: float
    sql_ms: float
    profile: list[tuple[str, float]] = field(default_factory=list)
    top: list[tuple[str, float, int]] = field(default_factory=list)

    @property
    def round_trips(self) -> int:
        return len(self.statements)

    @property
    def queries(self) -> list[Statement]:
        """The round trips that carry SQL of the use case (not BEGIN/COMMIT/ROLLBACK,
        statement preparation or the ``SELECT 1`` that opens a lazy transaction)."""
        return [st for st in self.statements if not _CONTROL.match(st.sql)]

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "round_trip_log": [s.describe() for s in self.statements],
            "statements": len(self.queries),
            "round_trips": self.round_trips,
            "asgi_ms": self.asgi_ms,
            "service_ms": self.service_ms,
            "sql_ms": self.sql_ms,
            "profile_ms": dict(self.profile),
        }


def summarise_sql(sql: str) -> str:
    """``SELECT … FROM member_days WHERE …`` → ``SELECT member_days WHERE day >= …``."""
    flat = " ".join(sql.split())
    verb = flat.split(" ", 1)[0].upper()
    if verb in ("PREPARE", "DEALLOCATE"):
        return f"{verb} ‹{summarise_sql(flat.split(' ', 1)[1]) if ' ' in flat else ''}›"
    if verb not in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH") or flat == "SELECT 1":
        return flat[:60]
    tables = re.findall(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_][a-z0-9_]*)", flat, re.I)
    if verb == "INSERT":
        values = flat.count("), (") + 1
        conflict = (
            " ON CONFLICT DO UPDATE"
            if "ON CONFLICT" in flat and "DO UPDATE" in flat
            else " ON CONFLICT DO NOTHING"
            if "ON CONFLICT" in flat
            else ""
        )
        rows = f" VALUES ×{values}" if values > 1 else ""
        return f"INSERT {tables[0] if tables else '?'}{rows}{conflict}"
    where = re.search(
        r"\bWHERE\s+(.*?)(?:\bORDER BY\b|\bLIMIT\b|\bFOR UPDATE\b|\bRETURNING\b|$)", flat, re.I
    )
    cond = ""
    if where:
        cols = re.findall(
            r"([a-z_]+(?:\.[a-z_]+)?)\s*(=\s*ANY|=|\bIN\b|>=|<=|<|>)", where.group(1), re.I
        )
        cond = " WHERE " + ", ".join(
            f"{c.split('.')[-1]} {' '.join(op.upper().split())}"
            for c, op in cols
            if c.upper() not in ("AND", "OR")
        )
    lock = " FOR UPDATE" if "FOR UPDATE" in flat else ""
    return f"{verb} {' ⋈ '.join(dict.fromkeys(tables))}{cond}{lock}"


_GROUPS = (
    ("select.epoll", "event loop idle (waiting for PostgreSQL)"),
    ("/asyncpg/", "asyncpg driver"),
    ("/sqlalchemy/", "SQLAlchemy (statements, compilation, result rows, pool)"),
    ("/pydantic", "pydantic (validation, serialisation)"),
    ("/fastapi/", "FastAPI (routing, dependencies, response encoding)"),
    ("/starlette/", "Starlette"),
    ("/tierwise/", "tierwise code (domain, services, repos, routes)"),
    ("/httpx/", "benchmark client (httpx, excluded)"),
    ("/httpcore/", "benchmark client (httpx, excluded)"),
    ("/bench/", "benchmark client (httpx, excluded)"),
    ("/asyncio/", "asyncio event loop"),
    ("/anyio/", "anyio"),
    ("/zoneinfo/", "zoneinfo"),
    ("/json/", "json"),
)


def _group(key: tuple[str, int, str]) -> str:
    filename, _, name = key
    text = filename if filename != "~" else name
    for needle, label in _GROUPS:
        if needle in text:
            return label
    if filename == "~":
        return "C built-ins (isinstance, dict, socket, greenlet …)"
    return "other Python (stdlib)"


def grouped_profile(profile: cProfile.Profile) -> list[tuple[str, float]]:
    stats = pstats.Stats(profile)
    sums: dict[str, float] = defaultdict(float)
    for key, value in stats.stats.items():  # type: ignore[attr-defined]
        sums[_group(key)] += value[2]  # tottime
    return sorted(sums.items(), key=lambda kv: -kv[1])


def top_functions(profile: cProfile.Profile, limit: int = 15) -> list[tuple[str, float, int]]:
    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, name), value in stats.stats.items():  # type: ignore[attr-defined]
        if any(part in filename for part in ("/httpx/", "/httpcore/", "/bench/")):
            continue
        short = re.sub(r".*/site-packages/", "", filename)
        short = re.sub(r".*/src/", "", short)
        short = re.sub(r".*/lib/python3\.\d+/", "", short)
        rows.append((f"{short}:{line}({name})", value[2], value[1]))
    rows.sort(key=lambda r: -r[1])
    return rows[:limit]


async def _dissect(database_url: str, secret: str, probes: list[Probe]) -> list[Dissection]:
    import httpx

    import tierwise.services.activities as activities_service
    import tierwise.services.status as status_service
    from tierwise.api.app import create_app
    from tierwise.settings import Settings

    settings = Settings(database_url=database_url, sweep_interval_seconds=0)
    app = create_app(settings)
    statements: list[Statement] = []
    timers: dict[str, float] = defaultdict(float)
    wrapped = [(status_service, "member_status"), (activities_service, "record")]
    originals = {name: getattr(module, name) for module, name in wrapped}

    def timed(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                timers["service"] += time.perf_counter() - t0

        return wrapper

    async def timed_app(
        scope: Any, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        t0 = time.perf_counter()
        try:
            await app(scope, receive, send)
        finally:
            timers["asgi"] += time.perf_counter() - t0

    def sink(statement: Statement) -> None:
        timers["sql"] += statement.ms / 1000
        statements.append(statement)

    for module, name in wrapped:
        setattr(module, name, timed(originals[name]))
    results: list[Dissection] = []
    try:
        async with app.router.lifespan_context(app):
            undo = instrument(app.state.runtime.engine.sync_engine, sink)
            transport = httpx.ASGITransport(app=timed_app)
            headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", headers=headers, timeout=300
            ) as client:
                counter = 0

                async def call(probe: Probe) -> None:
                    nonlocal counter
                    counter += 1
                    method, path, body = probe.make(counter)
                    answer = await client.request(method, path, content=body)
                    if answer.status_code not in (200, 201):
                        raise RuntimeError(
                            f"{method} {path}: {answer.status_code} {answer.text[:300]}"
                        )

                for probe in probes:
                    n = probe.requests
                    for _ in range(min(20, max(1, n // 3))):  # warm caches, pool, statements
                        await call(probe)
                    statements.clear()
                    await call(probe)
                    one = list(statements)
                    timers.clear()
                    for _ in range(n):
                        await call(probe)
                    found = Dissection(
                        label=probe.label,
                        statements=one,
                        requests=n,
                        asgi_ms=timers["asgi"] / n * 1000,
                        service_ms=timers["service"] / n * 1000,
                        sql_ms=timers["sql"] / n * 1000,
                    )
                    statements.clear()
                    # CPU time, not wall time: on a shared 2-core machine a wall-clock
                    # profile charges every descheduling to whatever call was running.
                    profile = cProfile.Profile(time.process_time)
                    profile.enable()
                    for _ in range(n):
                        await call(probe)
                    profile.disable()
                    found.profile = [(g, t / n * 1000) for g, t in grouped_profile(profile)]
                    found.top = [
                        (f, t / n * 1000, round(c / n)) for f, t, c in top_functions(profile)
                    ]
                    results.append(found)
                    statements.clear()
            undo()
    finally:
        for module, name in wrapped:
            setattr(module, name, originals[name])
    return results


def dissect(database_url: str, secret: str, probes: list[Probe]) -> list[Dissection]:
    """Plain asyncio (not uvloop), so the profile sees the event loop's Python parts."""
    return asyncio.run(_dissect(database_url, secret, probes))


def collapse(statements: list[Statement]) -> list[tuple[str, list[Statement]]]:
    """Consecutive statements of the same shape as one line (``1000× UPDATE members``)."""
    out: list[tuple[str, list[Statement]]] = []
    for st in statements:
        text = st.describe()
        if out and out[-1][0] == text:
            out[-1][1].append(st)
        else:
            out.append((text, [st]))
    return out


def render(found: list[Dissection], top_for: int = 1) -> str:
    lines: list[str] = []
    for n, item in enumerate(found):
        lines.append(f"{item.label}:")
        lines.append(
            f"  {len(item.queries)} SQL statements, {item.round_trips} round trips "
            "to PostgreSQL (counted at the asyncpg protocol):"
        )
        for i, (text, runs) in enumerate(collapse(item.statements), 1):
            ms = sum(st.ms for st in runs)
            rows = sum(max(st.rows, 0) for st in runs)
            count = f"{len(runs)}× " if len(runs) > 1 else ""
            is_read = text.startswith(("SELECT", "WITH")) or " RETURNING " in runs[0].sql
            shown = f", {rows} rows" if runs[0].rows >= 0 and is_read else ""
            lines.append(f"   {i:2d}. {count}{text}  [{ms:.2f} ms{shown}]")
        other = item.asgi_ms - item.service_ms
        logic = item.service_ms - item.sql_ms
        lines.append(
            f"  wall time per request, sequential, in-process (mean of {item.requests}): "
            f"{item.asgi_ms:.2f} ms = PostgreSQL round trips {item.sql_ms:.2f} ms + service Python "
            f"{logic:.2f} ms + HTTP/auth/validation/serialisation {other:.2f} ms"
        )
        total = sum(t for g, t in item.profile if "excluded" not in g)
        lines.append(
            f"  CPU profile, own time per request by package (total {total:.2f} ms, "
            "inflated by the profiler):"
        )
        for group, ms in item.profile:
            if ms < 0.01 * total and "excluded" not in group:
                continue
            share = "" if "excluded" in group else f" ({ms / total:5.1%})"
            lines.append(f"    {ms:8.3f} ms  {group}{share}")
        if n < top_for or len(found) <= top_for:
            lines.append("  top functions by own CPU time (ms per request, calls per request):")
            for name, ms, calls in item.top:
                lines.append(f"    {ms:8.3f} ms  {calls:6d}×  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.anatomy", description=__doc__)
    parser.add_argument("database_url")
    parser.add_argument("secret")
    parser.add_argument("members", nargs="+", help="external member ids to read")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--writes",
        action="store_true",
        help="also dissect single and batch activity POSTs (writes data)",
    )
    parser.add_argument(
        "--writes-only",
        action="store_true",
        help="dissect only the single and batch activity POSTs (writes data)",
    )
    parser.add_argument(
        "--seeded",
        type=int,
        default=0,
        help="write to the first N seeded members m0000… instead of MEMBERS",
    )
    parser.add_argument("--batches", type=int, default=1, help="batches to dissect")
    args = parser.parse_args(argv)
    probes = (
        []
        if args.writes_only
        else [status_probe(f"GET status of {m}", m, args.requests) for m in args.members]
    )
    if args.writes or args.writes_only:
        targets = [f"m{i:04d}" for i in range(args.seeded)] if args.seeded else args.members
        probes += [single_probe(targets), batch_probe(targets, args.batches)]
    print(render(dissect(args.database_url, args.secret, probes), top_for=len(probes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
