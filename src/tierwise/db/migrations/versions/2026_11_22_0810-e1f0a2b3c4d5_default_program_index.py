"""default program index

Revision ID: e1f0a2b3c4d5
Revises: d9a4b6e2c513
Create Date: 2026-11-22 08:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e1f0a2b3c4d5"
down_revision: str | None = "d9a4b6e2c513"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_programs_tenant_default",
        "programs",
        ["tenant_id", sa.text("is_default DESC"), "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_programs_tenant_default", table_name="programs")
