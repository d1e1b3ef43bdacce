"""Set-wise writes to ``members`` for the activity path (one statement per batch), and
the activity path's member and standing reads on PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.pg_instants import micros, of_micros
from tierwise.db.repos import pg_arrays
from tierwise.db.repos.members import _state_of as _state_of  # one decoding of the row
from tierwise.db.tables import Member
from tierwise.domain.state import TierState

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


# -- PostgreSQL: the activity path's reads on the driver connection ------------------------


class LockedMember(NamedTuple):
    """What the activity path reads of a member it locks."""

    id: int
    external_id: str
    enrolled_at: datetime
    last_activity_at: datetime | None


_LOCK_MEMBERS_PG = (
    f"SELECT m.id, m.external_id, {micros('m.enrolled_at')}, {micros('m.last_activity_at')} "
    "FROM unnest($2::text::text[]) AS k(external_id) "
    "JOIN members AS m ON m.tenant_id = $1 AND m.external_id = k.external_id "
    "ORDER BY m.id FOR UPDATE OF m"
)
"""The ids as rows joined to the members (by the (tenant, external id) index, or a hash of
the tenant's members when it has few), locked in id order (the lock is taken above the
sort). Not ``external_id = ANY($2)``: once the prepared statement runs its generic plan
(from the sixth execution on) the array is a parameter, which PostgreSQL neither hashes
nor, on a tenant with few members, uses as an index condition: a linear search of the
array for every member of the tenant (1,000 members, 250 ids: 5.4 ms of PostgreSQL CPU a
batch against 0.9 ms for the join; medians of 20 rolled-back runs, 2026-11-22)."""


async def lock_members_pg(
    driver: Any, tenant_id: int, external_ids: Sequence[str]
) -> dict[str, LockedMember]:
    """``members_repo.members_by_external_ids(..., lock=True)`` as one prepared statement
    on the asyncpg connection (the ids as one array, each id once), reading only what the
    activity path uses."""
    ids = pg_arrays.literal(list(dict.fromkeys(external_ids)))
    rows = await driver.fetch(_LOCK_MEMBERS_PG, tenant_id, ids)
    return {
        row[1]: LockedMember(row[0], row[1], of_micros(row[2]), of_micros(row[3])) for row in rows
    }


_STATES_PG = (
    f"SELECT t.member_id, t.ladder_id, t.level_key, {micros('t.achieved_at')}, "
    f"{micros('t.cycle_start')}, {micros('t.expires_at')}, {micros('t.check_due_at')}, "
    "t.previous_level_key, "
    "CASE WHEN json_typeof(t.assignment) = 'null' THEN NULL ELSE t.assignment END, "
    f"{micros('t.grace_until')}, t.credit "
    "FROM unnest($1::text::bigint[]) AS k(member_id) "
    "CROSS JOIN unnest($2::text::bigint[]) AS l(ladder_id) "
    "CROSS JOIN LATERAL (SELECT * FROM member_tiers "
    "WHERE member_id = k.member_id AND ladder_id = l.ladder_id OFFSET 0) AS t"
)
"""Per member and ladder, its standing by the unique (member, ladder) index: equality on
both its columns. With ``ladder_id = ANY`` inside instead, a table with 15,000 standings
and no statistics (never analysed: a new database, or a server without autovacuum) got a
plan that, for every member, also read every standing of the ladder through
``ix_member_tiers_due`` (``BitmapAnd``): 100 ms of PostgreSQL per batch of 250 members,
against 1 ms for this one on the same table."""


async def states_pg(
    driver: Any, member_ids: Sequence[int], ladder_ids: Sequence[int]
) -> dict[tuple[int, int], TierState]:
    """``members_repo.states`` as one prepared statement on the asyncpg connection."""
    if not member_ids or not ladder_ids:
        return {}
    rows = await driver.fetch(
        _STATES_PG, pg_arrays.literal(member_ids), pg_arrays.literal(ladder_ids)
    )
    at = of_micros
    return {
        (row[0], row[1]): _state_of(
            row[2],
            at(row[3]),
            at(row[4]),
            at(row[5]),
            at(row[6]),
            row[7],
            row[8],
            at(row[9]),
            row[10],
        )
        for row in rows
    }
