"""Recording activity: the idempotent ledger, earning, and immediate upgrades.

One call records one activity or a batch of up to 1,000 in a single transaction. The
batch is processed set-wise: one query per kind of data for the whole batch (existing
keys, members, standings, figures), then every activity in order in memory, then one
write per table. So the cost per activity does not grow with a member's history.

A late (back-dated) activity is the exception (R13): the member may first qualify at any
of their later activities, so it also reads the stored activities from its own day to the
member's latest one (one query per member and batch) and checks at each of those instants.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from operator import attrgetter
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec
import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import activities as ledger
from tierwise.db.repos import member_writes, pg_arrays
from tierwise.db.repos import members as members_repo
from tierwise.db.repos import programs as programs_repo
from tierwise.db.repos.programs import LadderRow
from tierwise.db.repos.upsert import BULK_MIN_ROWS, pg_driver
from tierwise.db.tables import BUILTIN_COLUMNS
from tierwise.domain.activity import (
    ActivityType,
    Effects,
    Recorded,
    base_effects,
    purchase_points,
    return_effects,
)
from tierwise.domain.activity_ids import public_ids
from tierwise.domain.calendar import local_date, start_of_day
from tierwise.domain.checks import Context, attain_credit, keeps, renew
from tierwise.domain.criteria import MeasureKey
from tierwise.domain.earning import Earning, earn_for_purchase
from tierwise.domain.errors import Conflict, InvalidInput, NotFound
from tierwise.domain.evaluation import decide_upgrade, qualified_level, rank_of, upgrade_to
from tierwise.domain.figures import MemberFigures
from tierwise.domain.ladder import Ladder, Level, UpgradeTiming, ValidityType
from tierwise.domain.lifecycle import enter, validity_of, with_validity
from tierwise.domain.metrics import BuiltinMetric
from tierwise.domain.money import minor_unit_exponent
from tierwise.domain.program import Program
from tierwise.domain.request_hash import purchase_hash
from tierwise.domain.state import AssignmentMode, ChangeKind, ChangeSource, TierChange, TierState
from tierwise.domain.windows import LIFETIME, Interval, WindowType
from tierwise.services import measuring
from tierwise.services.ingest_plan import Plan, Starts, plan_for
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.standing import ActivityIds, Standings

_log = logging.getLogger(__name__)
MAX_BATCH = 1000
MAX_POINTS = 10**15
"""Points one activity may earn: keeps every running total far inside 64 bits."""


class ActivityCommand(msgspec.Struct, gc=False):
    """One activity as a client sent it (already shape-checked by the API schema). A
    ``msgspec.Struct``: built in C (a batch builds a thousand; a dataclass' ``__init__``
    took two and a half times the instructions, a frozen one six times), its fields read
    as fast as a slotted class' and, holding no containers, it is never tracked by the
    cycle collector. Nothing changes one once built: ``msgspec.structs.replace`` makes a
    new one."""

    type: ActivityType
    member_id: str
    idempotency_key: str
    occurred_at: datetime
    request_hash: str | None
    """The body's fingerprint (R12); None for a usual purchase of a batch, whose
    fingerprint is written only when needed (``request_hash_of``)."""
    program_id: int | None = None
    amount_minor: int | None = None
    currency: str | None = None
    points: int | None = None
    counter: str | None = None
    quantity: int | None = None
    reverses: str | None = None
    reverses_key: str | None = None


def request_hash_of(command: ActivityCommand) -> str:
    """The command's body fingerprint (R12); for a usual purchase of a batch (``request_hash``
    None: a purchase of these fields only, at an instant in UTC written as pydantic writes
    it) the one ``ActivityIn.request_hash`` gives for its body."""
    if command.request_hash is not None:
        return command.request_hash
    assert command.amount_minor is not None
    return purchase_hash(
        command.amount_minor,
        command.currency,
        command.idempotency_key,
        command.member_id,
        f'"{iso(command.occurred_at)}"',
        command.program_id,
    )


def _stored_hash(stored: ledger.Stored) -> str:
    """The fingerprint of a stored activity's body: stored, or (empty for a usual
    purchase sent without a program id) written again from its row."""
    if stored.request_hash:
        return stored.request_hash
    if stored.amount_minor is None:
        raise AssertionError(f"activity {stored.public_id} has no request hash")
    return purchase_hash(
        stored.amount_minor,
        stored.currency,
        stored.idempotency_key,
        stored.member_external_id,
        f'"{iso(stored.occurred_at)}"',
    )


def _row_hash(command: ActivityCommand) -> str:
    """The fingerprint a ledger row keeps: empty for a usual purchase sent without a
    program id (``_stored_hash`` writes it again from the row, as the quick paths store
    it), else ``request_hash_of``."""
    if (
        command.request_hash is None
        and command.type is ActivityType.PURCHASE
        and command.program_id is None
        and command.occurred_at.tzinfo is UTC
    ):
        return ""
    return request_hash_of(command)


Usual = tuple[str, str, int, str, datetime, int, int, str]
"""The answer to a usual purchase, not yet built: ``purchase_result``'s arguments (uuid,
member's external id, program id, idempotency key, instant, amount, points, rate)."""


class Outcome:
    """An activity's answer (R12) and whether it repeats an earlier one.

    A usual purchase keeps its answer unbuilt (``usual``): the HTTP answer writes it as
    JSON directly (``api.routes.activities.usual_json``), and ``result`` builds the
    document only when someone reads it."""

    __slots__ = ("_result", "replayed", "usual")

    def __init__(
        self, result: dict[str, Any] | None, replayed: bool, usual: Usual | None = None
    ) -> None:
        if result is None and usual is None:
            raise ValueError("an outcome needs a result")
        self._result = result
        self.replayed = replayed
        self.usual = usual

    @property
    def result(self) -> dict[str, Any]:
        if self._result is None:
            assert self.usual is not None
            self._result = purchase_result(*self.usual)
        return self._result

    def repeated(self) -> Outcome:
        """The same answer, to a repeat of the activity."""
        return Outcome(self._result, True, self.usual)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        return (self.result, self.replayed) == (other.result, other.replayed)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Outcome(result={self.result!r}, replayed={self.replayed!r})"


async def record(rt: Runtime, caller: Caller, commands: list[ActivityCommand]) -> list[Outcome]:
    """Record ``commands`` atomically; repeats of stored keys answer the first result (R12).

    A concurrent writer of the same key makes our insert fail on the unique key; we retry
    and then see its row, so each key is stored and counted once.
    """
    if len(commands) > MAX_BATCH:
        raise InvalidInput(
            f"a batch holds at most {MAX_BATCH} activities",
            code="batch_too_large",
            field="activities",
        )
    # The first attempt assumes every key is new and does not look for stored ones: the
    # ledger's unique index refuses a stored key, and the next attempts look. Any error of
    # the first attempt sends it to the next, so that errors come in the order they came
    # in when repeats were looked for first (a repeat answers before its body is checked).
    for attempt in range(4):
        try:
            async with rt.transaction() as conn:
                outcomes = await _Batch(rt, conn, caller, commands, look_up=attempt > 0).run()
                await conn.commit()
                return outcomes
        except _CLASHES as exc:
            if attempt == 3:
                raise Conflict(
                    "the activity clashed with a concurrent write; retry it",
                    code="concurrent_write",
                ) from exc
        except Exception:
            if attempt > 0:
                raise
            _log.debug("first attempt of a batch failed; looking keys up", exc_info=True)
    raise AssertionError("unreachable")


try:
    from asyncpg.exceptions import IntegrityConstraintViolationError
except ImportError:  # pragma: no cover - asyncpg is installed with the PostgreSQL extra
    _CLASHES: tuple[type[Exception], ...] = (IntegrityError,)
else:
    # Statements sent on the driver connection raise the driver's own error.
    _CLASHES = (IntegrityError, IntegrityConstraintViolationError)


def iso(value: datetime) -> str:
    if value.tzinfo is UTC:
        # The same text as below, written in C (a quarter of the time).
        return orjson.dumps(value, option=orjson.OPT_UTC_Z)[1:-1].decode()
    return value.isoformat().replace("+00:00", "Z")


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


