"""Recording activity (R12, R13)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import orjson
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from tierwise.api.auth import ActivitiesWrite, RuntimeDep
from tierwise.api.schemas import (
    AMOUNT_MAX,
    BATCH_MAX,
    CURRENCY_LEN,
    EARLIEST,
    KEY_MAX,
    LATEST,
    MEMBER_ID_MAX,
    PROGRAM_ID_MAX,
    ActivityBatchIn,
    ActivityIn,
    ActivityOut,
    BatchOut,
)
from tierwise.domain.activity import ActivityType
from tierwise.services import activities as service
from tierwise.services.group_commit import GroupCommit
from tierwise.services.runtime import Caller, Runtime

router = APIRouter(prefix="/v1/activities", tags=["activities"])


def command(body: ActivityIn) -> service.ActivityCommand:
    return service.ActivityCommand(
        type=body.type,
        member_id=body.member_id,
        idempotency_key=body.idempotency_key,
        occurred_at=body.occurred_at,
        request_hash=body.request_hash(),
        program_id=body.program_id,
        amount_minor=body.amount_minor,
        currency=body.currency,
        points=body.points,
        counter=body.counter,
        quantity=body.quantity,
        reverses=body.reverses,
        reverses_key=body.reverses_key,
    )


def batch_commands(data: Any) -> list[service.ActivityCommand]:
    """The commands of a batch body (as ``orjson.loads`` gives it): exactly those of
    ``[command(a) for a in ActivityBatchIn.model_validate(data).activities]``, and the same
    ``ValidationError`` when ``ActivityBatchIn`` refuses the body.

    The usual purchase (``_usual_purchase``) is checked, hashed and made a command
    directly, for a third of what the model and ``command`` cost (2.9 against 8.7 µs);
    every other item is validated by ``ActivityIn``. Anything else about the body (its
    shape, a refused item) is left to ``ActivityBatchIn``.
    """
    if type(data) is not dict or len(data) != 1:
        return _validated_commands(data)
    items = data.get("activities")
    if type(items) is not list or not 1 <= len(items) <= BATCH_MAX:
        return _validated_commands(data)
    alike = _usual_purchases(items)
    if alike is not None:
        return alike
    commands: list[service.ActivityCommand] = []
    for item in items:
        found = _usual_purchase(item)
        if found is None:
            try:
                found = command(ActivityIn.model_validate(item))
            except ValidationError:
                return _validated_commands(data)  # raises the batch's error, located
        commands.append(found)
    return commands


def _usual_purchase(item: Any) -> service.ActivityCommand | None:
    """The command of ``item`` if it is a usual purchase, else None (``ActivityIn`` then
    decides): the five fields ``type``, ``member_id``, ``idempotency_key``,
    ``occurred_at`` and ``amount_minor``, with ``currency`` or ``program_id`` or both when
    given, of the plain JSON types, inside the limits, without NUL, and the instant written
    as pydantic writes it back (``_CANONICAL``)."""
    if type(item) is not dict or not 5 <= len(item) <= 7 or item.get("type") != "purchase":
        return None
    member_id = item.get("member_id")
    key = item.get("idempotency_key")
    given = item.get("occurred_at")
    amount = item.get("amount_minor")
    currency = item.get("currency", _ABSENT)
    program_id = item.get("program_id", _ABSENT)
    if not (
        len(item) == 5 + (currency is not _ABSENT) + (program_id is not _ABSENT)
        and type(member_id) is str
        and 0 < len(member_id) <= MEMBER_ID_MAX
        and "\x00" not in member_id
        and type(key) is str
        and 0 < len(key) <= KEY_MAX
        and "\x00" not in key
        and type(amount) is int
        and 0 < amount <= AMOUNT_MAX
        and type(given) is str
        and _CANONICAL(given) is not None
    ):
        return None
    if currency is _ABSENT:
        currency = None
    elif type(currency) is not str or len(currency) != CURRENCY_LEN or "\x00" in currency:
        return None
    if program_id is _ABSENT:
        program_id = None
    elif type(program_id) is not int or not 0 < program_id <= PROGRAM_ID_MAX:
        return None
    try:
        at = datetime.fromisoformat(given)  # in ``datetime.UTC``, as ``ActivityInstant``
    except ValueError:  # not a date of the calendar (2025-02-30)
        return None
    # ActivityCommand's fields in order (a test compares them).
    return service.ActivityCommand(
        _PURCHASE,
        member_id,
        key,
        at,
        None,  # the fingerprint is written only when needed (request_hash_of)
        program_id,
        amount,
        currency,
    )


def _usual_purchases(items: list[Any]) -> list[service.ActivityCommand] | None:
    """``[_usual_purchase(item) for item in items]`` when every item is a usual purchase
    with the same fields (those of the first), else None (``_usual_purchase`` then decides
    item by item): the same checks, made a column at a time by builtins that loop in C
    (a third of the instructions; ``_usual_columns``). The items are as ``orjson.loads``
    gives them, so a text is a ``str`` exactly. A property test compares the two paths."""
    first = items[0]
    if type(first) is not dict:
        return None
    size = len(first)
    has_currency = "currency" in first
    has_program = "program_id" in first
    if size != 5 + has_currency + has_program:
        return None
    try:
        if set(map(type, items)) != _DICT or set(map(len, items)) != {size}:
            return None
        return _usual_columns(
            _columns(items, itemgetter, _FIELDS),
            _column(items, itemgetter, "currency") if has_currency else None,
            _column(items, itemgetter, "program_id") if has_program else None,
        )
    except KeyError:  # an item without one of the first's fields
        return None


def _usual_columns(
    fields: list[list[Any]], currencies: list[Any] | None, programs: list[Any] | None
) -> list[service.ActivityCommand] | None:
    """The commands of usual purchases given as columns of their fields (``_FIELDS``, then
    the optional ones, None for a field no item has), or None when one is not usual:
    ``_usual_purchase``'s checks a column at a time. A text is a ``str`` exactly (as JSON
    is read), so ``str.join`` refuses (``TypeError``) any other value. The instants are
    checked by writing them back (``orjson`` writes an instant in UTC as ``_CANONICAL``
    reads it) instead of by the pattern, and their years by ``EARLIEST`` and ``LATEST``."""
    kinds, members, keys, given, amounts = fields
    n = len(kinds)
    if kinds.count("purchase") != n:  # (== never raises)
        return None
    try:
        if "\x00" in "".join(members) or "\x00" in "".join(keys):
            return None
        if currencies is not None and (
            "\x00" in "".join(currencies) or set(map(len, currencies)) != {CURRENCY_LEN}
        ):
            return None
        instants = list(map(datetime.fromisoformat, given))
    except (TypeError, ValueError):
        # A value of another type, or a text that is not an instant or not a date of the
        # calendar (2025-02-30).
        return None
    member_lengths = list(map(len, members))
    key_lengths = list(map(len, keys))
    if (
        not 0 < min(member_lengths) <= max(member_lengths) <= MEMBER_ID_MAX
        or not 0 < min(key_lengths) <= max(key_lengths) <= KEY_MAX
        or set(map(type, amounts)) != _INT
        or not 0 < min(amounts) <= max(amounts) <= AMOUNT_MAX
    ):
        return None
    if programs is not None and (
        set(map(type, programs)) != _INT or not 0 < min(programs) <= max(programs) <= PROGRAM_ID_MAX
    ):
        return None
    if (
        set(map(_ZONE, instants)) != _UTC_ONLY
        or orjson.dumps(instants, option=orjson.OPT_UTC_Z) != orjson.dumps(given)
        or min(instants) < EARLIEST
        or max(instants) >= LATEST
    ):
        return None
    # ActivityCommand's fields in order, as _usual_purchase gives them.
    return list(
        map(
            service.ActivityCommand,
            repeat(_PURCHASE, n),
            members,
            keys,
            instants,
            repeat(None, n),
            programs or repeat(None, n),
            amounts,
            currencies or repeat(None, n),
        )
    )


class _Purchase(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A usual purchase as ``msgspec`` reads it straight from the body (the fields of
    ``_usual_purchase``; ``_usual_columns`` checks the rest)."""

    type: str
    member_id: str
    idempotency_key: str
    occurred_at: str
    amount_minor: int
    currency: str | msgspec.UnsetType = msgspec.UNSET
    program_id: int | msgspec.UnsetType = msgspec.UNSET


