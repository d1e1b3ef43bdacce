"""idempotency keys compared byte by byte on PostgreSQL

Revision ID: c4e8a2f6b1d3
Revises: b8d2f4a6c0e1
Create Date: 2026-11-23 01:00:00

The ledger's unique index on ``(tenant_id, idempotency_key)`` takes an entry for every
activity recorded, and is searched only for equal keys (R12). Under the database's
collation each comparison of two keys went through ``strcoll`` (with the keys copied to
be terminated); under ``"C"`` it is a ``memcmp``. Equality is the same under both (the
database's collation is deterministic); only the order of keys differs, which nothing
reads. The index is rebuilt; the rows are not rewritten. SQLite compares bytes already.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c4e8a2f6b1d3"
down_revision: str | None = "b8d2f4a6c0e1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _collate(collation: str | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column(
        "activities",
        "idempotency_key",
        type_=sa.String(length=200, collation=collation),
        existing_type=sa.String(length=200),
        existing_nullable=False,
    )


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