_ONE_DAY = timedelta(days=1)
_ONE_MICROSECOND = timedelta(microseconds=1)
_UNSEEN: Any = object()
_PURCHASE = ActivityType.PURCHASE
_RETURN = ActivityType.RETURN
_KEY_OF = attrgetter("idempotency_key")
_OCCURRED_AT = attrgetter("occurred_at")
_REDEMPTION = ActivityType.POINTS_REDEMPTION
# The metrics a purchase moves, looked up once (an enum member read through its class
# runs Python code every time).
_SPEND = BuiltinMetric.SPEND
_ORDERS = BuiltinMetric.ORDERS
_POINTS_EARNED = BuiltinMetric.POINTS_EARNED
_POINTS_BALANCE = BuiltinMetric.POINTS_BALANCE
_EXACT = 10**27
"""Below this a product of two coefficients is exact in Decimal's default context (as in
``domain.earning``)."""
_Terms = tuple[int, int, int, str]
"""``(coefficient, multiplier, divisor, rate as text)`` of a lazy earn rate
(``_Batch._lazy_rate``)."""


def _usual_points(amount: int, terms: _Terms) -> int | None:
    """The points a usual purchase of ``amount`` earns at the rate ``terms`` (R11), or None
    when the quick paths do not compute them exactly (``_apply`` then does)."""
    coefficient, multiplier, divisor, _ = terms
    product = amount * coefficient
    if product >= _EXACT:
        return None
    points = product * multiplier if divisor == 1 else product // divisor
    return None if points > MAX_POINTS else points


def _purchase_effects(spend: int, orders: int, points: int) -> Effects:
    effects: Effects = {_SPEND: spend, _ORDERS: orders}
    if points:
        effects[_POINTS_EARNED] = points
        effects[_POINTS_BALANCE] = points
    return effects


def _held(state: TierState, plan: Plan) -> bool:
    """Whether an activity would touch the member's standing on this ladder beyond its
    sums: an assignment, a grace period or an inactivity clock (``_after_activity``)."""
    return (
        state.assignment is not None
        or state.grace_until is not None
        or bool(state.level_key and state.level_key in plan.inactivity)
    )


def _lifts(plan: Plan, sums: list[int], effects: Effects, state: TierState) -> bool:
    """Add ``effects`` to ``sums`` (the plan's keys, in place) and say whether the member
    then qualifies above its level (R9)."""
    for j, metric in enumerate(plan.metrics):
        delta = effects.get(metric)
        if delta:
            sums[j] += delta
    return plan.target(sums, state) is not None


@dataclass
class _MemberWork:
    member_id: int
    external_id: str
    enrolled_at: datetime
    last_activity_at: datetime | None
    program: Program
    first_at: datetime
    """The instant of the member's earliest activity in the batch (in this program)."""
    redeems: bool = False
    """Whether the batch redeems points of the member in this program."""
    figures: MemberFigures = field(init=False)
    tz: ZoneInfo = field(init=False)
    recorded: list[datetime] = field(default_factory=list)
    """The instants of the activities recorded so far in this batch (not yet stored)."""
    stored: list[datetime] = field(default_factory=list)
    """Stored activity instants read for late activities (R13), from ``stored_from`` on."""
    stored_from: date | None = None
    quick_sums: dict[int, tuple[int, date, Plan, list[int]]] = field(default_factory=dict)
    """Per plan, the window sums after the member's last quick purchase, with the
    figures' version and the day they were read on (see ``_quick_purchase``)."""

    def __post_init__(self) -> None:
        self.tz = self.program.tz  # a property that looks the zone up on every call


