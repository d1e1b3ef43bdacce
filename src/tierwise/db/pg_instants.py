"""Instants (``timestamptz``) on the engine's asyncpg connections, converted by a codec of
ours (``register``).

asyncpg's own encoder compares every instant with its two infinities (an aware against a
naive datetime: each comparison asks the zone for its offset), converts it to UTC and
subtracts its epoch through Python attribute look-ups: about 2 µs an instant, the largest
single cost of a batch's ledger ``COPY`` (two instants a row: 4 of its 4.5 ms of client
CPU per 1,000 rows). Given as microseconds since PostgreSQL's epoch (asyncpg's ``tuple``
format) an aware instant is one subtraction in C and three fields of its result: the
``COPY`` took 2 ms instead of 4.

The conversions are asyncpg's, value for value (``tests/services/test_pg_instants.py``
compares them): an aware instant as the instant it is; a naive one, and a date, in the
machine's local time zone (``datetime.astimezone``); ``datetime.max`` and ``datetime.min``
(naive) as PostgreSQL's ``infinity`` and ``-infinity``, read back as those; every other
instant read back in UTC. Decoding is a call into Python per instant from asyncpg's row
decoding, which its own decoder (in C) avoids: the batch path's statements that read an
instant or two per member read them as integers instead (``micros``, ``of_micros``), and
the status reads' own pool (``Runtime.driver``) keeps asyncpg's codec.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, overload

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INFINITY = 2**63 - 1
_NEGATIVE_INFINITY = -(2**63)
_LAST = 252455615999999999
"""``datetime.max`` read as UTC: asyncpg writes this instant as ``infinity``."""
_FIRST = -63082281600000000
"""``datetime.min`` read as UTC: asyncpg writes this instant as ``-infinity``."""


_Kept = tuple[Any, tuple[int]]
_recent: tuple[_Kept, _Kept] = ((None, (0,)), (None, (0,)))
"""The two aware instants encoded last, most recent first, each with its encoding. A
batch's ``COPY`` writes the same recording instant (one object) in every row, between
the rows' own instants: it is encoded once. Replaced whole, never changed in place, so
that a connection used from another thread reads a consistent pair."""


def encode(value: datetime | date) -> tuple[int]:
    """``(microseconds since 2000-01-01 UTC,)`` of ``value``."""
    global _recent
    first, second = _recent
    if value is first[0]:
        return first[1]
    if value is second[0]:
        _recent = (second, first)
        return second[1]
    if type(value) is not datetime or value.tzinfo is None:
        return (_encode_other(value),)  # not kept: read in the local zone of the moment
    since = value - _EPOCH  # its fields read in Python: faster than ``// _MICROSECOND``
    microseconds = (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds
    found = (microseconds if _FIRST < microseconds < _LAST else _edge(microseconds),)
    _recent = ((value, found), first)
    return found


def _edge(microseconds: int) -> int:
    """An instant at or beyond either end of ``datetime``'s range, as asyncpg writes it."""
    if microseconds == _LAST:
        return _INFINITY
    if microseconds == _FIRST:
        return _NEGATIVE_INFINITY
    raise OverflowError("date value out of range")


def _encode_other(value: datetime | date) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            if value == datetime.max:
                return _INFINITY
            if value == datetime.min:
                return _NEGATIVE_INFINITY
        instant = value.astimezone(UTC)  # a naive one in local time, as asyncpg reads it
    elif isinstance(value, date):
        # Midnight at the local offset of now, as asyncpg takes it.
        offset = datetime.now(UTC).astimezone().utcoffset()
        assert offset is not None
        local = timezone(offset)
        instant = datetime(value.year, value.month, value.day, tzinfo=local)
    else:
        raise TypeError(
            f"expected a datetime.date or datetime.datetime instance, got {type(value).__name__!r}"
        )
    microseconds = (instant - _EPOCH) // _MICROSECOND
    return microseconds if _FIRST < microseconds < _LAST else _edge(microseconds)


def decode(value: tuple[int]) -> datetime:
    """The instant of ``(microseconds since 2000-01-01 UTC,)``, in UTC."""
    microseconds = value[0]
    if microseconds == _INFINITY:
        return datetime.max
    if microseconds == _NEGATIVE_INFINITY:
        return datetime.min
    return _EPOCH + _MICROSECOND * microseconds  # in C (timedelta's constructor is slower)


def micros(column: str) -> str:
    """SQL reading the instant ``column`` as an ``int8``: microseconds since 2000-01-01
    UTC (``infinity`` and ``-infinity`` as asyncpg's extremes), NULL when it is NULL.
    ``of_micros`` turns it back into what ``decode`` gives.

    asyncpg decodes an ``int8`` in C, while each instant through this module's codec is a
    call into Python from the driver's row decoding (about 1 µs): a statement that reads
    a few instants for every member of a batch reads them this way."""
    return (
        f"CASE WHEN isfinite({column}) "
        f"THEN (extract(epoch FROM {column}) * 1000000)::int8 - 946684800000000 "
        f"WHEN {column} > 'epoch' THEN {_INFINITY}::int8 "
        f"WHEN {column} < 'epoch' THEN ({_NEGATIVE_INFINITY})::int8 END"
    )


@overload
def of_micros(value: int) -> datetime: ...
@overload
def of_micros(value: None) -> None: ...
@overload
def of_micros(value: int | None) -> datetime | None: ...
def of_micros(value: int | None) -> datetime | None:
    """The instant ``micros`` read (None for NULL): the value ``decode`` gives."""
    if value is None:
        return None
    if _FIRST < value < _LAST:
        return _EPOCH + _MICROSECOND * value  # in C (timedelta's constructor is slower)
    return decode((value,))  # an infinity, or out of range (OverflowError, as decode)


async def set_codec(driver: Any) -> None:
    """Use ``encode`` and ``decode`` for ``timestamptz`` on the asyncpg connection."""
    await driver.set_type_codec(
        "timestamptz", schema="pg_catalog", encoder=encode, decoder=decode, format="tuple"
    )


def register(engine: AsyncEngine) -> None:
    """Set the codec on every new connection of ``engine`` (PostgreSQL)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.run_async(set_codec)
