"""PostgreSQL set-based steps of the sweep: window sums for a whole batch in one
statement, and every write of a batch (standings, history, outbox) in one statement.

Both take their input as one array parameter per column (``unnest``), so a batch costs
a fixed number of round trips whatever its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import orjson

from tierwise.db.repos.members import STATE_COLUMNS, STATE_TYPES, state_arrays
from tierwise.domain.state import TierState

# -- window sums --------------------------------------------------------------------------

#: One row per request, in request order: the lifetime total (``lo`` is NULL) or the sum
#: of the daily buckets from ``lo`` to ``hi`` (both whole local days, inclusive).
_SUMS = """
SELECT CASE WHEN u.lo IS NULL THEN
         (SELECT t.value FROM metric_totals t
          WHERE t.member_id = u.m AND t.program_id = $1 AND t.metric = u.metric)
       ELSE
         (SELECT sum(d.value)::bigint FROM metric_days d
          WHERE d.member_id = u.m AND d.program_id = $1 AND d.metric = u.metric
            AND d.day >= u.lo AND d.day <= u.hi)
       END
FROM unnest($2::bigint[], $3::text[], $4::date[], $5::date[]) WITH ORDINALITY
     AS u(m, metric, lo, hi, i)
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
    rows = await driver.fetch(
        _SUMS,
        program_id,
        [r[0] for r in requests],
        [r[1] for r in requests],
        [r[2] for r in requests],
        [r[3] for r in requests],
    )
    return [row[0] or 0 for row in rows]


# -- writes -------------------------------------------------------------------------------


def _arrays(first: int) -> str:
    return ", ".join(f"${first + i}::{STATE_TYPES[name]}[]" for i, name in enumerate(STATE_COLUMNS))


_N = len(STATE_COLUMNS)
_C = 3 + _N  # first parameter of the change arrays

_WRITE = f"""
WITH standings AS (
    UPDATE member_tiers AS t SET {
    ", ".join(f"{n} = s.{n}::json" if n == "assignment" else f"{n} = s.{n}" for n in STATE_COLUMNS)
}, updated_at = $1::timestamptz
    FROM unnest($2::bigint[], {_arrays(3)}) AS s(id, {", ".join(STATE_COLUMNS)})
    WHERE t.id = s.id
), c AS MATERIALIZED (
    SELECT * FROM unnest(
        ${_C}::text[], ${_C + 1}::text[], ${_C + 2}::bigint[], ${_C + 3}::bigint[],
        ${_C + 4}::bigint[], ${_C + 5}::text[], ${_C + 6}::text[], ${_C + 7}::text[],
        ${_C + 8}::text[], ${_C + 9}::text[], ${_C + 10}::text[], ${_C + 11}::timestamptz[],
        ${_C + 12}::text[]
    ) WITH ORDINALITY AS c(change_uuid, event_uuid, tenant_id, member_id, ladder_id,
                           from_level_key, to_level_key, kind, source, actor, reason,
                           occurred_at, payload, i)
), history AS (
    INSERT INTO tier_changes (uuid, tenant_id, member_id, ladder_id, from_level_key,
                              to_level_key, kind, source, activity_id, actor, reason,
                              occurred_at, recorded_at)
    SELECT change_uuid, tenant_id, member_id, ladder_id, from_level_key, to_level_key, kind,
           source, NULL, actor, reason, occurred_at, $1::timestamptz
    FROM c ORDER BY i
)
INSERT INTO events (uuid, tenant_id, member_id, type, payload, occurred_at, created_at,
                    published_at)
SELECT event_uuid, tenant_id, member_id, 'tier.' || kind, payload::json, occurred_at,
       $1::timestamptz, NULL
FROM c ORDER BY i
"""


class ChangeArrays:
    """Level changes of a batch, one list per column, in the order they happened."""

    __slots__ = (
        "actor",
        "at",
        "change_uuid",
        "event_uuid",
        "from_level",
        "kind",
        "ladder_id",
        "member_id",
        "payload",
        "reason",
        "source",
        "tenant_id",
        "to_level",
    )

    def __init__(self) -> None:
        self.change_uuid: list[str] = []
        self.event_uuid: list[str] = []
        self.tenant_id: list[int] = []
        self.member_id: list[int] = []
        self.ladder_id: list[int] = []
        self.from_level: list[str | None] = []
        self.to_level: list[str | None] = []
        self.kind: list[str] = []
        self.source: list[str] = []
        self.actor: list[str | None] = []
        self.reason: list[str | None] = []
        self.at: list[datetime] = []
        self.payload: list[str] = []

    def __len__(self) -> int:
        return len(self.change_uuid)

    def columns(self) -> list[list[Any]]:
        return [
            self.change_uuid,
            self.event_uuid,
            self.tenant_id,
            self.member_id,
            self.ladder_id,
            self.from_level,
            self.to_level,
            self.kind,
            self.source,
            self.actor,
            self.reason,
            self.at,
            self.payload,
        ]


def payload_text(value: dict[str, Any]) -> str:
    """An event payload as the ``COPY`` path writes it (compact JSON, UTF-8)."""
    return orjson.dumps(value).decode()


async def write_batch(
    driver: Any,
    *,
    now: datetime,
    standings: Sequence[tuple[int, TierState]],
    changes: ChangeArrays,
) -> None:
    """Update the claimed standings ``(member_tiers id, new state)`` and append their
    history and outbox events, in one statement."""
    await driver.execute(
        _WRITE,
        now,
        [i for i, _ in standings],
        *state_arrays(s for _, s in standings),
        *changes.columns(),
    )
