"""The sweep: handle every standing that fell due by an instant (R15-R18, R20).

Work is claimed in batches (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one
writer at a time), each batch in its own transaction. A standing is handled event by
event in time order until its next due instant lies after ``as_of``, so a late sweep
handles every missed due date once, in order. A second sweep finds nothing due; a
crashed sweep leaves unhandled standings due for the next one.

Cost grows with the due standings only, a fixed number of statements per batch. On
PostgreSQL (``sweep_sql``) a batch is: one claim (standings and their members); one
statement per program that sums, for every standing whose windows cover whole days, each
window over the daily buckets (or takes the running total), so the first due event of
those standings is decided without loading their buckets into Python; and one statement
that updates the standings and appends their history and outbox events (rows sent as one
JSON text). Standings whose windows start or end inside a day, and the rare ones with
further events due, continue on the general path (one read of totals and daily buckets
per program, single activities for edge days) within the same batch and its one write.
SQLite always takes the general path and writes through ``Standings``.

Memory is one batch: a handled standing is no longer due, so the next claim does not see
it; only the rare standing that stays due (a ladder without a live definition, a stale
due instant, more than ``MAX_EVENTS_PER_STANDING`` events) is remembered, so that it is
not claimed again in this sweep.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from queue import Empty
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import activities as ledger
from tierwise.db.repos import members as members_repo
from tierwise.db.repos import programs as programs_repo
from tierwise.db.repos.members import DueStanding
from tierwise.db.repos.programs import LadderRow
from tierwise.db.repos.state_json import state_json
from tierwise.db.repos.upsert import pg_driver
from tierwise.db.tables import MemberTier
from tierwise.domain.checks import Context, Due, handle, next_due
from tierwise.domain.criteria import MeasureKey
from tierwise.domain.figures import MemberFigures, span_days
from tierwise.domain.ladder import Ladder
from tierwise.domain.program import Program
from tierwise.domain.state import TierChange, TierState
from tierwise.domain.windows import Interval, WindowType
from tierwise.services import measuring, sweep_sql
from tierwise.services.runtime import Runtime
from tierwise.services.standing import Standings, iso_instant, time_ordered_uuids
from tierwise.settings import Settings

MAX_EVENTS_PER_STANDING = 10_000
#: Whether PostgreSQL batches take the set-based path (window sums and writes in one
#: statement each); off, they take the general one, as SQLite does (for comparisons).
SET_BASED = True
DEFAULT_BATCH_SIZE = 2000


@dataclass
class SweepSummary:
    as_of: datetime
    standings: int = 0
    events: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    batches: int = 0


async def sweep(
    rt: Runtime,
    *,
    as_of: datetime,
    tenant_id: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> SweepSummary:
    summary = SweepSummary(as_of=as_of)
    stuck: set[int] = set()
    while True:
        async with rt.transaction() as conn:
            claimed = await members_repo.claim_due(
                conn, as_of=as_of, tenant_id=tenant_id, limit=batch_size, exclude=stuck
            )
            if not claimed:
                break
            left = await _process(rt, conn, claimed, as_of, summary)
            await conn.commit()
        stuck.update(left)
        summary.batches += 1
        summary.standings += len(claimed)
        if progress is not None:
            progress(len(claimed))
    return summary


def sweep_in_processes(
    settings: Settings,
    *,
    as_of: datetime,
    tenant_id: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> SweepSummary:
    """Run ``workers`` sweeps side by side, each in its own process, and merge their
    summaries. Each claims its own batches (``FOR UPDATE SKIP LOCKED``), so a standing is
    handled once; this uses more than one CPU for the rules. PostgreSQL only: SQLite has
    one writer at a time, so there one sweep runs in a single process.

    Raises ``SweepFailed`` if a worker fails (the others finish their work; what the
    failed one had not committed stays due for the next sweep)."""
    if settings.is_sqlite or workers <= 1:
        return asyncio.run(_sweep_with(settings, as_of, tenant_id, batch_size, progress))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(
            target=_worker,
            args=(settings, as_of, tenant_id, batch_size, queue),
            name=f"tierwise-sweep-{n}",
            daemon=True,
        )
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    summaries: list[SweepSummary] = []
    errors: list[str] = []
    running = len(processes)
    while running:
        try:
            kind, value = queue.get(timeout=1.0)
        except Empty:
            if not any(p.is_alive() for p in processes) and queue.empty():
                errors.append("a sweep worker stopped without reporting")
                break
            continue
        if kind == "progress":
            if progress is not None:
                progress(value)
            continue
        running -= 1
        if kind == "done":
            summaries.append(value)
        else:
            errors.append(value)
    for process in processes:
        process.join()
    if errors:
        raise SweepFailed("; ".join(errors))
    merged = SweepSummary(as_of=as_of)
    for summary in summaries:
        merged.standings += summary.standings
        merged.events += summary.events
        merged.batches += summary.batches
        for kind, count in summary.changes.items():
            merged.changes[kind] = merged.changes.get(kind, 0) + count
    return merged


class SweepFailed(RuntimeError):
    """A sweep worker process failed."""


async def _sweep_with(
    settings: Settings,
    as_of: datetime,
    tenant_id: int | None,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> SweepSummary:
    rt = Runtime(settings)
    try:
        return await sweep(
            rt, as_of=as_of, tenant_id=tenant_id, batch_size=batch_size, progress=progress
        )
    finally:
        await rt.close()


def _worker(
    settings: Settings,
    as_of: datetime,
    tenant_id: int | None,
    batch_size: int,
    queue: Any,
) -> None:
    # This process only sweeps: what it imported lives until it ends, so it is kept out
    # of the collector's passes, and the many short-lived objects of a batch (freed by
    # reference counting) trigger fewer of them.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            summary = runner.run(
                _sweep_with(
                    settings, as_of, tenant_id, batch_size, lambda n: queue.put(("progress", n))
                )
            )
    except BaseException as exc:
        queue.put(("error", f"{type(exc).__name__}: {exc}"))
        raise
    queue.put(("done", summary))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (it comes with ``uvicorn[standard]``):
    a worker spends a good part of its time in socket I/O."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is an optional speed-up
        return None
    return uvloop.new_event_loop


async def count_due(rt: Runtime, *, as_of: datetime, tenant_id: int | None = None) -> int:
    async with rt.transaction() as conn:
        query = select(func.count()).select_from(MemberTier).where(MemberTier.due_at <= as_of)
        if tenant_id is not None:
            query = query.where(MemberTier.tenant_id == tenant_id)
        return int((await conn.execute(query)).scalar_one())


async def _process(
    rt: Runtime,
    conn: AsyncConnection,
    claimed: list[DueStanding],
    as_of: datetime,
    summary: SweepSummary,
) -> list[int]:
    """Handle one claimed batch; returns the ids of standings that are still due."""
    by_tenant: dict[int, list[DueStanding]] = defaultdict(list)
    for due in claimed:
        by_tenant[due.tenant_id].append(due)
    driver = await pg_driver(conn) if SET_BASED else None
    left: list[int] = []
    if driver is None:
        for tenant_id, dues in by_tenant.items():
            standings = Standings(rt, conn, tenant_id, rt.clock())
            standings.adopt(
                {(d.member_id, d.ladder_id): d.state for d in dues},
                locked={(d.member_id, d.ladder_id): d.id for d in dues},
            )
            recorder = _StandingsRecorder(standings)
            left.extend(
                await _process_tenant(rt, conn, None, tenant_id, dues, as_of, summary, recorder)
            )
            await standings.flush()
        return left
    batch = _BatchRecorder()
    for tenant_id, dues in by_tenant.items():
        left.extend(await _process_tenant(rt, conn, driver, tenant_id, dues, as_of, summary, batch))
    await batch.flush(driver, rt.clock())
    return left


class _StandingsRecorder:
    """Records into a ``Standings`` (the portable path)."""

    __slots__ = ("standings",)

    def __init__(self, standings: Standings) -> None:
        self.standings = standings

    def change(
        self, standing: DueStanding, row: LadderRow, state: TierState, change: TierChange | None
    ) -> None:
        self.standings.change(standing.member_id, row, state, change, standing.external_id)


class _BatchRecorder:
    """Collects a batch's new standings and changes for one set-based write (PostgreSQL)."""

    __slots__ = ("changes", "states")

    def __init__(self) -> None:
        self.states: dict[int, TierState] = {}
        self.changes: list[tuple[DueStanding, LadderRow, TierChange, TierState]] = []

    def change(
        self, standing: DueStanding, row: LadderRow, state: TierState, change: TierChange | None
    ) -> None:
        self.states[standing.id] = state
        if change is not None:
            self.changes.append((standing, row, change, state))

    async def flush(self, driver: Any, now: datetime) -> None:
        if not self.states:
            return
        changes = self.changes
        uuids = time_ordered_uuids(2 * len(changes))
        payload_text = sweep_sql.payload_text
        rows: list[tuple[Any, ...]] = []
        for n, (standing, row, change, after) in enumerate(changes):
            change_uuid = uuids[2 * n]
            kind = change.kind._value_
            source = change.source._value_
            payload = {
                "change_id": change_uuid,
                "member_id": standing.external_id or "",
                "program_id": row.program_id,
                "ladder": row.key,
                "from": change.from_level,
                "to": change.to_level,
                "kind": kind,
                "source": source,
                "activity_id": None,
                "actor": change.actor,
                "reason": change.reason,
                "at": iso_instant(change.at),
            }
            rows.append(
                (
                    change_uuid,
                    uuids[2 * n + 1],
                    standing.tenant_id,
                    standing.member_id,
                    row.id,
                    change.from_level,
                    change.to_level,
                    kind,
                    source,
                    change.actor,
                    change.reason,
                    change.at,
                    state_json(after),
                    payload_text(payload),
                )
            )
        await sweep_sql.write_batch(driver, now=now, standings=self.states.items(), changes=rows)
        self.states = {}
        self.changes = []


