"""Stored status documents: a member's computed status per program, kept as JSON.

A document is served only while its **stamp** still matches the rows it was computed
from, so no write path has to remember to invalidate it. The stamp is computed by
PostgreSQL from the system column ``xmin`` (the id of the transaction that wrote a row
version: every ``INSERT`` and ``UPDATE`` gives the row a new one, also an update that
leaves every value as it was) of three kinds of rows:

- the **member** row. It also stands for the member's activities, daily buckets and
  running totals: every transaction that writes any of them for a member also writes
  that member's row (the activity path sets ``last_activity_at`` and ``updated_at`` in
  the statement that adds to the buckets and totals, ``db/repos/activities.py``).
- the **program** row. It also stands for the program's ladders and their level ids:
  every transaction that writes a ladder (a new one, a go-live moving
  ``live_version_id``) or its levels also writes the program row
  (``db/repos/programs.py``: ``add_ladder`` and ``set_live`` write it again, values
  unchanged). A live version's definition is never edited.
- the member's **standings** (``member_tiers``), each by its own ``xmin``, in ladder
  order. The sweep and the go-live job write up to a million standings a run and no
  member row (a write per member would cost them their time targets), so standings
  cannot be folded into the member row.

So a committed write to anything a status reads moves the stamp in the same commit. The
stamp is read *before* the data a new document is computed from, so a write committed in
between leaves a document whose stamp no longer matches: a recompute, never a stale
answer. The standings' list needs no ids: a new or rewritten standing carries the id of a
transaction whose writes the stored stamp could not see (so that id is not in it), and a
removed one shortens the list. ``tests/api/test_status_documents.py`` runs every writer
of the rows left out with a trigger log of each row written and fails on a transaction
that breaks either invariant; the test suite also recomputes and compares every document
served (``status_docs_verify``). A migration that rewrites those rows in place must touch
the member or program rows too, or empty ``status_docs`` (a cache).

Time is the other input: a document also carries the instant it was computed and the
instant it stops being true (``valid_until``): the next local midnight at the latest, a
life far too short for the 32-bit transaction ids in a stamp to come round again.

Cost (``pgbench -M prepared -c 1``, a random one of the 1,002 members of ``python -m
bench --keep-db``, best of six 5 s runs, 2026-11-22): 0.078 ms a lookup, against 0.143 ms
for the statement before (which also read the program's ladders and the member's totals,
and evaluated its stamp twice: PostgreSQL inlined the lateral subquery into both the
column and the comparison; ``OFFSET 0`` now keeps it one subquery) and 0.046 ms for a bare
primary-key ``SELECT`` of a member. The standings' list costs about 0.013 ms of it.

PostgreSQL only: SQLite has no ``xmin``, and there the status is always computed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

# The stamp of member ``m`` in program ``p``, as one SQL expression (see the docstring).
_STAMP = (
    "concat_ws('|', m.xmin::text, p.xmin::text, "
    "ARRAY(SELECT t.xmin FROM member_tiers t WHERE t.member_id = m.id "
    "ORDER BY t.ladder_id)::text)"
)

# The program a read names, or the tenant's default one (as ``programs.program_ladders``
# picks it: the default flag first, then the oldest), with its ``xmin``: one probe of
# ``ix_programs_tenant_default``.
_DEFAULT_PROGRAM = (
    "(SELECT id, xmin FROM programs WHERE tenant_id = $1 ORDER BY is_default DESC, id LIMIT 1)"
)
_NAMED_PROGRAM = "(SELECT id, xmin FROM programs WHERE tenant_id = $1 AND id = $4)"


def _lookup(program: str) -> str:
    # ``OFFSET 0`` keeps the stamp a subquery evaluated once per row: inlined, PostgreSQL
    # computed it twice (for the column and for the comparison).
    return (
        "SELECT m.id, p.id, s.stamp, CASE WHEN d.stamp = s.stamp AND d.computed_at <= $3 "
        "AND d.valid_until > $3 THEN d.body END FROM " + program + " p "
        "JOIN members m ON m.tenant_id = $1 AND m.external_id = $2 "
        "CROSS JOIN LATERAL (SELECT " + _STAMP + " AS stamp OFFSET 0) s "
        "LEFT JOIN status_docs d ON d.member_id = m.id AND d.program_id = p.id"
    )


_LOOKUP = {False: _lookup(_DEFAULT_PROGRAM), True: _lookup(_NAMED_PROGRAM)}

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
