"""Tenants and API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.tables import ApiKey, Tenant


@dataclass(frozen=True, slots=True)
class TenantRow:
    id: int
    uuid: str
    name: str
    require_distinct_approver: bool


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: int
    key_id: str
    tenant_id: int
    tenant_name: str
    scopes: tuple[str, ...]
    secret_hash: str
    revoked_at: datetime | None
    name: str | None
    created_at: datetime


async def tenant_by_name(conn: AsyncConnection, name: str) -> TenantRow | None:
    row = (await conn.execute(select(Tenant).where(Tenant.name == name))).first()
    return (
        None
        if row is None
        else TenantRow(row.id, row.uuid, row.name, row.require_distinct_approver)
    )


async def tenant_by_id(conn: AsyncConnection, tenant_id: int) -> TenantRow | None:
    row = (await conn.execute(select(Tenant).where(Tenant.id == tenant_id))).first()
    return (
        None
        if row is None
        else TenantRow(row.id, row.uuid, row.name, row.require_distinct_approver)
    )


async def add_tenant(conn: AsyncConnection, *, uuid: str, name: str, now: datetime) -> int:
    result = await conn.execute(
        insert(Tenant)
        .values(uuid=uuid, name=name, require_distinct_approver=False, created_at=now)
        .returning(Tenant.id)
    )
    return int(result.scalar_one())


async def set_tenant_options(
    conn: AsyncConnection, tenant_id: int, *, require_distinct_approver: bool
) -> None:
    await conn.execute(
        update(Tenant)
        .where(Tenant.id == tenant_id)
        .values(require_distinct_approver=require_distinct_approver)
    )


async def add_key(
    conn: AsyncConnection,
    *,
    key_id: str,
    tenant_id: int,
    name: str | None,
    secret_hash: str,
    scopes: list[str],
    now: datetime,
) -> None:
    await conn.execute(
        insert(ApiKey).values(
            key_id=key_id,
            tenant_id=tenant_id,
            name=name,
            secret_hash=secret_hash,
            scopes=scopes,
            created_at=now,
            revoked_at=None,
        )
    )


_KEY_COLUMNS = (
    ApiKey.id,
    ApiKey.key_id,
    ApiKey.tenant_id,
    Tenant.name,
    ApiKey.scopes,
    ApiKey.secret_hash,
    ApiKey.revoked_at,
    ApiKey.name,
    ApiKey.created_at,
)


def _key(row: Any) -> KeyRow:
    return KeyRow(row[0], row[1], row[2], row[3], tuple(row[4]), row[5], row[6], row[7], row[8])


async def key_by_hash(conn: AsyncConnection, secret_hash: str) -> KeyRow | None:
    row = (
        await conn.execute(
            select(*_KEY_COLUMNS)
            .join(Tenant, Tenant.id == ApiKey.tenant_id)
            .where(ApiKey.secret_hash == secret_hash)
        )
    ).first()
    return None if row is None else _key(row)


async def key_by_key_id(conn: AsyncConnection, key_id: str) -> KeyRow | None:
    row = (
        await conn.execute(
            select(*_KEY_COLUMNS)
            .join(Tenant, Tenant.id == ApiKey.tenant_id)
            .where(ApiKey.key_id == key_id)
        )
    ).first()
    return None if row is None else _key(row)


async def keys_of(conn: AsyncConnection, tenant_id: int) -> list[KeyRow]:
    rows = await conn.execute(
        select(*_KEY_COLUMNS)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.tenant_id == tenant_id)
        .order_by(ApiKey.id)
    )
    return [_key(row) for row in rows]


async def revoke_key(conn: AsyncConnection, key_id: str, now: datetime) -> bool:
    result = await conn.execute(
        update(ApiKey)
        .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)
