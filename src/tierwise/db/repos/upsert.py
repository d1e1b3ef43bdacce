"""``INSERT … ON CONFLICT`` for the two backends we support, and PostgreSQL bulk paths."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


async def add_to(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    columns: Sequence[str] = ("value",),
) -> None:
    """Insert ``rows`` or add their ``columns`` to the existing rows with the same
    ``keys``."""
    if not rows:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={column: table.c[column] + stmt.excluded[column] for column in columns},
    )
    await conn.execute(stmt, list(rows))


async def insert_ignore(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], *, keys: Sequence[str]
) -> None:
    """Insert ``rows``, skipping any that clash with an existing row on ``keys``."""
    if not rows:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    await conn.execute(insert(table).on_conflict_do_nothing(index_elements=list(keys)), list(rows))


# -- PostgreSQL bulk paths ----------------------------------------------------------------

#: Below this many rows the portable statements are as quick as the bulk paths.
BULK_MIN_ROWS = 64


async def pg_driver(conn: AsyncConnection) -> Any | None:
    """The asyncpg connection under ``conn``, inside the use case's transaction, or None
    on other backends (callers then take the portable path).

    SQLAlchemy opens the database transaction lazily on its first statement; one is
    issued here when needed, so that work done on the driver connection is part of it.
    """
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "asyncpg":
        return None
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:  # pragma: no cover - a pooled connection always has one
        return None
    if not driver.is_in_transaction():
        await conn.execute(text("SELECT 1"))
    return driver


async def bulk_driver(conn: AsyncConnection, rows: int) -> Any | None:
    """``pg_driver`` when ``rows`` are enough for a bulk path to pay off, else None."""
    return await pg_driver(conn) if rows >= BULK_MIN_ROWS else None


async def copy_rows(
    conn: AsyncConnection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Append ``rows`` (tuples in ``columns`` order) to ``table``: ``COPY`` on PostgreSQL
    when there are many, an ``INSERT`` otherwise. Not for JSON columns (see
    ``copy_json_rows``)."""
    if not rows:
        return
    driver = await bulk_driver(conn, len(rows))
    if driver is None:
        await conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    await driver.copy_records_to_table(table.name, records=rows, columns=list(columns))


async def copy_json_rows(
    conn: AsyncConnection,
    table: Table,
    columns: Sequence[str],
    count: int,
    rows: Callable[[Callable[[Any], Any]], Iterable[tuple[Any, ...]]],
) -> None:
    """``copy_rows`` for tables with JSON columns: ``rows(encode)`` gives the ``count``
    rows with each JSON value passed through ``encode``. On the ``COPY`` path values go
    as JSON text (compact, as ``orjson`` writes it); on the ``INSERT`` path as Python
    values, which SQLAlchemy's JSON type serialises."""
    if not count:
        return
    driver = await bulk_driver(conn, count)
    if driver is None:
        records = [dict(zip(columns, row, strict=True)) for row in rows(_same)]
        await conn.execute(table.insert(), records)
        return
    await driver.copy_records_to_table(table.name, records=rows(json_text), columns=list(columns))


def json_text(value: Any) -> str:
    """``value`` as JSON text (compact; non-ASCII characters as UTF-8)."""
    return orjson.dumps(value).decode()


def _same(value: Any) -> Any:
    return value
