"""The application factory: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text
from starlette.types import ASGIApp, Receive, Scope, Send

from tierwise import __version__
from tierwise.api.dialects import DIALECTS
from tierwise.api.errors import ErrorRouter, install
from tierwise.api.fast_activity import FastActivity
from tierwise.api.limits import BodyLimit
from tierwise.api.routes import activities, lifecycle, members, programs, versions
from tierwise.api.stored_status import StoredStatus
from tierwise.services.activities import record as record_activities
from tierwise.services.group_commit import GroupCommit
from tierwise.services.runtime import Runtime
from tierwise.services.tenants import KeyVerifier
from tierwise.settings import Settings

DESCRIPTION = """Tierwise decides which status level each loyalty member holds, why, until when,
and what they need to move up or keep it.

Authenticate with an API key: `Authorization: Bearer <secret>`, `X-API-Key: <secret>`, or
HTTP Basic with the key id and the secret. Errors answer
`{"error": {"code", "message", "field"}}` with a stable `code`."""


log = logging.getLogger("tierwise.sweep")


def start_periodic_sweep(rt: Runtime) -> asyncio.Task[None]:
    """Run the sweep every ``sweep_interval_seconds`` in this process. Several processes
    may do so at once: claims skip rows another sweep holds."""
    from tierwise.services.golive import run_pending
    from tierwise.services.sweep import sweep
    from tierwise.services.versions import activate_scheduled

    async def loop() -> None:
        while True:
            await asyncio.sleep(rt.settings.sweep_interval_seconds)
            try:
                now = rt.clock()
                await activate_scheduled(rt, now)
                await run_pending(rt)
                summary = await sweep(rt, as_of=now)
                if summary.events:
                    log.info("sweep handled %d events: %s", summary.events, summary.changes)
            except Exception:
                log.exception("periodic sweep failed; retrying next period")

    return asyncio.create_task(loop(), name="tierwise-sweep")


class TierwiseApp(FastAPI):
    """FastAPI, with the hottest requests answered before its middleware stack.

    The fast paths (``api/stored_status.py``: plain status reads; ``api/fast_activity.py``:
    activities, single and in batches) each serve only what they are sure of and hand
    everything else on unchanged. They run before FastAPI's own middleware (error
    handling, the body limit, routing), whose per-request wrapping of every message costs
    as much as a status read; a request that declares a body over the limit goes
    straight to the full stack, whose body limit answers it."""

    def __init__(self, *, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_body_bytes = max_body_bytes
        self.fast_activity = FastActivity(self._full)
        self._edge: ASGIApp = StoredStatus(self.fast_activity)

    async def _full(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _declares_too_much(scope, self.max_body_bytes):
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await self._edge(scope, receive, send)


def _declares_too_much(scope: Scope, limit: int) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return not value.isdigit() or int(value) > limit
    return False


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or (runtime.settings if runtime else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime(settings)
        app.state.runtime = rt
        app.state.verifier = KeyVerifier(rt)
        app.state.background = set()
        app.state.activity_groups = (
            GroupCommit(partial(record_activities, rt)) if settings.group_commit else None
        )
        if settings.gc_tuning:
            # What was imported and built at start lives as long as the process: keep it
            # out of collections, and collect the young generation less often (a request
            # allocates thousands of short-lived objects).
            gc.freeze()
            gc.set_threshold(50_000, 20, 100)
        job = start_periodic_sweep(rt) if settings.sweep_interval_seconds > 0 else None
        try:
            yield
        finally:
            if job is not None:
                job.cancel()
                with suppress(asyncio.CancelledError):
                    await job
            if runtime is None:
                await rt.close()

    app = TierwiseApp(
        title="Tierwise",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
    )
    errors = ErrorRouter()
    app.state.errors = errors
    install(app, errors)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        rt: Runtime = app.state.runtime
        async with rt.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"status": "ok", "version": __version__}

    for module in (programs, versions, activities, members, lifecycle):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.include_router(versions.jobs_router)
    for dialect in DIALECTS:
        app.include_router(dialect.router)
        errors.register(dialect.PREFIX, dialect.render_error)
    return app
