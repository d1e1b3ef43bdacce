"""``INSERT … ON CONFLICT`` for the two backends we support."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


async def add_to(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    column: str = "value",
) -> None:
    """Insert ``rows`` or add their ``column`` to the existing rows with the same ``keys``."""
    if not rows:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={column: table.c[column] + stmt.excluded[column]},
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
