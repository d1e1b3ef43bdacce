"""Bad input: each request is refused with a clear 4xx, a stable ``error.code``, and
nothing is written (checked by reading everything back). No input ever yields a 500.

Rules: R1 (ladder validation), R8 (money in minor units), R12 (activity ledger),
R13 (returns), R27 (aware instants); issue 2 §8 (one error shape, validation errors name
the field, a body size limit, no 500).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.helpers import (
    activity,
    activity_body,
    criterion,
    error_of,
    figures,
    ladder,
    level,
    meter,
    only_ladder,
    program,
)
from tests.conftest import Api

LIMIT = 256 * 1024  # the test settings' max_body_bytes
LATER = "2099-01-01T00:00:00Z"  # reads "as of" this instant see every stored activity
AT = "2025-02-01T10:00:00Z"


@dataclass
class World:
    """A tenant with one program (USD), a spend ladder, a meter ladder and one member
    ("known") who bought 2000 and was credited 100 points."""

    api: Api
    program_id: int
    bought_id: str


def spend_ladder(**extra: Any) -> dict[str, Any]:
    return {
        "key": "status",
        "name": "Status",
        "levels": [
            level("silver", 1, criterion("spend", 1000)),
            level("gold", 2, criterion("spend", 5000)),
        ],
        **extra,
    }


@pytest.fixture
def world(api: Api) -> World:
    p = program(api)
    ladder(api, p["id"], spend_ladder())
    ladder(api, p["id"], meter())
    bought = activity(api, "known", "purchase", amount_minor=2000, key="known-buy", at=AT)
    activity(api, "known", "points_credit", points=100, key="known-points", at=AT)
    return World(api=api, program_id=p["id"], bought_id=bought["id"])


def snapshot(w: World) -> dict[str, Any]:
    """Everything a bad request could have changed, read back through the API."""
    api = w.api
    pid = w.program_id
    reads = {
        "programs": api.get("/v1/programs"),
        "program": api.get(f"/v1/programs/{pid}"),
        "ladders": api.get(f"/v1/programs/{pid}/ladders"),
        "status": api.get("/v1/members/known/status", params={"as_of": LATER}),
        "history": api.get("/v1/members/known/history"),
        "newbie": api.get("/v1/members/newbie/status"),
    }
    found: dict[str, Any] = {name: (r.status_code, r.json()) for name, r in reads.items()}
    assert found["newbie"][0] == 404, "the member 'newbie' must not exist"
    found["known"] = figures(api, "known", as_of=LATER)
    return found


@pytest.fixture
def unchanged(world: World) -> Iterator[World]:
    """Yields the world, then checks that nothing in it changed."""
    before = snapshot(world)
    assert before["known"] == {
        "spend": 2000,
        "orders": 1,
        "points_earned": 120,
        "points_balance": 120,
    }
    yield world
    assert snapshot(world) == before


# -- the table ---------------------------------------------------------------------------

Send = Callable[[World], Any]


@dataclass(frozen=True)
class Case:
    send: Send
    status: int
    code: str
    field: str | None = None
    says: tuple[str, ...] = ()
    """Words the human message must contain."""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Expected ``error.details`` entries."""


def post_activity(**fields: Any) -> Send:
    body = activity_body("newbie", "purchase", **{"at": AT, **fields})
    return lambda w: w.api.post("/v1/activities", json=body)


def post_known(type_: str, **fields: Any) -> Send:
    body = activity_body("known", type_, **{"at": AT, **fields})
    return lambda w: w.api.post("/v1/activities", json=body)


def post_raw(path: str, content: bytes, content_type: str | None = "application/json") -> Send:
    headers = {"Content-Type": content_type} if content_type else {}
    return lambda w: w.api.post(path.format(pid=w.program_id), content=content, headers=headers)


def post_ladder(body: dict[str, Any]) -> Send:
    return lambda w: w.api.post(f"/v1/programs/{w.program_id}/ladders", json=body)


def put_ladder(body: dict[str, Any]) -> Send:
    return lambda w: w.api.put(f"/v1/programs/{w.program_id}/ladders/status", json=body)