class _Purchases(msgspec.Struct, forbid_unknown_fields=True):
    activities: list[_Purchase]


_PURCHASES = msgspec.json.Decoder(_Purchases)


def batch_commands_of(body: bytes) -> list[service.ActivityCommand]:
    """``batch_commands(orjson.loads(body))``, the same commands or the same errors. A
    body of usual purchases with the same fields is read by ``msgspec`` into their
    columns, without the dictionaries of every item (a third of the instructions of
    reading and checking them); any other body, or one ``msgspec`` refuses, is read by
    ``orjson`` and checked by ``batch_commands``. A property test compares the two."""
    try:
        items = _PURCHASES.decode(body).activities
    except Exception:  # anything msgspec refuses (also UnicodeDecodeError): read as before
        return batch_commands(orjson.loads(body))
    n = len(items)
    commands = None
    if 1 <= n <= BATCH_MAX:
        currencies = _column(items, attrgetter, "currency")
        programs = _column(items, attrgetter, "program_id")
        no_currency = currencies.count(msgspec.UNSET)
        no_program = programs.count(msgspec.UNSET)
        # Only alike items: each optional field given by all or by none.
        if no_currency in (0, n) and no_program in (0, n):
            commands = _usual_columns(
                _columns(items, attrgetter, _FIELDS),
                None if no_currency else currencies,
                None if no_program else programs,
            )
    return batch_commands(orjson.loads(body)) if commands is None else commands


