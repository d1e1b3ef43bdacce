"""The application's runtime: engine, settings, clock and caches, built once at the edge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tierwise.db.engine import create_engine
from tierwise.db.repos.programs import DefinitionCache
from tierwise.settings import Settings

#: Options SQLAlchemy's asyncpg adapter takes from the URL that asyncpg itself does not.
_ADAPTER_OPTIONS = (
    "prepared_statement_cache_size",
    "prepared_statement_name_func",
    "async_fallback",
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the API key's tenant, the key id (the actor) and its scopes."""

    tenant_id: int
    tenant_name: str
    actor: str
    scopes: frozenset[str]


class Runtime:
    """Holds what every use case needs. Create one per process (or per test)."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.engine = engine if engine is not None else create_engine(settings)
        self.clock = clock
        self.definitions = DefinitionCache()
        # Reads on PostgreSQL skip BEGIN/ROLLBACK: at READ COMMITTED every statement takes
        # its own snapshot inside a transaction too, so a read-only transaction buys
        # nothing but two round trips. SQLite keeps its transaction (a consistent file
        # snapshot across statements).
        self._reader: AsyncEngine | None = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.engine.dialect.name == "postgresql"
            else None
        )
        self._driver_pool: Any = None
        self._driver_pool_lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction that rolls back unless the use case commits."""
        async with self.engine.connect() as conn:
            await conn.begin()
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    await conn.rollback()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a use case that only reads (never writes, never commits)."""
        if self._reader is None:
            async with self.transaction() as conn:
                yield conn
            return
        async with self._reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        """A bare asyncpg connection from a pool of its own (PostgreSQL only), for the
        hottest single-statement reads: no SQLAlchemy layer, autocommit."""
        if self._driver_pool is None:
            async with self._driver_pool_lock:
                if self._driver_pool is None:
                    self._driver_pool = await self._create_driver_pool()
        async with self._driver_pool.acquire() as conn:
            yield conn

    async def _create_driver_pool(self) -> Any:
        # The engine's own connect arguments, without SQLAlchemy's adapter options.
        _, params = self.engine.dialect.create_connect_args(self.engine.url)
        for name in _ADAPTER_OPTIONS:
            params.pop(name, None)
        return await asyncpg.create_pool(
            **params,
            min_size=1,
            # Few connections suffice (one short statement each); idle ones close, so
            # that two pools per process stay within the server's connections.
            max_size=min(8, self.settings.db_pool_size),
            max_inactive_connection_lifetime=30,
        )

    async def close(self) -> None:
        if self._driver_pool is not None:
            await self._driver_pool.close()
            self._driver_pool = None
        await self.engine.dispose()
