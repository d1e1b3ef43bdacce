"""Members' standings on ladders inside one use case: load, change, record, flush.

Every change goes to three places in the same transaction: the standing row, the
history (R22) and the event outbox (R23).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import members as repo
from tierwise.db.repos.programs import LadderRow
from tierwise.db.repos.upsert import copy_json_rows
from tierwise.db.tables import Base
from tierwise.domain.lifecycle import enter
from tierwise.domain.program import Program
from tierwise.domain.state import ChangeKind, ChangeSource, TierChange, TierState
from tierwise.services.runtime import Runtime


def _iso(value: datetime) -> str:
    if value.tzinfo is UTC:
        return _iso_utc(value)
    return value.isoformat().replace("+00:00", "Z")


#: An instant as event payloads write it (``2026-06-01T00:00:00Z``).
iso_instant = _iso


@lru_cache(maxsize=1024)
def _iso_utc(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


#: What a member without a standing holds (frozen, so one instance serves every caller).
_NO_STANDING = TierState()


ActivityIds = tuple[int, str]
"""An activity's ledger id and public id (``domain/activity_ids.py``): the history row
refers to the first, the published event to the second."""


class Standings:
    def __init__(self, rt: Runtime, conn: AsyncConnection, tenant_id: int, now: datetime) -> None:
        self.rt = rt
        self.conn = conn
        self.tenant_id = tenant_id
        self.now = now
        self._states: dict[tuple[int, int], TierState] = {}
        self._new: set[tuple[int, int]] = set()
        self._dirty: set[tuple[int, int]] = set()
        self._changes: list[
            tuple[int, LadderRow, TierChange, str, ActivityIds | None, TierState]
        ] = []
        self._locked: dict[tuple[int, int], int] = {}

    async def load(
        self,
        members: Sequence[tuple[int, str, datetime, Program]],
        ladders: dict[int, list[LadderRow]],
    ) -> None:
        """Load standings; place members who have none (R4: on the floor, if any)."""
        member_ids = sorted({m[0] for m in members})
        ladder_ids = sorted({row.id for rows in ladders.values() for row in rows})
        self._states.update(await repo.states(self.conn, member_ids, ladder_ids))
        for member_id, external_id, enrolled_at, program in members:
            for row in ladders.get(program.id, []):
                key = (member_id, row.id)
                if key in self._states:
                    continue
                self._states[key] = TierState()
                self._new.add(key)
                self._dirty.add(key)
                floor = row.definition.floor if row.definition else None
                if floor is not None and row.definition is not None:
                    placed = enter(
                        row.definition,
                        TierState(),
                        floor,
                        enrolled_at,
                        tz=program.tz,
                        enrolled_at=enrolled_at,
                        last_activity_at=None,
                    )
                    self.change(
                        member_id,
                        row,
                        placed,
                        TierChange(
                            from_level=None,
                            to_level=floor.key,
                            kind=ChangeKind.UPGRADED,
                            at=enrolled_at,
                            source=ChangeSource.ENROLMENT,
                        ),
                        external_id,
                    )

    def adopt(
        self,
        states: dict[tuple[int, int], TierState],
        locked: dict[tuple[int, int], int] | None = None,
    ) -> None:
        """Take standings loaded elsewhere (they exist, so they are updated on flush).
        ``locked`` gives the row ids of those this transaction holds locked."""
        self._states.update(states)
        if locked:
            self._locked.update(locked)

    def get(self, member_id: int, ladder_id: int) -> TierState:
        return self._states.get((member_id, ladder_id), _NO_STANDING)

    def change(
        self,
        member_id: int,
        row: LadderRow,
        state: TierState,
        change: TierChange | None,
        external_id: str | None,
        activity: ActivityIds | None = None,
    ) -> None:
        """Set a member's new standing; ``change`` (if any) is recorded and published, as
        caused by ``activity`` when one caused it."""
        key = (member_id, row.id)
        self._states[key] = state
        self._dirty.add(key)
        if change is not None:
            self._changes.append((member_id, row, change, external_id or "", activity, state))

    async def flush(self) -> None:
        await repo.save_states(
            self.conn,
            tenant_id=self.tenant_id,
            states=[(m, ladder, self._states[(m, ladder)]) for m, ladder in sorted(self._dirty)],
            now=self.now,
            locked=self._locked,
        )
        self._new.clear()
        self._dirty.clear()
        changes = self._changes
        if not changes:
            return
        self._changes = []
        uuids = new_uuids(2 * len(changes))
        tenant_id = self.tenant_id
        now = self.now
        await repo.add_changes(
            self.conn,
            [
                repo.change_row(
                    uuid=uuids[2 * i],
                    tenant_id=tenant_id,
                    member_id=member_id,
                    ladder_id=row.id,
                    change=change,
                    activity_id=activity[0] if activity else None,
                    now=now,
                    state_after=state,
                )
                for i, (member_id, row, change, _, activity, state) in enumerate(changes)
            ],
        )

        def events(encode: Callable[[Any], Any]) -> Iterator[tuple[Any, ...]]:
            for i, (member_id, row, change, external_id, activity, _) in enumerate(changes):
                kind = change.kind._value_
                yield (
                    uuids[2 * i + 1],
                    tenant_id,
                    member_id,
                    f"tier.{kind}",
                    encode(
                        {
                            "change_id": uuids[2 * i],
                            "member_id": external_id,
                            "program_id": row.program_id,
                            "ladder": row.key,
                            "from": change.from_level,
                            "to": change.to_level,
                            "kind": kind,
                            "source": change.source._value_,
                            "activity_id": activity[1] if activity else None,
                            "actor": change.actor,
                            "reason": change.reason,
                            "at": _iso(change.at),
                        }
                    ),
                    change.at,
                    now,
                    None,
                )

        await copy_json_rows(self.conn, _EVENTS, EVENT_COLUMNS, len(changes), events)


_EVENTS = Base.metadata.tables["events"]
EVENT_COLUMNS = (
    "uuid",
    "tenant_id",
    "member_id",
    "type",
    "payload",
    "occurred_at",
    "created_at",
    "published_at",
)

_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_uuids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as text, like ``str(uuid.uuid4())``, made from
    one read of the system's random source."""
    raw = os.urandom(16 * count).hex()
    variant = _VARIANT
    return [
        f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant[h[16]]}{h[17:20]}-{h[20:32]}"
        for h in (raw[i : i + 32] for i in range(0, 32 * count, 32))
    ]


def time_ordered_uuids(count: int) -> list[str]:
    """``count`` time-ordered (version 7) UUIDs as text: the current Unix time in
    milliseconds, then 74 random bits. Rows inserted together get neighbouring keys, so
    a unique index on them grows at its right edge instead of at random pages (which,
    once the index outgrows memory, costs a page read and a full-page image per row)."""
    stamp = f"{time.time_ns() // 1_000_000:012x}"
    head = f"{stamp[:8]}-{stamp[8:12]}-7"
    raw = os.urandom(10 * count).hex()
    variant = _VARIANT
    return [
        f"{head}{h[:3]}-{variant[h[3]]}{h[4:7]}-{h[7:19]}"
        for h in (raw[i : i + 20] for i in range(0, 20 * count, 20))
    ]
