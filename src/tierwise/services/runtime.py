"""The application's runtime: engine, settings, clock and caches, built once at the edge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tierwise.db.engine import create_engine
from tierwise.db.repos.programs import DefinitionCache
from tierwise.settings import Settings


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
            url = make_url(self.settings.database_url).set(drivername="postgresql")
            self._driver_pool = await asyncpg.create_pool(
                url.render_as_string(hide_password=False),
                min_size=1,
                # Few connections suffice (one short statement each); idle ones close,
                # so that two pools per process stay within the server's connections.
                max_size=min(8, self.settings.db_pool_size),
                max_inactive_connection_lifetime=30,
            )
        async with self._driver_pool.acquire() as conn:
            yield conn

    async def close(self) -> None:
        if self._driver_pool is not None:
            await self._driver_pool.close()
            self._driver_pool = None
        await self.engine.dispose()
