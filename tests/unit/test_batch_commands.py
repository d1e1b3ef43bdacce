"""The batch's quick purchases (``routes.activities.batch_commands``) and its one-pass
answer (``batch_answer``, ``usual_json``) give exactly what the models give.

``batch_commands`` checks and hashes the usual purchase without ``ActivityIn``; for every
body it must build the same ``ActivityCommand`` list as ``ActivityBatchIn`` + ``command``
(same fields, same request hash: a repeat is compared by it, R12), and refuse every body
that ``ActivityBatchIn`` refuses with the same errors. ``batch_answer`` must write the
bytes ``BatchOut`` writes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tierwise.api.routes.activities import (
    _out,
    activity_out,
    answer,
    batch_answer,
    batch_commands,
    batch_commands_of,
    command,
    usual_json,
)
from tierwise.api.schemas import EARLIEST, LATEST, ActivityBatchIn, ActivityIn, BatchOut
from tierwise.domain.metrics import BuiltinMetric
from tierwise.services.activities import (
    ActivityCommand,
    Outcome,
    Usual,
    purchase_result,
    request_hash_of,
)


def _purchase(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "purchase",
        "member_id": "m0001",
        "idempotency_key": "k-1",
        "occurred_at": "2025-01-10T12:00:00.123456Z",
        "amount_minor": 1250,
        "currency": "USD",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


def _reference(data: Any) -> list[ActivityCommand]:
    return [command(a) for a in ActivityBatchIn.model_validate(data).activities]


def _dumped_hash(raw: dict[str, Any]) -> str:
    body = ActivityIn.model_validate(raw).model_dump(mode="json", exclude_none=True)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _errors(error: ValidationError) -> list[Any]:
    return error.errors(include_context=False)  # (the context holds exception objects)


def _hashed(commands: list[ActivityCommand]) -> list[ActivityCommand]:
    """``commands`` with every fingerprint written (R12: what a repeat is compared by)."""
    return [msgspec.structs.replace(c, request_hash=request_hash_of(c)) for c in commands]


def _same(data: Any) -> list[ActivityCommand]:
    """``batch_commands`` agrees with the models on ``data`` (parsed as the fast path
    parses it), and returns its commands."""
    data = orjson.loads(orjson.dumps(data))
    got = _hashed(batch_commands(data))
    want = _reference(data)
    assert got == want
    for made, expected in zip(got, want, strict=True):
        # Same objects where it matters downstream: the zone object and the enum member.
        assert (made.occurred_at.tzinfo is UTC) == (expected.occurred_at.tzinfo is UTC)
        assert made.occurred_at.utcoffset() == expected.occurred_at.utcoffset()
        assert made.type is expected.type
        assert type(made.amount_minor) is type(expected.amount_minor)
    return got


ACCEPTED: list[dict[str, Any]] = [
    _purchase(),
    _purchase(occurred_at="2025-01-10T12:00:00Z"),
    # Not written back as given: the models' path (same command, same hash).
    _purchase(occurred_at="2025-01-10T12:00:00.000000Z"),
    _purchase(occurred_at="2025-01-10T12:00:00.5Z"),
    _purchase(occurred_at="2025-01-10T12:00:00.123456+00:00"),
    _purchase(occurred_at="2025-01-10T12:00:00-00:00"),
    _purchase(occurred_at="2025-01-10T13:00:00+01:00"),
    _purchase(occurred_at="2025-01-10 12:00:00Z"),
    _purchase(occurred_at="2025-01-10t12:00:00z"),
    _purchase(occurred_at="1900-01-01T00:00:00Z"),
    _purchase(occurred_at="2999-12-31T23:59:59.999999Z"),
    _purchase(occurred_at=1736510400),
    _purchase(amount_minor=1),
    _purchase(amount_minor=10**15),
    _purchase(amount_minor=12.0),
    _purchase(amount_minor="12"),
    _purchase(member_id="x" * 128, idempotency_key="y" * 200),
    _purchase(member_id='quote " and \\ backslash', idempotency_key="ünïcödé ✓ \U0001f600"),
    _purchase(member_id="tab\tnew\nline\x7f", currency="€€€"),
    _purchase(currency=_DROP),
    _purchase(currency=None),
    _purchase(amount_minor=True),  # (pydantic's lax mode: 1)
    _purchase(program_id=7),
    _purchase(program_id=2**62, currency=_DROP),
    _purchase(program_id=True),  # (pydantic's lax mode: 1)
    _purchase(program_id=7.0),
    _purchase(program_id="7"),  # (lax mode: 7)
    _purchase(type="visit", amount_minor=_DROP, currency=_DROP),
    _purchase(type="points_credit", points=5, amount_minor=_DROP, currency=_DROP),
    _purchase(type="return", reverses_key="k-0", amount_minor=5, currency=_DROP),
    _purchase(type="counter", counter="steps", quantity=3, amount_minor=_DROP, currency=_DROP),
]

REFUSED: list[dict[str, Any]] = [
    _purchase(type="purchases"),
    _purchase(type=None),
    _purchase(member_id=""),
    _purchase(member_id="x" * 129),
    _purchase(member_id=5),
    _purchase(member_id="a\x00b"),
    _purchase(idempotency_key=""),
    _purchase(idempotency_key="y" * 201),
    _purchase(idempotency_key="k\x00"),
    _purchase(amount_minor=0),
    _purchase(amount_minor=-1),
    _purchase(amount_minor=10**15 + 1),
    _purchase(amount_minor=1.5),
    _purchase(amount_minor=None),
    _purchase(amount_minor=_DROP),
    _purchase(currency="US"),
    _purchase(currency="USDX"),
    _purchase(currency="US\x00"),
    _purchase(occurred_at="2025-01-10T12:00:00"),  # no offset
    _purchase(occurred_at="1899-12-31T23:59:59.999999Z"),
    _purchase(occurred_at="3000-01-01T00:00:00Z"),
    _purchase(occurred_at="2025-02-30T12:00:00Z"),
    _purchase(occurred_at="2025-01-10T12:00:60Z"),
    _purchase(occurred_at="2025-01-10T12:00:00.123456Z\x00"),
    _purchase(occurred_at="not a time"),
    _purchase(occurred_at=None),
    _purchase(extra="field"),
    _purchase(points=5),
    _purchase(quantity=2),
    _purchase(currency=_DROP, points=5),
    _purchase(program_id=0),
    _purchase(program_id=2**62 + 1),
    _purchase(program_id=-3, currency=_DROP),
    _purchase(program_id=None, currency=_DROP, extra=1),
]


@pytest.mark.parametrize("item", ACCEPTED, ids=range(len(ACCEPTED)))
def test_accepted_items_make_the_models_commands(item: dict[str, Any]) -> None:
    _same({"activities": [item]})
    # Among usual purchases, in place.
    _same({"activities": [_purchase(idempotency_key="a"), item, _purchase(idempotency_key="b")]})


def test_the_usual_purchase_is_hashed_as_the_dumped_body() -> None:
    [made] = _same({"activities": [_purchase()]})
    assert made.request_hash == _dumped_hash(_purchase())
    assert made.occurred_at == datetime(2025, 1, 10, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize("item", REFUSED, ids=range(len(REFUSED)))
def test_refused_items_raise_the_models_errors(item: dict[str, Any]) -> None:
    data = orjson.loads(orjson.dumps({"activities": [_purchase(idempotency_key="a"), item]}))
    with pytest.raises(ValidationError) as want:
        ActivityBatchIn.model_validate(data)
    with pytest.raises(ValidationError) as got:
        batch_commands(data)
    assert _errors(got.value) == _errors(want.value)
    assert got.value.errors()[0]["loc"][:2] == ("activities", 1)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        [_purchase()],
        {},
        {"activities": []},
        {"activities": [_purchase()] * 1001},
        {"activities": _purchase()},
        {"activities": [_purchase()], "more": 1},
        {"activities": [[1, 2]]},
        {"activities": ["purchase"]},
        {"other": [_purchase()]},
    ],
    ids=range(11),
)
def test_refused_bodies_raise_the_models_errors(data: Any) -> None:
    with pytest.raises(ValidationError) as want:
        ActivityBatchIn.model_validate(data)
    with pytest.raises(ValidationError) as got:
        batch_commands(data)
    assert _errors(got.value) == _errors(want.value)


def test_a_full_batch_of_usual_purchases() -> None:
    start = datetime(2025, 1, 10, tzinfo=UTC)
    items = [
        _purchase(
            member_id=f"m{i % 250:04d}",
            idempotency_key=f"k-{i}",
            occurred_at=(start + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
            amount_minor=1 + i,
        )
        for i in range(1000)
    ]
    made = _same({"activities": items})
    assert len({c.request_hash for c in made}) == 1000


_TEXT = st.text(min_size=1, max_size=12)


@st.composite
def _usual_purchases(draw: st.DrawFn) -> dict[str, Any]:
    at = draw(
        st.datetimes(
            min_value=datetime(1899, 12, 31),
            max_value=datetime(3000, 1, 1, 0, 0, 1),
            timezones=st.sampled_from([UTC]),
        )
    )
    style = draw(st.sampled_from(["orjson", "isoformat", "millis"]))
    if style == "orjson":
        stamp = orjson.dumps(at, option=orjson.OPT_UTC_Z).decode()[1:-1]
    elif style == "isoformat":
        stamp = at.isoformat()
    else:
        stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return _purchase(
        member_id=draw(_TEXT),
        idempotency_key=draw(_TEXT),
        occurred_at=stamp,
        amount_minor=draw(st.integers(-1, 10**15 + 1)),
        currency=draw(st.text(min_size=2, max_size=4)),
    )


def _as_the_models(data: Any) -> list[ActivityCommand] | None:
    """``batch_commands(data)`` gives the models' commands (returned) or raises their
    errors (None returned)."""
    refused: ValidationError | None = None
    try:
        want = _reference(data)
    except ValidationError as error:
        refused = error
    if refused is not None:
        with pytest.raises(ValidationError) as got:
            batch_commands(data)
        assert _errors(got.value) == _errors(refused)
        return None
    assert _hashed(batch_commands(data)) == want
    return want


@settings(max_examples=500, deadline=None)
@given(_usual_purchases())
def test_purchases_make_the_models_commands_or_errors(item: dict[str, Any]) -> None:
    """R12: the hash a repeat is compared by does not depend on the path that made it."""
    data = orjson.loads(orjson.dumps({"activities": [item]}))
    want = _as_the_models(data)
    if want is not None:
        assert want[0].request_hash == _dumped_hash(data["activities"][0])


# -- batches of alike purchases, a column at a time -------------------------------------

_SHAPES = [{}, {"currency": _DROP}, {"program_id": 7}, {"program_id": 2**62, "currency": _DROP}]


def _alike(n: int, **changes: Any) -> list[dict[str, Any]]:
    start = datetime(2025, 1, 10, tzinfo=UTC)
    return [
        _purchase(
            member_id=f"m{i % 3}",
            idempotency_key=f"k-{i}",
            occurred_at=orjson.dumps(start + timedelta(seconds=i, microseconds=i % 2))
            .decode()[1:-1]
            .replace("+00:00", "Z"),
            amount_minor=1 + i,
            **changes,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("shape", _SHAPES, ids=range(len(_SHAPES)))
def test_alike_purchases_are_read_a_column_at_a_time(
    shape: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose items are all usual purchases with the same fields never reaches the
    item-by-item check, and makes the models' commands."""
    import tierwise.api.routes.activities as routes

    def refuse(item: Any) -> None:
        raise AssertionError("checked item by item")

    monkeypatch.setattr(routes, "_usual_purchase", refuse)
    for n in (1, 2, 1000):
        made = _same({"activities": _alike(n, **shape)})
        assert len(made) == n


