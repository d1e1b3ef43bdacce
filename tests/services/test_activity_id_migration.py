"""Revision b8d2f4a6c0e1: new ledger rows store no uuid (their public id is written from
the ledger id), rows recorded before keep theirs, still unique; the downgrade writes the
new rows' public ids into the column and makes it required again. On the suite's database
server, in a database of its own (``url`` from the bucket migration's test)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy.exc import IntegrityError

from tests.services.test_bucket_migration import _run, url  # noqa: F401  (fixture)
from tierwise.db.migrate import alembic_config
from tierwise.domain.activity_ids import public_id
from tierwise.settings import Settings

BEFORE = "e7b3d1f9a2c4"
AFTER = "b8d2f4a6c0e1"
_INSERT = (
    "INSERT INTO activities (id, uuid, tenant_id, member_id, program_id, type, "
    "idempotency_key, request_hash, occurred_at, recorded_at, effects, result, earn_rate) "
    "VALUES (:id, :uuid, 1, 1, 1, 'visit', :key, '', :at, :at, '{\"visits\": 1}', NULL, NULL)"
)
_AT = datetime(2025, 5, 1, 10, tzinfo=UTC)


def _row(id_: int, uuid_: str | None) -> dict[str, Any]:
    return {"id": id_, "uuid": uuid_, "key": f"k{id_}", "at": _AT}


def test_new_rows_store_no_uuid_and_old_ones_keep_theirs(url: str) -> None:  # noqa: F811
    config = alembic_config(Settings(database_url=url))
    command.upgrade(config, BEFORE)
    old = str(uuid.uuid4())
    _run(url, (_INSERT, [_row(1, old)]))
    with pytest.raises(IntegrityError):
        _run(url, (_INSERT, [_row(2, None)]))

    command.upgrade(config, AFTER)
    _run(url, (_INSERT, [_row(2, None), _row(3, None)]))
    with pytest.raises(IntegrityError):  # a stored uuid is still unique
        _run(url, (_INSERT, [_row(4, old)]))
    [rows] = _run(url, ("SELECT id, uuid FROM activities ORDER BY id", None))
    assert rows == [(1, old), (2, None), (3, None)]
    # New rows add no entry to the index: it holds the stored uuids alone.
    [[(definition,)]] = _run(
        url,
        (
            "SELECT sql FROM sqlite_master WHERE name = 'ix_activities_uuid'"
            if url.startswith("sqlite")
            else "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_activities_uuid'",
            None,
        ),
    )
    assert "UNIQUE" in definition.upper() and "WHERE" in definition.upper()
    assert "IS NOT NULL" in definition.upper()

    command.downgrade(config, BEFORE)
    [rows] = _run(url, ("SELECT id, uuid FROM activities ORDER BY id", None))
    assert rows == [(1, old), (2, public_id(2)), (3, public_id(3))]
    with pytest.raises(IntegrityError):
        _run(url, (_INSERT, [_row(5, None)]))
