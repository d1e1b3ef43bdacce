"""PostgreSQL set-based steps of the sweep: window sums for a whole batch in one
statement, and every write of a batch (standings, history, outbox) in one statement.

Both take their input as one array parameter per column (``unnest``), so a batch costs
a fixed number of round trips whatever its size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import orjson

from tierwise.db.repos.members import STATE_COLUMNS, STATE_TYPES, state_rows
from tierwise.db.tables import BUILTIN_COLUMNS
from tierwise.domain.state import TierState

# -- window sums --------------------------------------------------------------------------


def _builtin(table: str) -> str:
    """The built-in metric ``u.metric`` read from a ``member_days`` / ``member_totals`` row
    (NULL for a custom counter)."""
    cases = " ".join(f"WHEN '{m}' THEN {table}.{m}" for m in BUILTIN_COLUMNS)
    return f"CASE u.metric {cases} END"


_BUILTINS = ", ".join(f"'{m}'" for m in BUILTIN_COLUMNS)

#: One row per request, in request order: the lifetime total (``lo`` is NULL) or the sum
#: of the daily buckets from ``lo`` to ``hi`` (both whole local days, inclusive); the
#: built-in metrics from the columns of ``member_totals`` / ``member_days``, the custom
#: counters from ``metric_totals`` / ``metric_days``.
_SUMS = f"""
SELECT CASE WHEN u.lo IS NULL AND u.metric IN ({_BUILTINS}) THEN
         (SELECT {_builtin("t")} FROM member_totals t
          WHERE t.member_id = u.m AND t.program_id = $1)
       WHEN u.lo IS NULL THEN
         (SELECT t.value FROM metric_totals t
          WHERE t.member_id = u.m AND t.program_id = $1 AND t.metric = u.metric)
       WHEN u.metric IN ({_BUILTINS}) THEN
         (SELECT sum({_builtin("d")})::bigint FROM member_days d
          WHERE d.member_id = u.m AND d.program_id = $1 AND d.day >= u.lo AND d.day <= u.hi)
       ELSE
         (SELECT sum(d.value)::bigint FROM metric_days d
          WHERE d.member_id = u.m AND d.program_id = $1 AND d.metric = u.metric
            AND d.day >= u.lo AND d.day <= u.hi)
       END
FROM (SELECT (r->>0)::bigint AS m, r->>1 AS metric, (r->>2)::date AS lo, (r->>3)::date AS hi, i
      FROM jsonb_array_elements($2::text::jsonb) WITH ORDINALITY AS x(r, i)) AS u
ORDER BY u.i
"""


async def window_sums(
    driver: Any,
    program_id: int,
    requests: Sequence[tuple[int, str, date | None, date]],
) -> list[int]:
    """For each ``(member_id, metric, first day or None for lifetime, last day)``, the
    member's figure: the running total, or the sum of the daily buckets of those days."""
    if not requests:
        return []
    rows = await driver.fetch(_SUMS, program_id, rows_json(requests))
    return [row[0] or 0 for row in rows]


# -- writes -------------------------------------------------------------------------------


def rows_json(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as one JSON array of arrays: a batch goes to the server as one text value
    (instants as ISO 8601 with their offset, naive ones as UTC; dates as ISO dates),
    which costs far less to encode than one array parameter per column."""
    return orjson.dumps(list(rows), option=orjson.OPT_NAIVE_UTC).decode()


def _column(n: int, name: str) -> str:
    kind = STATE_TYPES[name]
    if kind == "text":
        return f"r->>{n} AS {name}"
    return f"(r->>{n})::{kind} AS {name}"


_STATE_SELECT = ", ".join(_column(n + 1, c) for n, c in enumerate(STATE_COLUMNS))

#: ``(member_tiers id, *STATE_COLUMNS)`` per standing, then per change ``CHANGE_FIELDS``.
_WRITE = f"""
WITH s AS MATERIALIZED (
    SELECT (r->>0)::bigint AS id, {
    ", ".join(_column(n + 1, c) for n, c in enumerate(STATE_COLUMNS))
}
    FROM jsonb_array_elements($2::text::jsonb) AS x(r)
), standings AS (
    UPDATE member_tiers AS t SET {
    ", ".join(f"{n} = s.{n}::json" if n == "assignment" else f"{n} = s.{n}" for n in STATE_COLUMNS)
}, updated_at = $1::timestamptz
    FROM s
    WHERE t.id = s.id
), c AS MATERIALIZED (
    SELECT r->>0 AS change_uuid, r->>1 AS event_uuid, (r->>2)::bigint AS tenant_id,
           (r->>3)::bigint AS member_id, (r->>4)::bigint AS ladder_id,
           r->>5 AS from_level_key, r->>6 AS to_level_key, r->>7 AS kind, r->>8 AS source,
           r->>9 AS actor, r->>10 AS reason, (r->>11)::timestamptz AS occurred_at,
           (r->12)::json AS state_after, payload, i
    FROM ROWS FROM (jsonb_array_elements($3::text::jsonb), unnest($4::text[]))
         WITH ORDINALITY AS x(r, payload, i)
), history AS (
    INSERT INTO tier_changes (uuid, tenant_id, member_id, ladder_id, from_level_key,
                              to_level_key, kind, source, activity_id, actor, reason,
                              occurred_at, recorded_at, state_after)
    SELECT change_uuid, tenant_id, member_id, ladder_id, from_level_key, to_level_key, kind,
           source, NULL, actor, reason, occurred_at, $1::timestamptz, state_after
    FROM c ORDER BY i
)
INSERT INTO events (uuid, tenant_id, member_id, type, payload, occurred_at, created_at,
                    published_at)
SELECT event_uuid, tenant_id, member_id, 'tier.' || kind, payload::json, occurred_at,
       $1::timestamptz, NULL
FROM c ORDER BY i
"""

#: What each change row holds, in order.
CHANGE_FIELDS = (
    "change_uuid",
    "event_uuid",
    "tenant_id",
    "member_id",
    "ladder_id",
    "from_level_key",
    "to_level_key",
    "kind",
    "source",
    "actor",
    "reason",
    "occurred_at",
    "state_after",
    "payload",
)


def payload_text(value: dict[str, Any]) -> str:
    """An event payload as the ``COPY`` path writes it (compact JSON, UTF-8)."""
    return orjson.dumps(value).decode()


async def write_batch(
    driver: Any,
    *,
    now: datetime,
    standings: Iterable[tuple[int, TierState]],
    changes: Sequence[tuple[Any, ...]],
) -> None:
    """Update the claimed standings ``(member_tiers id, new state)`` and append their
    history and outbox events (rows in ``CHANGE_FIELDS`` order, in the order the
    changes happened), in one statement."""
    await driver.execute(
        _WRITE,
        now,
        rows_json(state_rows(standings)),
        rows_json(c[:-1] for c in changes),
        [c[-1] for c in changes],
    )