_Recorder = _StandingsRecorder | _BatchRecorder


async def _process_tenant(
    rt: Runtime,
    conn: AsyncConnection,
    driver: Any | None,
    tenant_id: int,
    dues: list[DueStanding],
    as_of: datetime,
    summary: SweepSummary,
    recorder: _Recorder,
) -> list[int]:
    ladder_rows = {
        row.id: row
        for row in await programs_repo.ladders(conn, rt.definitions, tenant_id=tenant_id)
        if row.definition is not None
    }
    programs = {p.id: p for p in await programs_repo.programs_of(conn, tenant_id)}
    plans: dict[int, _Plan | None] = {}
    if driver is not None:
        dues = await _fast_first_events(
            driver, plans, ladder_rows, programs, dues, as_of, summary, recorder
        )
    # Figures: one load per program, from the first day any due event needs.
    needs: dict[int, dict[int, tuple[date | None, datetime | None]]] = defaultdict(dict)
    metrics: dict[int, set[str]] = defaultdict(set)
    work: list[tuple[DueStanding, _Plan, Spans | None]] = []
    left: list[int] = []
    for due_standing in dues:
        ladder_id = due_standing.ladder_id
        plan = plans.get(ladder_id, _UNSET)
        if plan is _UNSET:
            plan = plans[ladder_id] = _plan(ladder_rows.get(ladder_id), programs)
        state = due_standing.state
        due = next_due(state)
        if plan is None or due is None:
            left.append(due_standing.id)
            continue
        program_id = plan.program.id
        metrics[program_id] |= plan.metrics
        member_id = due_standing.member_id
        at = min(due.measure_at, as_of)
        spans = plan.spans(at, due_standing.enrolled_at, state.cycle_start or state.achieved_at)
        last_activity_at = due_standing.last_activity_at
        first = measuring.first_day_in(plan.tz, spans.values(), last_activity_at)
        old = needs[program_id].get(member_id, (None, last_activity_at))[0]
        if old is not None and (first is None or old < first):
            first = old
        needs[program_id][member_id] = (first, last_activity_at)
        # The first event is measured at the same instant: its intervals serve again.
        work.append((due_standing, plan, spans if at == due.measure_at else None))
    figures: dict[tuple[int, int], MemberFigures] = {}
    for program_id, wanted in needs.items():
        program = programs[program_id]
        loaded = await ledger.load_figures(
            conn, program_id=program_id, tz=program.tz, metrics=metrics[program_id], members=wanted
        )
        for member_id, figure in loaded.items():
            figures[(member_id, program_id)] = figure
    for due_standing, plan, spans in work:
        found = figures.get((due_standing.member_id, plan.program.id))
        if found is None:
            left.append(due_standing.id)
            continue
        state = await _handle_standing(
            conn, recorder, plan, due_standing, found, spans, as_of, summary
        )
        due_at = state.due_at
        if due_at is not None and due_at <= as_of:
            left.append(due_standing.id)
    return left


