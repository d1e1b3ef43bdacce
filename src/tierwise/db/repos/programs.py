"""Programs, ladders, their versions and level identities."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tierwise.db.tables import Ladder as LadderTable
from tierwise.db.tables import LadderVersion, Level, Program
from tierwise.domain.ladder import Ladder
from tierwise.domain.program import Program as ProgramValue


def _program(row: Row[Any]) -> ProgramValue:
    return ProgramValue(
        id=row.id,
        uuid=row.uuid,
        tenant_id=row.tenant_id,
        name=row.name,
        time_zone=row.time_zone,
        currency=row.currency,
        earn_rate=row.earn_rate,
        is_default=row.is_default,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def programs_of(conn: AsyncConnection, tenant_id: int) -> list[ProgramValue]:
    rows = await conn.execute(
        select(Program).where(Program.tenant_id == tenant_id).order_by(Program.id)
    )
    return [_program(row) for row in rows]


async def program(conn: AsyncConnection, tenant_id: int, program_id: int) -> ProgramValue | None:
    row = (
        await conn.execute(
            select(Program).where(Program.tenant_id == tenant_id, Program.id == program_id)
        )
    ).first()
    return None if row is None else _program(row)


async def program_by_uuid(conn: AsyncConnection, tenant_id: int, uuid: str) -> ProgramValue | None:
    row = (
        await conn.execute(
            select(Program).where(Program.tenant_id == tenant_id, Program.uuid == uuid)
        )
    ).first()
    return None if row is None else _program(row)


async def default_program(conn: AsyncConnection, tenant_id: int) -> ProgramValue | None:
    row = (
        await conn.execute(
            select(Program)
            .where(Program.tenant_id == tenant_id)
            .order_by(Program.is_default.desc(), Program.id)
            .limit(1)
        )
    ).first()
    return None if row is None else _program(row)


async def add_program(
    conn: AsyncConnection,
    *,
    tenant_id: int,
    uuid: str,
    name: str,
    time_zone: str,
    currency: str,
    earn_rate: Decimal,
    is_default: bool,
    now: datetime,
) -> int:
    if is_default:
        await clear_default(conn, tenant_id)
    result = await conn.execute(
        insert(Program)
        .values(
            tenant_id=tenant_id,
            uuid=uuid,
            name=name,
            time_zone=time_zone,
            currency=currency,
            earn_rate=earn_rate,
            is_default=is_default,
            created_at=now,
            updated_at=now,
        )
        .returning(Program.id)
    )
    return int(result.scalar_one())


async def clear_default(conn: AsyncConnection, tenant_id: int) -> None:
    await conn.execute(
        update(Program)
        .where(Program.tenant_id == tenant_id, Program.is_default.is_(True))
        .values(is_default=False)
    )


async def update_program(conn: AsyncConnection, program_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(Program).where(Program.id == program_id).values(**values))


# -- ladders ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LadderRow:
    """A ladder's identity and its live definition (None before the first go-live)."""

    id: int
    uuid: str
    tenant_id: int
    program_id: int
    key: str
    live_version_id: int | None
    live_version_number: int | None
    definition: Ladder | None
    level_ids: dict[str, int]
    created_at: datetime
    updated_at: datetime


