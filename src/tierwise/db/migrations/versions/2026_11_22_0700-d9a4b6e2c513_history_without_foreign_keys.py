"""history without foreign keys

Revision ID: d9a4b6e2c513
Revises: c4e8a1f07b2d
Create Date: 2026-11-22 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "d9a4b6e2c513"
down_revision: str | None = "c4e8a1f07b2d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYS = (
    ("fk_tier_changes_tenant_id_tenants", "tenants", "tenant_id"),
    ("fk_tier_changes_member_id_members", "members", "member_id"),
    ("fk_tier_changes_ladder_id_ladders", "ladders", "ladder_id"),
)


def upgrade() -> None:
    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        for name, _, _ in _KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        for name, table, column in _KEYS:
            batch_op.create_foreign_key(name, table, [column], ["id"])
