"""The engine's ``timestamptz`` codec (``db/pg_instants.py``) writes and reads every
instant as asyncpg's own codec does: activity instants, enrolment dates and tier expiries
(R13, R15, R27) must land on the same microsecond whichever connection wrote them.
PostgreSQL only: each value goes through a connection with asyncpg's codec and one with
ours, and the server must see, and give back, the same."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import make_url, text

from tierwise.db import pg_instants
from tierwise.db.engine import create_engine
from tierwise.settings import Settings

T = TypeVar("T")


@pytest.fixture(scope="module")
def dsn(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: the codec is asyncpg's")
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


def _both(dsn: str, use: Callable[[Any], Awaitable[T]]) -> tuple[T | str, T | str]:
    """``use`` on a connection with asyncpg's codec, then on one with ours (an error's
    class name in place of a result)."""

    async def go() -> tuple[T | str, T | str]:
        out: list[T | str] = []
        for ours in (False, True):
            conn = await asyncpg.connect(dsn)
            try:
                if ours:
                    await pg_instants.set_codec(conn)
                out.append(await use(conn))
            except (asyncpg.DataError, OverflowError, ValueError, TypeError) as error:
                out.append(type(error).__name__)
            finally:
                await conn.close()
        return out[0], out[1]

    return asyncio.run(go())


def _written(dsn: str, value: Any) -> tuple[Any, Any]:
    """The instant the server stored for ``value``, as microseconds since its epoch."""
    sql = "SELECT extract(epoch FROM $1::timestamptz)::numeric * 1000000"
    return _both(dsn, lambda conn: conn.fetchrow(f"{sql}, $1::timestamptz::text", value))


_WRITTEN = [
    datetime(2026, 11, 22, 19, 27, 8, 34504, tzinfo=UTC),
    datetime(2026, 11, 22, 19, 27, 8, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/Paris")),  # inside the DST gap
    datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Paris")),
    datetime(1900, 1, 1, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC) - timedelta(microseconds=1),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # asyncpg: infinity
    datetime(1, 1, 1, tzinfo=UTC),  # asyncpg: -infinity
    datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),  # beyond the range
    datetime.max,
    datetime.min,
    datetime(2026, 11, 22, 12, 0, 0, 5),  # naive: local time
    date(2026, 11, 22),
]


@pytest.mark.parametrize("value", _WRITTEN, ids=str)
def test_an_instant_is_written_as_asyncpg_writes_it(dsn: str, value: Any) -> None:
    theirs, ours = _written(dsn, value)
    assert ours == theirs


def test_other_types_are_refused_alike(dsn: str) -> None:
    theirs, ours = _written(dsn, "2026-11-22T10:00:00Z")
    assert isinstance(theirs, str) and ours == theirs


_READ = [
    "2026-11-22 19:27:08.034504+00",
    "2026-11-22 19:27:08+05:30",
    "1900-01-01 00:00:00+00",
    "1969-12-31 23:59:59.999999+00",
    "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
    "infinity",
    "-infinity",
]


@pytest.mark.parametrize("literal", _READ)
def test_an_instant_is_read_as_asyncpg_reads_it(dsn: str, literal: str) -> None:
    theirs, ours = _both(dsn, lambda conn: conn.fetchval("SELECT $1::text::timestamptz", literal))
    assert ours == theirs
    assert getattr(ours, "tzinfo", None) == getattr(theirs, "tzinfo", None)


def _read_as_micros(dsn: str, literal: str) -> tuple[Any, Any]:
    """The instant of ``literal`` as asyncpg reads it, and as ``micros`` and ``of_micros``
    read it (the batch path's member and standing reads)."""
    column = "$1::text::timestamptz"

    async def go() -> tuple[Any, Any]:
        conn = await asyncpg.connect(dsn)
        try:
            try:
                theirs = await conn.fetchval(f"SELECT {column}", literal)
            except OverflowError as error:
                theirs = type(error).__name__
            try:
                ours = pg_instants.of_micros(
                    await conn.fetchval(f"SELECT {pg_instants.micros(column)}", literal)
                )
            except OverflowError as error:
                ours = type(error).__name__
            return theirs, ours
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.mark.parametrize("literal", [*_READ, None])
def test_an_instant_read_as_microseconds_is_the_one_asyncpg_reads(
    dsn: str, literal: str | None
) -> None:
    theirs, ours = _read_as_micros(dsn, literal)  # type: ignore[arg-type]
    assert ours == theirs
    assert getattr(ours, "tzinfo", None) == getattr(theirs, "tzinfo", None)


def test_an_instant_beyond_the_range_is_refused_when_read_as_microseconds(dsn: str) -> None:
    theirs, ours = _read_as_micros(dsn, "10000-01-01 00:00:00+00")
    assert ours == theirs == "OverflowError"


@settings(max_examples=80, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1800, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)
    )
)
def test_any_instant_read_as_microseconds_is_exact(dsn: str, at: datetime) -> None:
    theirs, ours = _read_as_micros(dsn, at.isoformat())
    assert ours == theirs == at


@settings(max_examples=80, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1800, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)
    ),
    st.integers(-14 * 60, 14 * 60),
)
def test_any_aware_instant_round_trips_alike(dsn: str, at: datetime, minutes: int) -> None:
    value = at.astimezone(timezone(timedelta(minutes=minutes)))
    theirs, ours = _both(dsn, lambda conn: conn.fetchval("SELECT $1::timestamptz", value))
    assert ours == theirs == value


def test_the_engine_connections_use_the_codec(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    seen: list[Any] = []
    encode = pg_instants.encode

    def counted(value: Any) -> tuple[int]:
        seen.append(value)
        return encode(value)

    monkeypatch.setattr(pg_instants, "encode", counted)
    engine = create_engine(Settings(database_url=database_url), pooled=False)
    at = datetime(2026, 11, 22, 19, 27, 8, 34504, tzinfo=UTC)

    async def go() -> Any:
        try:
            async with engine.connect() as conn:
                return await conn.scalar(text("SELECT CAST(:at AS timestamptz)"), {"at": at})
        finally:
            await engine.dispose()

    assert asyncio.run(go()) == at
    assert seen == [at]