class DefinitionCache:
    """Parsed definitions by version id. A version's content never changes once it is
    live, so entries never go stale.

    It also remembers, per ladder, what the status and activity paths need of a live
    version besides its definition: the version number and the level ids. An entry is
    keyed by ``(live version id, number of level ids)``, both read with the ladder row on
    every request: publishing changes the live version id, and level ids are only ever
    added (never changed or removed), so a stale entry can never be used, also when
    another process published."""

    def __init__(self, size: int = 2048) -> None:
        self._items: dict[int, Ladder] = {}
        self._live: dict[int, tuple[int, int, int | None, dict[str, int]]] = {}
        self._size = size

    def get(self, version_id: int, raw: dict[str, Any]) -> Ladder:
        found = self._items.get(version_id)
        if found is None:
            found = Ladder.model_validate(raw)
            if len(self._items) >= self._size:
                self._items.clear()
            self._items[version_id] = found
        return found

    def parsed(self, version_id: int) -> Ladder | None:
        return self._items.get(version_id)

    def live(
        self, ladder_id: int, version_id: int | None, level_count: int
    ) -> tuple[int | None, dict[str, int]] | None:
        """``(version number, level ids)`` of a ladder's live version, if remembered for
        exactly this version and level count."""
        found = self._live.get(ladder_id)
        if found is None or found[0] != (version_id or 0) or found[1] != level_count:
            return None
        return found[2], found[3]

    def remember(
        self,
        ladder_id: int,
        version_id: int | None,
        level_count: int,
        number: int | None,
        level_ids: dict[str, int],
    ) -> None:
        if len(self._live) >= self._size:
            self._live.clear()
        self._live[ladder_id] = (version_id or 0, level_count, number, level_ids)


_LEVEL_COUNT = (
    select(func.count(Level.id))
    .where(Level.ladder_id == LadderTable.id)
    .correlate(LadderTable)
    .scalar_subquery()
    .label("level_count")
)

_LADDER_COLUMNS = (
    LadderTable.id,
    LadderTable.uuid,
    LadderTable.tenant_id,
    LadderTable.program_id,
    LadderTable.key,
    LadderTable.live_version_id,
    LadderTable.created_at,
    LadderTable.updated_at,
    _LEVEL_COUNT,
)

_LADDERS_BASE = (
    select(*_LADDER_COLUMNS)
    .where(LadderTable.tenant_id == bindparam("tenant_id"))
    .order_by(LadderTable.id)
)
_LADDERS_QUERIES = {
    (False, False): _LADDERS_BASE,
    (True, False): _LADDERS_BASE.where(LadderTable.program_id == bindparam("program_id")),
    (False, True): _LADDERS_BASE.where(LadderTable.key == bindparam("ladder_key")),
    (True, True): _LADDERS_BASE.where(
        LadderTable.program_id == bindparam("program_id"),
        LadderTable.key == bindparam("ladder_key"),
    ),
}


async def ladders(
    conn: AsyncConnection,
    cache: DefinitionCache,
    *,
    tenant_id: int,
    program_id: int | None = None,
    ladder_key: str | None = None,
) -> list[LadderRow]:
    """Ladders of a tenant (optionally one program, one key), with live definitions."""
    query = _LADDERS_QUERIES[(program_id is not None, ladder_key is not None)]
    params: dict[str, Any] = {"tenant_id": tenant_id}
    if program_id is not None:
        params["program_id"] = program_id
    if ladder_key is not None:
        params["ladder_key"] = ladder_key
    rows = (await conn.execute(query, params)).all()
    return await _ladder_rows(conn, cache, [_LadderProbe.of(row, 0) for row in rows])


@dataclass(frozen=True, slots=True)
class _LadderProbe:
    """A ladder row as read on every request: everything but the cached parts."""

    id: int
    uuid: str
    tenant_id: int
    program_id: int
    key: str
    live_version_id: int | None
    created_at: datetime
    updated_at: datetime
    level_count: int

    @classmethod
    def of(cls, row: Row[Any], at: int) -> _LadderProbe:
        return cls(*row[at : at + 9])


