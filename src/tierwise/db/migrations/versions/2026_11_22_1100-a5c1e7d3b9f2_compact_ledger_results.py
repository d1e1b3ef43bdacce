"""compact ledger results: the usual purchase stores its earn rate, not its whole answer

Revision ID: a5c1e7d3b9f2
Revises: f2a7c3d9e1b6
Create Date: 2026-11-22 11:00:00

Every ledger row kept the answer it was first given, for idempotent replays (R12): about
380 of its 685 bytes, written and parsed once per activity and almost never read again.
The answer of the usual purchase (recorded by the one-pass path, changing no level, dated
in UTC) is a function of the row itself and of the earn rate applied to it, so such rows
now store the rate in ``earn_rate`` and leave ``result`` NULL; a replay rebuilds the same
answer (``services.activities.purchase_result``). Every other activity still stores its
answer. The downgrade writes the rebuilt answers into the rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "a5c1e7d3b9f2"
down_revision: str | None = "f2a7c3d9e1b6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("earn_rate", sa.String(length=40), nullable=True))
        batch_op.alter_column("result", existing_type=sa.JSON(), nullable=True)


_activities = sa.table(
    "activities",
    sa.column("id", sa.BigInteger()),
    sa.column("uuid", sa.String()),
    sa.column("member_id", sa.BigInteger()),
    sa.column("program_id", sa.BigInteger()),
    sa.column("idempotency_key", sa.String()),
    sa.column("occurred_at", sa.DateTime(timezone=True)),
    sa.column("amount_minor", sa.BigInteger()),
    sa.column("effects", sa.JSON()),
    sa.column("result", sa.JSON()),
    sa.column("earn_rate", sa.String()),
)
_members = sa.table("members", sa.column("id", sa.BigInteger()), sa.column("external_id"))


def _answer(row: sa.Row[Any]) -> dict[str, Any]:
    """The answer of a usual purchase as this revision's code wrote it."""
    at = row.occurred_at
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    amount = row.amount_minor or 0
    effects = row.effects if isinstance(row.effects, dict) else json.loads(row.effects)
    points = int(effects.get("points_earned", 0))
    return {
        "id": row.uuid,
        "type": "purchase",
        "member_id": row.external_id,
        "program_id": row.program_id,
        "idempotency_key": row.idempotency_key,
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "effects": dict(sorted(effects.items())),
        "points_earned": points,
        "earn": [{"amount_minor": amount, "rate": row.earn_rate, "points": points}],
        "reverses": None,
        "tier_changes": [],
    }


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_activities, _members.c.external_id)
        .join(_members, _members.c.id == _activities.c.member_id)
        .where(_activities.c.result.is_(None))
    ).all()
    for row in rows:
        bind.execute(
            _activities.update().where(_activities.c.id == row.id).values(result=_answer(row))
        )
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.alter_column("result", existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column("earn_rate")
