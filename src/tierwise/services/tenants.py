"""Tenants and API keys: creation (CLI), verification (API), revocation."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

from tierwise.db.repos import tenants as repo
from tierwise.domain.errors import Forbidden, InvalidInput, NotFound
from tierwise.services.runtime import Caller, Runtime


class Scope(StrEnum):
    """Permissions of an API key, ``resource:action``."""

    PROGRAMS_READ = "programs:read"
    PROGRAMS_WRITE = "programs:write"
    PROGRAMS_APPROVE = "programs:approve"
    MEMBERS_READ = "members:read"
    MEMBERS_WRITE = "members:write"
    ACTIVITIES_WRITE = "activities:write"
    TIERS_READ = "tiers:read"
    TIERS_WRITE = "tiers:write"
    SWEEPS_RUN = "sweeps:run"


ALL_SCOPES = tuple(scope.value for scope in Scope)


class Unauthenticated(Forbidden):
    code = "unauthenticated"


def hash_secret(secret: str) -> str:
    """Secrets are random 256-bit tokens, so a plain SHA-256 is a safe, fast lookup key."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    secret: str
    tenant: str
    scopes: tuple[str, ...]


def parse_scopes(raw: list[str]) -> list[str]:
    scopes: list[str] = []
    for item in raw:
        for part in item.replace(",", " ").split():
            if part == "all":
                scopes.extend(ALL_SCOPES)
            elif part in ALL_SCOPES:
                scopes.append(part)
            else:
                raise InvalidInput(
                    f"unknown scope {part!r}; known: {', '.join(ALL_SCOPES)}", code="unknown_scope"
                )
    return sorted(set(scopes))


async def create_key(
    rt: Runtime, *, tenant: str, scopes: list[str], name: str | None = None
) -> NewKey:
    """Create a key for ``tenant`` (creating the tenant on first use); the secret is
    returned once and only its hash is stored."""
    wanted = parse_scopes(scopes)
    if not wanted:
        raise InvalidInput("a key needs at least one scope", code="unknown_scope")
    if not tenant or len(tenant) > 100:
        raise InvalidInput("tenant name must be 1-100 characters", code="invalid_tenant")
    now = rt.clock()
    key_id = "key_" + secrets.token_hex(8)
    secret = "tw_" + secrets.token_urlsafe(32)
    async with rt.transaction() as conn:
        found = await repo.tenant_by_name(conn, tenant)
        tenant_id = (
            found.id
            if found
            else await repo.add_tenant(conn, uuid=str(uuid.uuid4()), name=tenant, now=now)
        )
        await repo.add_key(
            conn,
            key_id=key_id,
            tenant_id=tenant_id,
            name=name,
            secret_hash=hash_secret(secret),
            scopes=wanted,
            now=now,
        )
        await conn.commit()
    return NewKey(key_id=key_id, secret=secret, tenant=tenant, scopes=tuple(wanted))


async def revoke_key(rt: Runtime, key_id: str, verifier: KeyVerifier | None = None) -> None:
    async with rt.transaction() as conn:
        if not await repo.revoke_key(conn, key_id, rt.clock()):
            raise NotFound(f"no active key {key_id!r}", code="key_not_found")
        await conn.commit()
    if verifier is not None:
        verifier.forget()


async def list_keys(rt: Runtime, tenant: str) -> list[repo.KeyRow]:
    async with rt.transaction() as conn:
        found = await repo.tenant_by_name(conn, tenant)
        if found is None:
            raise NotFound(f"no tenant {tenant!r}", code="tenant_not_found")
        return await repo.keys_of(conn, found.id)


async def set_maker_checker(rt: Runtime, tenant: str, required: bool) -> None:
    async with rt.transaction() as conn:
        found = await repo.tenant_by_name(conn, tenant)
        if found is None:
            raise NotFound(f"no tenant {tenant!r}", code="tenant_not_found")
        await repo.set_tenant_options(conn, found.id, require_distinct_approver=required)
        await conn.commit()


class KeyVerifier:
    """Checks presented credentials; remembers good ones for ``auth_cache_seconds``."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._ttl = rt.settings.auth_cache_seconds
        self._cache: dict[str, tuple[float, Caller]] = {}

    def forget(self) -> None:
        self._cache.clear()

    def remembered(self, secret: str) -> Caller | None:
        """The caller of a bearer secret verified less than ``auth_cache_seconds`` ago,
        without touching the database (None: not remembered, verify it)."""
        hit = self._cache.get(f"None:{hash_secret(secret)}")
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    async def by_secret(self, secret: str) -> Caller:
        return await self._verify(hash_secret(secret), key_id=None)

    async def by_key_id(self, key_id: str, secret: str) -> Caller:
        return await self._verify(hash_secret(secret), key_id=key_id)

    async def _verify(self, secret_hash: str, *, key_id: str | None) -> Caller:
        cache_key = f"{key_id}:{secret_hash}"
        hit = self._cache.get(cache_key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        async with self._rt.transaction() as conn:
            row = await repo.key_by_hash(conn, secret_hash)
        if (
            row is None
            or row.revoked_at is not None
            or (key_id is not None and row.key_id != key_id)
        ):
            raise Unauthenticated("the API key is missing, wrong or revoked")
        caller = Caller(
            tenant_id=row.tenant_id,
            tenant_name=row.tenant_name,
            actor=row.key_id,
            scopes=frozenset(row.scopes),
        )
        if self._ttl > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[cache_key] = (time.monotonic() + self._ttl, caller)
        return caller


async def operator(rt: Runtime, tenant: str, actor: str = "cli") -> Caller:
    """A caller acting for ``tenant`` from the command line, with every scope."""
    async with rt.transaction() as conn:
        found = await repo.tenant_by_name(conn, tenant)
    if found is None:
        raise NotFound(f"no tenant {tenant!r}", code="tenant_not_found")
    return Caller(
        tenant_id=found.id, tenant_name=found.name, actor=actor, scopes=frozenset(ALL_SCOPES)
    )
