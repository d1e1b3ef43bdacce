"""Ledger ids reserved ahead of a batch's rows (``ledger.reserve_ids``): the public ids
are written from them before the rows are, and a batch's results and history list its
activities in id order (R12, R22), so they must be distinct and increasing within a
reservation, and, on PostgreSQL (the ledger's sequence), from one reservation to the
next. (SQLite reserves after the largest id stored: a transaction there, which no other
writer enters, writes its rows before it reserves again.)"""

from __future__ import annotations

import asyncio
from itertools import pairwise

from tierwise.db.engine import create_engine
from tierwise.db.repos import activities as ledger
from tierwise.db.repos.upsert import pg_driver
from tierwise.settings import Settings


def _reserve(settings: Settings, counts: list[int]) -> list[list[int]]:
    engine = create_engine(settings, pooled=False)

    async def go() -> list[list[int]]:
        try:
            found = []
            async with engine.begin() as conn:
                driver = await pg_driver(conn)
                for count in counts:
                    found.append(await ledger.reserve_ids(conn, driver, count))
                await conn.rollback()  # reserved ids are never given back: nothing else
            return found
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _increasing(ids: list[int]) -> bool:
    return all(a < b for a, b in pairwise(ids))


def test_reserved_ids_are_distinct_and_increasing(settings: Settings) -> None:
    first, none, one, many = _reserve(settings, [3, 0, 1, 1000])
    assert none == []
    assert len(first) == 3 and len(one) == 1 and len(many) == 1000
    assert _increasing(first) and _increasing(many)
    if settings.database_url.startswith("postgresql"):
        assert _increasing(first + one + many)