async def _fast_first_events(
    driver: Any,
    plans: dict[int, _Plan | None],
    ladder_rows: dict[int, LadderRow],
    programs: dict[int, Program],
    dues: list[DueStanding],
    as_of: datetime,
    summary: SweepSummary,
    recorder: _Recorder,
) -> list[DueStanding]:
    """Handle the first due event of every standing whose figures are sums of whole days
    (or running totals), measured for the whole batch in one statement per program.

    Returns the standings left for the general path: those whose figures need single
    activities (a window edge inside a day), those with no live definition or nothing
    due by ``as_of`` (handled there as before), and those with a further event due by
    ``as_of`` (with the state after their first event)."""
    rest: list[DueStanding] = []
    # Per program: the distinct (member, metric, first day, last day) wanted, by index.
    wanted: dict[int, dict[tuple[int, str, date | None, date], int]] = defaultdict(dict)
    work: list[tuple[DueStanding, _Plan, Due, list[tuple[MeasureKey, int]]]] = []
    for standing in dues:
        ladder_id = standing.ladder_id
        plan = plans.get(ladder_id, _UNSET)
        if plan is _UNSET:
            plan = plans[ladder_id] = _plan(ladder_rows.get(ladder_id), programs)
        state = standing.state
        due = next_due(state)
        if plan is None or due is None or due.at > as_of:
            rest.append(standing)
            continue
        spans = plan.spans(
            due.measure_at, standing.enrolled_at, state.cycle_start or state.achieved_at
        )
        days = _whole_days(plan.tz, spans, standing.last_activity_at)
        if days is None:
            rest.append(standing)
            continue
        index = wanted[plan.program.id]
        member_id = standing.member_id
        slots: list[tuple[MeasureKey, int]] = []
        for key, first, last in days:
            request = (member_id, key[0], first, last)
            slot = index.get(request)
            if slot is None:
                slot = index[request] = len(index)
            slots.append((key, slot))
        work.append((standing, plan, due, slots))
    sums: dict[int, list[int]] = {}
    for program_id, index in wanted.items():
        sums[program_id] = await sweep_sql.window_sums(driver, program_id, list(index))
    changes = summary.changes
    events = 0
    for standing, plan, due, slots in work:
        found = sums[plan.program.id]
        measures = {key: found[slot] for key, slot in slots}
        ctx = Context(
            tz=plan.tz, enrolled_at=standing.enrolled_at, last_activity_at=standing.last_activity_at
        )
        outcome = handle(plan.ladder, standing.state, due, measures, ctx)
        state = outcome.state
        events += 1
        recorder.change(standing, plan.row, state, outcome.change)
        if outcome.change is not None:
            kind = outcome.change.kind._value_
            changes[kind] = changes.get(kind, 0) + 1
        following = next_due(state)
        if following is not None and following.at <= as_of:
            rest.append(replace(standing, state=state))
    summary.events += events
    return rest


