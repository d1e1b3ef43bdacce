"""Revision e7b3d1f9a2c4 moves the built-in metrics' buckets and totals to one row per
member (and day), and its downgrade moves them back, without changing a figure (R5-R7:
the sums a status reads). On the suite's database server (SQLite, or PostgreSQL when
``TIERWISE_TEST_DATABASE_URL`` names one), in a database of its own."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import _admin_execute
from tierwise.db.migrate import alembic_config
from tierwise.domain.request_hash import purchase_hash
from tierwise.settings import Settings, normalise_database_url

BEFORE = "a3c9e5f1d7b2"
AFTER = "e7b3d1f9a2c4"
D1, D2 = date(2025, 3, 1), date(2025, 3, 2)
DAYS = [
    (1, 7, "spend", D1, 100),
    (1, 7, "orders", D1, 1),
    (1, 7, "points_earned", D1, 33),
    (1, 7, "points_balance", D1, 33),
    (1, 7, "counter:reviews", D1, 2),
    (1, 7, "spend", D2, 50),
    (1, 7, "visits", D2, 3),
    (2, 7, "spend", D2, 9),
    (2, 8, "counter:reviews", D2, 4),
]
TOTALS = [
    (1, 7, "spend", 150),
    (1, 7, "orders", 1),
    (1, 7, "points_earned", 33),
    (1, 7, "points_balance", 33),
    (1, 7, "visits", 3),
    (1, 7, "counter:reviews", 2),
    (2, 7, "spend", 9),
    (2, 8, "counter:reviews", 4),
]


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    server = os.environ.get("TIERWISE_TEST_DATABASE_URL", "")
    if not server.startswith("postgres"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'migration.db'}"
        return
    name = f"tierwise_migration_{uuid.uuid4().hex[:12]}"
    _admin_execute(server, f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(normalise_database_url(server))
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        _admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(url: str, *statements: tuple[str, list[dict[str, Any]] | None]) -> list[list[Any]]:
    async def go() -> list[list[Any]]:
        engine = create_async_engine(url)
        out: list[list[Any]] = []
        try:
            async with engine.begin() as conn:
                for sql, rows in statements:
                    result = await conn.execute(text(sql), rows or {})
                    out.append([tuple(r) for r in result] if result.returns_rows else [])
        finally:
            await engine.dispose()
        return out

    return asyncio.run(go())


def _narrow(url: str) -> tuple[set[Any], set[Any]]:
    days, totals = _run(
        url,
        ("SELECT member_id, program_id, metric, day, value FROM metric_days", None),
        ("SELECT member_id, program_id, metric, value FROM metric_totals", None),
    )
    return {(*r[:3], _day(r[3]), r[4]) for r in days}, set(totals)


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def test_the_buckets_move_to_one_row_per_member_and_back(url: str) -> None:
    config = alembic_config(Settings(database_url=url))
    command.upgrade(config, BEFORE)
    _run(
        url,
        (
            "INSERT INTO metric_days (member_id, program_id, metric, day, value) "
            "VALUES (:m, :p, :metric, :day, :value)",
            [dict(zip(("m", "p", "metric", "day", "value"), r, strict=True)) for r in DAYS],
        ),
        (
            "INSERT INTO metric_totals (member_id, program_id, metric, value) "
            "VALUES (:m, :p, :metric, :value)",
            [dict(zip(("m", "p", "metric", "value"), r, strict=True)) for r in TOTALS],
        ),
    )

    command.upgrade(config, AFTER)
    wide_days, wide_totals = _run(
        url,
        (
            "SELECT member_id, program_id, day, spend, orders, points_earned, points_balance, "
            "visits FROM member_days",
            None,
        ),
        (
            "SELECT member_id, program_id, spend, orders, points_earned, points_balance, "
            "visits FROM member_totals",
            None,
        ),
    )
    assert {(*r[:2], _day(r[2]), *r[3:]) for r in wide_days} == {
        (1, 7, D1, 100, 1, 33, 33, 0),
        (1, 7, D2, 50, 0, 0, 0, 3),
        (2, 7, D2, 9, 0, 0, 0, 0),
    }
    assert set(wide_totals) == {(1, 7, 150, 1, 33, 33, 3), (2, 7, 9, 0, 0, 0, 0)}
    counters = {r for r in DAYS if r[2].startswith("counter:")}
    assert _narrow(url) == (counters, {r for r in TOTALS if r[2].startswith("counter:")})

    command.downgrade(config, BEFORE)
    assert _narrow(url) == (set(DAYS), set(TOTALS))


def test_the_downgrade_writes_out_the_fingerprints_left_empty(url: str) -> None:
    """Code before this release compares a stored ``request_hash`` as it is (R12): the
    downgrade writes out the ones left empty, as ``purchase_hash`` writes them."""
    config = alembic_config(Settings(database_url=url))
    command.upgrade(config, AFTER)
    at = datetime(2026, 11, 22, 10, 33, 4, 367769, tzinfo=UTC)
    rows = [
        (1, "k-1", "", 1250, None),
        (2, "k-2", "", 990, "EUR"),
        (3, "k-3", "f" * 64, 5, None),  # stored whole: left alone
    ]
    _run(
        url,
        (
            "INSERT INTO tenants (id, uuid, name, require_distinct_approver, created_at) "
            "VALUES (1, 't', 't', false, :at)",
            [{"at": at}],
        ),
        (
            "INSERT INTO members (id, uuid, tenant_id, external_id, enrolled_at, "
            "created_at, updated_at) VALUES (7, 'u', 1, 'm \"7\"', :at, :at, :at)",
            [{"at": at}],
        ),
        (
            "INSERT INTO activities (id, uuid, tenant_id, member_id, program_id, type, "
            "idempotency_key, request_hash, occurred_at, recorded_at, amount_minor, "
            "currency, effects) VALUES (:id, :uuid, 1, 7, 1, 'purchase', :key, :hash, "
            ":at, :at, :amount, :currency, '{}')",
            [
                {
                    "id": i,
                    "uuid": f"u-{i}",
                    "key": key,
                    "hash": h,
                    "at": at,
                    "amount": amount,
                    "currency": currency,
                }
                for i, key, h, amount, currency in rows
            ],
        ),
    )
    command.downgrade(config, BEFORE)
    [found] = _run(url, ("SELECT idempotency_key, request_hash FROM activities", None))
    stamp = '"2026-11-22T10:33:04.367769Z"'
    assert dict(found) == {
        "k-1": purchase_hash(1250, None, "k-1", 'm "7"', stamp),
        "k-2": purchase_hash(990, "EUR", "k-2", 'm "7"', stamp),
        "k-3": "f" * 64,
    }
