"""The schema. Typed ``Mapped[]`` columns, a constraint naming convention, UTC instants.

These classes describe tables only: repositories map rows to domain values explicitly,
and API schemas are separate (see docs/architecture.md).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tierwise.db.types import BigId, DecimalString, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), Decimal: DecimalString(), dict[str, Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    require_distinct_approver: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Program(Base):
    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    time_zone: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    earn_rate: Mapped[Decimal]
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


# A tenant's default program (the default flag first, then the oldest) as one index
# look-up: the stored status read names it in every statement.
Index("ix_programs_tenant_default", Program.tenant_id, Program.is_default.desc(), Program.id)


class Ladder(Base):
    """A ladder's identity; its definitions live in ``ladder_versions``."""

    __tablename__ = "ladders"
    __table_args__ = (UniqueConstraint("program_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    key: Mapped[str] = mapped_column(String(64))
    live_version_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class LadderVersion(Base):
    """One version of a ladder definition (R24): ``definition`` is the whole ladder."""

    __tablename__ = "ladder_versions"
    __table_args__ = (UniqueConstraint("ladder_id", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    ladder_id: Mapped[int] = mapped_column(ForeignKey("ladders.id"))
    number: Mapped[int]
    state: Mapped[str] = mapped_column(String(20))
    definition: Mapped[dict[str, Any]]
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    updated_by: Mapped[str | None] = mapped_column(String(100))
    updated_at: Mapped[datetime]
    submitted_by: Mapped[str | None] = mapped_column(String(100))
    submitted_at: Mapped[datetime | None]
    approved_by: Mapped[str | None] = mapped_column(String(100))
    approved_at: Mapped[datetime | None]
    rejected_by: Mapped[str | None] = mapped_column(String(100))
    rejected_at: Mapped[datetime | None]
    rejection_comment: Mapped[str | None] = mapped_column(Text)
    effective_at: Mapped[datetime | None]
    apply_downgrades_now: Mapped[bool] = mapped_column(Boolean, default=False)


class Level(Base):
    """A level's identity: a stable integer id per (ladder, key) across all versions."""

    __tablename__ = "levels"
    __table_args__ = (UniqueConstraint("ladder_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    ladder_id: Mapped[int] = mapped_column(ForeignKey("ladders.id"))
    key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


_ROOM_FOR_UPDATES: dict[str, Any] = {"postgresql_with": {"fillfactor": 80}}
"""Members, daily buckets and running totals are updated by every batch of their members:
a fifth of each page left free keeps those updates on their page (HOT: no new index
entries, old versions pruned in place) also where rows were written densely
(revision a3c9e5f1d7b2)."""


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"), _ROOM_FOR_UPDATES)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    external_id: Mapped[str] = mapped_column(String(128))
    enrolled_at: Mapped[datetime]
    last_activity_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class MemberTier(Base):
    """Where a member stands on one ladder now (R14, R20)."""

    __tablename__ = "member_tiers"
    __table_args__ = (
        UniqueConstraint("member_id", "ladder_id"),
        Index("ix_member_tiers_due", "ladder_id", "check_due_at"),
        Index("ix_member_tiers_due_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    ladder_id: Mapped[int] = mapped_column(ForeignKey("ladders.id"))
    level_key: Mapped[str | None] = mapped_column(String(64))
    previous_level_key: Mapped[str | None] = mapped_column(String(64))
    achieved_at: Mapped[datetime | None]
    cycle_start: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    check_due_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    """Earliest of check, grace end and assignment expiry: what the sweep scans (R15)."""
    grace_until: Mapped[datetime | None]
    credit: Mapped[int] = mapped_column(BigInteger, default=0)
    assignment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class TierChange(Base):
    """History of level changes (R22)."""

    __tablename__ = "tier_changes"
    __table_args__ = (Index("ix_tier_changes_member", "member_id", "ladder_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    # No foreign keys: an append-only record written by the sweep a million rows at a
    # time, whose members, ladders and tenants are never deleted; three key checks per
    # row were a tenth of the sweep's database time (docs/performance.md).
    tenant_id: Mapped[int] = mapped_column(BigInteger, index=True)
    member_id: Mapped[int] = mapped_column(BigInteger)
    ladder_id: Mapped[int] = mapped_column(BigInteger)
    from_level_key: Mapped[str | None] = mapped_column(String(64))
    to_level_key: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))
    activity_id: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    state_after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The whole standing the change left (``db/repos/state_json.py``), so that a read
    as of a past instant shows that standing (R27). Null on rows written before."""


class Activity(Base):
    """The immutable activity ledger (R12, R13)."""

    __tablename__ = "activities"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_activities_member_time", "member_id", "program_id", "occurred_at"),
        # Only returns have a reverses_id: the index holds them alone (revision f2a7c3d9e1b6).
        Index(
            "ix_activities_reverses_id",
            "reverses_id",
            postgresql_where=text("reverses_id IS NOT NULL"),
            sqlite_where=text("reverses_id IS NOT NULL"),
        ),
        # Only rows recorded before public ids were written from the ledger id have a
        # uuid: the index holds them alone (revision b8d2f4a6c0e1).
        Index(
            "ix_activities_uuid",
            "uuid",
            unique=True,
            postgresql_where=text("uuid IS NOT NULL"),
            sqlite_where=text("uuid IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    """Also the public id, written as a UUID (``domain/activity_ids.py``)."""
    uuid: Mapped[str | None] = mapped_column(String(36))
    """The public id of a row recorded before it was written from ``id``; NULL since."""
    # No foreign keys: tenants, members and programs are never deleted, and the activity
    # path writes only ids it read in the same transaction; three key checks per row were
    # about 30 % of a batch's ledger insert (revision f2a7c3d9e1b6).
    tenant_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger)
    program_id: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(20))
    idempotency_key: Mapped[str] = mapped_column(
        String(200).with_variant(String(200, collation="C"), "postgresql")
    )
    """Compared byte by byte on PostgreSQL (revision c4e8a2f6b1d3): its unique index is
    only ever searched for equal keys, which the database's collation would compare
    through ``strcoll``."""
    request_hash: Mapped[str] = mapped_column(String(64))
    """The body's fingerprint (R12); empty for a usual purchase sent without a program id,
    whose fingerprint is written again from the row (``services.activities._stored_hash``)."""
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    points: Mapped[int | None] = mapped_column(BigInteger)
    counter: Mapped[str | None] = mapped_column(String(64))
    reverses_id: Mapped[int | None] = mapped_column(BigInteger)
    effects: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    """The first answer, for replays (R12); NULL for a usual purchase, whose answer is
    rebuilt from the row and ``earn_rate`` (revision a5c1e7d3b9f2)."""
    earn_rate: Mapped[str | None] = mapped_column(String(40))
    """The earn rate a usual purchase was credited at (with ``result`` NULL)."""


BUILTIN_COLUMNS = ("spend", "orders", "points_earned", "points_balance", "visits")
"""The built-in metrics (``domain.metrics.BuiltinMetric``), each a column of
``member_days`` and ``member_totals``."""


class _BuiltinMetrics:
    """The built-in metrics as columns (``BUILTIN_COLUMNS``), zero until written."""

    spend: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    orders: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    points_balance: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    visits: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class MemberDay(_BuiltinMetrics, Base):
    """Per-member, per-program daily sums of the built-in metrics in the program's zone:
    one row per member and day, every built-in metric a column (revision e7b3d1f9a2c4;
    custom counters are in ``metric_days``)."""

    __tablename__ = "member_days"
    __table_args__ = _ROOM_FOR_UPDATES

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)


class MemberTotal(_BuiltinMetrics, Base):
    """Running lifetime totals of the built-in metrics, one row per member and program."""

    __tablename__ = "member_totals"
    __table_args__ = _ROOM_FOR_UPDATES

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class MetricDay(Base):
    """Per-member, per-program, per-counter daily sums in the program's zone: the custom
    counters (``counter:<name>``) only; the built-in metrics are in ``member_days``."""

    __tablename__ = "metric_days"
    __table_args__ = _ROOM_FOR_UPDATES

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    metric: Mapped[str] = mapped_column(String(72), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class MetricTotal(Base):
    """Running lifetime totals of the custom counters, so lifetime reads never scan
    history (the built-in metrics': ``member_totals``)."""

    __tablename__ = "metric_totals"
    __table_args__ = _ROOM_FOR_UPDATES

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    metric: Mapped[str] = mapped_column(String(72), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class Event(Base):
    """Transactional outbox of level changes (R23), written with the change itself."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_unpublished", "published_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    member_id: Mapped[int | None] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None]


class Job(Base):
    """A resumable background job (go-live re-evaluation, R25): ``cursor`` is the last
    member id handled, committed with each batch."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state", "state", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    ladder_id: Mapped[int] = mapped_column(ForeignKey("ladders.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("ladder_versions.id"))
    state: Mapped[str] = mapped_column(String(20))
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    done: Mapped[int] = mapped_column(BigInteger, default=0)
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    apply_downgrades_now: Mapped[bool] = mapped_column(Boolean, default=False)
    changes: Mapped[dict[str, Any]]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class LadderCount(Base):
    """Members per level of a ladder's live version, with when they were counted (R26)."""

    __tablename__ = "ladder_counts"

    ladder_id: Mapped[int] = mapped_column(ForeignKey("ladders.id"), primary_key=True)
    version_id: Mapped[int] = mapped_column(BigInteger)
    counts: Mapped[dict[str, Any]]
    computed_at: Mapped[datetime]


class StatusDoc(Base):
    """A member's computed status in a program, stored as JSON and served while its
    ``stamp`` and ``valid_until`` say it is still true (see ``db/repos/status_docs.py``).
    A cache: deleting any or all rows changes no answer."""

    __tablename__ = "status_docs"

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    stamp: Mapped[str] = mapped_column(Text)
    computed_at: Mapped[datetime]
    valid_until: Mapped[datetime]
    body: Mapped[str] = mapped_column(Text)