class _Batch:
    def __init__(
        self,
        rt: Runtime,
        conn: AsyncConnection,
        caller: Caller,
        commands: list[ActivityCommand],
        *,
        look_up: bool = True,
    ) -> None:
        self.rt = rt
        self.look_up = look_up
        """Whether to look for stored keys (else every key is taken to be new, and the
        ledger's unique index refuses a stored one: see ``record``)."""
        self.conn = conn
        self.caller = caller
        self.commands = commands
        self.now = rt.clock()
        self.programs: dict[int | None, Program] = {}
        self.ladders: dict[int, list[LadderRow]] = {}
        self.activity_rows: list[tuple[Any, ...]] = []
        """The new ledger rows, as the writes take them: values in ``ledger.LEDGER_COLUMNS``
        order, effects and result as JSON text."""
        self.events: list[dict[str, Any]] = []
        self.returned: dict[int, int] = {}
        self._spans: dict[tuple[Any, ...], dict[MeasureKey, Interval]] = {}
        self._earn_keys: dict[int, frozenset[MeasureKey]] = {}
        self._starts = Starts()
        self._ids: list[tuple[int, str]] = []
        """The ledger and public ids of the rows still to add, the next one last."""
        self._no_upgrade: tuple[int, int, datetime] | None = None
        self.driver: Any | None = None
        """The asyncpg connection on PostgreSQL (set once the transaction has begun)."""
        self._days: dict[tuple[datetime, ZoneInfo], date] = {}
        self._day_spans: dict[ZoneInfo, tuple[datetime, datetime, date]] = {}
        self._lazy_rates: dict[tuple[int, str | None], _Terms | None] = {}
        """Per (program, level of its first ladder): the lazy earn rate's terms."""
        self._plans: dict[int, list[tuple[LadderRow, Ladder, Plan, Plan | None]]] = {}

    def _day(self, at: datetime, tz: ZoneInfo) -> date:
        """``local_date``. The instants of a batch mostly fall on a few local days: the
        last day found in ``tz`` whose UTC offset does not change answers by two
        comparisons; other instants are converted once each."""
        span = self._day_spans.get(tz)
        if span is not None and span[0] <= at < span[1]:
            return span[2]
        day = self._days.get((at, tz))
        if day is None:
            day = self._days[(at, tz)] = local_date(at, tz)
            start = start_of_day(day, tz)
            end = start_of_day(day + _ONE_DAY, tz)
            last = end - _ONE_MICROSECOND
            if (
                start <= at < end
                and local_date(start, tz) == day
                and local_date(last, tz) == day
                and start.astimezone(tz).utcoffset() == last.astimezone(tz).utcoffset()
            ):
                # One offset all day: every instant of [start, end) is on ``day``.
                self._day_spans[tz] = (start, end, day)
        return day

    def _intervals(
        self,
        keys: frozenset[MeasureKey],
        program: Program,
        *,
        at: datetime,
        enrolled_at: datetime,
        tier_start: datetime | None,
    ) -> dict[MeasureKey, Interval]:
        """``measuring.intervals``, resolved once per distinct input within the batch
        (the same member's instants recur: its last activity, each activity's own)."""
        memo_key = (keys, program.id, at, enrolled_at, tier_start)
        found = self._spans.get(memo_key)
        if found is None:
            found = measuring.intervals(
                keys, program, at=at, enrolled_at=enrolled_at, tier_start=tier_start
            )
            self._spans[memo_key] = found
        return found

    # -- orchestration --------------------------------------------------------------------

    async def run(self) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(self.commands)
        fresh = await self._replays(outcomes)
        if fresh:
            await self._process(fresh, outcomes)
        return [outcome for outcome in outcomes if outcome is not None]

    async def _replays(self, outcomes: list[Outcome | None]) -> list[int]:
        """Answer repeats from the stored results; return the indexes still to record."""
        keys = list(map(_KEY_OF, self.commands))
        stored = (
            await ledger.stored_by_keys(self.conn, self.caller.tenant_id, keys)
            if self.look_up
            else {}
        )
        if not stored and len(set(keys)) == len(keys):
            return list(range(len(keys)))  # no repeat: every activity is to record
        first_in_batch: dict[str, int] = {}
        fresh: list[int] = []
        for index, command in enumerate(self.commands):
            key = command.idempotency_key
            earlier = stored.get(key)
            if earlier is None and key in first_in_batch:
                request_hash = request_hash_of(self.commands[first_in_batch[key]])
            elif earlier is None:
                first_in_batch[key] = index
                fresh.append(index)
                continue
            else:
                request_hash = _stored_hash(earlier)
            if request_hash != request_hash_of(command):
                raise Conflict(
                    f"idempotency key {key!r} was already used with a different body",
                    code="idempotency_key_reused",
                    index=index,
                )
            if earlier is not None:
                outcomes[index] = _first_outcome(earlier)
            # A repeat of a key first seen in this batch answers that first result, which
            # exists only once the batch has run (see _process).
        return fresh

    async def _process(self, fresh: list[int], outcomes: list[Outcome | None]) -> None:
        for index in fresh:
            if self.commands[index].program_id not in self.programs:
                await self._program(self.commands[index].program_id, index)
        if self.conn.dialect.name == "postgresql":
            # After the programs' statement, which opened the transaction (else
            # ``pg_driver`` opens it with one more round trip).
            self.driver = await pg_driver(self.conn)
        works = await self._members(fresh)
        standings = Standings(self.rt, self.conn, self.caller.tenant_id, self.now)
        members = [(w.member_id, w.external_id, w.enrolled_at, w.program) for w in works.values()]
        if self.driver is not None:
            # Read after the members are locked: a statement that waited for a lock sees
            # the rows it locked as committed, but the other tables as they were when it
            # started (so standings are never read in the locking statement).
            states = await member_writes.states_pg(
                self.driver, sorted({m[0] for m in members}), self._ladder_ids()
            )
            standings.adopt(states)
            # Only members without a standing on some ladder are placed (R4).
            members = [
                m
                for m in members
                if any((m[0], row.id) not in states for row in self.ladders.get(m[3].id, []))
            ]
        await standings.load(members, {pid: rows for pid, rows in self.ladders.items()})
        await self._load_figures(works, standings)
        # Outcomes still missing besides the fresh ones: repeats of keys first seen in
        # this batch (counted now, while the list holds few outcomes to compare).
        repeats = outcomes.count(None) - len(fresh)
        ids = await ledger.reserve_ids(self.conn, self.driver, len(fresh))
        self._ids = list(zip(ids, public_ids(ids), strict=True))[::-1]
        runs = self._runs(fresh)
        done: set[int] = set()
        for index in fresh:
            if index in done:
                continue
            command = self.commands[index]
            work = works[(command.member_id, self.programs[command.program_id].id)]
            run = runs.get(index)
            if run is not None:
                found = self._quick_run(run, work, standings)
                if found is not None:
                    for i, answer in zip(run, found, strict=True):
                        outcomes[i] = Outcome(None, False, answer)
                    done.update(run)
                    continue
            usual: Usual | None = None
            if command.type is ActivityType.PURCHASE:
                usual = self._quick_purchase(command, work, standings)
            if usual is None:
                outcomes[index] = Outcome(await self._apply(index, command, work, standings), False)
            else:
                outcomes[index] = Outcome(None, False, usual)
        # Repeats of a key first seen in this batch (the only outcomes still missing)
        # answer that first result.
        if repeats:
            for index, command in enumerate(self.commands):
                if outcomes[index] is None:
                    first = next(
                        i
                        for i in fresh
                        if self.commands[i].idempotency_key == command.idempotency_key
                    )
                    found_first = outcomes[first]
                    assert found_first is not None
                    outcomes[index] = found_first.repeated()
        await self._write(works, standings)

    async def _program(self, program_id: int | None, index: int) -> Program:
        """The program (and, once per program, its live ladders: one statement while the
        definitions are cached)."""
        if program_id not in self.programs:
            program, rows = await programs_repo.program_ladders(
                self.conn,
                self.rt.definitions,
                tenant_id=self.caller.tenant_id,
                program_id=program_id,
            )
            if program is None:
                what = "no default program" if program_id is None else f"no program {program_id}"
                raise NotFound(what, code="program_not_found", index=index)
            self.programs[program_id] = program
            if program.id not in self.ladders:
                self.ladders[program.id] = [row for row in rows if row.definition is not None]
        return self.programs[program_id]

    async def _members(self, fresh: list[int]) -> dict[tuple[str, int], _MemberWork]:
        external_ids = sorted({self.commands[i].member_id for i in fresh})
        tenant_id = self.caller.tenant_id
        # Lock every member of the batch (PostgreSQL), in id order to avoid deadlocks;
        # read them again (locked) only when some had to be created.
        found = await self._lock_members(external_ids)
        missing = [eid for eid in external_ids if eid not in found]
        if missing:
            first_seen: dict[str, datetime] = {}  # a new member's enrolment
            for i in fresh:
                command = self.commands[i]
                seen = first_seen.get(command.member_id)
                if seen is None or command.occurred_at < seen:
                    first_seen[command.member_id] = command.occurred_at
            await members_repo.add_members(
                self.conn,
                [
                    {
                        "uuid": str(uuid.uuid4()),
                        "tenant_id": tenant_id,
                        "external_id": eid,
                        "enrolled_at": first_seen[eid],
                        "last_activity_at": None,
                        "created_at": self.now,
                        "updated_at": self.now,
                    }
                    for eid in missing
                ],
            )
            found = await self._lock_members(external_ids)
        works: dict[tuple[str, int], _MemberWork] = {}
        for i in fresh:
            command = self.commands[i]
            program = self.programs[command.program_id]
            key = (command.member_id, program.id)
            work = works.get(key)
            if work is None:
                member = found[command.member_id]
                work = works[key] = _MemberWork(
                    member_id=member.id,
                    external_id=member.external_id,
                    enrolled_at=member.enrolled_at,
                    last_activity_at=member.last_activity_at,
                    program=program,
                    first_at=command.occurred_at,
                )
            elif command.occurred_at < work.first_at:
                work.first_at = command.occurred_at
            if command.type is _REDEMPTION:
                work.redeems = True
        return works

    async def _lock_members(
        self, external_ids: list[str]
    ) -> Mapping[str, member_writes.LockedMember | members_repo.MemberRow]:
        if self.driver is not None:
            return await member_writes.lock_members_pg(
                self.driver, self.caller.tenant_id, external_ids
            )
        return await members_repo.members_by_external_ids(
            self.conn, self.caller.tenant_id, external_ids, lock=True
        )

    def _ladder_ids(self) -> list[int]:
        return sorted({row.id for rows in self.ladders.values() for row in rows})

    async def _load_figures(
        self, works: dict[tuple[str, int], _MemberWork], standings: Standings
    ) -> None:
        by_program: dict[int, dict[int, tuple[date | None, datetime | None]]] = defaultdict(dict)
        # Running totals read: the ladders' metrics, lifetime spend (earning reads it)
        # and, for a batch with redemptions, the points balance they are checked against.
        metrics_by_program: dict[int, set[str]] = defaultdict(lambda: {BuiltinMetric.SPEND})
        for work in works.values():
            if work.redeems:
                metrics_by_program[work.program.id].add(_POINTS_BALANCE)
        # Metrics some window other than the lifetime reads: the only ones whose daily
        # buckets are needed while no activity is late (the running total answers the
        # lifetime as of any instant no earlier than the member's latest activity).
        windowed_by_program: dict[int, set[str]] = defaultdict(set)
        late_programs: set[int] = set()
        for pid in {work.program.id for work in works.values()}:
            metrics = metrics_by_program[pid]
            windowed = windowed_by_program[pid]
            for row in self.ladders[pid]:
                assert row.definition is not None
                keys = measuring.keys_of(row.definition)
                metrics |= {k[0] for k in keys}
                windowed |= {k[0] for k in keys if k[1].type is not WindowType.LIFETIME}
        for work in works.values():
            pid = work.program.id
            # Every window's start is non-decreasing in the instant it is read at, so the
            # earliest day a member's activities need is the one its earliest one needs.
            first_at = work.first_at
            if work.last_activity_at is not None and first_at < work.last_activity_at:
                # Late (R13): sums as of instants before the latest activity subtract the
                # buckets after them, for lifetime windows too.
                late_programs.add(pid)
            quick = self._first_day_quick(work, first_at)
            if quick is not False:
                current = by_program[pid].get(work.member_id, (None, work.last_activity_at))[0]
                if current is not None and (quick is None or current < quick):
                    quick = current
                by_program[pid][work.member_id] = (quick, work.last_activity_at)
                continue
            spans: list[Interval] = []
            for row in self.ladders[pid]:
                assert row.definition is not None
                state = standings.get(work.member_id, row.id)
                for at in (first_at, work.last_activity_at):
                    if at is not None:
                        spans.extend(
                            self._intervals(
                                measuring.keys_of(row.definition),
                                work.program,
                                at=at,
                                enrolled_at=work.enrolled_at,
                                tier_start=state.cycle_start or state.achieved_at,
                            ).values()
                        )
            first = measuring.first_day_needed(spans, work.program, work.last_activity_at)
            if first_at < (work.last_activity_at or first_at):
                day = local_date(first_at, work.program.tz)
                first = day if first is None else min(first, day)
            current = by_program[pid].get(work.member_id, (None, work.last_activity_at))[0]
            if current is not None and (first is None or current < first):
                first = current
            by_program[pid][work.member_id] = (first, work.last_activity_at)
        for pid, members in by_program.items():
            program = next(w.program for w in works.values() if w.program.id == pid)
            loaded = await _load_figures(
                self.conn,
                self.driver,
                program_id=pid,
                tz=program.tz,
                metrics=metrics_by_program[pid],
                day_metrics=metrics_by_program[pid]
                if pid in late_programs
                else windowed_by_program[pid],
                members=members,
            )
            for work in works.values():
                if work.program.id == pid:
                    work.figures = loaded[work.member_id]

    def _first_day_quick(
        self, work: _MemberWork, first_at: datetime
    ) -> date | Literal[False] | None:
        """``first_day_needed`` over the member's ladders at ``first_at`` and at its last
        activity, when every window is the lifetime or a shared one (else False)."""
        tz = work.tz
        last = work.last_activity_at
        days: list[date] = []
        for _, _, plan, _ in self._ladder_plans(work.program.id):
            if not plan.simple:
                return False
            for at in (first_at, last):
                if at is None:
                    continue
                day = self._day(at, tz)
                for window in plan.windows:
                    if window is None:
                        if last is not None and last > at:
                            days.append(day)
                        continue
                    first = self._starts.first_day(window, tz, day, at)
                    if first is None:
                        return False
                    days.append(first)
        if first_at < (last or first_at):
            days.append(self._day(first_at, tz))
        return min(days) if days else None

    # -- one activity ---------------------------------------------------------------------

    def _ladder_plans(self, program_id: int) -> list[tuple[LadderRow, Ladder, Plan, Plan | None]]:
        """Per live ladder of the program: its row, definition, upgrade plan and (first
        ladder only: it earns, R11) the earning plan, which also reads lifetime spend."""
        found = self._plans.get(program_id)
        if found is None:
            found = []
            for i, row in enumerate(self.ladders[program_id]):
                ladder = row.definition
                assert ladder is not None
                keys = measuring.keys_of(ladder)
                earn_plan = None
                if i == 0:
                    earn_keys = self._earn_keys.get(id(ladder))
                    if earn_keys is None:
                        earn_keys = keys | {(BuiltinMetric.SPEND, LIFETIME)}
                        self._earn_keys[id(ladder)] = earn_keys
                    earn_plan = plan_for(ladder, earn_keys)
                found.append((row, ladder, plan_for(ladder, keys), earn_plan))
            self._plans[program_id] = found
        return found

    @staticmethod
    def _lazy_rate(currency: str, rate: Decimal) -> _Terms | None:
        """``(coefficient, multiplier, divisor, rate as text)`` of a finite non-negative
        earn rate, so that ``amount × coefficient × multiplier // divisor`` is the points
        ``earn_for_purchase`` gives (see ``domain.earning._part``: the same integers, while
        ``amount × coefficient`` stays below ``_EXACT``); None otherwise."""
        sign, digits, exponent = rate.as_tuple()
        if sign or not isinstance(exponent, int):
            return None
        coefficient = int("".join(map(str, digits)) or "0")
        shift = exponent - minor_unit_exponent(currency)
        multiplier, divisor = (10**shift, 1) if shift >= 0 else (1, 10**-shift)
        return coefficient, multiplier, divisor, format(rate.normalize(), "f")

    def _earning(
        self, work: _MemberWork, standings: Standings, at: datetime
    ) -> tuple[list[tuple[LadderRow, Ladder, Plan, Plan | None]], TierState, _Terms] | None:
        """What the quick paths need to know of the member's program for purchases from
        ``at`` on: its ladders' plans, the member's standing on the earning (first) ladder
        and the lazy earn rate's terms at its level; None when the purchase is late (R13:
        before the member's latest activity), there are no ladders or the rate has no
        exact terms."""
        last = work.figures.last_activity_at
        if last is not None and last > at:
            return None
        plans = self._ladder_plans(work.program.id)
        if not plans:
            return None
        first_row, _, _, earn_plan = plans[0]
        assert earn_plan is not None
        state = standings.get(work.member_id, first_row.id)
        terms = self._rate_terms(work.program, earn_plan, state)
        return None if terms is None else (plans, state, terms)

    def _rate_terms(self, program: Program, earn_plan: Plan, state: TierState) -> _Terms | None:
        """``_lazy_rate`` of the program's rate at the member's level on the earning
        ladder, once per program and level."""
        rate_key = (program.id, state.level_key)
        terms: _Terms | None = self._lazy_rates.get(rate_key, _UNSEEN)
        if terms is _UNSEEN:
            level_key = state.level_key
            current = earn_plan.by_key.get(level_key) if level_key else None
            old = current.earn_multiplier if current is not None else Decimal(1)
            terms = self._lazy_rates[rate_key] = self._lazy_rate(
                program.currency, program.earn_rate * old
            )
        return terms

    def _runs(self, fresh: list[int]) -> dict[int, list[int]]:
        """Per member and program with two or more activities in the batch, all of them
        purchases: their indexes, keyed by the first (``_quick_run`` may record them
        together). None in a batch with a return, which may name a purchase of the same
        batch and must then find it not yet recorded (``_original``)."""
        commands = self.commands
        runs: dict[tuple[str, int], list[int]] = {}
        mixed: set[str] = set()
        for index in fresh:
            command = commands[index]
            if command.type is _RETURN:
                return {}
            if command.type is not _PURCHASE:
                mixed.add(command.member_id)
                continue
            key = (command.member_id, self.programs[command.program_id].id)
            runs.setdefault(key, []).append(index)
        return {
            run[0]: run for (member, _), run in runs.items() if len(run) > 1 and member not in mixed
        }

    def _quick_run(
        self, run: list[int], work: _MemberWork, standings: Standings
    ) -> list[Usual] | None:
        """``_quick_purchase`` for every purchase of a member in the batch at once (their
        results, in order), or None having changed nothing (each is then recorded on its
        own). It applies when they are usual purchases in order, on one local day after
        the member's latest activity, and even all of them together lift the member on no
        ladder whose rules all ask for at least a threshold (``Plan.monotone``): on one
        day every window reads the same days and each purchase only adds to the sums, so
        no purchase before the last could have lifted the member either (R9), and each
        earns at the member's current rate (R11)."""
        program = work.program
        figures = work.figures
        commands = [self.commands[i] for i in run]
        first_at = commands[0].occurred_at
        earning = self._earning(work, standings, first_at)
        if earning is None:
            return None
        plans, state, terms = earning
        rate_text = terms[3]
        member_id = work.member_id
        own = program.currency
        previous = first_at
        spend = earned = 0
        points_of: list[int] = []
        for command in commands:
            at = command.occurred_at
            amount = command.amount_minor
            currency = command.currency
            if at < previous or amount is None or (currency is not None and currency != own):
                return None
            previous = at
            points = _usual_points(amount, terms)
            if points is None:
                return None
            points_of.append(points)
            spend += amount
            earned += points
        tz = work.tz
        day = self._day(first_at, tz)
        if self._day(previous, tz) != day or day in figures.day_activities:
            return None
        effects = _purchase_effects(spend, len(commands), earned)
        for i, (row, _, plan, earning_plan) in enumerate(plans):
            if i:
                state = standings.get(member_id, row.id)
            use = earning_plan or plan
            if not use.monotone or _held(state, plan):
                return None
            sums = self._starts.values(use, figures, tz, first_at, day)
            if sums is None or _lifts(use, sums, effects, state):
                return None
        # Nothing below can fail: record them. The figures take the run's sum as one
        # entry: no other activity of this member in the batch reads them one by one.
        figures.apply_on(day, previous, effects)
        work.recorded.extend(map(_OCCURRED_AT, commands))
        return self._add_usuals(
            commands, points_of, member_id, work.external_id, program.id, rate_text
        )

    def _add_usuals(
        self,
        commands: list[ActivityCommand],
        points_of: list[int],
        member_id: int,
        external_id: str,
        program_id: int,
        rate_text: str,
    ) -> list[Usual]:
        """The ledger rows of usual purchases (in the batch's rows) and their answers."""
        ids = self._ids
        rows = self.activity_rows
        tenant_id = self.caller.tenant_id
        now = self.now
        answers: list[Usual] = []
        for command, points in zip(commands, points_of, strict=True):
            activity_id, activity_uuid = ids.pop()
            at = command.occurred_at
            amount = command.amount_minor
            assert amount is not None
            key = command.idempotency_key
            usual = (activity_uuid, external_id, program_id, key, at, amount, points, rate_text)
            rows.append(
                (
                    activity_id,
                    member_id,
                    program_id,
                    "purchase",
                    key,
                    _row_hash(command),
                    at,
                    amount,
                    command.currency,
                    command.points,
                    command.counter,
                    None,
                    # _json(effects), written directly (a third of the time)
                    f'{{"spend":{amount},"orders":1,"points_earned":{p},"points_balance":{p}}}'
                    if (p := str(points)) != "0"
                    else f'{{"spend":{amount},"orders":1}}',
                    # The answer is rebuilt from the row on a replay (purchase_result); the
                    # row keeps an instant in UTC only, so an answer in another offset stays.
                    None if at.tzinfo is UTC else _json(purchase_result(*usual)),
                    rate_text,
                    tenant_id,
                    now,
                )
            )
            answers.append(usual)
        return answers

    def _quick_purchase(
        self, command: ActivityCommand, work: _MemberWork, standings: Standings
    ) -> Usual | None:
        """``_apply`` for the usual purchase, in one pass: in order (not late, R13), in the
        program's currency, on ladders whose compiled plans read every window from the
        figures (``ingest_plan``), where it lifts the member on no ladder (R9) and touches
        no assignment, grace period or inactivity clock (``_after_activity``). Returns
        None, having changed nothing, for any other purchase: ``_apply`` records it.

        It decides and records exactly what ``_apply`` does for such a purchase: the same
        lazy earning (R11), the same window sums with the purchase and its points added
        (what ``_upgrade`` reads once it is applied), the same result and rows."""
        program = work.program
        currency = command.currency
        if currency is not None and currency != program.currency:
            return None
        figures = work.figures
        at = command.occurred_at
        earning = self._earning(work, standings, at)
        if earning is None:
            return None
        plans, state, terms = earning
        member_id = work.member_id
        points = _usual_points(command.amount_minor or 0, terms)
        if points is None:
            return None
        effects = _purchase_effects(command.amount_minor or 0, 1, points)
        tz = work.tz
        day = self._day(at, tz)
        starts = self._starts
        quick_sums = work.quick_sums
        checked: list[tuple[Plan, list[int]]] = []
        for i, (row, _, plan, earning_plan) in enumerate(plans):
            if i:
                state = standings.get(member_id, row.id)
            if _held(state, plan):
                return None
            use = earning_plan or plan
            # The sums after this member's previous quick purchase on the same day are the
            # sums before this one, while nothing else changed the figures since: within
            # a day, instants no earlier than the last read share its windows' first days.
            cached = quick_sums.get(id(use))
            if (
                cached is not None
                and cached[0] == figures.version
                and cached[1] == day
                and cached[2] is use
            ):
                sums = cached[3]
            else:
                found = starts.values(use, figures, tz, at, day)
                if found is None:
                    return None
                sums = found
            if _lifts(use, sums, effects, state):
                return None
            checked.append((use, sums))
        # Nothing below can fail: record it.
        figures.apply_on(day, at, effects)
        for use, sums in checked:
            quick_sums[id(use)] = (figures.version, day, use, sums)
        work.recorded.append(at)
        return self._add_usuals(
            [command], [points], member_id, work.external_id, program.id, terms[3]
        )[0]

    async def _apply(
        self, index: int, command: ActivityCommand, work: _MemberWork, standings: Standings
    ) -> dict[str, Any]:
        program = work.program
        ladders = self.ladders[program.id]
        figures = work.figures
        activity_id, activity_uuid = self._ids.pop()
        self._no_upgrade = None
        reverses: Recorded | None = None
        earning: Earning | None = None
        if command.type is ActivityType.RETURN:
            reverses = await self._original(index, command, work)
            already = self.returned.get(reverses.id)
            if already is None:
                already = await ledger.returned_amount(self.conn, reverses.id)
            amount = command.amount_minor
            if reverses.type is ActivityType.PURCHASE:
                left = (reverses.amount_minor or 0) - already
                if left <= 0:
                    raise InvalidInput(
                        "the purchase was already returned in full",
                        code="already_returned",
                        index=index,
                    )
                if amount is not None and amount > left:
                    raise InvalidInput(
                        f"only {left} of the purchase is left to return",
                        code="return_exceeds_purchase",
                        field="amount_minor",
                        index=index,
                    )
                amount = left if amount is None else amount
            elif amount is not None or already:
                raise InvalidInput(
                    "only purchases can be returned in part, and any other activity only once",
                    code="already_returned",
                    index=index,
                )
            else:
                amount = 0
            effects = return_effects(reverses, amount_minor=amount, already_returned=already)
            self.returned[reverses.id] = already + (amount or 1)
            command = msgspec.structs.replace(command, amount_minor=amount or None)
        else:
            effects = base_effects(
                command.type,
                amount_minor=command.amount_minor,
                points=command.points,
                counter=command.counter,
                quantity=command.quantity,
            )
        if command.type is ActivityType.PURCHASE:
            if command.currency is not None and command.currency != program.currency:
                raise InvalidInput(
                    f"program {program.id} counts {program.currency}, not {command.currency}",
                    code="currency_mismatch",
                    field="currency",
                    index=index,
                )
            earning = await self._earn(command, work, standings, ladders, effects)
            if earning.points > MAX_POINTS:
                raise InvalidInput(
                    f"the purchase would earn {earning.points} points, more than the "
                    f"{MAX_POINTS} one activity may carry; check the amount and earn rate",
                    code="points_overflow",
                    field="amount_minor",
                    index=index,
                )
            effects = purchase_points(effects, earning.points)
        if command.type is ActivityType.POINTS_REDEMPTION:
            balance = figures.totals.get(BuiltinMetric.POINTS_BALANCE, 0)
            if command.points is not None and command.points > balance:
                raise InvalidInput(
                    f"the member has {balance} points, fewer than {command.points}",
                    code="insufficient_points",
                    field="points",
                    index=index,
                )
        previous_last = figures.last_activity_at
        day = self._day(command.occurred_at, work.tz)
        figures.apply_on(day, command.occurred_at, effects)
        work.recorded.append(command.occurred_at)
        # R13: a late activity counts in every window it falls in, so the member may first
        # qualify at any later activity up to the latest one (a window's sum only grows at
        # an activity's instant): check at each of them, earliest first (R9).
        later: list[datetime] = []
        if previous_last is not None and previous_last > command.occurred_at:
            later = await self._later_instants(work, command.occurred_at, previous_last)
        changes: list[dict[str, Any]] = []
        for row in ladders:
            assert row.definition is not None
            times = [command.occurred_at]
            if later:
                times.extend(self._counted_at(row, work, standings, command.occurred_at, later))
            if previous_last is not None and previous_last > command.occurred_at:
                times.append(previous_last)
            for at in times:
                if self._no_upgrade == (work.member_id, row.id, at):
                    continue
                change = await self._upgrade(
                    row, row.definition, work, standings, at, source=(activity_id, activity_uuid)
                )
                if change is not None:
                    changes.append(change)
            changes.extend(
                await self._after_activity(
                    row,
                    row.definition,
                    work,
                    standings,
                    command.occurred_at,
                    reverses,
                    (activity_id, activity_uuid),
                )
            )
        result: dict[str, Any] = {
            "id": activity_uuid,
            "type": command.type.value,
            "member_id": work.external_id,
            "program_id": program.id,
            "idempotency_key": command.idempotency_key,
            "occurred_at": iso(command.occurred_at),
            "effects": dict(sorted(effects.items())),
            "points_earned": earning.points
            if earning
            else effects.get(BuiltinMetric.POINTS_EARNED, 0),
            "earn": []
            if earning is None
            else [
                {"amount_minor": p.amount_minor, "rate": format(p.rate, "f"), "points": p.points}
                for p in earning.parts
            ],
            "reverses": reverses.uuid if reverses else None,
            "tier_changes": changes,
        }
        for change in changes:
            change["activity_uuid"] = activity_uuid
        self.activity_rows.append(
            (
                activity_id,
                work.member_id,
                program.id,
                command.type.value,
                command.idempotency_key,
                _row_hash(command),
                command.occurred_at,
                command.amount_minor,
                command.currency,
                command.points,
                command.counter,
                reverses.id if reverses else None,
                _json(effects),
                _json(result),
                None,
                self.caller.tenant_id,
                self.now,
            )
        )
        return result

    async def _later_instants(
        self, work: _MemberWork, late: datetime, latest: datetime
    ) -> list[datetime]:
        """The member's activity instants strictly between ``late`` and ``latest``: the
        stored ones (read once per batch and member, from the late activity's day on) and
        those recorded earlier in this batch.

        The days read are also handed to the figures, so measuring at those instants (each
        a window edge inside a day) needs no further reads."""
        figures = work.figures
        tz = work.tz
        late_day = self._day(late, tz)
        stored_last = work.last_activity_at
        if stored_last is not None and stored_last > late:
            last_day = self._day(stored_last, tz)
            if work.stored_from is not None:
                last_day = min(last_day, work.stored_from - timedelta(days=1))
            if late_day <= last_day:
                rows = await ledger.activities_in_days(
                    self.conn,
                    member_id=work.member_id,
                    program_id=work.program.id,
                    tz=tz,
                    first_day=late_day,
                    last_day=last_day,
                )
                by_day: dict[date, list[tuple[datetime, Effects]]] = defaultdict(list)
                for at, effects in rows:
                    by_day[local_date(at, tz)].append((at, effects))
                for day, activities in by_day.items():
                    if day not in figures.day_activities:
                        figures.load_day(day, activities)
                work.stored = sorted([*(at for at, _ in rows), *work.stored])
                work.stored_from = late_day
        found = {at for at in work.stored if late < at < latest}
        found.update(at for at in work.recorded if late < at < latest)
        instants = sorted(found)
        # A day read above without a stored activity, or one after the latest stored
        # activity, holds none but this batch's own.
        for day in {late_day, *(self._day(at, tz) for at in instants)}:
            if day not in figures.day_activities and (
                stored_last is None
                or day > self._day(stored_last, tz)
                or (work.stored_from is not None and day >= work.stored_from)
            ):
                figures.load_day(day, [])
        return instants

    def _counted_at(
        self,
        row: LadderRow,
        work: _MemberWork,
        standings: Standings,
        late: datetime,
        instants: list[datetime],
    ) -> list[datetime]:
        """The ``instants`` at which some window of the ladder holds the late activity;
        windows only move forward, so once none does, no later instant's does."""
        ladder = row.definition
        assert ladder is not None
        state = standings.get(work.member_id, row.id)
        keys = measuring.keys_of(ladder)
        out: list[datetime] = []
        for at in instants:
            spans = self._intervals(
                keys,
                work.program,
                at=at,
                enrolled_at=work.enrolled_at,
                tier_start=state.cycle_start or state.achieved_at,
            )
            if not any(span.start is None or span.start <= late for span in spans.values()):
                break
            out.append(at)
        return out

    async def _original(self, index: int, command: ActivityCommand, work: _MemberWork) -> Recorded:
        original = await ledger.recorded(
            self.conn,
            self.caller.tenant_id,
            uuid=command.reverses,
            idempotency_key=command.reverses_key,
        )
        if original is None:
            # Only by its key: a new activity's id is first given in its batch's answer.
            key = command.reverses_key
            if key is not None and any(row[4] == key for row in self.activity_rows):
                raise InvalidInput(
                    "a return must come in a later request than its purchase",
                    code="return_in_same_batch",
                    index=index,
                )
            raise NotFound(
                "the activity to return does not exist",
                code="activity_not_found",
                field="reverses",
                index=index,
            )
        if original.member_id != work.member_id or original.program_id != work.program.id:
            raise InvalidInput(
                "the activity to return belongs to another member or program",
                code="return_member_mismatch",
                field="reverses",
                index=index,
            )
        if original.type is ActivityType.RETURN:
            raise InvalidInput(
                "a return cannot be returned", code="not_returnable", field="reverses", index=index
            )
        return original

    async def _earn(
        self,
        command: ActivityCommand,
        work: _MemberWork,
        standings: Standings,
        ladders: list[LadderRow],
        effects: Effects,
    ) -> Earning:
        """R11: points at the earning ladder's rate; the upgrade timing decides the rate
        of a purchase that causes an upgrade. The first ladder of a program earns."""
        amount = command.amount_minor or 0
        currency = work.program.currency
        if not ladders:
            return earn_for_purchase(
                amount, currency, earn_rate=work.program.earn_rate, old_multiplier=Decimal(1)
            )
        row = ladders[0]
        ladder = row.definition
        assert ladder is not None
        state = standings.get(work.member_id, row.id)
        keys = self._earn_keys.get(id(ladder))
        if keys is None:
            keys = measuring.keys_of(ladder) | {(BuiltinMetric.SPEND, LIFETIME)}
            self._earn_keys[id(ladder)] = keys
        plan = plan_for(ladder, keys)
        current = plan.by_key.get(state.level_key) if state.level_key else None
        old = current.earn_multiplier if current else Decimal(1)
        lazy = earn_for_purchase(
            amount, currency, earn_rate=work.program.earn_rate, old_multiplier=old
        )
        at = command.occurred_at
        tz = work.tz
        quick = self._starts.values(plan, work.figures, tz, at, self._day(at, tz))
        if quick is not None:
            # As _plus below: the purchase falls inside every window read at its instant.
            added = purchase_points(effects, lazy.points)
            lifted = [value + added.get(m, 0) for value, m in zip(quick, plan.metrics, strict=True)]
            level = plan.target(lifted, state)  # what decide_upgrade decides from these sums
            if level is None:
                # These are the sums _upgrade reads at this instant once the purchase is
                # applied (with the points just earned): it need not read them again.
                self._no_upgrade = (work.member_id, row.id, at)
                return lazy
            # The sums ``measuring.measure`` gives for these windows at this instant (the
            # plan reads them alike: ``ingest_plan``), before the purchase; only the
            # dynamic timing's split below reads them.
            before = (
                dict(zip(plan.keys, quick, strict=True))
                if ladder.upgrade_timing is UpgradeTiming.DYNAMIC
                else {}
            )
        else:
            spans = self._intervals(
                keys,
                work.program,
                at=command.occurred_at,
                enrolled_at=work.enrolled_at,
                tier_start=state.cycle_start or state.achieved_at,
            )
            before = await measuring.measure(
                self.conn, work.figures, spans, member_id=work.member_id, program_id=work.program.id
            )
            # The purchase causes an upgrade if its spend, orders or its points at the old
            # rate lift the member (points-based ladders count the points it earns).
            after = _plus(before, spans, purchase_points(effects, lazy.points), at)
            decision = decide_upgrade(
                ladder, state, after, at=command.occurred_at, source=ChangeSource.ACTIVITY
            )
            if decision is None:
                return lazy
            level = decision.level
        needed: int | None = None
        if level.attain is not None and ladder.upgrade_timing is UpgradeTiming.DYNAMIC:
            # Only the dynamic timing splits the purchase (earn_for_purchase).
            old_rate = work.program.earn_rate * old
            for criterion in level.attain.criteria:
                if not criterion.is_upward():
                    continue
                gap = criterion.required - before.get(criterion.key, 0)
                if criterion.metric == BuiltinMetric.SPEND:
                    needed = gap
                    break
                if criterion.metric == BuiltinMetric.POINTS_EARNED and old_rate > 0:
                    # The amount whose old-rate points close the gap, in minor units.
                    scale = Decimal(10) ** minor_unit_exponent(currency)
                    needed = int(
                        (Decimal(max(gap, 0)) / old_rate * scale).to_integral_value(ROUND_CEILING)
                    )
                    break
        return earn_for_purchase(
            amount,
            currency,
            earn_rate=work.program.earn_rate,
            old_multiplier=old,
            new_multiplier=level.earn_multiplier,
            timing=ladder.upgrade_timing,
            needed_minor=needed,
        )

    async def _measures(
        self, ladder: Ladder, work: _MemberWork, state: TierState, at: datetime
    ) -> dict[MeasureKey, int]:
        spans = self._intervals(
            measuring.keys_of(ladder),
            work.program,
            at=at,
            enrolled_at=work.enrolled_at,
            tier_start=state.cycle_start or state.achieved_at,
        )
        return await measuring.measure(
            self.conn, work.figures, spans, member_id=work.member_id, program_id=work.program.id
        )

    async def _upgrade(
        self,
        row: LadderRow,
        ladder: Ladder,
        work: _MemberWork,
        standings: Standings,
        at: datetime,
        source: ActivityIds,
    ) -> dict[str, Any] | None:
        """R9: move up at once; R18: note the attain overshoot as credit."""
        state = standings.get(work.member_id, row.id)
        tz = work.tz
        plan = plan_for(ladder, measuring.keys_of(ladder))
        quick = self._starts.values(plan, work.figures, tz, at, self._day(at, tz))
        # A back-dated upgrade never predates the standing's latest change, so the history
        # keeps ending on the level the member holds (R13, R22).
        since = max(at, state.achieved_at or at, state.cycle_start or at)
        if quick is None:
            measures = await self._measures(ladder, work, state, at)
            decision = decide_upgrade(
                ladder, state, measures, at=since, source=ChangeSource.ACTIVITY
            )
        else:
            level = plan.target(quick, state)  # what decide_upgrade decides from these sums
            if level is None:
                return None
            decision = upgrade_to(state, level, at=since, source=ChangeSource.ACTIVITY)
            # What _measures reads; only the credit (R18) reads them.
            measures = dict(zip(plan.keys, quick, strict=True)) if ladder.credit else {}
        if decision is None:
            return None
        new_state = enter(
            ladder,
            state,
            decision.level,
            since,
            tz=work.program.tz,
            enrolled_at=work.enrolled_at,
            last_activity_at=work.figures.last_activity_at,
            credit=attain_credit(ladder, decision.level, measures),
        )
        if state.assignment is not None and state.assignment.mode is AssignmentMode.FLOOR:
            new_state = replace(new_state, assignment=state.assignment)  # R20: floor stays
        standings.change(
            work.member_id,
            row,
            new_state,
            decision.change,
            work.external_id,
            activity=source,
        )
        return _change_json(row.key, decision.change)

    async def _after_activity(
        self,
        row: LadderRow,
        ladder: Ladder,
        work: _MemberWork,
        standings: Standings,
        at: datetime,
        reverses: Recorded | None,
        activity: ActivityIds,
    ) -> list[dict[str, Any]]:
        """Lifecycle effects of any activity besides upgrades.

        - R20 a ``one_shot`` assignment ends with the next activity;
        - R14 ``inactivity`` validity restarts its clock;
        - R17 a member in grace who re-qualifies keeps the level (grace cancelled);
        - R13 a return that undoes the qualification of the upgrade it caused reverses it,
          when the ladder asks for it.
        """
        state = standings.get(work.member_id, row.id)
        if state.assignment is None and state.grace_until is None and reverses is None:
            # Nothing below applies unless the level's validity runs on inactivity.
            plan = plan_for(ladder, measuring.keys_of(ladder))
            if not state.level_key or state.level_key not in plan.inactivity:
                return []
        original = state
        changes: list[dict[str, Any]] = []
        if (
            state.assignment is not None
            and state.assignment.mode is AssignmentMode.ONE_SHOT
            and at > state.assignment.assigned_at
        ):
            state = replace(state, assignment=None)
        current = ladder.level(state.level_key) if state.level_key else None
        if current is not None and validity_of(ladder, current).type is ValidityType.INACTIVITY:
            state = with_validity(
                ladder,
                current,
                state,
                tz=work.program.tz,
                enrolled_at=work.enrolled_at,
                last_activity_at=work.figures.last_activity_at,
            )
        if current is not None and state.grace_until is not None and at < state.grace_until:
            measures = await self._measures(ladder, work, state, at)
            if keeps(ladder, current, state, measures):
                outcome = renew(
                    ladder,
                    current,
                    state,
                    measures,
                    cycle_end=state.expires_at or at,
                    at=at,
                    ctx=Context(work.program.tz, work.enrolled_at, work.figures.last_activity_at),
                    source=ChangeSource.ACTIVITY,
                )
                state = outcome.state
                assert outcome.change is not None
                standings.change(
                    work.member_id,
                    row,
                    state,
                    outcome.change,
                    work.external_id,
                    activity=activity,
                )
                changes.append(_change_json(row.key, outcome.change))
        if reverses is not None and ladder.reverse_upgrade_on_return and current is not None:
            reversal = await self._reverse_upgrade(ladder, work, state, current, at, reverses)
            if reversal is not None:
                state, change = reversal
                standings.change(
                    work.member_id,
                    row,
                    state,
                    change,
                    work.external_id,
                    activity=activity,
                )
                changes.append(_change_json(row.key, change))
        if state != original and not changes:
            standings.change(work.member_id, row, state, None, work.external_id)
        return changes

    async def _reverse_upgrade(
        self,
        ladder: Ladder,
        work: _MemberWork,
        state: TierState,
        current: Level,
        at: datetime,
        reverses: Recorded,
    ) -> tuple[TierState, TierChange] | None:
        caused = await members_repo.upgrade_caused_by(self.conn, work.member_id, reverses.id)
        if caused is None or caused.change.to_level != current.key or state.pinned:
            return None
        measures = await self._measures(ladder, work, state, at)
        if current.attain is None or current.attain.holds(measures):
            return None
        previous = ladder.level(caused.change.from_level) if caused.change.from_level else None
        target = qualified_level(ladder, measures)
        if target is None or rank_of(ladder, target.key) <= rank_of(
            ladder, previous.key if previous else None
        ):
            target = previous
        new_state = enter(
            ladder,
            state,
            target,
            at,
            tz=work.program.tz,
            enrolled_at=work.enrolled_at,
            last_activity_at=work.figures.last_activity_at,
        )
        kind = ChangeKind.DOWNGRADED if target is not None else ChangeKind.LOST
        change = TierChange(
            from_level=current.key,
            to_level=target.key if target else None,
            kind=kind,
            at=at,
            source=ChangeSource.ACTIVITY,
            reason="upgrade reversed by a return",
        )
        return new_state, change

    @staticmethod
    def _deltas(works: dict[tuple[str, int], _MemberWork]) -> list[tuple[int, int, str, date, int]]:
        """What the batch adds to the daily buckets, in key order (every writer takes the
        rows' locks in that order): the effects applied to each member's figures."""
        return sorted(
            (work.member_id, work.program.id, metric, day, value)
            for work in works.values()
            for (metric, day), value in work.figures.pending_sums().items()
        )

    @staticmethod
    def _totals(days: list[tuple[int, int, str, date, int]]) -> list[tuple[int, int, str, int]]:
        """What ``days`` add to the running totals, in key order."""
        totals: dict[tuple[int, int, str], int] = {}
        for member_id, program_id, metric, _, value in days:
            key = (member_id, program_id, metric)
            totals[key] = totals.get(key, 0) + value
        return [(*key, value) for key, value in totals.items()]

    # -- writing --------------------------------------------------------------------------

    async def _write(self, works: dict[tuple[str, int], _MemberWork], standings: Standings) -> None:
        if self.driver is not None:
            await self._write_pg(self.driver, works, standings)
            return
        rows = [dict(zip(ledger.LEDGER_COLUMNS, row, strict=True)) for row in self.activity_rows]
        for row in rows:
            row["effects"] = orjson.loads(row["effects"])
            if row["result"] is not None:
                row["result"] = orjson.loads(row["result"])
        await ledger.add_activities(self.conn, rows)
        days = self._deltas(works)
        totals = self._totals(days)
        await ledger.add_to_buckets(
            self.conn,
            [
                {"member_id": m, "program_id": p, "metric": metric, "day": d, "value": v}
                for m, p, metric, d, v in days
            ],
            [
                {"member_id": m, "program_id": p, "metric": metric, "value": v}
                for m, p, metric, v in totals
            ],
        )
        await member_writes.set_last_activity(self.conn, self._latest(works), self.now)
        await standings.flush()

    async def _write_pg(
        self, driver: Any, works: dict[tuple[str, int], _MemberWork], standings: Standings
    ) -> None:
        """``_write`` on PostgreSQL: the ledger, buckets, totals and last activities in one
        statement (two for many rows)."""
        activities = self.activity_rows
        wide, counters = self._pivoted_deltas(works)
        write = (
            ledger.copy_batch_pg
            if len(activities) + len(wide) + len(counters) >= BULK_MIN_ROWS
            else ledger.write_batch_pg
        )
        await write(
            driver,
            tenant_id=self.caller.tenant_id,
            now=self.now,
            activities=activities,
            wide=wide,
            counters=counters,
            last_activity=sorted(self._latest(works).items()),
        )
        await standings.flush()

    @staticmethod
    def _pivoted_deltas(
        works: dict[tuple[str, int], _MemberWork],
    ) -> tuple[list[list[Any]], list[tuple[int, int, str, date, int]]]:
        """``_deltas(works)`` as the PostgreSQL writes take them (``ledger.day_rows``),
        built straight from the figures' pending activities."""
        return ledger.day_rows(
            (w.member_id, w.program.id, w.figures.pending)
            for w in sorted(works.values(), key=_member_and_program)
        )

    @staticmethod
    def _latest(works: dict[tuple[str, int], _MemberWork]) -> dict[int, datetime]:
        latest: dict[int, datetime] = {}
        for work in works.values():
            last = work.figures.last_activity_at
            if last is not None and (work.member_id not in latest or last > latest[work.member_id]):
                latest[work.member_id] = last
        return latest


