"""status documents

Revision ID: b7f3c2d1a9e4
Revises: 573844df52dd
Create Date: 2026-11-22 05:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tierwise.db.types

revision: str = "b7f3c2d1a9e4"
down_revision: str | None = "573844df52dd"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "status_docs",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("stamp", sa.Text(), nullable=False),
        sa.Column("computed_at", tierwise.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", tierwise.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("member_id", "program_id", name=op.f("pk_status_docs")),
    )


def downgrade() -> None:
    op.drop_table("status_docs")
