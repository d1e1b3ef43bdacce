"""the built-in metrics in one row per member and day (member_days, member_totals)

Revision ID: e7b3d1f9a2c4
Revises: a3c9e5f1d7b2
Create Date: 2026-11-22 13:30:00

A purchase moves four built-in metrics (spend, orders, points earned, points balance),
and ``metric_days`` / ``metric_totals`` kept one row per member, metric and day: a batch
of 1,000 purchases for 250 members upserted 1,000 bucket and 1,000 total rows, 16.3 ms of
PostgreSQL CPU. ``member_days`` and ``member_totals`` keep the built-in metrics as
columns of one row per member and day (and per member), so the same batch upserts 250
and 250 rows: 4.5 ms (2026-11-22, a copy of the benchmark's buckets, medians of 32
batches). The custom counters stay in ``metric_days`` / ``metric_totals``.

The upgrade moves the built-in metrics' rows into the new tables; the downgrade moves
them back (one row per metric whose value is not zero, as the writers left them).

The same release stores an empty ``activities.request_hash`` for a usual purchase of a
batch sent without a program id (``services.activities._stored_hash`` writes it again
from the row when a repeat comes). Code before it compares the stored text as it is, so
the downgrade writes those fingerprints out, with this revision's copy of
``domain.request_hash.purchase_hash`` (a migration does not import application code).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC
from json.encoder import encode_basestring_ascii
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "e7b3d1f9a2c4"
down_revision: str | None = "a3c9e5f1d7b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUILTINS = ("spend", "orders", "points_earned", "points_balance", "visits")


def _columns() -> list[sa.Column[int]]:
    return [
        sa.Column(name, sa.BigInteger(), nullable=False, server_default="0") for name in _BUILTINS
    ]


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    room: dict[str, Any] = {"postgresql_with": {"fillfactor": 80}} if pg else {}
    op.create_table(
        "member_days",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *_columns(),
        sa.PrimaryKeyConstraint("member_id", "program_id", "day"),
        **room,
    )
    op.create_table(
        "member_totals",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        *_columns(),
        sa.PrimaryKeyConstraint("member_id", "program_id"),
        **room,
    )
    sums = ", ".join(
        f"COALESCE(SUM(CASE WHEN metric = '{m}' THEN value END), 0)" for m in _BUILTINS
    )
    names = ", ".join(_BUILTINS)
    wanted = ", ".join(f"'{m}'" for m in _BUILTINS)
    op.execute(
        f"INSERT INTO member_days (member_id, program_id, day, {names}) "
        f"SELECT member_id, program_id, day, {sums} FROM metric_days "
        f"WHERE metric IN ({wanted}) GROUP BY member_id, program_id, day"
    )
    op.execute(
        f"INSERT INTO member_totals (member_id, program_id, {names}) "
        f"SELECT member_id, program_id, {sums} FROM metric_totals "
        f"WHERE metric IN ({wanted}) GROUP BY member_id, program_id"
    )
    op.execute(f"DELETE FROM metric_days WHERE metric IN ({wanted})")
    op.execute(f"DELETE FROM metric_totals WHERE metric IN ({wanted})")


_activities = sa.table(
    "activities",
    sa.column("id", sa.BigInteger()),
    sa.column("member_id", sa.BigInteger()),
    sa.column("idempotency_key", sa.String()),
    sa.column("request_hash", sa.String()),
    sa.column("occurred_at", sa.DateTime(timezone=True)),
    sa.column("amount_minor", sa.BigInteger()),
    sa.column("currency", sa.String()),
)
_members = sa.table("members", sa.column("id", sa.BigInteger()), sa.column("external_id"))


def _fingerprint(row: sa.Row[Any]) -> str:
    """The request hash of a usual purchase sent without a program id, as this revision's
    code writes it (``purchase_hash``)."""
    at = row.occurred_at
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    stamp = at.isoformat().replace("+00:00", "Z")
    text = encode_basestring_ascii
    currency = "" if row.currency is None else f'"currency": {text(row.currency)}, '
    body = (
        f'{{"amount_minor": {row.amount_minor}, {currency}'
        f'"idempotency_key": {text(row.idempotency_key)}, '
        f'"member_id": {text(row.external_id)}, "occurred_at": "{stamp}", '
        '"type": "purchase"}'
    )
    return hashlib.sha256(body.encode()).hexdigest()


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_activities, _members.c.external_id)
        .join(_members, _members.c.id == _activities.c.member_id)
        .where(_activities.c.request_hash == "")
    ).all()
    for row in rows:
        bind.execute(
            _activities.update()
            .where(_activities.c.id == row.id)
            .values(request_hash=_fingerprint(row))
        )
    for m in _BUILTINS:
        op.execute(
            "INSERT INTO metric_days (member_id, program_id, metric, day, value) "
            f"SELECT member_id, program_id, '{m}', day, {m} FROM member_days WHERE {m} <> 0"
        )
        op.execute(
            "INSERT INTO metric_totals (member_id, program_id, metric, value) "
            f"SELECT member_id, program_id, '{m}', {m} FROM member_totals WHERE {m} <> 0"
        )
    op.drop_table("member_totals")
    op.drop_table("member_days")