_WIDE = ", ".join(BUILTIN_COLUMNS)
_FIGURES_PG = (
    f"SELECT member_id, NULL::date AS day, NULL::text AS metric, 0::bigint AS value, {_WIDE} "
    "FROM member_totals WHERE program_id = $1 AND member_id = ANY($2::text::bigint[]) "
    f"UNION ALL SELECT member_id, day, NULL, 0, {_WIDE} "
    "FROM member_days WHERE program_id = $1 AND member_id = ANY($2::text::bigint[]) "
    "AND day >= $4 AND cardinality($5::text[]) > 0 "
    "UNION ALL SELECT member_id, NULL, metric, value, 0, 0, 0, 0, 0 FROM metric_totals "
    "WHERE program_id = $1 AND member_id = ANY($2::text::bigint[]) AND metric = ANY($3::text[]) "
    "UNION ALL SELECT member_id, day, metric, value, 0, 0, 0, 0, 0 FROM metric_days "
    "WHERE program_id = $1 AND member_id = ANY($2::text::bigint[]) AND metric = ANY($5::text[]) "
    "AND day >= $4"
)
"""Totals and buckets as stored: a built-in metrics' row (``metric`` NULL) with every
built-in metric, or a custom counter's row (``metric``, ``value``)."""


async def _load_figures(
    conn: AsyncConnection,
    driver: Any | None,
    *,
    program_id: int,
    tz: ZoneInfo,
    metrics: set[str],
    day_metrics: set[str],
    members: dict[int, tuple[date | None, datetime | None]],
) -> dict[int, MemberFigures]:
    """``ledger.load_figures`` (running totals of ``metrics``, daily buckets of
    ``day_metrics``); on PostgreSQL totals and days in one statement on the driver
    connection (one round trip instead of two)."""
    if driver is None or not members or not metrics:
        return await ledger.load_figures(
            conn,
            program_id=program_id,
            tz=tz,
            metrics=metrics,
            members=members,
            day_metrics=day_metrics,
        )
    figures = {
        mid: MemberFigures(tz=tz, days_from=first, last_activity_at=last)
        for mid, (first, last) in members.items()
    }
    firsts = [first for first, _ in members.values() if first is not None]
    rows = await driver.fetch(
        _FIGURES_PG,
        program_id,
        pg_arrays.literal(list(members)),
        sorted(metrics),
        min(firsts) if firsts and day_metrics else None,
        sorted(day_metrics),
    )
    total_columns = [(m, 4 + i) for i, m in enumerate(BUILTIN_COLUMNS) if m in metrics]
    day_columns = [(m, 4 + i) for i, m in enumerate(BUILTIN_COLUMNS) if m in day_metrics]
    for row in rows:
        figure = figures[row[0]]
        day = row[1]
        metric = row[2]
        if day is None:
            totals = figure.totals
            if metric is None:
                for name, at in total_columns:
                    totals[name] = row[at]
            else:
                totals[metric] = row[3]
        elif figure.days_from is not None and day >= figure.days_from:
            days = figure.days
            if metric is None:
                for name, at in day_columns:
                    found = days.get(name)
                    if found is None:
                        found = days[name] = {}
                    found[day] = row[at]
            else:
                days.setdefault(metric, {})[day] = row[3]
    return figures


