"""public activity ids written from the ledger id; a stored uuid for older rows only

Revision ID: b8d2f4a6c0e1
Revises: e7b3d1f9a2c4
Create Date: 2026-11-22 18:00:00

An activity's public id is now written from its ledger id (``domain/activity_ids.py``),
so new ledger rows store no UUID: ``activities.uuid`` becomes nullable, and its unique
constraint becomes a unique index over the rows that have one (``WHERE uuid IS NOT NULL``).
Rows recorded before keep their UUID, which stays their public id and is still found
through that index; new rows add no entry to it. Keeping that index for every row was
about a tenth of a batch's PostgreSQL time (issue 2, ``docs/performance.md``).

The downgrade gives the new rows the ids they answered with, then restores the constraint.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b8d2f4a6c0e1"
down_revision: str | None = "e7b3d1f9a2c4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CONSTRAINT = "uq_activities_uuid"
_INDEX = "ix_activities_uuid"
_STORED = sa.text("uuid IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_constraint(_CONSTRAINT, type_="unique")
        batch_op.alter_column("uuid", existing_type=sa.String(length=36), nullable=True)
    op.create_index(
        _INDEX,
        "activities",
        ["uuid"],
        unique=True,
        postgresql_where=_STORED,
        sqlite_where=_STORED,
    )


def downgrade() -> None:
    # Frozen here (a migration imports no application code): domain/activity_ids.py as
    # of this revision.
    bits = (1 << 60) - 1
    mix = 0x9E3779B97F4A7C15 & bits
    salt = 0x5DEECE66D1B54A3
    conn = op.get_bind()
    ids = iter(
        conn.execute(sa.text("SELECT id FROM activities WHERE uuid IS NULL")).scalars().all()
    )
    update = sa.text("UPDATE activities SET uuid = :uuid WHERE id = :id")
    while chunk := list(itertools.islice(ids, 10_000)):
        rows = []
        for ledger_id in chunk:
            h = f"{((ledger_id * mix) & bits) ^ salt:016x}"
            rows.append({"uuid": f"74696572-7769-8736-9{h[1:4]}-{h[4:]}", "id": ledger_id})
        conn.execute(update, rows)  # one executemany per chunk
    op.drop_index(_INDEX, table_name="activities")
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.alter_column("uuid", existing_type=sa.String(length=36), nullable=False)
        batch_op.create_unique_constraint(_CONSTRAINT, ["uuid"])
