"""The PostgreSQL batch write adds to the buckets and running totals exactly what the
batch applied to its members' figures (R13 sums read them back): the wide rows built
straight from the figures (``_Batch._pivoted_deltas``) hold the per-metric deltas
(``_Batch._deltas``), which the SQLite write uses, one row per member and day, in key
order."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tierwise.db.tables import BUILTIN_COLUMNS
from tierwise.domain.figures import MemberFigures
from tierwise.domain.metrics import BuiltinMetric
from tierwise.domain.program import Program
from tierwise.services.activities import _Batch, _MemberWork

_METRICS = [m.value for m in BuiltinMetric] + ["stamps", "visits_custom"]
_START = datetime(2026, 3, 28, 12, tzinfo=UTC)  # a DST change in Europe/Paris next day


def _program(program_id: int) -> Program:
    return Program(
        id=program_id,
        uuid=f"p{program_id}",
        tenant_id=1,
        name="p",
        time_zone="Europe/Paris",
        currency="EUR",
        earn_rate=Decimal(1),
        is_default=program_id == 1,
        created_at=_START,
        updated_at=_START,
    )


def _pivot(
    days: list[tuple[int, int, str, date, int]],
) -> tuple[list[list[Any]], list[tuple[int, int, str, date, int]]]:
    """The per-metric deltas as wide rows (member, program, day, each built-in metric) and
    the custom counters' rows as they are."""
    wide: dict[tuple[int, int, date], list[Any]] = {}
    counters = []
    for member_id, program_id, metric, day, value in days:
        if metric not in BUILTIN_COLUMNS:
            counters.append((member_id, program_id, metric, day, value))
            continue
        row = wide.setdefault(
            (member_id, program_id, day), [member_id, program_id, day, *[0] * len(BUILTIN_COLUMNS)]
        )
        row[3 + BUILTIN_COLUMNS.index(metric)] += value
    return list(wide.values()), counters


_activity = st.tuples(
    st.integers(0, 72),  # hours after the start: several local days
    st.dictionaries(st.sampled_from(_METRICS), st.integers(-500, 500), min_size=1),
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.integers(1, 6), st.integers(1, 2)),  # (member id, program id)
        st.lists(_activity, max_size=5),
        max_size=6,
    )
)
def test_pivoted_deltas_are_the_pivot_of_the_deltas(
    members: dict[tuple[int, int], list[tuple[int, dict[str, int]]]],
) -> None:
    works: dict[tuple[str, int], _MemberWork] = {}
    # Keyed as the batch keys them (external id, program), in an order unlike the ids'.
    for (member_id, program_id), activities in sorted(members.items(), reverse=True):
        work = _MemberWork(
            member_id=member_id,
            external_id=f"m{member_id}",
            enrolled_at=_START,
            last_activity_at=None,
            program=_program(program_id),
            first_at=_START,
        )
        work.figures = MemberFigures(tz=work.tz)
        for hours, effects in activities:
            work.figures.apply(_START + timedelta(hours=hours), dict(effects))
        works[(work.external_id, program_id)] = work

    wide, counters = _Batch._pivoted_deltas(works)
    expected_wide, expected_counters = _pivot(_Batch._deltas(works))
    assert sorted(map(tuple, wide)) == sorted(map(tuple, expected_wide))
    assert counters == expected_counters
    # In key order: every writer takes the rows' locks in that order.
    keys: list[tuple[int, int, date]] = [(r[0], r[1], r[2]) for r in wide]
    assert keys == sorted(keys)