async def _ladder_rows(
    conn: AsyncConnection, cache: DefinitionCache, probes: list[_LadderProbe]
) -> list[LadderRow]:
    if not probes:
        return []
    known: dict[int, tuple[int | None, dict[str, int]]] = {}
    definitions: dict[int, Ladder] = {}
    missing: list[_LadderProbe] = []
    for probe in probes:
        hit = cache.live(probe.id, probe.live_version_id, probe.level_count)
        parsed = None if probe.live_version_id is None else cache.parsed(probe.live_version_id)
        if hit is not None and (probe.live_version_id is None or parsed is not None):
            known[probe.id] = hit
            if parsed is not None and probe.live_version_id is not None:
                definitions[probe.live_version_id] = parsed
        else:
            missing.append(probe)
    if missing:
        versions = [p.live_version_id for p in missing if p.live_version_id is not None]
        numbers: dict[int, int] = {}
        if versions:
            version_rows = await conn.execute(
                select(LadderVersion.id, LadderVersion.number, LadderVersion.definition).where(
                    LadderVersion.id.in_(versions)
                )
            )
            for version_id, number, raw in version_rows:
                numbers[version_id] = number
                definitions[version_id] = cache.get(version_id, raw)
        level_rows = await conn.execute(
            select(Level.ladder_id, Level.key, Level.id).where(
                Level.ladder_id.in_([p.id for p in missing])
            )
        )
        level_ids: dict[int, dict[str, int]] = {}
        for ladder_id, key, level_id in level_rows:
            level_ids.setdefault(ladder_id, {})[key] = level_id
        for probe in missing:
            ids = level_ids.get(probe.id, {})
            number = None if probe.live_version_id is None else numbers.get(probe.live_version_id)
            known[probe.id] = (number, ids)
            # Remember only a consistent read: the count read with the ladder row must
            # match the level ids read after it (a concurrent publish may add some).
            if len(ids) == probe.level_count:
                cache.remember(probe.id, probe.live_version_id, probe.level_count, number, ids)
    result: list[LadderRow] = []
    for probe in probes:
        number, ids = known[probe.id]
        version_id = probe.live_version_id
        definition = None
        if version_id is not None:
            definition = definitions[version_id]
        result.append(
            LadderRow(
                id=probe.id,
                uuid=probe.uuid,
                tenant_id=probe.tenant_id,
                program_id=probe.program_id,
                key=probe.key,
                live_version_id=version_id,
                live_version_number=number,
                definition=definition,
                level_ids=dict(ids),
                created_at=probe.created_at,
                updated_at=probe.updated_at,
            )
        )
    return result


_PROGRAM_COLUMNS = (
    Program.id,
    Program.uuid,
    Program.tenant_id,
    Program.name,
    Program.time_zone,
    Program.currency,
    Program.earn_rate,
    Program.is_default,
    Program.created_at,
    Program.updated_at,
)


def _program_ladders_query(by_id: bool, by_key: bool) -> Any:
    if by_id:
        chosen: Any = bindparam("program_id")
    else:
        chosen = (
            select(Program.id)
            .where(Program.tenant_id == bindparam("tenant_id"))
            .order_by(Program.is_default.desc(), Program.id)
            .limit(1)
            .scalar_subquery()
        )
    on = (LadderTable.program_id == Program.id) & (LadderTable.tenant_id == Program.tenant_id)
    if by_key:
        on = on & (LadderTable.key == bindparam("ladder_key"))
    return (
        select(*_PROGRAM_COLUMNS, *_LADDER_COLUMNS)
        .select_from(Program)
        .outerjoin(LadderTable, on)
        .where(Program.tenant_id == bindparam("tenant_id"), Program.id == chosen)
        .order_by(LadderTable.id)
    )


_PROGRAM_LADDERS = {
    (by_id, by_key): _program_ladders_query(by_id, by_key)
    for by_id in (False, True)
    for by_key in (False, True)
}


async def program_ladders(
    conn: AsyncConnection,
    cache: DefinitionCache,
    *,
    tenant_id: int,
    program_id: int | None = None,
    ladder_key: str | None = None,
) -> tuple[ProgramValue | None, list[LadderRow]]:
    """A program (``program_id``, or the tenant's default one) with its ladders (only
    ``ladder_key`` when given), in one statement while the definitions are cached.

    The same answer as :func:`program` or :func:`default_program` followed by
    :func:`ladders`."""
    params: dict[str, Any] = {"tenant_id": tenant_id}
    if program_id is not None:
        params["program_id"] = program_id
    if ladder_key is not None:
        params["ladder_key"] = ladder_key
    query = _PROGRAM_LADDERS[(program_id is not None, ladder_key is not None)]
    rows = (await conn.execute(query, params)).all()
    if not rows:
        return None, []
    found = ProgramValue(*rows[0][:10])
    probes = [_LadderProbe.of(row, 10) for row in rows if row[10] is not None]
    return found, await _ladder_rows(conn, cache, probes)


