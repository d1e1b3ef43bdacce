"""Members' standings on ladders inside one use case: load, change, record, flush.

Every change goes to three places in the same transaction: the standing row, the
history (R22) and the event outbox (R23).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.repos import members as repo
from tierwise.db.repos.programs import LadderRow
from tierwise.db.tables import Event
from tierwise.domain.lifecycle import enter
from tierwise.domain.program import Program
from tierwise.domain.state import ChangeKind, ChangeSource, TierChange, TierState
from tierwise.services.runtime import Runtime


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class Standings:
    def __init__(self, rt: Runtime, conn: AsyncConnection, tenant_id: int, now: datetime) -> None:
        self.rt = rt
        self.conn = conn
        self.tenant_id = tenant_id
        self.now = now
        self._states: dict[tuple[int, int], TierState] = {}
        self._new: set[tuple[int, int]] = set()
        self._dirty: set[tuple[int, int]] = set()
        self._changes: list[tuple[int, LadderRow, TierChange, str, str | None]] = []

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

    def adopt(self, states: dict[tuple[int, int], TierState]) -> None:
        """Take standings loaded elsewhere (they exist, so they are updated on flush)."""
        self._states.update(states)

    def get(self, member_id: int, ladder_id: int) -> TierState:
        return self._states.get((member_id, ladder_id), TierState())

    def change(
        self,
        member_id: int,
        row: LadderRow,
        state: TierState,
        change: TierChange | None,
        external_id: str | None,
        activity_uuid: str | None = None,
    ) -> None:
        """Set a member's new standing; ``change`` (if any) is recorded and published."""
        key = (member_id, row.id)
        self._states[key] = state
        self._dirty.add(key)
        if change is not None:
            self._changes.append((member_id, row, change, external_id or "", activity_uuid))

    async def flush(self, activity_ids: dict[str, int] | None = None) -> None:
        await repo.save_states(
            self.conn,
            tenant_id=self.tenant_id,
            states=[(m, ladder, self._states[(m, ladder)]) for m, ladder in sorted(self._dirty)],
            now=self.now,
        )
        self._new.clear()
        self._dirty.clear()
        history: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for member_id, row, change, external_id, activity_uuid in self._changes:
            change_uuid = str(uuid.uuid4())
            history.append(
                repo.change_row(
                    uuid=change_uuid,
                    tenant_id=self.tenant_id,
                    member_id=member_id,
                    ladder_id=row.id,
                    change=change,
                    activity_id=(activity_ids or {}).get(activity_uuid or ""),
                    now=self.now,
                )
            )
            events.append(
                {
                    "uuid": str(uuid.uuid4()),
                    "tenant_id": self.tenant_id,
                    "member_id": member_id,
                    "type": f"tier.{change.kind.value}",
                    "occurred_at": change.at,
                    "created_at": self.now,
                    "published_at": None,
                    "payload": {
                        "change_id": change_uuid,
                        "member_id": external_id,
                        "program_id": row.program_id,
                        "ladder": row.key,
                        "from": change.from_level,
                        "to": change.to_level,
                        "kind": change.kind.value,
                        "source": change.source.value,
                        "activity_id": activity_uuid,
                        "actor": change.actor,
                        "reason": change.reason,
                        "at": _iso(change.at),
                    },
                }
            )
        self._changes.clear()
        await repo.add_changes(self.conn, history)
        if events:
            await self.conn.execute(insert(Event), events)
