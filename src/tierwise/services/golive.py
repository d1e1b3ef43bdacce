"""Go-live re-evaluation jobs (R25), member counts (R26) and the impact preview.

A job walks the tenant's members in id order, a batch per transaction, and commits its
cursor with each batch: a process that dies midway leaves a job that the next runner
(``tierwise jobs run``, the API process, or the sweep) resumes where it stopped. Each
batch is applied with the same standing writes as any other change, so history and
events record every move.
"""

from __future__ import annotations

import asyncio
import gc
import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import programs as programs_repo
from tierwise.db.repos import versions as repo
from tierwise.db.repos.programs import LadderRow
from tierwise.db.repos.versions import JobRow, VersionRow
from tierwise.domain import checks
from tierwise.domain.checks import Context
from tierwise.domain.errors import NotFound
from tierwise.domain.ladder import Ladder, Level
from tierwise.domain.state import ChangeSource, TierChange, TierState
from tierwise.domain.versions import VersionState
from tierwise.services.qualify_sql import Batch
from tierwise.services.reevaluation import Decider, batch, evaluate
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.standing import Standings
from tierwise.services.versions import ladder_identity

BATCH = 5000
"""Members per go-live transaction (their rows stay locked while it runs)."""
PREVIEW_BATCH = 20_000
"""Members per read of the impact preview (it writes nothing)."""