def _column(items: list[Any], getter: Callable[[str], Any], name: str) -> list[Any]:
    """Field ``name`` of every item, read by ``getter(name)`` (``itemgetter`` for
    dictionaries, ``attrgetter`` for structs) in one pass in C."""
    return list(map(getter(name), items))


def _columns(
    items: list[Any], getter: Callable[[str], Any], names: Sequence[str]
) -> list[list[Any]]:
    return [_column(items, getter, name) for name in names]


def _validated_commands(data: Any) -> list[service.ActivityCommand]:
    return [command(a) for a in ActivityBatchIn.model_validate(data).activities]


_PURCHASE = ActivityType.PURCHASE
_ABSENT: Any = object()
_FIELDS = ("type", "member_id", "idempotency_key", "occurred_at", "amount_minor")
"""The usual purchase's fields it always has, in ``_usual_columns``' order."""
_ZONE = attrgetter("tzinfo")
_DICT: set[type] = {dict}
_INT: set[type] = {int}
_UTC_ONLY = {UTC}
_CANONICAL = re.compile(
    r"(?:19|2[0-9])[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.(?!000000)[0-9]{6})?Z"
).fullmatch
"""An instant of 1900-2999 (R27) written as pydantic writes it back (and so as the request
hash writes it, ``orjson.dumps(at, option=orjson.OPT_UTC_Z)``): RFC 3339 at ``Z``, with
microseconds unless they are zero. Such a text of a real date is read alike by
``datetime.fromisoformat`` and by pydantic (as the same instant, at offset zero)."""


def activity_out(outcome: service.Outcome) -> ActivityOut:
    return ActivityOut.model_validate({**outcome.result, "replayed": outcome.replayed})


_OUT_FIELDS = tuple(name for name in ActivityOut.model_fields if name != "replayed")
_EARN_FIELDS = ("amount_minor", "rate", "points")


def _out(outcome: service.Outcome) -> dict[str, Any] | None:
    """The ``ActivityOut`` document of ``outcome`` as plain JSON data, or None when the
    result is not exactly in that shape (``ActivityOut`` then validates it)."""
    result = outcome.result
    if tuple(result) != _OUT_FIELDS:
        return None
    for part in result["earn"]:
        if tuple(part) != _EARN_FIELDS:
            return None
    return {**result, "replayed": outcome.replayed}


def usual_json(usual: service.Usual, replayed: bool) -> str:
    """The ``ActivityOut`` document of a usual purchase's answer, as JSON text: the same
    text as ``orjson.dumps`` of ``_out`` (a property test compares them), written
    directly for a fifth of the time."""
    _, member_id, _, key, at, *_ = usual
    return _usual_text(usual, _text(member_id), _text(key), service.iso(at), replayed)


def _usual_text(usual: service.Usual, member: str, key: str, at: str, replayed: bool) -> str:
    """``usual_json`` with the member id and key already written as JSON strings (their
    text between the quotes) and the instant as its text."""
    activity_uuid, _, program_id, _, _, amount_int, points_int, rate = usual
    amount = str(amount_int)  # each number written once, then placed as text
    points = str(points_int)
    effects = (
        f'{{"orders":1,"points_balance":{points},"points_earned":{points},"spend":{amount}}}'
        if points_int
        else f'{{"orders":1,"spend":{amount}}}'
    )
    return (
        f'{{"id":"{activity_uuid}","type":"purchase","member_id":"{member}",'
        f'"program_id":{program_id},"idempotency_key":"{key}",'
        f'"occurred_at":"{at}","effects":{effects},"points_earned":{points},'
        f'"earn":[{{"amount_minor":{amount},"rate":"{rate}","points":{points}}}],'
        f'"reverses":null,"tier_changes":[],"replayed":{"true" if replayed else "false"}}}'
    )


