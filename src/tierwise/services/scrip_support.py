"""Database look-ups the Scrip dialect needs to translate (docs/dialects/scrip.md).

Scrip names programs, tiers, levels and participants by UUID and shows when each level
was created and last changed. These helpers read those identities; they hold no tier
rule (the dialect calls the ordinary services for every decision).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from tierwise.db.repos import programs as programs_repo
from tierwise.db.repos.members import MemberRow
from tierwise.db.repos.programs import LadderRow
from tierwise.db.tables import LadderVersion, Level
from tierwise.domain.errors import NotFound
from tierwise.domain.ladder import Ladder
from tierwise.domain.program import Program
from tierwise.domain.versions import VersionState
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.status import MemberRef, find_member

PUBLISHED_STATES = (VersionState.LIVE.value, VersionState.SNAPSHOT.value)
"""Versions that were live at some point: the history a level's ``updated_at`` reads."""


@dataclass(frozen=True, slots=True)
class LevelMeta:
    """A level's identity as Scrip shows it."""

    uuid: str
    created_at: datetime
    """When the level key was first published on its ladder."""
    updated_at: datetime
    """When the level's live definition last changed (its creation if never)."""


async def program_by_uuid(rt: Runtime, caller: Caller, program_uuid: str) -> Program:
    """The caller's program with this UUID (Scrip ``programId`` / ``program_id``)."""
    async with rt.transaction() as conn:
        found = await programs_repo.program_by_uuid(conn, caller.tenant_id, program_uuid)
    if found is None:
        raise NotFound(f"no program {program_uuid}", code="program_not_found")
    return found


async def member_by_uuid(rt: Runtime, caller: Caller, member_uuid: str) -> MemberRow:
    """The caller's member with this UUID (Scrip participant ``id``)."""
    async with rt.transaction() as conn:
        return await find_member(conn, caller, member_uuid, MemberRef.UUID)


async def levels_meta(rt: Runtime, ladders: Sequence[LadderRow]) -> dict[int, dict[str, LevelMeta]]:
    """``{ladder id: {level key: LevelMeta}}`` for the given ladders.

    ``updated_at`` is the go-live time of the earliest published version from which the
    level's definition has stayed the same up to the live one.
    """
    ids = [row.id for row in ladders]
    if not ids:
        return {}
    async with rt.transaction() as conn:
        level_rows = (
            await conn.execute(
                select(Level.ladder_id, Level.key, Level.uuid, Level.created_at).where(
                    Level.ladder_id.in_(ids)
                )
            )
        ).all()
        version_rows = (
            await conn.execute(
                select(
                    LadderVersion.id,
                    LadderVersion.ladder_id,
                    LadderVersion.definition,
                    LadderVersion.effective_at,
                    LadderVersion.approved_at,
                    LadderVersion.updated_at,
                )
                .where(
                    LadderVersion.ladder_id.in_(ids),
                    LadderVersion.state.in_(PUBLISHED_STATES),
                )
                .order_by(LadderVersion.ladder_id, LadderVersion.number)
            )
        ).all()
    changed: dict[int, dict[str, datetime]] = {}
    last: dict[int, dict[str, object]] = {}
    for row in version_rows:
        definition = rt.definitions.get(row.id, row.definition)
        went_live = row.effective_at or row.approved_at or row.updated_at
        seen = last.setdefault(row.ladder_id, {})
        since = changed.setdefault(row.ladder_id, {})
        current = _levels(definition)
        for key in list(seen):
            if key not in current:
                del seen[key]
                since.pop(key, None)
        for key, level in current.items():
            if seen.get(key) != level:
                seen[key] = level
                since[key] = went_live
    found: dict[int, dict[str, LevelMeta]] = {}
    for ladder_id, key, level_uuid, created_at in level_rows:
        updated = changed.get(ladder_id, {}).get(key, created_at)
        found.setdefault(ladder_id, {})[key] = LevelMeta(
            uuid=level_uuid, created_at=created_at, updated_at=max(updated, created_at)
        )
    return found


def _levels(definition: Ladder) -> dict[str, object]:
    return {level.key: level for level in definition.levels}
