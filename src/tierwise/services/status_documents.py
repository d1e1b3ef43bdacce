"""Stored status documents: a status read that is one indexed lookup (issue 2, item 11a).

A member's status at "now" only changes when one of the rows it is computed from changes,
or when time crosses an instant the status depends on: a local midnight (rolling and
calendar windows move by whole local days), an expiry, a check, a grace end, an
assignment's expiry, a cycle end. So the first read after a change computes the status as
usual and stores the encoded document with the stamp of the rows it read
(``db/repos/status_docs.py``) and the earliest such instant; later reads are served from
it while both still hold. Reads ``as_of`` an instant, of one ladder, by another id form,
or on SQLite are always computed.

The stamp (``db/repos/status_docs.py``) reads three kinds of rows: the member, the
program and the member's standings. It relies on two invariants of the write paths: a
transaction that writes a member's activities, buckets or running totals also writes the
member row (the activity path sets its last activity), and one that writes a ladder or its
levels also writes the program row (``db/repos/programs.py``). Both are checked on the
database, for every writer, by ``tests/api/test_status_documents.py``.

With ``status_docs_verify`` on (the test suite turns it on) every document served is also
computed afresh and compared, so a write path that could leave a stale document fails the
test that exercises it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pydantic_core

from tierwise.db.repos import status_docs as repo
from tierwise.domain.calendar import local_date, start_of_day
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.status import MemberStatus


class StaleStatusDocument(AssertionError):
    """Raised in verify mode when a stored document differs from the computed status."""


@dataclass(frozen=True, slots=True)
class Stamp:
    member_id: int
    program_id: int
    value: str


def enabled(rt: Runtime) -> bool:
    engine = rt.engine
    return (
        rt.settings.status_docs
        and engine.dialect.name == "postgresql"
        and engine.dialect.driver == "asyncpg"
    )


def envelope(member_id: str, program_id: int, as_of: datetime, ladders: bytes) -> bytes:
    """The status response (``StatusOut``) around already encoded ladders."""
    return b"".join(
        (
            b'{"member_id":',
            pydantic_core.to_json(member_id),
            b',"program_id":',
            str(program_id).encode(),
            b',"as_of":',
            pydantic_core.to_json(as_of),
            b',"ladders":',
            ladders,
            b"}",
        )
    )


@dataclass(frozen=True, slots=True)
class Lookup:
    """What one lookup found: the current stamp (None: no such member or program) and the
    stored response, when one is still true."""

    stamp: Stamp | None
    served: bytes | None


async def lookup(
    rt: Runtime, caller: Caller, external_id: str, program_id: int | None, now: datetime
) -> Lookup:
    """The stored status response of the member at ``now`` if one is still true, and in
    any case the stamp a newly computed one is stored with (one statement)."""
    async with rt.driver() as driver:
        found = await repo.lookup(driver, caller.tenant_id, external_id, program_id, now)
    if found is None:
        return Lookup(None, None)
    member, program, stamp, body = found
    served = None if body is None else envelope(external_id, program, now, body.encode())
    return Lookup(Stamp(member, program, stamp), served)


def valid_until(status: MemberStatus, now: datetime) -> datetime | None:
    """Until when the status computed at ``now`` stays the status (None: do not store).

    The next local midnight bounds it (windows move by local days); so does every future
    instant of the member's standings. A standing already overdue (its check or expiry
    passed, the sweep has not run yet) or an activity dated after ``now`` is not stored."""
    last = status.member.last_activity_at
    if last is not None and last > now:
        return None
    tz = status.program.tz
    until = start_of_day(local_date(now, tz) + timedelta(days=1), tz)
    for item in status.ladders:
        state = item.state
        moments = [state.expires_at, state.check_due_at, state.grace_until, state.due_at]
        moments.append(item.cycle_end)
        for moment in moments:
            if moment is None:
                continue
            if moment <= now:
                return None
            until = min(until, moment)
    return until


async def store(
    rt: Runtime, found: Stamp, status: MemberStatus, ladders: bytes, now: datetime
) -> None:
    until = valid_until(status, now)
    if until is None or status.program.id != found.program_id:
        return
    # One statement on an autocommit connection: atomic on its own.
    async with rt.read() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        await repo.store(
            driver,
            member_id=found.member_id,
            program_id=found.program_id,
            stamp=found.value,
            computed_at=now,
            valid_until=until,
            body=ladders.decode(),
        )


def check_same(served: bytes, computed: bytes) -> None:
    """Verify mode: the served document must equal the computed one but for ``as_of``."""
    left: dict[str, Any] = json.loads(served)
    right: dict[str, Any] = json.loads(computed)
    left.pop("as_of", None)
    right.pop("as_of", None)
    if left != right:
        raise StaleStatusDocument(
            f"stored status document is stale:\nserved   {left}\ncomputed {right}"
        )