async def add_ladder(
    conn: AsyncConnection, *, tenant_id: int, program_id: int, uuid: str, key: str, now: datetime
) -> int:
    result = await conn.execute(
        insert(LadderTable)
        .values(
            tenant_id=tenant_id,
            program_id=program_id,
            uuid=uuid,
            key=key,
            live_version_id=None,
            created_at=now,
            updated_at=now,
        )
        .returning(LadderTable.id)
    )
    ladder_id = int(result.scalar_one())
    await _touch_program(conn, Program.id == program_id)
    return ladder_id


async def _touch_program(conn: AsyncConnection, which: Any) -> None:
    """Write the program row again, values unchanged, in the transaction that wrote one of
    its ladders or levels: on PostgreSQL the row gets a new ``xmin``, which is what the
    stored status documents' stamp reads for the program *and* its ladders
    (``db/repos/status_docs.py``). Every write to ``ladders`` or ``levels`` calls it;
    ``tests/api/test_status_documents.py`` checks that on the database. These are rare
    admin writes: one more row written per ladder write, never per member."""
    await conn.execute(update(Program).where(which).values(updated_at=Program.updated_at))


async def ensure_levels(
    conn: AsyncConnection,
    *,
    tenant_id: int,
    ladder_id: int,
    keys: list[str],
    uuids: list[str],
    now: datetime,
) -> None:
    """Give every level key of a ladder a stable integer id (kept across versions)."""
    existing = set(
        (await conn.execute(select(Level.key).where(Level.ladder_id == ladder_id))).scalars()
    )
    rows = [
        {
            "tenant_id": tenant_id,
            "ladder_id": ladder_id,
            "key": key,
            "uuid": uuid,
            "created_at": now,
        }
        for key, uuid in zip(keys, uuids, strict=True)
        if key not in existing
    ]
    if rows:
        await conn.execute(insert(Level), rows)
        await _touch_program(conn, Program.id == _program_of(ladder_id))


async def add_version(
    conn: AsyncConnection,
    *,
    tenant_id: int,
    ladder_id: int,
    uuid: str,
    state: str,
    definition: Ladder,
    actor: str,
    now: datetime,
) -> tuple[int, int]:
    """Store a new version; returns ``(id, number)``."""
    number = (
        await conn.execute(
            select(LadderVersion.number)
            .where(LadderVersion.ladder_id == ladder_id)
            .order_by(LadderVersion.number.desc())
            .limit(1)
        )
    ).scalar()
    next_number = (number or 0) + 1
    result = await conn.execute(
        insert(LadderVersion)
        .values(
            tenant_id=tenant_id,
            ladder_id=ladder_id,
            uuid=uuid,
            number=next_number,
            state=state,
            definition=definition.model_dump(mode="json"),
            created_by=actor,
            created_at=now,
            updated_by=actor,
            updated_at=now,
            apply_downgrades_now=False,
        )
        .returning(LadderVersion.id)
    )
    return int(result.scalar_one()), next_number


async def set_version_state(
    conn: AsyncConnection, version_id: int, state: str, values: dict[str, Any] | None = None
) -> None:
    await conn.execute(
        update(LadderVersion)
        .where(LadderVersion.id == version_id)
        .values(state=state, **(values or {}))
    )


async def set_live(conn: AsyncConnection, ladder_id: int, version_id: int, now: datetime) -> None:
    await conn.execute(
        update(LadderTable)
        .where(LadderTable.id == ladder_id)
        .values(live_version_id=version_id, updated_at=now)
    )
    await _touch_program(conn, Program.id == _program_of(ladder_id))


def _program_of(ladder_id: int) -> Any:
    return select(LadderTable.program_id).where(LadderTable.id == ladder_id).scalar_subquery()
