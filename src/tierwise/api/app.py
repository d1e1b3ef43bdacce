"""The application factory: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text

from tierwise import __version__
from tierwise.api.errors import ErrorRouter, install
from tierwise.api.limits import BodyLimit
from tierwise.api.routes import activities, members, programs
from tierwise.services.runtime import Runtime
from tierwise.services.tenants import KeyVerifier
from tierwise.settings import Settings

DESCRIPTION = """Tierwise decides which status level each loyalty member holds, why, until when,
and what they need to move up or keep it.

Authenticate with an API key: `Authorization: Bearer <secret>`, `X-API-Key: <secret>`, or
HTTP Basic with the key id and the secret. Errors answer
`{"error": {"code", "message", "field"}}` with a stable `code`."""


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or (runtime.settings if runtime else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime(settings)
        app.state.runtime = rt
        app.state.verifier = KeyVerifier(rt)
        try:
            yield
        finally:
            if runtime is None:
                await rt.close()

    app = FastAPI(title="Tierwise", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    errors = ErrorRouter()
    app.state.errors = errors
    install(app, errors)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        rt: Runtime = app.state.runtime
        async with rt.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"status": "ok", "version": __version__}

    for module in (programs, activities, members):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
