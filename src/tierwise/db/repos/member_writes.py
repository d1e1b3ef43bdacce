"""Set-wise writes to ``members`` for the activity path (one statement per batch)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import bindparam, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.tables import Member

_SET_LAST_ACTIVITY_PG = text(
    "UPDATE members SET last_activity_at = v.at, updated_at = :now "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:ats AS timestamptz[])) AS v(id, at) "
    "WHERE members.id = v.id"
)

_SET_LAST_ACTIVITY = (
    update(Member)
    .where(Member.id == bindparam("member_id"))
    .values(last_activity_at=bindparam("at"), updated_at=bindparam("now"))
)


async def set_last_activity(
    conn: AsyncConnection, values: Mapping[int, datetime], now: datetime
) -> None:
    """``members.last_activity_at`` of every member in ``values`` ({member id: instant}),
    as one statement (PostgreSQL) or one executemany (other backends)."""
    if not values:
        return
    ids = sorted(values)
    if conn.dialect.name == "postgresql":
        await conn.execute(
            _SET_LAST_ACTIVITY_PG,
            {"ids": ids, "ats": [values[i] for i in ids], "now": now},
        )
        return
    await conn.execute(
        _SET_LAST_ACTIVITY,
        [{"member_id": i, "at": values[i], "now": now} for i in ids],
    )
