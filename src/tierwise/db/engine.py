"""Async engine creation, with SQLite made safe for concurrent writers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tierwise.db import pg_instants
from tierwise.settings import Settings


def create_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    """The application's engine.

    On SQLite every transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time,
    waiting up to 30 s rather than failing) and WAL lets readers run beside the writer.
    """
    if settings.is_sqlite:
        extra: dict[str, Any] = {} if pooled else {"poolclass": NullPool}
        engine = create_async_engine(settings.database_url, connect_args={"timeout": 30}, **extra)
        _make_sqlite_transactional(engine)
        return engine
    kwargs: dict[str, Any] = {"pool_size": settings.db_pool_size, "max_overflow": 10}
    if not pooled:
        kwargs = {"poolclass": NullPool}
    engine = create_async_engine(settings.database_url, pool_pre_ping=False, **kwargs)
    pg_instants.register(engine)
    return engine


def _make_sqlite_transactional(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