async def run_job(
    rt: Runtime,
    job_uuid: str,
    *,
    batch_size: int = BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> JobRow:
    """Run (or resume) a go-live job to the end; returns its final row.

    Each batch is one transaction: it locks its members, evaluates them, writes their
    moves, then takes the job row and commits the batch with the job's cursor, but only
    if the cursor is still where the batch started (a batch another runner handled
    meanwhile is rolled back). On PostgreSQL the next batch is read and evaluated while
    the previous one is written and committed (two transactions in flight, committed in
    order), so the database and this process work at the same time."""
    decider: list[Decider] = []
    pipelined = rt.engine.dialect.name == "postgresql"
    with _fewer_full_collections():
        while True:
            async with rt.transaction() as conn:
                job = await repo.job(conn, uuid=job_uuid)
            if job is None:
                raise NotFound(f"no job {job_uuid}", code="job_not_found")
            if job.state in ("done", "failed"):
                return job
            await _run_from(rt, job, batch_size, progress, decider, pipelined=pipelined)


_collecting: list[tuple[int, int, int]] = []
"""The garbage collector's thresholds before the first running job changed them (one
entry per job running in this process)."""


@contextmanager
def _fewer_full_collections() -> Iterator[None]:
    """While jobs run, the collector's oldest generation is examined 100 times less
    often. A batch in flight holds many short-lived objects (rows, standings, verdicts)
    that survive the young collections, and each full collection walks all of them
    again: a quarter of the job's CPU time with the default thresholds (measured with
    ``bench.golive_bench``). Young collections, which free most cycles, are unchanged;
    the thresholds come back when the last job of the process ends."""
    before = gc.get_threshold()
    if not _collecting:
        gc.set_threshold(before[0], before[1], max(before[2], 1) * 100)
    _collecting.append(before)
    try:
        yield
    finally:
        first = _collecting[0]
        _collecting.pop()
        if not _collecting:
            gc.set_threshold(*first)


async def _run_from(
    rt: Runtime,
    job: JobRow,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    decider: list[Decider],
    *,
    pipelined: bool,
) -> None:
    """Batches from the job's cursor on, until the end or until a batch finds the job
    moved on without it (then the caller reads the job again)."""
    cursor: int | None = job.cursor
    previous: asyncio.Task[bool] | None = None
    flushed: asyncio.Event | None = None
    tasks: list[asyncio.Task[bool]] = []
    try:
        while cursor is not None:
            read: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
            order = _Order(previous, flushed, asyncio.Event())
            task = asyncio.create_task(
                _batch(rt, job.uuid, cursor, batch_size, progress, decider, order, read)
            )
            tasks.append(task)
            flushed = order.flushed
            waiting: set[asyncio.Future[Any]] = {task, read}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            cursor = read.result() if read.done() else None
            # At most two batches in flight: this one, and the next once the one before
            # this has committed.
            if previous is not None and not await previous:
                cursor = None
            if not pipelined and not await task:
                cursor = None
            previous = task
        if previous is not None:
            await previous
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        raise
    finally:
        # After a failure the batch in flight rolls back (it finds its predecessor
        # failed); its outcome is collected here.
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class _Order:
    """How a batch waits for the one before it: it writes after that one has written
    (``after_flush``; so writes happen in batch order) and commits after it committed
    (``previous``). ``flushed`` is set once this batch has written (or failed)."""

    previous: asyncio.Task[bool] | None
    after_flush: asyncio.Event | None
    flushed: asyncio.Event


async def _batch(
    rt: Runtime,
    job_uuid: str,
    cursor: int,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    decider: list[Decider],
    order: _Order,
    read: asyncio.Future[int | None],
) -> bool:
    """One batch after ``cursor``: True when it committed and more may follow. ``read``
    is given the last member id read (None when there are none) as soon as it is known."""
    try:
        return await _batch_in(rt, job_uuid, cursor, batch_size, progress, decider, order, read)
    finally:
        order.flushed.set()
        if not read.done():
            read.set_result(None)


async def _batch_in(
    rt: Runtime,
    job_uuid: str,
    cursor: int,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    decider: list[Decider],
    order: _Order,
    read: asyncio.Future[int | None],
) -> bool:
    previous = order.previous
    async with rt.transaction() as conn:
        job = await repo.job(conn, uuid=job_uuid)
        if job is None:
            raise NotFound(f"no job {job_uuid}", code="job_not_found")
        now = rt.clock()
        found = await batch(
            conn,
            tenant_id=job.tenant_id,
            ladder_id=job.ladder_id,
            after_id=cursor,
            limit=batch_size,
            lock=True,
        )
        members = found.members
        read.set_result(members[-1].id if members else None)
        ladders = [
            row
            for row in await programs_repo.ladders(conn, rt.definitions, tenant_id=job.tenant_id)
            if row.id == job.ladder_id
        ]
        version = await repo.version_by_id(conn, job.version_id)
        finishing = not members or not ladders or version is None
        changes: Counter[str] = Counter()
        if not finishing:
            assert version is not None
            changes = await _apply(
                rt, conn, job, found, ladders[0], version, now, decider, order.after_flush
            )
        order.flushed.set()
        # Runners of one job take turns: each batch commits holding the job row, in order.
        if previous is not None and not await previous:
            return False
        job = await repo.job(conn, uuid=job_uuid, lock=True)
        if job is None:
            raise NotFound(f"no job {job_uuid}", code="job_not_found")
        if job.state in ("done", "failed") or job.cursor != cursor:
            return False  # another runner handled this batch: ours rolls back
        if finishing:
            await _finish(conn, job, now)
            await conn.commit()
            if progress is not None:
                progress(job.total, job.total)
            return False
        done = job.done + len(members)
        await repo.update_job(
            conn,
            job.id,
            {
                "state": "running",
                "cursor": members[-1].id,
                "done": done,
                "total": max(job.total, done),
                "changes": dict(Counter(job.changes) + changes),
                "updated_at": now,
            },
        )
        await conn.commit()
    if progress is not None:
        progress(done, max(job.total, done))
    return True


async def _apply(
    rt: Runtime,
    conn: AsyncConnection,
    job: JobRow,
    found: Batch,
    row: LadderRow,
    version: VersionRow,
    now: datetime,
    decider: list[Decider],
    after_flush: asyncio.Event | None,
) -> Counter[str]:
    """Evaluate a batch under the version and write the moves; the changes per kind."""
    members = found.members
    program = next(
        p for p in await programs_repo.programs_of(conn, job.tenant_id) if p.id == row.program_id
    )
    ladder = version.definition
    old = await _previous_definition(conn, job.ladder_id, job.version_id)
    standings = Standings(rt, conn, job.tenant_id, now)
    # Standings read with the batch (rows are never deleted, so they are updated by id);
    # members without one are placed as usual.
    standings.adopt(
        {(m, row.id): state for m, state in found.states.items()},
        {(m, row.id): tier_id for m, tier_id in found.tier_ids.items()},
    )
    await standings.load(
        [
            (m.id, m.external_id, m.enrolled_at, program)
            for m in members
            if m.id not in found.states
        ],
        {program.id: [row]},
    )
    states = found.states
    if len(states) < len(members):
        states = {m.id: standings.get(m.id, row.id) for m in members}
    if not decider or (decider[0].ladder, decider[0].old) != (ladder, old):
        decider[:] = [Decider(ladder, old, downgrades_now=job.apply_downgrades_now)]
    verdicts = await evaluate(
        conn,
        program=program,
        ladder=ladder,
        old=old,
        members=members,
        states=states,
        at=now,
        downgrades_now=job.apply_downgrades_now,
        decide=decider[0],
    )
    changes: Counter[str] = Counter()
    reason = f"version {version.number} live"
    levels = {level.key: level for level in reversed(ladder.levels)}  # as ladder.level()
    for item in verdicts:
        if item.kind is None or not item.now:
            continue
        state = states[item.member.id]
        target = levels.get(item.target) if item.target else None
        moved = entered(
            ladder,
            state,
            target,
            now,
            tz=program.tz,
            enrolled_at=item.member.enrolled_at,
            last_activity_at=item.member.last_activity_at,
        )
        standings.change(
            item.member.id,
            row,
            moved,
            TierChange(
                from_level=item.current,
                to_level=item.target,
                kind=item.kind,
                at=now,
                source=ChangeSource.DEFINITION,
                reason=reason,
            ),
            item.member.external_id,
        )
        changes[item.kind.value] += 1
    if after_flush is not None:
        await after_flush.wait()
    await standings.flush()
    return changes


def entered(
    ladder: Ladder,
    state: TierState,
    level: Level | None,
    at: datetime,
    *,
    tz: ZoneInfo,
    enrolled_at: datetime,
    last_activity_at: datetime | None,
) -> TierState:
    """``lifecycle.enter`` (without further changes), built in one step: the checks'
    direct construction, keeping the member's assignment."""
    ctx = Context(tz, enrolled_at, last_activity_at)
    return checks.entered(ladder, state, level, at, ctx, state.assignment)


async def _previous_definition(
    conn: AsyncConnection, ladder_id: int, version_id: int
) -> Ladder | None:
    snapshots = [
        v
        for v in await repo.versions_of(conn, ladder_id)
        if v.state is VersionState.SNAPSHOT and v.id != version_id
    ]
    return snapshots[-1].definition if snapshots else None


async def _finish(conn: AsyncConnection, job: JobRow, now: datetime) -> None:
    await repo.update_job(
        conn,
        job.id,
        {
            "state": "done",
            "finished_at": now,
            "updated_at": now,
            "total": job.done,
        },
    )
    counts = await repo.count_levels(conn, job.ladder_id)
    await repo.save_counts(conn, job.ladder_id, job.version_id, counts, now)


async def run_pending(rt: Runtime) -> list[JobRow]:
    """Finish every job that is pending or was interrupted."""
    async with rt.transaction() as conn:
        jobs = await repo.unfinished_jobs(conn)
    return [await run_job(rt, job.uuid) for job in jobs]


async def read_job(rt: Runtime, caller: Caller, job_uuid: str) -> JobRow:
    async with rt.transaction() as conn:
        job = await repo.job(conn, uuid=job_uuid, tenant_id=caller.tenant_id)
    if job is None:
        raise NotFound(f"no job {job_uuid}", code="job_not_found")
    return job


# -- counts (R26) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LevelCounts:
    ladder: str
    version: int | None
    counts: dict[str, int]
    computed_at: datetime | None


async def level_counts(
    rt: Runtime, caller: Caller, program_id: int, key: str, *, refresh: bool = False
) -> LevelCounts:
    async with rt.transaction() as conn:
        ladder = await ladder_identity(rt, conn, caller, program_id, key)
        if refresh and ladder.live_version_id is not None:
            counts = await repo.count_levels(conn, ladder.id)
            await repo.save_counts(conn, ladder.id, ladder.live_version_id, counts, rt.clock())
            await conn.commit()
        stored = await repo.counts(conn, ladder.id)
    levels = [level.key for level in ladder.definition.levels] if ladder.definition else []
    if stored is None:
        return LevelCounts(key, ladder.live_version_number, dict.fromkeys(levels, 0), None)
    counts, computed_at, _ = stored
    return LevelCounts(
        key,
        ladder.live_version_number,
        {level: counts.get(level, 0) for level in levels}
        | ({"": counts[""]} if counts.get("") else {}),
        computed_at,
    )


# -- impact preview -----------------------------------------------------------------------


@dataclass
class Preview:
    ladder: str
    version: int
    computed_at: datetime
    members: int = 0
    per_level: dict[str, int] = field(default_factory=dict)
    up: int = 0
    down: int = 0
    stay: int = 0
    moves: dict[str, int] = field(default_factory=dict)
    sample: list[dict[str, str | None]] = field(default_factory=list)


async def preview(
    rt: Runtime,
    caller: Caller,
    program_id: int,
    key: str,
    number: int,
    *,
    sample_size: int = 20,
    batch_size: int = PREVIEW_BATCH,
    progress: Callable[[int], None] | None = None,
) -> Preview:
    """What a version would do to today's member base, changing nothing: members per level
    under it, who would move up (at once) or down (at their next check, or at once when
    the version applies downgrades now), per from→to pair, and a sample of movers."""
    now = rt.clock()
    async with rt.transaction() as conn:
        ladder_row = await ladder_identity(rt, conn, caller, program_id, key)
        version = await repo.version(conn, ladder_row.id, number)
        if version is None:
            raise NotFound(f"ladder {key!r} has no version {number}", code="version_not_found")
        program = next(
            p
            for p in await programs_repo.programs_of(conn, caller.tenant_id)
            if p.id == ladder_row.program_id
        )
    if rt.engine.dialect.name != "postgresql":
        batch_size = min(batch_size, BATCH)  # ids go as one bound parameter each
    result = Preview(ladder=key, version=number, computed_at=now)
    per_level: Counter[str] = Counter()
    moves: Counter[str] = Counter()
    rng = random.Random(0)
    cursor = 0
    decide = Decider(version.definition, ladder_row.definition, downgrades_now=True)
    with _fewer_full_collections():
        while True:
            async with rt.transaction() as conn:
                found = await batch(
                    conn,
                    tenant_id=caller.tenant_id,
                    ladder_id=ladder_row.id,
                    after_id=cursor,
                    limit=batch_size,
                )
                members = found.members
                if not members:
                    break
                states = {
                    m.id: found.states.get(m.id) or _placed(version.definition, m) for m in members
                }
                verdicts = await evaluate(
                    conn,
                    program=program,
                    ladder=version.definition,
                    old=ladder_row.definition,
                    members=members,
                    states=states,
                    at=now,
                    downgrades_now=True,
                    decide=decide,
                )
            cursor = members[-1].id
            for item in verdicts:
                result.members += 1
                if item.kind is None or item.target == item.current:
                    result.stay += 1
                    per_level[item.current or ""] += 1
                    continue
                per_level[item.target or ""] += 1
                moves[f"{item.current or ''}->{item.target or ''}"] += 1
                moving_up = item.kind.value == "upgraded"
                if moving_up:
                    result.up += 1
                else:
                    result.down += 1
                entry: dict[str, str | None] = {
                    "member_id": item.member.external_id,
                    "from": item.current,
                    "to": item.target,
                    "direction": "up" if moving_up else "down",
                }
                seen = result.up + result.down
                if len(result.sample) < sample_size:
                    result.sample.append(entry)
                elif rng.random() < sample_size / seen:
                    result.sample[rng.randrange(sample_size)] = entry
            if progress is not None:
                progress(len(members))
    levels = [level.key for level in version.definition.levels]
    result.per_level = {level: per_level.get(level, 0) for level in levels} | (
        {"": per_level[""]} if per_level.get("") else {}
    )
    result.moves = dict(sorted(moves.items()))
    return result


def _placed(ladder: Ladder, member: object) -> TierState:
    floor = ladder.floor
    if floor is None:
        return TierState()
    enrolled = getattr(member, "enrolled_at", None)
    return TierState(level_key=floor.key, achieved_at=enrolled, cycle_start=enrolled)
