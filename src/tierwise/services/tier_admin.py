"""Per-tier administration on top of ladder versions (R24): the translation behind tier
admin APIs that manage one tier at a time (Capillary v3).

A *tier* is one level of a program's tier ladder, which is the program's first ladder
(lowest id). A tier *record* is one level inside one ladder version: the same level in the
live version and in an open draft are two records of one tier. Every lifecycle step is
delegated to ``services.versions`` (which checks every transition and the one-open-draft
rule); this module only decides which version a per-tier request lands on and builds
the whole-ladder definition that carries the per-tier change.

Identities, all derived from stored data, so the same record always shows the same id:

- *serial*: a per-program tier counter. Walking the tier ladder's versions in number
  order (deleted drafts included), each level key gets the next serial the first time it
  appears, levels of one version in rank order. A key is never reused for a new tier, so
  serials are never reused either.
- *record id*: 24 lowercase hex characters, the first 96 bits of
  ``sha256(version uuid, NUL, level key)``.
- *level id*: the stable integer id the engine gives a level when it is first published.

No tier rule lives here: ordering, thresholds, transitions and maker-checker are the
engine's.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from itertools import pairwise
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from tierwise.db.repos import programs as programs_repo
from tierwise.db.repos import versions as versions_repo
from tierwise.db.repos.programs import LadderRow
from tierwise.db.repos.versions import VersionRow
from tierwise.db.tables import Level as LevelTable
from tierwise.domain.errors import Conflict, InvalidInput, NotFound
from tierwise.domain.ladder import KEY_PATTERN, Ladder, Level
from tierwise.domain.program import Program
from tierwise.domain.versions import OPEN_STATES, Action, VersionState, transition
from tierwise.services import golive
from tierwise.services import versions as versions_service
from tierwise.services.programs import get_program, list_programs
from tierwise.services.runtime import Caller, Runtime

LADDER_KEY = "tiers"
"""Key of the ladder created for a program that has none when its first tier is created."""
LADDER_NAME = "Tiers"
MAX_TIERS = 50
"""At most this many levels in a ladder (the engine's own limit, checked up front)."""

PUBLISHED = frozenset({VersionState.LIVE, VersionState.SNAPSHOT})
"""States of versions that were live at some point."""

_KEY = re.compile(KEY_PATTERN)
M = TypeVar("M", bound=BaseModel)


class Role(StrEnum):
    """What a record is to its tier."""

    LIVE = "live"
    """The level as the live version defines it."""
    EDIT = "edit"
    """The open version's change to a level that was published before."""
    NEW = "new"
    """The open version's level that was never published."""
    OTHER = "other"
    """Any other record: a snapshot, a deleted draft, a level an open version keeps as is."""


def record_id(version_uuid: str, level_key: str) -> str:
    """The stable 24-hex id of the record of ``level_key`` in version ``version_uuid``."""
    return hashlib.sha256(f"{version_uuid}\x00{level_key}".encode()).hexdigest()[:24]


def _published_at(version: VersionRow) -> datetime:
    """When a (once) live version went live: its approval, or its later effective time."""
    instants = [t for t in (version.approved_at, version.effective_at) if t is not None]
    return max(instants) if instants else version.updated_at


@dataclass(frozen=True, slots=True)
class TierRecord:
    program: Program
    ladder_key: str
    version: VersionRow
    level: Level
    definition: Ladder
    position: int
    """1-based place of the level in the version's rank order (the tier's serial number)."""
    serial: int
    level_id: int | None
    """The stable integer level id, once the level has been published."""
    role: Role
    revision: int
    """1 for a tier's first definition, +1 for each published change after it."""
    parent_id: str | None
    """For an ``EDIT``: the record id of the live record it changes."""
    first_published_at: datetime | None
    customer_count: int | None
    counted_at: datetime | None

    @property
    def id(self) -> str:
        return record_id(self.version.uuid, self.level.key)

    @property
    def state(self) -> VersionState:
        return self.version.state


@dataclass
class TierBook:
    """One program's tier ladder with all its versions: everything a tier read needs."""

    program: Program
    ladder: LadderRow | None
    versions: list[VersionRow]
    counts: dict[str, int] | None = None
    counted_at: datetime | None = None
    serials: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.versions = sorted(self.versions, key=lambda v: v.number)
        for version in self.versions:
            for level in version.definition.levels:
                self.serials.setdefault(level.key, len(self.serials) + 1)

    # -- versions -----------------------------------------------------------------------

    @property
    def live(self) -> VersionRow | None:
        wanted = self.ladder.live_version_id if self.ladder is not None else None
        return next((v for v in self.versions if v.id == wanted), None)

    @property
    def open(self) -> VersionRow | None:
        return next((v for v in self.versions if v.state in OPEN_STATES), None)

    def edited_keys(self) -> list[str]:
        """Keys of the levels the open version adds or changes (all of them when it changes
        a ladder-wide setting, since that changes every tier)."""
        draft, live = self.open, self.live
        if draft is None:
            return []
        if live is None:
            return [level.key for level in draft.definition.levels]
        wide = {"key", "name", "description", "levels"}
        ladder_changed = draft.definition.model_dump(exclude=wide) != live.definition.model_dump(
            exclude=wide
        )
        return [
            level.key
            for level in draft.definition.levels
            if ladder_changed or live.definition.level(level.key) != level
        ]

    def all_keys(self) -> set[str]:
        return set(self.serials) | set(self.ladder.level_ids if self.ladder else {})

    # -- records ------------------------------------------------------------------------

    def record(self, version: VersionRow, key: str) -> TierRecord:
        definition = version.definition
        level = definition.level(key)
        if level is None:
            raise NotFound(f"version {version.number} has no level {key!r}", code="tier_not_found")
        level_id = self.ladder.level_ids.get(key) if self.ladder is not None else None
        live, draft = self.live, self.open
        if live is not None and version.id == live.id:
            role = Role.LIVE
        elif draft is not None and version.id == draft.id and key in self.edited_keys():
            role = Role.EDIT if level_id is not None else Role.NEW
        else:
            role = Role.OTHER
        revisions: list[Level] = []
        first: datetime | None = None
        for earlier in self.versions:
            if earlier.state not in PUBLISHED:
                continue
            found = earlier.definition.level(key)
            if found is None:
                continue
            instant = _published_at(earlier)
            first = instant if first is None else min(first, instant)
            if earlier.number < version.number and (not revisions or revisions[-1] != found):
                revisions.append(found)
        revision = len(revisions) + (0 if revisions and revisions[-1] == level else 1)
        parent = None
        if role is Role.EDIT and live is not None and live.definition.level(key) is not None:
            parent = record_id(live.uuid, key)
        counted = role is Role.LIVE and self.counted_at is not None and self.counts is not None
        return TierRecord(
            program=self.program,
            ladder_key=self.ladder.key if self.ladder is not None else definition.key,
            version=version,
            level=level,
            definition=definition,
            position=[x.key for x in definition.levels].index(key) + 1,
            serial=self.serials[key],
            level_id=level_id,
            role=role,
            revision=revision,
            parent_id=parent,
            first_published_at=first if role is Role.LIVE else None,
            customer_count=(self.counts or {}).get(key, 0) if counted else None,
            counted_at=self.counted_at if counted else None,
        )

    def live_of(self, key: str) -> TierRecord | None:
        live = self.live
        if live is None or live.definition.level(key) is None:
            return None
        return self.record(live, key)

    def draft_of(self, key: str) -> TierRecord | None:
        """The open version's record of ``key`` when that version adds or changes it."""
        draft = self.open
        if draft is None or key not in self.edited_keys():
            return None
        return self.record(draft, key)

    def entries(self, key: str) -> list[TierRecord]:
        """The live record of a tier followed by its draft edit, when there is one."""
        return [r for r in (self.live_of(key), self.draft_of(key)) if r is not None]

    def current(self) -> list[TierRecord]:
        """Every live tier (each followed by its draft edit), then the new draft tiers."""
        found: list[TierRecord] = []
        live = self.live
        live_keys = [level.key for level in live.definition.levels] if live else []
        for key in live_keys:
            found.extend(self.entries(key))
        draft = self.open
        if draft is not None:
            edited = self.edited_keys()
            found.extend(
                self.record(draft, level.key)
                for level in draft.definition.levels
                if level.key in edited and level.key not in live_keys
            )
        return found

    def pending(self) -> list[TierRecord]:
        """The reviewer's queue: tier records of the version awaiting approval."""
        draft = self.open
        if draft is None or draft.state is not VersionState.PENDING_APPROVAL:
            return []
        return [self.record(draft, key) for key in self.edited_keys()]

    def find_record(self, wanted: str) -> TierRecord | None:
        for version in self.versions:
            for level in version.definition.levels:
                if record_id(version.uuid, level.key) == wanted:
                    return self.record(version, level.key)
        return None

    def key_of_serial(self, serial: int) -> str | None:
        return next((key for key, n in self.serials.items() if n == serial), None)


@dataclass(frozen=True, slots=True)
class Tier:
    """A tier found by one of its ids, with the record that id designates."""

    book: TierBook
    record: TierRecord

    @property
    def key(self) -> str:
        return self.record.level.key

    def for_writing(self) -> Tier:
        """Writes addressed to a tier (not to one record) go to its open draft edit when
        there is one, else to the live record."""
        if self.record.role is Role.LIVE:
            draft = self.book.draft_of(self.key)
            if draft is not None:
                return Tier(self.book, draft)
        return self


# -- reading -------------------------------------------------------------------------------


async def tier_ladder(
    rt: Runtime, caller: Caller, program_id: int | None
) -> tuple[Program, LadderRow | None]:
    """A program (the default one when None) and its tier ladder, if it has one."""
    async with rt.transaction() as conn:
        program = await get_program(conn, caller, program_id)
        rows = await programs_repo.ladders(
            conn, rt.definitions, tenant_id=caller.tenant_id, program_id=program.id
        )
    return program, (rows[0] if rows else None)


async def load_book(rt: Runtime, caller: Caller, program_id: int | None) -> TierBook:
    program, ladder = await tier_ladder(rt, caller, program_id)
    versions: list[VersionRow] = []
    if ladder is not None:
        async with rt.transaction() as conn:
            versions = await versions_repo.versions_of(conn, ladder.id)
    book = TierBook(program, ladder, versions)
    if ladder is not None and ladder.live_version_id is not None:
        counts = await golive.level_counts(rt, caller, program.id, ladder.key)
        if counts.computed_at is not None:
            book.counts, book.counted_at = counts.counts, counts.computed_at
    return book


async def find_by_level_id(rt: Runtime, caller: Caller, level_id: int) -> Tier | None:
    """The live record of the published tier with this level id."""
    async with rt.transaction() as conn:
        row = (
            await conn.execute(
                select(LevelTable.ladder_id, LevelTable.key).where(
                    LevelTable.id == level_id, LevelTable.tenant_id == caller.tenant_id
                )
            )
        ).first()
        if row is None:
            return None
        ladders = await programs_repo.ladders(conn, rt.definitions, tenant_id=caller.tenant_id)
    program_id = next((r.program_id for r in ladders if r.id == row.ladder_id), None)
    if program_id is None:
        return None
    book = await load_book(rt, caller, program_id)
    if book.ladder is None or book.ladder.id != row.ladder_id:
        return None
    found = book.live_of(row.key)
    return None if found is None else Tier(book, found)


async def find_by_serial(rt: Runtime, caller: Caller, program_id: int, serial: int) -> Tier | None:
    """A tier by its serial: its open draft record when it has one, else its live one."""
    try:
        book = await load_book(rt, caller, program_id)
    except NotFound:
        return None
    key = book.key_of_serial(serial)
    if key is None:
        return None
    found = book.draft_of(key) or book.live_of(key)
    return None if found is None else Tier(book, found)


async def find_by_record_id(rt: Runtime, caller: Caller, wanted: str) -> Tier | None:
    for program in await list_programs(rt, caller):
        book = await load_book(rt, caller, program.id)
        found = book.find_record(wanted)
        if found is not None:
            return Tier(book, found)
    return None


# -- editing -------------------------------------------------------------------------------


def _checked(cls: type[M], values: dict[str, Any]) -> M:
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidInput(
            f"{where}: {first.get('msg')}" if where else str(first.get("msg")),
            code="invalid_tier",
            field=where,
        ) from exc


def _key_for(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:56] or "tier"
    if not base[0].isalnum():
        base = f"t{base}"
    key, n = base, 1
    while key in taken or not _KEY.match(key):
        n += 1
        key = f"{base}-{n}"
    return key


def _place(levels: list[Level], key: str, position: int | None) -> list[Level]:
    """Move level ``key`` to ``position`` (1-based) and give ranks that keep that order:
    the ranks it already has when they do, else the one free rank between its neighbours,
    else 1..n for every level."""
    if position is None:
        return levels
    if not 1 <= position <= len(levels):
        raise InvalidInput(
            f"serialNumber must lie between 1 and {len(levels)}",
            code="invalid_tier",
            field="serialNumber",
        )
    moving = next(level for level in levels if level.key == key)
    ordered = [level for level in levels if level.key != key]
    ordered.insert(position - 1, moving)
    ranks = [level.rank for level in ordered]
    if all(a < b for a, b in pairwise(ranks)):
        return ordered
    below = ordered[position - 2].rank if position > 1 else 0
    above = ordered[position].rank if position < len(ordered) else None
    if below + 1 <= 1000 and (above is None or below + 1 < above):
        return [
            level.model_copy(update={"rank": below + 1}) if level.key == key else level
            for level in ordered
        ]
    return [level.model_copy(update={"rank": i + 1}) for i, level in enumerate(ordered)]


def _edited(
    definition: Ladder,
    key: str,
    level_changes: dict[str, Any],
    ladder_changes: dict[str, Any],
    position: int | None,
) -> Ladder:
    levels = list(definition.levels)
    index = [level.key for level in levels].index(key)
    if level_changes:
        levels[index] = _checked(Level, {**levels[index].model_dump(), **level_changes})
    levels = _place(levels, key, position)
    return _checked(
        Ladder,
        {**definition.model_dump(exclude={"levels"}), **ladder_changes, "levels": levels},
    )


async def create_tier(
    rt: Runtime,
    caller: Caller,
    program_id: int | None,
    *,
    name: str,
    level_changes: dict[str, Any],
    ladder_changes: dict[str, Any],
    position: int | None = None,
) -> Tier:
    """A new tier: a draft version of the tier ladder that adds the level (the first
    version of a new ladder when the program has none)."""
    book = await load_book(rt, caller, program_id)
    live = book.live
    base = live.definition if live is not None else None
    count = len(base.levels) if base is not None else 0
    if count >= MAX_TIERS:
        raise Conflict(
            f"program {book.program.id} already has {count} tiers, the most a program can have",
            code="tier_limit",
        )
    key = _key_for(name, book.all_keys())
    top = max((level.rank for level in base.levels), default=0) if base is not None else 0
    level = _checked(Level, {"key": key, "name": name, "rank": top + 1, **level_changes})
    if base is None:
        ladder_key = book.ladder.key if book.ladder is not None else LADDER_KEY
        definition = _checked(
            Ladder,
            {"key": ladder_key, "name": LADDER_NAME, "levels": [level], **ladder_changes},
        )
        definition = _edited(definition, key, {}, {}, position)
    else:
        grown = _checked(
            Ladder, {**base.model_dump(exclude={"levels"}), "levels": [*base.levels, level]}
        )
        definition = _edited(grown, key, {}, ladder_changes, position)
    version = await versions_service.create_draft(
        rt, caller, book.program.id, definition, key=definition.key
    )
    return await _reread(rt, caller, book.program.id, version.uuid, key)


async def update_tier(
    rt: Runtime,
    caller: Caller,
    tier: Tier,
    *,
    level_changes: dict[str, Any],
    ladder_changes: dict[str, Any],
    position: int | None = None,
) -> Tier:
    """Change a tier: in place on its draft, or, for a live record, as a new draft version
    (or on the open draft that already edits it)."""
    record, book = tier.record, tier.book
    program_id, ladder_key = book.program.id, record.ladder_key
    if record.role is Role.LIVE:
        draft = book.draft_of(tier.key)
        if draft is not None:
            record = draft
        else:
            definition = _edited(
                record.definition, tier.key, level_changes, ladder_changes, position
            )
            if definition == record.definition:
                return tier  # nothing changes: no empty draft that would block others
            version = await versions_service.create_draft(
                rt, caller, program_id, definition, key=ladder_key
            )
            return await _reread(rt, caller, program_id, version.uuid, tier.key)
    transition(record.state, Action.EDIT)
    definition = _edited(record.definition, tier.key, level_changes, ladder_changes, position)
    version = await versions_service.update_draft(
        rt, caller, program_id, ladder_key, record.version.number, definition
    )
    return await _reread(rt, caller, program_id, version.uuid, tier.key)


async def delete_tier(rt: Runtime, caller: Caller, tier: Tier) -> None:
    """Soft-delete the draft version that holds the record (drafts only: the engine
    refuses any other state)."""
    record = tier.record
    await versions_service.delete(
        rt, caller, tier.book.program.id, record.ladder_key, record.version.number
    )


async def submit_tier(rt: Runtime, caller: Caller, tier: Tier) -> Tier:
    record = tier.record
    version = await versions_service.submit(
        rt, caller, tier.book.program.id, record.ladder_key, record.version.number
    )
    return await _reread(rt, caller, tier.book.program.id, version.uuid, tier.key)


async def review_tier(
    rt: Runtime, caller: Caller, tier: Tier, *, approve: bool, comment: str | None
) -> tuple[Tier, str | None]:
    """Approve (publishing at once) or reject the version that holds the record; returns
    the record afterwards and the go-live job to run, if any."""
    record, program_id = tier.record, tier.book.program.id
    job: str | None = None
    if approve:
        published = await versions_service.approve(
            rt, caller, program_id, record.ladder_key, record.version.number
        )
        version, job = published.version, published.job_uuid
    else:
        version = await versions_service.reject(
            rt, caller, program_id, record.ladder_key, record.version.number, comment or ""
        )
    return await _reread(rt, caller, program_id, version.uuid, tier.key), job


async def _reread(
    rt: Runtime, caller: Caller, program_id: int, version_uuid: str, key: str
) -> Tier:
    book = await load_book(rt, caller, program_id)
    version = next(v for v in book.versions if v.uuid == version_uuid)
    return Tier(book, book.record(version, key))