def _whole_days(
    tz: ZoneInfo, spans: Spans, last_activity_at: datetime | None
) -> list[tuple[MeasureKey, date | None, date]] | None:
    """Each window as ``(key, first day or None for lifetime, last day)`` when its sum is
    one of whole daily buckets (or the running total); None when an edge falls inside a
    day, so that the day's single activities are needed."""
    found: list[tuple[MeasureKey, date | None, date]] = []
    for key, span in spans.items():
        if last_activity_at is not None and last_activity_at > span.end:
            return None
        first, partial, last = span_days(span, tz)
        if partial:
            return None
        found.append((key, first, last))
    return found


Spans = dict[MeasureKey, Interval]

#: Windows whose interval at an instant is the same for every member.
_SHARED_WINDOWS = frozenset(WindowType) - {WindowType.SINCE_TIER_START, WindowType.ANNIVERSARY_YEAR}


@dataclass(slots=True)
class _Plan:
    """A ladder with a live definition, its program and what its rules measure (for one
    batch)."""

    row: LadderRow
    ladder: Ladder
    program: Program
    tz: ZoneInfo
    keys: frozenset[MeasureKey]
    metrics: frozenset[str]
    shared: bool
    """Whether every window measured is the same for all members at an instant."""
    _spans: dict[datetime, Spans] = field(default_factory=dict)

    def spans(self, at: datetime, enrolled_at: datetime, tier_start: datetime | None) -> Spans:
        """The intervals of every measured window at ``at`` (not to be modified)."""
        if self.shared and at.tzinfo is UTC:
            found = self._spans.get(at)
            if found is None:
                found = self._spans[at] = measuring.intervals_in(
                    self.tz, self.keys, at=at, enrolled_at=enrolled_at, tier_start=tier_start
                )
            return found
        return measuring.intervals_in(
            self.tz, self.keys, at=at, enrolled_at=enrolled_at, tier_start=tier_start
        )