_ITEMS = (
    ACCEPTED
    + REFUSED
    + [
        _purchase(currency="usd", member_id="m\x00"),
        _purchase(occurred_at="2025-01-10T12:00:00.123Z"),
        _purchase(occurred_at="20250110T120000Z"),
        _purchase(occurred_at="2025-01-10T12:00:00.123456+01:00"),
        _purchase(type=["purchase"]),
        _purchase(type={"a": 1}),
        _purchase(member_id=["m"]),
        _purchase(amount_minor=[1]),
        _purchase(currency=["USD"]),
        _purchase(program_id=[7]),
        _purchase(currency=_DROP, program_id=7),
        _purchase(currency=_DROP, program_id=7, extra=1),
        _purchase(currency=_DROP, points=1),
        "purchase",
        [1, 2],
        None,
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    shape=st.sampled_from(_SHAPES),
    n=st.integers(1, 6),
    odd=st.sampled_from(_ITEMS),
    where=st.integers(0, 5),
)
def test_one_odd_item_among_alike_purchases(
    shape: dict[str, Any], n: int, odd: Any, where: int
) -> None:
    """With one item of any kind among alike purchases, the columns give exactly what the
    item-by-item check gives (the same commands, or None when any item is not a usual
    purchase of the first's fields), and the batch the models' commands or errors, read
    from its dictionaries or from its bytes."""
    from tierwise.api.routes.activities import _usual_purchase, _usual_purchases

    items = _alike(n, **shape)
    items.insert(min(where, n), odd)
    data = orjson.loads(orjson.dumps({"activities": items}))
    by_item = [_usual_purchase(item) for item in data["activities"]]
    by_column = _usual_purchases(data["activities"])
    if by_column is not None:
        assert by_column == by_item
    elif None not in by_item:
        # Only a different set of fields sends usual purchases item by item.
        assert len({frozenset(item) for item in data["activities"]}) > 1
    _as_the_models(data)
    # Read from its bytes (msgspec first): the same again.
    _same_from_bytes(orjson.dumps({"activities": items}))


# -- batches read from their bytes (msgspec first) --------------------------------------


def _read_as_before(raw: bytes) -> list[ActivityCommand] | Exception:
    try:
        return batch_commands(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValidationError) as error:
        return error


def _same_from_bytes(raw: bytes) -> None:
    """``batch_commands_of(raw)`` gives what ``batch_commands(orjson.loads(raw))`` gives:
    the same commands, or an error of the same kind (and the same errors, located)."""
    want = _read_as_before(raw)
    if isinstance(want, Exception):
        with pytest.raises(type(want)) as got:
            batch_commands_of(raw)
        if isinstance(want, ValidationError):
            assert isinstance(got.value, ValidationError)
            assert _errors(got.value) == _errors(want)
    else:
        assert batch_commands_of(raw) == want


@pytest.mark.parametrize("shape", _SHAPES, ids=range(len(_SHAPES)))
def test_alike_purchases_are_read_from_the_bytes(
    shape: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body of alike usual purchases is read by msgspec into columns, never parsed into
    dictionaries, and makes the models' commands."""
    import tierwise.api.routes.activities as routes

    for n in (1, 3, 1000):
        raw = orjson.dumps({"activities": _alike(n, **shape)})
        want = _reference(orjson.loads(raw))
        with monkeypatch.context() as patched:
            patched.setattr(routes, "batch_commands", None)  # a call would raise
            got = batch_commands_of(raw)
        assert _hashed(got) == want


_PLAIN = orjson.dumps({"activities": _alike(2)})

RAW_BODIES: list[bytes] = [
    _PLAIN,
    b" \n" + _PLAIN + b"\n ",
    _PLAIN + b"x",
    b"\xef\xbb\xbf" + _PLAIN,
    _PLAIN.replace(b'"m0"', b'"m\\u0000"'),
    _PLAIN.replace(b'"m0"', b'"\\ud800"'),
    _PLAIN.replace(b'"m0"', b'"\\ud83d\\ude00"'),
    _PLAIN.replace(b'"m0"', b'"\\u00e9\\"q\\\\"'),
    _PLAIN.replace(b'"m0"', b'"m\xff"'),
    _PLAIN.replace(b'"m0"', b'"' + "\u00e9".encode() * 128 + b'"'),
    _PLAIN.replace(b'"m0"', b'"' + "\u00e9".encode() * 129 + b'"'),
    _PLAIN.replace(b'"m0"', b'"' + "\U0001f600".encode() * 128 + b'"'),
    _PLAIN.replace(b'"amount_minor":1,', b'"amount_minor":1,"amount_minor":7,'),
    _PLAIN.replace(b'"amount_minor":1,', b'"amount_minor":true,'),
    _PLAIN.replace(b'"amount_minor":1,', b'"amount_minor":1.0,'),
    _PLAIN.replace(b'"amount_minor":1,', b'"amount_minor":1e3,'),
    _PLAIN.replace(b'"amount_minor":1,', b'"amount_minor":99999999999999999999999,'),
    _PLAIN.replace(b'"amount_minor":1,', b'"amount_minor":-0,'),
    _PLAIN.replace(b'"amount_minor":1,', b'"amount_minor":null,'),
    _PLAIN.replace(b'"currency":"USD"', b'"currency":null', 1),
    _PLAIN.replace(b'"type":"purchase"', b'"type":"visit"', 1),
    _PLAIN.replace(b'"type":"purchase"', b'"type":"purchase","type":"purchase"', 1),
    _PLAIN.replace(b'"activities":', b'"activities":[],"activities":'),
    _PLAIN.replace(b"{", b'{"extra":1,', 1),
    _PLAIN.replace(b'T00:00:00Z"', b'T00:00:00+00:00"', 1),
    orjson.dumps({"activities": []}),
    orjson.dumps({"activities": _alike(1001)}),
    orjson.dumps({"activities": [_purchase(), _purchase(currency=_DROP)]}),
    orjson.dumps({"activities": [_purchase(program_id=3), _purchase()]}),
    orjson.dumps([_purchase()]),
    b"[" * 10_000 + b"]" * 10_000,
    b"",
    b"null",
]


@pytest.mark.parametrize("raw", RAW_BODIES, ids=range(len(RAW_BODIES)))
def test_bodies_read_from_bytes_as_before(raw: bytes) -> None:
    _same_from_bytes(raw)


@settings(max_examples=300, deadline=None)
@given(
    shape=st.sampled_from(_SHAPES),
    n=st.integers(1, 4),
    at=st.integers(0, len(orjson.dumps({"activities": _alike(4)})) - 1),
    data=st.binary(min_size=1, max_size=3),
    cut=st.integers(0, 3),
)
def test_a_mangled_body_reads_as_before(
    shape: dict[str, Any], n: int, at: int, data: bytes, cut: int
) -> None:
    """Any few bytes written over a body of alike purchases: the same commands or the
    same kind of error as reading it by ``orjson`` and ``batch_commands``."""
    raw = orjson.dumps({"activities": _alike(n, **shape)})
    at = min(at, len(raw))
    _same_from_bytes(raw[:at] + data + raw[at + cut :])


# -- the answer ------------------------------------------------------------------------


def _result(n: int, **changes: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": f"01a202d0-bdeb-7495-85a9-{n:012d}",
        "type": "purchase",
        "member_id": "m0000",
        "program_id": 1,
        "idempotency_key": f"k-{n}",
        "occurred_at": "2026-11-22T10:33:04.367769Z",
        "effects": {
            BuiltinMetric.ORDERS: 1,
            BuiltinMetric.POINTS_BALANCE: 179,
            BuiltinMetric.POINTS_EARNED: 179,
            BuiltinMetric.SPEND: 11965,
        },
        "points_earned": 179,
        "earn": [{"amount_minor": 11965, "rate": "1.5", "points": 179}],
        "reverses": None,
        "tier_changes": [{"ladder": "main", "from": None, "to": "gold", "kind": "upgrade"}],
    }
    result.update(changes)
    return result


def _model_answer(outcomes: list[Outcome]) -> bytes:
    duplicates = sum(1 for o in outcomes if o.replayed)
    return (
        BatchOut(
            accepted=len(outcomes) - duplicates,
            duplicates=duplicates,
            results=[activity_out(o) for o in outcomes],
        )
        .model_dump_json()
        .encode()
    )


_USUAL: Usual = (
    "01a2034d-4b1e-7c3a-9f00-1d37d9e73aa7",
    "m0001",
    3,
    "k-9",
    datetime(2026, 11, 22, 10, 33, 4, 367769, tzinfo=UTC),
    11965,
    179,
    "1.5",
)


def _reordered(result: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(result.items()))  # as a JSONB document comes back


@pytest.mark.parametrize(
    "outcomes",
    [
        [Outcome(_result(1), False)],
        [Outcome(_result(1), False), Outcome(_result(2), True), Outcome(_result(1), True)],
        [Outcome(_result(1, earn=[]), False), Outcome(_result(2, tier_changes=[]), True)],
        [Outcome(_result(1), False), Outcome(_reordered(_result(2)), True)],
        [
            Outcome(_result(1), False),
            Outcome(_result(2, earn=[{"points": 1, "rate": "1", "amount_minor": 1}]), True),
        ],
        [
            Outcome(_result(1), False),
            Outcome(_result(2, earn=[{"amount_minor": 1, "rate": "1", "points": 1}] * 2), True),
        ],
        [Outcome(_result(1, reverses="01a202d0", effects={"spend": -5}), False)],
        [Outcome(None, False, _USUAL), Outcome(None, True, _USUAL), Outcome(_result(1), False)],
        [Outcome(None, False, (*_USUAL[:6], 0, "0"))],
        [Outcome(_result(1), False), Outcome(None, True, _USUAL)],
        [Outcome(None, False, _USUAL), Outcome(_reordered(_result(2)), True)],
    ],
    ids=range(11),
)
def test_the_batch_answer_is_the_models_answer(outcomes: list[Outcome]) -> None:
    assert batch_answer(outcomes) == _model_answer(outcomes)


def test_usual_purchases_are_not_validated_by_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick purchases are taken for the usual bodies (the point of them); others
    still go through ``ActivityIn``."""
    import tierwise.api.routes.activities as routes

    class Refuse:
        @staticmethod
        def model_validate(data: Any) -> Any:
            raise AssertionError("validated by the model")

    usual = orjson.loads(
        orjson.dumps(
            {
                "activities": [
                    _purchase(),
                    _purchase(amount_minor=5),
                    _purchase(program_id=7),
                    _purchase(currency=_DROP),
                    _purchase(currency=_DROP, program_id=2**62),
                ]
            }
        )
    )
    want = _reference(usual)
    monkeypatch.setattr(routes, "ActivityIn", Refuse)
    assert _hashed(batch_commands(usual)) == want
    for other in (
        _purchase(currency=None),
        _purchase(program_id=True),
        _purchase(type="visit", amount_minor=_DROP, currency=_DROP),
    ):
        with pytest.raises(AssertionError, match="validated by the model"):
            batch_commands({"activities": [other]})


def test_instants_out_of_range_are_refused_whatever_the_range() -> None:
    """The quick purchases' pattern names the years of R27; an instant just outside
    ``EARLIEST``/``LATEST`` is refused (as the model refuses it), even written as pydantic
    writes instants back."""
    for at in (EARLIEST - timedelta(microseconds=1), LATEST, EARLIEST - timedelta(days=400)):
        stamp = orjson.dumps(at, option=orjson.OPT_UTC_Z).decode()[1:-1]
        data = {"activities": [_purchase(occurred_at=stamp)]}
        with pytest.raises(ValidationError) as want:
            ActivityBatchIn.model_validate(data)
        with pytest.raises(ValidationError) as got:
            batch_commands(data)
        assert _errors(got.value) == _errors(want.value)
    for at in (EARLIEST, LATEST - timedelta(microseconds=1)):
        stamp = orjson.dumps(at, option=orjson.OPT_UTC_Z).decode()[1:-1]
        _same({"activities": [_purchase(occurred_at=stamp)]})


_ANY_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(
    member=_ANY_TEXT,
    key=_ANY_TEXT,
    program_id=st.integers(1, 2**53),
    at=st.datetimes(datetime(1900, 1, 1), datetime(2999, 12, 31), timezones=st.just(UTC)),
    other_offset=st.one_of(st.none(), st.integers(-14 * 60, 14 * 60)),
    amount=st.integers(1, 10**15),
    points=st.integers(0, 10**15),
    rate=st.sampled_from(["0", "1", "0.01", "1.5", "0.333333", "12.25"]),
    replayed=st.booleans(),
)
def test_a_usual_answer_is_written_as_orjson_writes_its_document(
    member: str,
    key: str,
    program_id: int,
    at: datetime,
    other_offset: int | None,
    amount: int,
    points: int,
    rate: str,
    replayed: bool,
) -> None:
    """``usual_json`` writes the text ``orjson.dumps`` writes for ``purchase_result``'s
    document (R12: the same answer whichever way it is written), for any member id and
    key (quotes, backslashes, control characters, any Unicode), at UTC or another
    offset, with and without points."""
    if other_offset is not None:
        at = at.astimezone(timezone(timedelta(minutes=other_offset)))
    usual: Usual = (
        "01a2034d-4b1e-7c3a-9f00-1d37d9e73aa7",
        member,
        program_id,
        key,
        at,
        amount,
        points,
        rate,
    )
    built = Outcome(purchase_result(*usual), replayed)
    lazy = Outcome(None, replayed, usual)
    expected = orjson.dumps(_out(built), option=orjson.OPT_NON_STR_KEYS)
    assert usual_json(usual, replayed).encode() == expected
    assert answer(lazy) == answer(built)
    assert lazy.result == built.result
    assert batch_answer([lazy, lazy]) == batch_answer([built, built])
    # A batch's answers write their texts together (``_usual_texts``): each in its place.
    other: Usual = (usual[0], key, program_id, member, at + timedelta(days=1), 1, 0, rate)
    other_built = Outcome(purchase_result(*other), not replayed)
    other_lazy = Outcome(None, not replayed, other)
    assert batch_answer([lazy, other_lazy, lazy]) == batch_answer([built, other_built, built])
