"""Shared fixtures: a real database (SQLite file, or a fresh PostgreSQL database when
``TIERWISE_TEST_DATABASE_URL`` points at a server), migrated once per session, and an
isolated tenant with its own API key per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from tierwise.api.app import create_app
from tierwise.db.migrate import upgrade
from tierwise.services.runtime import Runtime
from tierwise.services.tenants import ALL_SCOPES, NewKey, create_key
from tierwise.settings import Settings, normalise_database_url


def _admin_execute(admin_url: str, statement: str) -> None:
    import asyncpg

    async def go() -> None:
        url = make_url(normalise_database_url(admin_url)).set(drivername="postgresql")
        conn = await asyncpg.connect(url.render_as_string(hide_password=False))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = os.environ.get("TIERWISE_TEST_DATABASE_URL", "")
    if server.startswith("postgres"):
        name = f"tierwise_test_{uuid.uuid4().hex[:12]}"
        _admin_execute(server, f'CREATE DATABASE "{name}"')
        url = make_url(normalise_database_url(server)).set(database=name)
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            _admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        path: Path = tmp_path_factory.mktemp("db") / "tierwise.db"
        yield f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    settings = Settings(
        database_url=database_url,
        auth_cache_seconds=0,
        sweep_interval_seconds=0,
        # Every stored status document served is recomputed and compared: a write path
        # that could leave a stale one fails the test that exercises it.
        status_docs_verify=True,
        gc_tuning=False,
        max_body_bytes=256 * 1024,
    )
    upgrade(settings)
    return settings


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


class Api:
    """A test client bound to one tenant's key: ``api.post("/v1/…", json=…)``."""

    def __init__(self, client: TestClient, key: NewKey) -> None:
        self.client = client
        self.key = key
        self.headers = {"Authorization": f"Bearer {key.secret}"}

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(
            path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs
        )

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.client.post(
            path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs
        )

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.client.put(
            path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs
        )

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.client.patch(
            path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs
        )

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.client.delete(
            path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs
        )

    def runtime(self) -> Runtime:
        rt: Runtime = self.client.app.state.runtime  # type: ignore[attr-defined]
        return rt


def make_key(client: TestClient, tenant: str, scopes: list[str] | tuple[str, ...]) -> NewKey:
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert client.portal is not None
    return client.portal.call(lambda: create_key(rt, tenant=tenant, scopes=list(scopes)))


@pytest.fixture
def tenant_name() -> str:
    return f"tenant-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def api(client: TestClient, tenant_name: str) -> Api:
    """A fresh tenant with a key holding every scope."""
    return Api(client, make_key(client, tenant_name, ALL_SCOPES))
