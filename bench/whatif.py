"""What-if experiments: how much would the suggested optimisations save?

Each variant runs the real application in-process and patches, for the duration of the
run only, one thing that docs/performance.md suggests changing in ``src/``:

- ``cache-defs``: program, ladder and level-id lookups answered from a per-process cache
  (removes 3 of the status read's 7 statements and 3 of a write's 14);
- ``no-tx``: the read runs on an autocommit connection (no ``BEGIN``/``ROLLBACK`` round
  trips; at READ COMMITTED each statement takes its own snapshot anyway);
- ``memo``: the status service answers from a per-member memo (0 SQL): what is left is
  the HTTP layer (auth, validation, response model, JSON), the floor under any status
  read that keeps FastAPI and the response model, e.g. one reading a stored status
  document;
- ``one-update``: a batch sets every member's ``last_activity_at`` with one executemany
  instead of one ``UPDATE`` round trip per member.

It reports CPU milliseconds per request (``time.process_time``: robust to a noisy shared
machine, unlike wall time) for the service function and for the whole in-process request.
Nothing in ``src/`` is changed. Run it with ``python -m bench --what-if`` or on its own
against a database kept by ``python -m bench --keep-db``::

    .venv/bin/python -m bench.whatif DATABASE_URL SECRET LIGHT_MEMBER HEAVY_MEMBER
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass
class Variant:
    probe: str
    variant: str
    requests: int
    request_cpu_ms: float
    service_cpu_ms: float
    statements: float
    round_trips: float


@contextmanager
def patched(target: Any, name: str, value: Any) -> Iterator[None]:
    if not hasattr(target, name):  # the code moved on: nothing to patch here
        yield
        return
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


def cache_defs() -> list[tuple[Any, str, Any]]:
    """Patches that answer program and ladder lookups from a dict after the first call."""
    import tierwise.db.repos.programs as programs_repo
    import tierwise.services.activities as activities_service
    import tierwise.services.programs as programs_service
    import tierwise.services.status as status_service

    get_program = programs_service.get_program
    ladders = programs_repo.ladders
    programs: dict[Any, Any] = {}
    ladder_rows: dict[Any, Any] = {}

    async def cached_program(conn: Any, caller: Any, program_id: int | None) -> Any:
        key = (caller.tenant_id, program_id)
        if key not in programs:
            programs[key] = await get_program(conn, caller, program_id)
        return programs[key]

    async def cached_ladders(conn: Any, cache: Any, **kwargs: Any) -> Any:
        key = tuple(sorted(kwargs.items()))
        if key not in ladder_rows:
            ladder_rows[key] = await ladders(conn, cache, **kwargs)
        return ladder_rows[key]

    return [
        (status_service, "get_program", cached_program),
        (activities_service, "get_program", cached_program),
        (programs_repo, "ladders", cached_ladders),
    ]


def memo_status() -> list[tuple[Any, str, Any]]:
    """``member_status`` answered from a memo after its first call per arguments."""
    import tierwise.services.status as status_service

    original = status_service.member_status
    memo: dict[Any, Any] = {}

    async def memoised(rt: Any, caller: Any, external_id: str, **kwargs: Any) -> Any:
        key = (caller.tenant_id, external_id, tuple(sorted(kwargs.items())))
        if key not in memo:
            memo[key] = await original(rt, caller, external_id, **kwargs)
        return memo[key]

    return [(status_service, "member_status", memoised)]


def one_update() -> list[tuple[Any, str, Any]]:
    """``set_last_activity`` as one executemany instead of one UPDATE per member."""
    from sqlalchemy import bindparam, update

    import tierwise.db.repos.members as members_repo
    from tierwise.db.tables import Member

    async def set_last_activity(conn: Any, values: dict[int, datetime], now: datetime) -> None:
        if not values:
            return
        stmt = (
            update(Member)
            .where(Member.id == bindparam("mid"))
            .values(last_activity_at=bindparam("at"), updated_at=bindparam("now"))
        )
        await conn.execute(stmt, [{"mid": m, "at": at, "now": now} for m, at in values.items()])

    return [(members_repo, "set_last_activity", set_last_activity)]


async def _run(
    database_url: str, secret: str, light: str, heavy: str, members: list[str], requests: int
) -> list[Variant]:
    import httpx

    import tierwise.services.activities as activities_service
    import tierwise.services.status as status_service
    from bench.anatomy import _CONTROL, Statement, instrument
    from tierwise.api.app import create_app
    from tierwise.services.runtime import Runtime
    from tierwise.settings import Settings

    app = create_app(Settings(database_url=database_url, sweep_interval_seconds=0))
    service_cpu = [0.0]
    statements = [0]
    round_trips = [0]

    def sink(statement: Statement) -> None:
        round_trips[0] += 1
        if not _CONTROL.match(statement.sql):
            statements[0] += 1

    def timed(function: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return await function(*args, **kwargs)
            finally:
                service_cpu[0] += time.process_time() - t0

        return wrapper

    def no_tx(rt: Runtime) -> Callable[[], Any]:
        @asynccontextmanager
        async def transaction() -> AsyncIterator[Any]:
            async with rt.engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield auto

        return transaction

    results: list[Variant] = []
    nonce = f"whatif-{time.time_ns()}"
    counter = [0]

    def purchase(member: str) -> dict[str, Any]:
        counter[0] += 1
        return {
            "type": "purchase",
            "member_id": member,
            "idempotency_key": f"{nonce}-{counter[0]}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "amount_minor": 2500,
            "currency": "USD",
        }

    async with app.router.lifespan_context(app):
        rt: Runtime = app.state.runtime
        undo = instrument(rt.engine.sync_engine, sink)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://whatif",
            timeout=300,
            headers={"Authorization": f"Bearer {secret}"},
        ) as client:

            async def status(member: str) -> None:
                answer = await client.get(f"/v1/members/{member}/status")
                assert answer.status_code == 200, answer.text

            async def single() -> None:
                answer = await client.post(
                    "/v1/activities", json=purchase(members[counter[0] % len(members)])
                )
                assert answer.status_code in (200, 201), answer.text

            async def batch() -> None:
                acts = [purchase(members[i % len(members)]) for i in range(1000)]
                answer = await client.post("/v1/activities/batch", json={"activities": acts})
                assert answer.status_code == 200, answer.text

            probes: list[tuple[str, Callable[[], Any], int]] = [
                (f"status of {light}", lambda: status(light), requests),
                (f"status of {heavy}", lambda: status(heavy), requests),
                ("POST /v1/activities", single, max(requests // 2, 10)),
                ("POST /v1/activities/batch ×1,000", batch, 3),
            ]
            variants: list[tuple[str, list[tuple[Any, str, Any]], bool]] = [
                ("as is", [], False),
                ("cache-defs", cache_defs(), False),
                ("cache-defs + no-tx (reads)", cache_defs(), True),
                ("memo: 0 SQL (reads)", memo_status(), False),
                ("one-update (batches)", one_update(), False),
                ("cache-defs + one-update", cache_defs() + one_update(), False),
            ]
            for probe, call, n in probes:
                is_read = probe.startswith("status")
                for name, patches, read_no_tx in variants:
                    if read_no_tx and not is_read:
                        continue
                    if "one-update" in name and "batch" not in probe:
                        continue
                    if "memo" in name and not is_read:
                        continue
                    chosen = {(id(t), n): v for t, n, v in patches}
                    status_fn = chosen.get(
                        (id(status_service), "member_status"), status_service.member_status
                    )
                    others = [p for p in patches if p[1] != "member_status"]
                    with _all(
                        others
                        + [
                            (status_service, "member_status", timed(status_fn)),
                            (activities_service, "record", timed(activities_service.record)),
                        ]
                        + ([(rt, "transaction", no_tx(rt))] if read_no_tx else [])
                    ):
                        for _ in range(min(n, 10)):
                            await call()
                        service_cpu[0] = 0.0
                        statements[0] = 0
                        round_trips[0] = 0
                        t0 = time.process_time()
                        for _ in range(n):
                            await call()
                        total = time.process_time() - t0
                    results.append(
                        Variant(
                            probe,
                            name,
                            n,
                            total / n * 1000,
                            service_cpu[0] / n * 1000,
                            statements[0] / n,
                            round_trips[0] / n,
                        )
                    )
        undo()
    return results


@contextmanager
def _all(patches: list[tuple[Any, str, Any]]) -> Iterator[None]:
    if not patches:
        yield
        return
    target, name, value = patches[0]
    with patched(target, name, value), _all(patches[1:]):
        yield


def what_if(
    database_url: str, secret: str, light: str, heavy: str, members: list[str], requests: int = 200
) -> list[Variant]:
    return asyncio.run(_run(database_url, secret, light, heavy, members, requests))


def render(found: list[Variant]) -> str:
    lines = [
        "What-if (in-process, CPU ms per request; the service's share in brackets; "
        "SQL statements / round trips per request):"
    ]
    base: dict[str, Variant] = {}
    for v in found:
        base.setdefault(v.probe, v)
        gain = 1 - v.request_cpu_ms / base[v.probe].request_cpu_ms
        lines.append(
            f"  {v.probe:34s} {v.variant:28s} {v.request_cpu_ms:8.2f} ms "
            f"[{v.service_cpu_ms:8.2f}]  {v.statements:6.1f} / {v.round_trips:6.1f}"
            + ("" if v is base[v.probe] else f"  {gain:+.0%} CPU saved")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.whatif", description=__doc__)
    parser.add_argument("database_url")
    parser.add_argument("secret")
    parser.add_argument("light")
    parser.add_argument("heavy")
    parser.add_argument("--members", nargs="*", default=[f"m{i:04d}" for i in range(1000)])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    url = args.database_url
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://") :]
    found = what_if(url, args.secret, args.light, args.heavy, args.members, args.requests)
    print(json.dumps([v.__dict__ for v in found], indent=2) if args.json else render(found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
