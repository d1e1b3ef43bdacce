"""The ``timestamptz`` encoder keeps the two instants it encoded last (a batch's ``COPY``
writes one recording instant in every row): whatever the order in which instants come, and
however often the same object recurs, each is written as the microsecond it is (R13, R27:
an activity's instant decides its day and its windows)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from tierwise.db import pg_instants

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_POOL = [
    datetime(2026, 11, 22, 19, 27, 8, 34504, tzinfo=UTC),
    datetime(2026, 11, 22, 19, 27, 8, 34504, tzinfo=timezone(timedelta(hours=2))),
    datetime(2026, 11, 22, 19, 27, 8, 34505, tzinfo=UTC),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 11, 22, 19, 27, 8, 34504, tzinfo=UTC),  # equal to the first, not it
]


def _expected(value: datetime) -> tuple[int]:
    return ((value - _EPOCH) // timedelta(microseconds=1),)


@given(st.lists(st.integers(0, len(_POOL) - 1), max_size=40))
def test_every_instant_is_written_as_itself_in_any_order(order: list[int]) -> None:
    for i in order:
        assert pg_instants.encode(_POOL[i]) == _expected(_POOL[i])


def test_the_recording_instant_between_the_rows_instants() -> None:
    recorded = datetime(2026, 11, 22, 20, tzinfo=UTC)
    for k in range(5):
        own = datetime(2026, 11, 22, 19, k, tzinfo=UTC)
        assert pg_instants.encode(own) == _expected(own)
        assert pg_instants.encode(recorded) == _expected(recorded)


def test_dates_and_naive_instants_between_aware_ones() -> None:
    aware = _POOL[0]
    day = date(2026, 11, 22)
    local_midnight = datetime(2026, 11, 22, tzinfo=datetime.now(UTC).astimezone().tzinfo)
    for value, expected in (
        (aware, _expected(aware)),
        (day, _expected(local_midnight)),
        (aware, _expected(aware)),
        (datetime.max, (2**63 - 1,)),
        (aware, _expected(aware)),
    ):
        assert pg_instants.encode(value) == expected