_UNSET: Any = object()


def _plan(row: LadderRow | None, programs: dict[int, Program]) -> _Plan | None:
    if row is None or row.definition is None:
        return None
    keys = frozenset(row.definition.measure_keys())
    program = programs[row.program_id]
    return _Plan(
        row,
        row.definition,
        program,
        program.tz,
        keys,
        frozenset(k[0] for k in keys),
        all(k[1].type in _SHARED_WINDOWS for k in keys),
    )


async def _handle_standing(
    conn: AsyncConnection,
    recorder: _Recorder,
    plan: _Plan,
    standing: DueStanding,
    figure: MemberFigures,
    spans: Spans | None,
    as_of: datetime,
    summary: SweepSummary,
) -> TierState:
    """Handle every event of one standing due by ``as_of``, in time order; ``spans`` are
    the intervals of its first event, if known."""
    ladder = plan.ladder
    program_id = plan.program.id
    row = plan.row
    member_id = standing.member_id
    enrolled_at = standing.enrolled_at
    ctx = Context(tz=plan.tz, enrolled_at=enrolled_at, last_activity_at=standing.last_activity_at)
    changes = summary.changes
    state = standing.state
    for _ in range(MAX_EVENTS_PER_STANDING):
        due = next_due(state)
        if due is None or due.at > as_of:
            break
        if spans is None:
            spans = plan.spans(due.measure_at, enrolled_at, state.cycle_start or state.achieved_at)
        measures = await measuring.measure(
            conn, figure, spans, member_id=member_id, program_id=program_id
        )
        spans = None
        outcome = handle(ladder, state, due, measures, ctx)
        state = outcome.state
        summary.events += 1
        recorder.change(standing, row, state, outcome.change)
        if outcome.change is not None:
            kind = outcome.change.kind._value_
            changes[kind] = changes.get(kind, 0) + 1
    return state
