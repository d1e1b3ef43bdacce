"""Array parameters sent as text literals (``db/repos/pg_arrays.py``) read back on
PostgreSQL as the very values they were written from: the batch path's member ids,
external ids, days and instants depend on it (R12, R13: a wrong id or day would credit
the wrong member or bucket). PostgreSQL only: SQLite has no arrays."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import make_url

from tierwise.db.repos import pg_arrays


@pytest.fixture(scope="module")
def dsn(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite has no arrays")
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


def _read_back(dsn: str, sql_type: str, values: Sequence[Any]) -> list[Any]:
    async def go() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            found: list[Any] = await conn.fetchval(
                f"SELECT $1::text::{sql_type}[]", pg_arrays.literal(values)
            )
            return found
        finally:
            await conn.close()

    return asyncio.run(go())


def test_integers_dates_and_instants_read_back(dsn: str) -> None:
    ints = [1, -2, 0, 2**63 - 1, -(2**63), None]
    assert _read_back(dsn, "bigint", ints) == ints
    days = [date(2026, 11, 22), date(1900, 1, 1), None, date(2999, 12, 31)]
    assert _read_back(dsn, "date", days) == days
    at = datetime(2026, 11, 22, 19, 27, 8, 34504, tzinfo=UTC)
    instants = [at, at.replace(microsecond=0), at.astimezone(timezone(timedelta(hours=-5)))]
    assert _read_back(dsn, "timestamptz", instants) == instants
    assert _read_back(dsn, "bigint", []) == []


def test_strings_that_arrays_and_json_would_escape_differently(dsn: str) -> None:
    tricky = [
        "m0001",
        'quote " inside',
        "back\\slash",
        "new\nline and\ttab",
        "{braces},commas",
        "NULL",
        "null",
        "",
        "  spaces  ",
        "ünïcödé ✓ 会员",
        "\x01\x1f\x7f",
        None,
    ]
    assert _read_back(dsn, "text", tricky) == tricky


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
        max_size=8,
    )
)
def test_any_text_without_nul_reads_back(dsn: str, values: list[str]) -> None:
    assert _read_back(dsn, "text", values) == values
