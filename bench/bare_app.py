"""The bare reference: FastAPI + an asyncpg pool, no ORM, no auth, no domain.

Served by uvicorn with the same worker count as ``tierwise serve`` (the benchmark starts
it as ``uvicorn bench.bare_app:app --workers N``). It answers:

- ``GET /members/{id}``: one primary-key lookup of a ``members`` row, as JSON (the
  reference for status reads, benchmark a and c);
- ``POST /writes``: one activity-shaped JSON body validated by pydantic and inserted as
  one row (the reference for single activity POSTs, benchmark b);
- ``POST /writes/batch``: up to 1,000 such bodies inserted in one transaction (the
  reference for batch ingest, benchmark b).

The write endpoints use the scratch table ``bench_bare_writes`` that the benchmark
creates in its own throw-away database.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException
from pydantic import AwareDatetime, BaseModel, Field

DSN = os.environ.get("BENCH_BARE_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
POOL_MAX = int(os.environ.get("BENCH_BARE_POOL_MAX", "20"))

MEMBER_SQL = (
    "SELECT id, uuid, tenant_id, external_id, enrolled_at, last_activity_at, created_at "
    "FROM members WHERE id = $1"
)
WRITE_SQL = (
    "INSERT INTO bench_bare_writes (member_id, idempotency_key, occurred_at, amount_minor) "
    "VALUES ($1, $2, $3, $4)"
)
SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS bench_bare_writes (
    id bigserial PRIMARY KEY,
    member_id varchar(128) NOT NULL,
    idempotency_key varchar(200) NOT NULL UNIQUE,
    occurred_at timestamptz NOT NULL,
    amount_minor bigint NOT NULL
)
"""


class WriteIn(BaseModel):
    type: str
    member_id: str = Field(min_length=1, max_length=128)
    idempotency_key: str = Field(min_length=1, max_length=200)
    occurred_at: AwareDatetime
    amount_minor: int = Field(ge=0)
    currency: str | None = None


class BatchIn(BaseModel):
    activities: list[WriteIn] = Field(min_length=1, max_length=1000)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(DSN, min_size=1, max_size=POOL_MAX)
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(title="bare reference", lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/members/{member_id}")
async def member(member_id: int) -> dict[str, Any]:
    row = await app.state.pool.fetchrow(MEMBER_SQL, member_id)
    if row is None:
        raise HTTPException(404, "no such member")
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in row.items()
    }


@app.post("/writes", status_code=201)
async def write(body: WriteIn) -> dict[str, Any]:
    await app.state.pool.execute(
        WRITE_SQL, body.member_id, body.idempotency_key, body.occurred_at, body.amount_minor
    )
    return {"idempotency_key": body.idempotency_key, "accepted": True}


@app.post("/writes/batch")
async def write_batch(body: BatchIn) -> dict[str, int]:
    rows = [
        (a.member_id, a.idempotency_key, a.occurred_at, a.amount_minor) for a in body.activities
    ]
    async with app.state.pool.acquire() as conn, conn.transaction():
        await conn.executemany(WRITE_SQL, rows)
    return {"accepted": len(rows)}
