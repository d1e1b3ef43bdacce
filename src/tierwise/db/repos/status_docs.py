"""Stored status documents: a member's computed status per program, kept as JSON.

A document is served only while its **stamp** still matches the rows it was computed
from, so no write path has to remember to invalidate it. The stamp is computed by
PostgreSQL from the system column ``xmin`` (the id of the transaction that last wrote a
row version) of every row a status read depends on: the member, the program, the
program's ladders (a publish moves ``live_version_id``), the member's standings and the
member's running totals in the program (every activity and return moves at least one).
Any committed write to any of them gives that row a new ``xmin``, so the stamp changes in
the same commit as the data. Time is the other input: a document also carries the
instant it was computed and the instant it stops being true (``valid_until``).

PostgreSQL only: SQLite has no ``xmin``, and there the status is always computed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

# The stamp of member ``m`` in program ``p``, as one SQL expression.
_STAMP = """concat_ws('|', m.xmin::text, p.xmin::text,
    (SELECT string_agg(l.id::text || ':' || l.xmin::text, ',' ORDER BY l.id)
       FROM ladders l WHERE l.program_id = p.id),
    (SELECT string_agg(t.id::text || ':' || t.xmin::text, ',' ORDER BY t.id)
       FROM member_tiers t WHERE t.member_id = m.id),
    (SELECT string_agg(x.metric || ':' || x.xmin::text, ',' ORDER BY x.metric)
       FROM metric_totals x WHERE x.member_id = m.id AND x.program_id = p.id))"""

# The program a read names, or the tenant's default one (as ``programs.program_ladders``
# picks it: the default flag first, then the oldest).
_DEFAULT_PROGRAM = (
    "(SELECT id FROM programs WHERE tenant_id = $1 ORDER BY is_default DESC, id LIMIT 1)"
)


def _lookup(program: str) -> str:
    return (
        "SELECT m.id, p.id, s.stamp, CASE WHEN d.stamp = s.stamp AND d.computed_at <= $3 "
        "AND d.valid_until > $3 THEN d.body END FROM members m "
        "JOIN programs p ON p.tenant_id = m.tenant_id AND p.id = " + program + " "
        "CROSS JOIN LATERAL (SELECT " + _STAMP + " AS stamp) s "
        "LEFT JOIN status_docs d ON d.member_id = m.id AND d.program_id = p.id "
        "WHERE m.tenant_id = $1 AND m.external_id = $2"
    )


_LOOKUP = {False: _lookup(_DEFAULT_PROGRAM), True: _lookup("$4")}

_STORE = (
    "INSERT INTO status_docs (member_id, program_id, stamp, computed_at, valid_until, body) "
    "VALUES ($1, $2, $3, $4, $5, $6) "
    "ON CONFLICT (member_id, program_id) DO UPDATE SET stamp = EXCLUDED.stamp, "
    "computed_at = EXCLUDED.computed_at, valid_until = EXCLUDED.valid_until, "
    "body = EXCLUDED.body"
)


async def lookup(
    driver: Any, tenant_id: int, external_id: str, program_id: int | None, now: datetime
) -> tuple[int, int, str, str | None] | None:
    """(member id, program id, current stamp, the stored body if it is still true at
    ``now``); None when there is no such member or program. The stamp is read *before*
    the data a new document is built from, so that a write committed in between can only
    make that document unusable."""
    args: tuple[object, ...] = (tenant_id, external_id, now)
    if program_id is not None:
        args += (program_id,)
    row = await driver.fetchrow(_LOOKUP[program_id is not None], *args)
    if row is None:
        return None
    return int(row[0]), int(row[1]), str(row[2]), None if row[3] is None else str(row[3])


async def store(
    driver: Any,
    *,
    member_id: int,
    program_id: int,
    stamp: str,
    computed_at: datetime,
    valid_until: datetime,
    body: str,
) -> None:
    await driver.execute(_STORE, member_id, program_id, stamp, computed_at, valid_until, body)