def post_program(**fields: Any) -> Send:
    return lambda w: w.api.post("/v1/programs", json={"name": "Second", **fields})


def patch_program(**fields: Any) -> Send:
    return lambda w: w.api.patch(f"/v1/programs/{w.program_id}", json=fields)


def get(path: str, **params: Any) -> Send:
    return lambda w: w.api.get(path.format(pid=w.program_id), params=params)


def post_batch(activities: list[dict[str, Any]]) -> Send:
    return lambda w: w.api.post("/v1/activities/batch", json={"activities": activities})


def return_of(**fields: Any) -> Send:
    def send(w: World) -> Any:
        body = activity_body("known", "return", at=AT, **fields)
        if body.get("reverses") == "<bought>":
            body["reverses"] = w.bought_id
        return w.api.post("/v1/activities", json=body)

    return send


def decreasing() -> dict[str, Any]:
    return {
        "key": "tiers",
        "name": "Tiers",
        "levels": [
            level("silver", 1, criterion("spend", 5000)),
            level("gold", 2, criterion("spend", 1000)),
        ],
    }


def valid_batch(n: int, member: str = "newbie") -> list[dict[str, Any]]:
    return [activity_body(member, "visit", at=AT) for _ in range(n)]


def with_item(items: list[dict[str, Any]], index: int, item: dict[str, Any]) -> list[Any]:
    items = list(items)
    items[index] = item
    return items


