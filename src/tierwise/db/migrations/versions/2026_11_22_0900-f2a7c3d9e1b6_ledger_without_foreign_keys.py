"""ledger without foreign keys; the returns index holds returns only

Revision ID: f2a7c3d9e1b6
Revises: e1f0a2b3c4d5
Create Date: 2026-11-22 09:00:00

Batch ingest writes a thousand ``activities`` rows per request, and every row paid for
three foreign-key checks (``tenants``, ``members``, ``programs``: one trigger and one
index probe each, about 30 % of the ledger insert's database time, measured with
``EXPLAIN ANALYZE`` on a batch of 1,000) and an entry in ``ix_activities_reverses_id``.

- The foreign keys go: no tenant, member or program is ever deleted (the application has
  no such operation), and the activity path writes only ids it has just read in the same
  transaction (the caller's tenant, the program it looked up, the members it locked or
  created), so the checks could never fail. ``tier_changes`` lost its keys for the same
  reason (revision d9a4b6e2c513).
- ``ix_activities_reverses_id`` becomes partial (``WHERE reverses_id IS NOT NULL``): its only
  use is summing the returns of one activity (``reverses_id = ?``), which implies the
  condition, so the index still serves it, while purchases, credits and visits (almost
  every row) no longer add a NULL entry to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f2a7c3d9e1b6"
down_revision: str | None = "e1f0a2b3c4d5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYS = (
    ("fk_activities_tenant_id_tenants", "tenants", "tenant_id"),
    ("fk_activities_member_id_members", "members", "member_id"),
    ("fk_activities_program_id_programs", "programs", "program_id"),
)
_INDEX = "ix_activities_reverses_id"
_RETURNS = sa.text("reverses_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("activities", schema=None) as batch_op:
        for name, _, _ in _KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")
    op.drop_index(_INDEX, table_name="activities")
    op.create_index(
        _INDEX,
        "activities",
        ["reverses_id"],
        postgresql_where=_RETURNS,
        sqlite_where=_RETURNS,
    )


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="activities")
    op.create_index(_INDEX, "activities", ["reverses_id"])
    with op.batch_alter_table("activities", schema=None) as batch_op:
        for name, table, column in _KEYS:
            batch_op.create_foreign_key(name, table, [column], ["id"])
