"""Reads the platform dialects need beyond ``status.py``: the tenant's default tier
catalogue (program, first ladder, level identities), a member's standing on it with the
standing record's timestamps, arbitrary measures, and unit conversion for display.

Translation only: every tier decision comes from the engine (``member_status``, the
domain's validity functions). See docs/dialects/.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from tierwise.db.repos import programs as programs_repo
from tierwise.db.repos.programs import LadderRow
from tierwise.db.tables import Level as LevelTable
from tierwise.db.tables import Member, MemberTier
from tierwise.domain.criteria import MeasureKey, Rule
from tierwise.domain.ladder import Ladder, Level
from tierwise.domain.metrics import BuiltinMetric
from tierwise.domain.money import minor_unit_exponent
from tierwise.domain.program import Program
from tierwise.domain.windows import Window, WindowType
from tierwise.services.programs import get_program
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.status import LadderStatus, MemberRef, MemberStatus, member_status
from tierwise.services.status import member_measures as measure_member

ROLLING_365_DAYS = Window(type=WindowType.ROLLING_DAYS, days=365)
SINCE_TIER_START = Window(type=WindowType.SINCE_TIER_START)


@dataclass(frozen=True, slots=True)
class LevelIdentity:
    """A level key's stable identity (kept across ladder versions)."""

    id: int
    uuid: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The tier catalogue a single-ladder platform sees: the tenant's default program and
    its first ladder with a live definition (None when it has none yet)."""

    program: Program
    ladder: LadderRow | None
    identities: dict[str, LevelIdentity]

    @property
    def definition(self) -> Ladder | None:
        return None if self.ladder is None else self.ladder.definition

    @property
    def levels(self) -> tuple[Level, ...]:
        definition = self.definition
        return () if definition is None else definition.levels

    def identity(self, level: Level) -> LevelIdentity:
        found = self.identities.get(level.key)
        if found is None:  # pragma: no cover - every live level key has an identity row
            raise LookupError(f"level {level.key!r} has no identity")
        return found


async def default_catalogue(rt: Runtime, caller: Caller) -> Catalogue:
    async with rt.transaction() as conn:
        program = await get_program(conn, caller, None)
        rows = [
            row
            for row in await programs_repo.ladders(
                conn, rt.definitions, tenant_id=caller.tenant_id, program_id=program.id
            )
            if row.definition is not None
        ]
        ladder = rows[0] if rows else None
        identities: dict[str, LevelIdentity] = {}
        if ladder is not None:
            result = await conn.execute(
                select(LevelTable.key, LevelTable.id, LevelTable.uuid, LevelTable.created_at).where(
                    LevelTable.ladder_id == ladder.id
                )
            )
            identities = {
                key: LevelIdentity(id=level_id, uuid=level_uuid, created_at=created_at)
                for key, level_id, level_uuid, created_at in result
            }
    return Catalogue(program=program, ladder=ladder, identities=identities)


@dataclass(frozen=True, slots=True)
class RecordTimes:
    """When the member's standing record on the ladder was created and last changed
    (the member record's times when there is no standing row yet)."""

    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MemberView:
    catalogue: Catalogue
    status: MemberStatus
    standing: LadderStatus | None
    """The member's status on the catalogue's ladder (None when there is no ladder)."""
    record: RecordTimes


async def member_view(rt: Runtime, caller: Caller, ref: str, by: MemberRef) -> MemberView:
    """The engine's status of member ``ref`` on the default program's first ladder."""
    catalogue = await default_catalogue(rt, caller)
    ladder = catalogue.ladder
    status = await member_status(
        rt,
        caller,
        ref,
        program_id=catalogue.program.id,
        ladder_key=None if ladder is None else ladder.key,
        by=by,
    )
    standing = next(
        (item for item in status.ladders if ladder is not None and item.ladder.id == ladder.id),
        None,
    )
    async with rt.transaction() as conn:
        row = None
        if ladder is not None:
            row = (
                await conn.execute(
                    select(MemberTier.created_at, MemberTier.updated_at).where(
                        MemberTier.member_id == status.member.id,
                        MemberTier.ladder_id == ladder.id,
                    )
                )
            ).first()
        if row is None:
            row = (
                await conn.execute(
                    select(Member.created_at, Member.updated_at).where(
                        Member.id == status.member.id
                    )
                )
            ).one()
    record = RecordTimes(created_at=row[0], updated_at=row[1])
    return MemberView(catalogue=catalogue, status=status, standing=standing, record=record)


async def measures(
    rt: Runtime,
    caller: Caller,
    view: MemberView,
    keys: set[MeasureKey],
    *,
    tier_start: datetime | None,
) -> dict[MeasureKey, int]:
    """Metrics over windows for the member of ``view``, as of the status read's instant."""
    if not keys:
        return {}
    return await measure_member(
        rt,
        caller,
        view.status.member,
        view.status.program,
        keys,
        at=view.status.as_of,
        tier_start=tier_start,
    )


def cycle_end(view: MemberView) -> datetime | None:
    """The end of the held level's validity cycle: its expiry; for a permanent floor
    level, the expiry the ladder's validity gives a cycle started when the member entered
    it (Omneo shows an anniversary for the floor too). None without a level or validity."""
    item = view.standing
    if item is None or item.current is None:
        return None
    return item.cycle_end


# -- display helpers ----------------------------------------------------------------------


def first_metric(rule: Rule | None) -> str | None:
    """The metric of a rule's first criterion (the headline, R6)."""
    return None if rule is None else rule.criteria[0].metric


def first_threshold(rule: Rule | None) -> int:
    """The threshold of a rule's first criterion, 0 without a rule."""
    return 0 if rule is None else rule.criteria[0].threshold


def whole_units(metric: str | None, value: int, currency: str, *, round_up: bool) -> int:
    """A figure in the unit a platform shows: money (``spend``, stored in minor units, R8)
    in whole major units of the program currency, rounded down for amounts reached and up
    for amounts still required; every other metric unchanged."""
    if metric != BuiltinMetric.SPEND:
        return value
    unit: int = 10 ** minor_unit_exponent(currency)
    whole, rest = divmod(value, unit)
    return whole + 1 if round_up and rest else whole