CASES: dict[str, Case] = {
    # malformed / wrong types / unknown fields
    "malformed JSON activity": Case(
        post_raw("/v1/activities", b'{"type": "purchase",'), 400, "malformed_json"
    ),
    "malformed JSON ladder": Case(
        post_raw("/v1/programs/{pid}/ladders", b"{'key': 'x'}"), 400, "malformed_json"
    ),
    "malformed UTF-8": Case(
        post_raw("/v1/programs", b'{"name": "\xff\xfe"}'), 400, "malformed_json"
    ),
    "amount is a string of words": Case(
        post_activity(amount_minor="lots"), 422, "validation_error", "amount_minor"
    ),
    "amount is a fraction": Case(
        post_activity(amount_minor=19.99), 422, "validation_error", "amount_minor"
    ),
    "member id is a number": Case(
        lambda w: w.api.post(
            "/v1/activities", json={**activity_body("x", "visit", at=AT), "member_id": 42}
        ),
        422,
        "validation_error",
        "member_id",
    ),
    "unknown activity type": Case(
        post_activity(type="refund", amount_minor=5), 422, "validation_error", "type"
    ),
    "ladder levels is not a list": Case(
        post_ladder({"key": "tiers", "name": "T", "levels": "gold"}),
        422,
        "validation_error",
        "levels",
    ),
    "program name is a list": Case(
        lambda w: w.api.post("/v1/programs", json={"name": ["a"]}),
        422,
        "validation_error",
        "name",
    ),
    "earn rate is not a number": Case(
        post_program(earn_rate="fast"), 422, "validation_error", "earn_rate"
    ),
    "top-level JSON array": Case(
        post_raw("/v1/activities", b"[1, 2]"), 422, "validation_error", "body"
    ),
    "unknown field on an activity": Case(
        post_activity(amount_minor=100, bonus=5), 422, "validation_error", "bonus"
    ),
    "unknown field on a program": Case(
        post_program(colour="red"), 422, "validation_error", "colour"
    ),
    "unknown field on a level": Case(
        post_ladder(
            {
                "key": "tiers",
                "name": "T",
                "levels": [{**level("gold", 1, criterion("spend", 1)), "perks": []}],
            }
        ),
        422,
        "validation_error",
        "levels.0.perks",
    ),
    "a field that does not fit the activity type": Case(
        post_activity(amount_minor=100, points=5), 422, "validation_error", "points"
    ),
    # unknown ids and keys
    "unknown program id on an activity": Case(
        post_activity(amount_minor=100, program_id=987654321), 404, "program_not_found"
    ),
    "unknown program id on a read": Case(get("/v1/programs/987654321"), 404, "program_not_found"),
    "unknown program id on a ladder write": Case(
        lambda w: w.api.post("/v1/programs/987654321/ladders", json=spend_ladder(key="x")),
        404,
        "program_not_found",
    ),
    "unknown program id on a status read": Case(
        get("/v1/members/known/status", program_id=987654321), 404, "program_not_found"
    ),
    "unknown program id on a patch": Case(
        lambda w: w.api.patch("/v1/programs/987654321", json={"name": "Renamed"}),
        404,
        "program_not_found",
    ),
    "unknown ladder key on a read": Case(
        get("/v1/programs/{pid}/ladders/nope"), 404, "ladder_not_found"
    ),
    "unknown ladder key on a replace": Case(
        lambda w: w.api.put(
            f"/v1/programs/{w.program_id}/ladders/nope", json=spend_ladder(key="nope")
        ),
        404,
        "ladder_not_found",
    ),
    "unknown ladder key on a status read": Case(
        get("/v1/members/known/status", ladder="nope"), 404, "ladder_not_found"
    ),
    "unknown ladder key on a history read": Case(
        get("/v1/members/known/history", ladder="nope"), 404, "ladder_not_found"
    ),
    # R1: ladder validation
    "R1 thresholds decrease with rank (create)": Case(
        post_ladder(decreasing()),
        422,
        "ladder_invalid",
        says=("'silver'", "'gold'", "must not decrease"),
    ),
    "R1 thresholds decrease with rank (replace)": Case(
        put_ladder({**decreasing(), "key": "status"}),
        422,
        "ladder_invalid",
        says=("'silver'", "'gold'", "must not decrease"),
    ),
    "duplicate level keys": Case(
        post_ladder(
            {
                "key": "tiers",
                "name": "T",
                "levels": [
                    level("gold", 1, criterion("spend", 1)),
                    level("gold", 2, criterion("spend", 2)),
                ],
            }
        ),
        422,
        "ladder_invalid",
        says=("'gold'", "twice"),
    ),
    "duplicate level ranks": Case(
        post_ladder(
            {
                "key": "tiers",
                "name": "T",
                "levels": [
                    level("silver", 1, criterion("spend", 1)),
                    level("gold", 1, criterion("spend", 2)),
                ],
            }
        ),
        422,
        "ladder_invalid",
        says=("'silver'", "'gold'", "rank 1"),
    ),
    "a ladder key that is already used": Case(post_ladder(spend_ladder()), 409, "ladder_exists"),
    "a ladder key that cannot change": Case(
        put_ladder(spend_ladder(key="other")), 422, "ladder_key_immutable", "key"
    ),
    "an unknown metric": Case(
        post_ladder(
            {"key": "tiers", "name": "T", "levels": [level("a", 1, criterion("karma", 1))]}
        ),
        422,
        "validation_error",
        "levels.0.attain.criteria.0.metric",
    ),
    # purchases
    "negative purchase amount": Case(
        post_activity(amount_minor=-100), 422, "validation_error", "amount_minor"
    ),
    "zero purchase amount": Case(
        post_activity(amount_minor=0), 422, "validation_error", "amount_minor"
    ),
    "purchase with missing amount": Case(post_activity(), 422, "validation_error", "amount_minor"),
    "currency mismatch": Case(
        post_activity(amount_minor=100, currency="EUR"),
        422,
        "currency_mismatch",
        "currency",
        says=("USD", "EUR"),
    ),
    "negative points credit": Case(
        post_known("points_credit", points=-5), 422, "validation_error", "points"
    ),
    # R13: returns
    "return of an unknown activity id": Case(
        return_of(reverses="00000000-0000-0000-0000-000000000000"),
        404,
        "activity_not_found",
        "reverses",
    ),
    "return of an unknown idempotency key": Case(
        return_of(reverses_key="never-sent"), 404, "activity_not_found"
    ),
    "return more than was bought": Case(
        return_of(reverses="<bought>", amount_minor=2001),
        422,
        "return_exceeds_purchase",
        "amount_minor",
        says=("2000",),
    ),
    "return naming both the id and the key": Case(
        return_of(reverses="<bought>", reverses_key="known-buy"),
        422,
        "validation_error",
        "reverses",
    ),
    "return of another member's purchase": Case(
        lambda w: w.api.post(
            "/v1/activities",
            json=activity_body("newbie", "return", at=AT, reverses=w.bought_id),
        ),
        422,
        "return_member_mismatch",
        "reverses",
    ),
    # redemption
    "redemption over the balance": Case(
        post_known("points_redemption", points=121),
        422,
        "insufficient_points",
        "points",
        says=("120",),
    ),
    # R27: instants
    "naive occurred_at": Case(
        post_activity(amount_minor=100, at="2025-02-01T10:00:00"),
        422,
        "validation_error",
        "occurred_at",
    ),
    "occurred_at that is not a date": Case(
        post_activity(amount_minor=100, at="yesterday"), 422, "validation_error", "occurred_at"
    ),
    "naive as_of": Case(
        get("/v1/members/known/status", as_of="2025-02-01T10:00:00"),
        422,
        "naive_datetime",
        "as_of",
    ),
    "naive enrolment date": Case(
        lambda w: w.api.put("/v1/members/newbie", json={"enrolled_at": "2025-01-01T00:00:00"}),
        422,
        "validation_error",
        "enrolled_at",
    ),
    # body size and batches
    "a body over the limit": Case(
        post_raw("/v1/activities", b'{"pad": "' + b"x" * LIMIT + b'"}'), 413, "body_too_large"
    ),
    "a batch of 1001 activities": Case(
        post_batch(valid_batch(1001)), 422, "validation_error", "activities"
    ),
    "an empty batch": Case(post_batch([]), 422, "validation_error", "activities"),
    "a batch with one item that breaks the schema": Case(
        post_batch(with_item(valid_batch(20), 7, activity_body("newbie", "purchase", at=AT))),
        422,
        "validation_error",
        "activities.7.amount_minor",
    ),
    "a batch with one item that breaks a business rule": Case(
        post_batch(
            with_item(
                valid_batch(20, member="known"),
                13,
                activity_body("known", "points_redemption", at=AT, points=999_999),
            )
        ),
        422,
        "insufficient_points",
        "points",
        extra={"index": 13},
    ),
    "a batch with one item for an unknown program": Case(
        post_batch(
            with_item(
                valid_batch(5),
                3,
                activity_body("newbie", "visit", at=AT, program_id=987654321),
            )
        ),
        404,
        "program_not_found",
        extra={"index": 3},
    ),
    "a batch that reuses a stored key with another body": Case(
        post_batch(
            [
                *valid_batch(3),
                activity_body("known", "purchase", at=AT, key="known-buy", amount_minor=1),
            ]
        ),
        409,
        "idempotency_key_reused",
        extra={"index": 3},
    ),
    # program settings
    "unknown time zone (create)": Case(
        post_program(time_zone="Mars/Olympus_Mons"), 422, "invalid_time_zone", "time_zone"
    ),
    "unknown time zone (patch)": Case(
        patch_program(time_zone="Europe/Atlantis"), 422, "invalid_time_zone", "time_zone"
    ),
    "time zone written as a path": Case(
        post_program(time_zone="../../etc/passwd"), 422, "invalid_time_zone", "time_zone"
    ),
    "lower-case currency code": Case(
        post_program(currency="usd"), 422, "invalid_currency", "currency"
    ),
    "currency code with a digit": Case(
        post_program(currency="US1"), 422, "invalid_currency", "currency"
    ),
    "currency code of four letters": Case(
        post_program(currency="EURO"), 422, "validation_error", "currency"
    ),
    "null program name on a patch": Case(patch_program(name=None), 422, "invalid_input", "name"),
    "negative earn rate": Case(post_program(earn_rate="-1"), 422, "validation_error", "earn_rate"),
    # member ids
    "member id over 128 characters (activity)": Case(
        lambda w: w.api.post("/v1/activities", json=activity_body("m" * 129, "visit", at=AT)),
        422,
        "validation_error",
        "member_id",
    ),
    "member id over 128 characters (enrolment)": Case(
        lambda w: w.api.put(f"/v1/members/{'m' * 129}", json={"enrolled_at": AT}),
        422,
        "validation_error",
        "member_id",
    ),
    "member id over 128 characters (status)": Case(
        get(f"/v1/members/{'m' * 129}/status"), 422, "validation_error", "member_id"
    ),
    "empty member id": Case(
        lambda w: w.api.post("/v1/activities", json=activity_body("", "visit", at=AT)),
        422,
        "validation_error",
        "member_id",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_bad_input_is_refused_with_a_stable_code_and_nothing_is_written(
    unchanged: World, case: Case
) -> None:
    """R1, R8, R12, R13, R27: a clear 4xx with a stable code; the world is unchanged."""
    _check(case.send(unchanged), case)


def _check(response: Any, case: Case) -> None:
    error = error_of(response, case.status, case.code)
    if case.field is not None:
        assert error.get("field") == case.field, error
    for word in case.says:
        assert word in error["message"], error
    for name, value in case.extra.items():
        assert error.get("details", {}).get(name) == value, error


def test_validation_errors_list_every_problem_with_its_field(api: Api) -> None:
    """Issue 2 §8: validation errors name the field; every problem is listed."""
    body = {"type": "purchase", "member_id": "", "occurred_at": "then", "amount_minor": -1}
    error = error_of(api.post("/v1/activities", json=body), 422, "validation_error")
    fields = {e["field"] for e in error["details"]["errors"]}
    assert fields == {"member_id", "idempotency_key", "occurred_at", "amount_minor"}
    assert error["field"] in fields
    assert error["message"].startswith(f"{error['field']}: ")


def test_a_refused_batch_leaves_its_idempotency_keys_unused(world: World) -> None:
    """R12: a batch refused for one bad item stores none of the others, so every key in it
    can be used afterwards as if never sent."""
    items = valid_batch(10)
    bad = with_item(items, 9, activity_body("newbie", "points_redemption", at=AT, points=1))
    error_of(
        world.api.post("/v1/activities/batch", json={"activities": bad}), 422, "insufficient_points"
    )
    response = world.api.post("/v1/activities/batch", json={"activities": items[:9]})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 9
    assert response.json()["duplicates"] == 0


def test_a_streamed_body_over_the_limit_is_refused_as_too_large(unchanged: World) -> None:
    """Issue 2 §8: the limit holds also when no Content-Length is declared (chunked)."""
    payload = b'{"name": "' + b"x" * (LIMIT + 1024) + b'"}'

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 16 * 1024):
            yield payload[start : start + 16 * 1024]

    response = unchanged.api.post(
        "/v1/programs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    error_of(response, 413, "body_too_large")


def test_a_body_just_under_the_limit_is_read(api: Api) -> None:
    """The limit refuses only what is over it: a 200 KiB batch of 1000 items is accepted."""
    program(api)
    items = [activity_body(f"m{i % 7}", "visit", at=AT) for i in range(1000)]
    response = api.post("/v1/activities/batch", json={"activities": items})
    assert len(response.request.content) < LIMIT
    assert response.status_code == 200, response.text


# -- no input ever yields a 500 ----------------------------------------------------------

V = "validation_error"

NASTY: dict[str, Case] = {
    "empty body": Case(post_raw("/v1/activities", b""), 422, V, "body"),
    "empty body without content type": Case(
        post_raw("/v1/programs", b"", content_type=None), 422, V, "body"
    ),
    "JSON null": Case(post_raw("/v1/programs", b"null"), 422, V, "body"),
    "a JSON string": Case(post_raw("/v1/programs", b'"program"'), 422, V, "body"),
    "wrong content type": Case(
        post_raw("/v1/programs", b'{"name": "x"}', "text/plain"),
        415,
        "unsupported_media_type",
        says=("application/json", "text/plain"),
    ),
    "form content type": Case(
        post_raw(
            "/v1/activities", b"type=purchase&amount_minor=5", "application/x-www-form-urlencoded"
        ),
        415,
        "unsupported_media_type",
    ),
    "deeply nested JSON": Case(
        post_raw("/v1/activities", b"[" * 50_000 + b"]" * 50_000), 400, "malformed_json"
    ),
    "NaN amount": Case(
        post_raw(
            "/v1/activities",
            b'{"type": "purchase", "member_id": "n", "idempotency_key": "n",'
            b' "occurred_at": "2025-01-01T00:00:00Z", "amount_minor": NaN}',
        ),
        422,
        V,
        "amount_minor",
    ),
    "huge integer amount": Case(post_activity(amount_minor=10**400), 422, V, "amount_minor"),
    "huge integer as a string": Case(
        post_activity(amount_minor="9" * 5000), 422, V, "amount_minor"
    ),
    "huge program id in an activity": Case(
        post_activity(amount_minor=100, program_id=10**30), 422, V, "program_id"
    ),
    "huge program id in the path": Case(get(f"/v1/programs/{10**30}"), 422, V, "program_id"),
    "huge program id in a query": Case(
        get("/v1/members/known/status", program_id=10**30), 422, V, "program_id"
    ),
    "huge points": Case(post_known("points_credit", points=2**64), 422, V, "points"),
    "infinite earn rate": Case(post_program(earn_rate="Infinity"), 422, V, "earn_rate"),
    "earn rate in exponent notation": Case(post_program(earn_rate="1e999999"), 422, V, "earn_rate"),
    "lone surrogate in a member id": Case(
        post_raw(
            "/v1/activities",
            b'{"type": "visit", "member_id": "\\ud800", "idempotency_key": "s",'
            b' "occurred_at": "2025-01-01T00:00:00Z"}',
        ),
        422,
        V,
        "member_id",
    ),
    "NUL in a member id": Case(
        post_activity(amount_minor=100, member_id="a\u0000b"), 422, V, "member_id"
    ),
    "NUL in an idempotency key": Case(
        post_activity(amount_minor=100, idempotency_key="k\u0000"), 422, V, "idempotency_key"
    ),
    "NUL in a program name": Case(post_program(name="Main\u0000"), 422, V, "name"),
    "NUL in a member id path": Case(get("/v1/members/a%00b/status"), 422, V, "member_id"),
    "NUL in a ladder key path": Case(get("/v1/programs/{pid}/ladders/a%00b"), 422, V, "key"),
    "NUL in a ladder query": Case(
        get("/v1/members/known/status", ladder="a\u0000"), 422, V, "ladder"
    ),
    "NUL in a return key": Case(return_of(reverses_key="known-buy\u0000"), 422, V, "reverses_key"),
    "NUL in a member id path (assignment)": Case(
        lambda w: w.api.post(
            "/v1/members/a%00b/assignments", json={"level": "gold", "reason": "vip"}
        ),
        422,
        V,
        "member_id",
    ),
    "NUL in a member id path (level at)": Case(
        get("/v1/members/a%00b/level-at", at="2025-01-01T00:00:00Z"), 422, V, "member_id"
    ),
    "assignment expiring at the end of time": Case(
        lambda w: w.api.post(
            "/v1/members/known/assignments",
            json={"level": "gold", "reason": "vip", "expires_at": "9999-12-31T23:59:59-12:00"},
        ),
        422,
        V,
        "expires_at",
    ),
    "a very long ladder key path": Case(
        get("/v1/programs/{pid}/ladders/" + "k" * 5000), 422, V, "key"
    ),
    "a very long reverses id": Case(return_of(reverses="r" * 5000), 422, V, "reverses"),
    "year 9999 with a negative offset": Case(
        post_activity(amount_minor=100, at="9999-12-31T23:59:59-12:00"), 422, V, "occurred_at"
    ),
    "year 1 with a positive offset": Case(
        post_activity(amount_minor=100, at="0001-01-01T00:00:00+14:00"), 422, V, "occurred_at"
    ),
    "as_of at the start of time": Case(
        get("/v1/members/known/status", as_of="0001-01-01T00:00:00Z"),
        422,
        "instant_out_of_range",
        "as_of",
    ),
    "as_of at the end of time": Case(
        get("/v1/members/known/status", as_of="9999-12-31T23:59:59Z"),
        422,
        "instant_out_of_range",
        "as_of",
    ),
    "until at the start of time": Case(
        get("/v1/members/known/history", until="0001-01-01T00:00:00Z"),
        422,
        "instant_out_of_range",
        "until",
    ),
    "enrolment at the end of time": Case(
        lambda w: w.api.put(
            "/v1/members/newbie", json={"enrolled_at": "9999-12-31T23:59:59-12:00"}
        ),
        422,
        V,
        "enrolled_at",
    ),
    "a ladder key in another script": Case(
        lambda w: w.api.post(
            f"/v1/programs/{w.program_id}/ladders",
            json={"key": "ü", "name": "Ünïcödé 🚀", "levels": [level("gold", 1)]},
        ),
        422,
        V,
        "key",
    ),
    "Basic credentials that are not base64": Case(
        lambda w: w.api.client.get("/v1/programs", headers={"Authorization": "Basic ***"}),
        401,
        "unauthenticated",
    ),
    "Basic credentials that are not UTF-8": Case(
        lambda w: w.api.client.get("/v1/programs", headers={"Authorization": "Basic //79Og=="}),
        401,
        "unauthenticated",
    ),
    "an unknown route": Case(get("/v1/nowhere"), 404, "not_found"),
    "an unsupported method": Case(
        lambda w: w.api.delete(f"/v1/programs/{w.program_id}"), 405, "method_not_allowed"
    ),
}


@pytest.mark.parametrize("case", NASTY.values(), ids=list(NASTY))
def test_nasty_input_is_refused_with_a_4xx_never_a_500(unchanged: World, case: Case) -> None:
    """Issue 2 §8: no input of any kind yields a 500; nasty input gets a 4xx in the one
    error shape (naming the field where there is one) and nothing is written."""
    response = case.send(unchanged)
    assert response.status_code < 500, response.text
    _check(response, case)


def test_a_threshold_beyond_any_real_figure_is_stored_and_measured_exactly(api: Api) -> None:
    """R6, R8: a huge integer threshold is no reason to fail: progress stays exact."""
    p = program(api)
    huge = 10**400
    ladder(
        api,
        p["id"],
        {"key": "status", "name": "S", "levels": [level("a", 1, criterion("spend", huge))]},
    )
    activity(api, "m", "purchase", amount_minor=250)
    progress = only_ladder(api, "m")["progress"]
    assert progress["required"] == huge
    assert progress["remaining"] == huge - 250
    assert progress["percentage"] == 0.0


def test_unicode_member_ids_are_ids_like_any_other(api: Api) -> None:
    """Unicode is not bad input: a member id in any script is stored and read back."""
    program(api)
    member = "Zoë-日本-🚀"
    activity(api, member, points=5)
    response = api.get(f"/v1/members/{member}/status")
    assert response.status_code == 200, response.text
    assert response.json()["member_id"] == member


def test_a_purchase_whose_points_overflow_the_store_is_refused_not_a_500(api: Api) -> None:
    """R8, issue 2 §8: the largest purchase the API accepts, in the richest program and
    level it accepts, is refused with a 4xx, never a 500."""
    p = program(api, earn_rate="100000")
    top = level("vip", 1, is_floor=True, earn_multiplier="1000")
    ladder(api, p["id"], {"key": "status", "name": "S", "levels": [top]})
    response = api.post(
        "/v1/activities", json=activity_body("whale", "purchase", amount_minor=10**15)
    )
    error = error_of(response, 422, "points_overflow")
    assert error["field"] == "amount_minor"
    assert api.get("/v1/members/whale/status").status_code == 404