def _usual_texts(outcomes: list[service.Outcome]) -> list[str]:
    """``usual_json`` of each usual outcome, in order, the texts of their member ids, keys
    and instants written by three calls of ``orjson`` for the lot: in a JSON array of
    strings, ``","`` occurs only between two of them (a quote inside one is escaped)."""
    usuals = [o.usual for o in outcomes if o.usual is not None]
    replayed = [o.replayed for o in outcomes if o.usual is not None]
    instants = [u[4] for u in usuals]
    if set(map(_ZONE, instants)) != _UTC_ONLY:  # another offset: written one by one
        return list(map(usual_json, usuals, replayed))
    members, keys, ats = (
        orjson.dumps(column, option=orjson.OPT_UTC_Z).decode()[2:-2].split('","')
        for column in ([u[1] for u in usuals], [u[3] for u in usuals], instants)
    )
    return list(map(_usual_text, usuals, members, keys, ats, replayed))


def _text(value: str) -> str:
    return orjson.dumps(value).decode()[1:-1]


def answer(outcome: service.Outcome) -> tuple[int, dict[str, str], bytes]:
    """The HTTP answer to one recorded activity: 201 with the result, or 200 with the
    first result and ``Idempotent-Replayed: true`` for a repeat (R12)."""
    status, headers = (200, {"Idempotent-Replayed": "true"}) if outcome.replayed else (201, {})
    if outcome.usual is not None:
        return status, headers, usual_json(outcome.usual, outcome.replayed).encode()
    out = _out(outcome)
    if out is None:
        return status, headers, activity_out(outcome).model_dump_json().encode()
    return status, headers, orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS)


async def record_one(
    groups: GroupCommit | None, rt: Runtime, caller: Caller, body: ActivityIn
) -> service.Outcome:
    """Record one activity, through the process's group commit when it has one."""
    if groups is not None:
        return await groups.submit(caller, command(body))
    [outcome] = await service.record(rt, caller, [command(body)])
    return outcome


def groups_of(app: Any) -> GroupCommit | None:
    """The group commit of the application's process (None when turned off)."""
    found: GroupCommit | None = getattr(app.state, "activity_groups", None)
    return found


@router.post(
    "",
    status_code=201,
    response_model=ActivityOut,
    responses={200: {"description": "A repeat of an earlier request: the first result, unchanged"}},
)
async def record_activity(
    body: ActivityIn, request: Request, rt: RuntimeDep, caller: ActivitiesWrite
) -> Response:
    status, headers, content = answer(await record_one(groups_of(request.app), rt, caller, body))
    return Response(content, status_code=status, headers=headers, media_type="application/json")


def batch_answer(outcomes: list[service.Outcome]) -> bytes:
    """The HTTP answer (200) to a recorded batch: counts and every activity's result."""
    duplicates = sum(1 for o in outcomes if o.replayed)
    parts: list[str] = []
    usual = iter(_usual_texts(outcomes))
    for o in outcomes:
        if o.usual is not None:
            parts.append(next(usual))
            continue
        out = _out(o)
        if out is None:
            break
        parts.append(orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS).decode())
    else:
        accepted = len(outcomes) - duplicates
        return (
            f'{{"accepted":{accepted},"duplicates":{duplicates},"results":[{",".join(parts)}]}}'
        ).encode()
    return (
        BatchOut(
            accepted=len(outcomes) - duplicates,
            duplicates=duplicates,
            results=[activity_out(o) for o in outcomes],
        )
        .model_dump_json()
        .encode()
    )


async def record_many(
    rt: Runtime, caller: Caller, commands: list[service.ActivityCommand]
) -> list[service.Outcome]:
    """Record a batch: one transaction, all stored or none."""
    return await service.record(rt, caller, commands)


@router.post("/batch", response_model=BatchOut)
async def record_batch(body: ActivityBatchIn, rt: RuntimeDep, caller: ActivitiesWrite) -> Response:
    """Up to 1,000 activities in one transaction: all are stored, or none."""
    content = batch_answer(await record_many(rt, caller, [command(a) for a in body.activities]))
    return Response(content, status_code=200, media_type="application/json")