def _member_and_program(work: _MemberWork) -> tuple[int, int]:
    return work.member_id, work.program.id


def _plus(
    measures: dict[MeasureKey, int], spans: dict[MeasureKey, Any], effects: Effects, at: datetime
) -> dict[MeasureKey, int]:
    """``measures`` with ``effects`` added where the activity at ``at`` falls in the window."""
    out = dict(measures)
    for key, span in spans.items():
        delta = effects.get(key[0])
        if delta and (span.start is None or span.start <= at <= span.end):
            out[key] = out.get(key, 0) + delta
    return out


def _change_json(ladder_key: str, change: TierChange) -> dict[str, Any]:
    return {
        "ladder": ladder_key,
        "from": change.from_level,
        "to": change.to_level,
        "kind": change.kind.value,
        "at": iso(change.at),
    }


def purchase_result(
    activity_uuid: str,
    member_external_id: str,
    program_id: int,
    idempotency_key: str,
    occurred_at: datetime,
    amount: int,
    points: int,
    rate: str,
) -> dict[str, Any]:
    """The answer to a usual purchase (one earn segment, no level change): what
    ``_quick_purchase`` answers, and what a replay of one rebuilds from its ledger row."""
    return {
        "id": activity_uuid,
        "type": "purchase",
        "member_id": member_external_id,
        "program_id": program_id,
        "idempotency_key": idempotency_key,
        "occurred_at": iso(occurred_at),
        # dict(sorted(effects.items())), built in that order
        "effects": {
            _ORDERS: 1,
            _POINTS_BALANCE: points,
            _POINTS_EARNED: points,
            _SPEND: amount,
        }
        if points
        else {_ORDERS: 1, _SPEND: amount},
        "points_earned": points,
        "earn": [{"amount_minor": amount, "rate": rate, "points": points}],
        "reverses": None,
        "tier_changes": [],
    }


def _first_outcome(stored: ledger.Stored) -> Outcome:
    """The answer an activity was first given (R12), to its repeat: stored, or (for a
    usual purchase, which stores its earn rate instead) rebuilt from its row."""
    if stored.result is not None:
        return Outcome(stored.result, True)
    if stored.earn_rate is None:
        raise AssertionError(f"activity {stored.public_id} has neither an answer nor an earn rate")
    usual = (
        stored.public_id,
        stored.member_external_id,
        stored.program_id,
        stored.idempotency_key,
        stored.occurred_at,
        stored.amount_minor or 0,
        int(stored.effects.get(_POINTS_EARNED, 0)),
        stored.earn_rate,
    )
    return Outcome(None, True, usual)
