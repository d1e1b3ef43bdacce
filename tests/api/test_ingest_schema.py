"""The activity body's cheaper validation accepts, refuses and hashes exactly as before.

``ActivityIn`` checks NUL characters once per body (instead of once per field) and writes
its request hash directly; a repeat of a stored key is compared by that hash (R12), so it
must equal the hash of the body as ``json.dumps(model_dump(mode="json"), sort_keys=True)``
wrote it, for every body. Instants at offset zero are carried in ``datetime.UTC`` (R27:
the same instant).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.helpers import activity_body
from tests.conftest import Api
from tierwise.api.schemas import ActivityIn


def _dumped_hash(body: ActivityIn) -> str:
    dumped = body.model_dump(mode="json", exclude_none=True)
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()


_TEXT = st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s)
_INSTANTS = st.sampled_from(
    [
        "2025-01-10T12:00:00Z",
        "2025-01-10T12:00:00.000001Z",
        "2025-01-10T12:00:00.5+00:00",
        "2025-01-10T12:00:00-00:00",
        "2025-01-10T12:00:00+01:00",
        "2025-01-10T12:00:00.123456-05:30",
        "1900-01-01T00:00:00Z",
        "2999-12-31T23:59:59.999999Z",
    ]
)


@st.composite
def _bodies(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["purchase", "points_credit", "visit", "counter", "return"]))
    body: dict[str, Any] = {
        "type": kind,
        "member_id": draw(_TEXT),
        "idempotency_key": draw(_TEXT),
        "occurred_at": draw(_INSTANTS),
    }
    if draw(st.booleans()):
        body["program_id"] = draw(st.integers(1, 2**62))
    if kind == "purchase":
        body["amount_minor"] = draw(st.integers(1, 10**15))
        if draw(st.booleans()):
            body["currency"] = draw(
                st.text(min_size=3, max_size=3).filter(lambda s: "\x00" not in s)
            )
    elif kind == "points_credit":
        body["points"] = draw(st.integers(1, 10**12))
    elif kind == "visit":
        if draw(st.booleans()):
            body["quantity"] = draw(st.integers(1, 10**9))
    elif kind == "counter":
        body["counter"] = draw(st.sampled_from(["steps", "a.b-c_1"]))
        if draw(st.booleans()):
            body["quantity"] = draw(st.integers(1, 10**9))
    else:
        body[draw(st.sampled_from(["reverses", "reverses_key"]))] = draw(_TEXT)
        if draw(st.booleans()):
            body["amount_minor"] = draw(st.integers(1, 10**6))
    return body


@settings(max_examples=400, deadline=None)
@given(_bodies())
def test_request_hash_is_the_dumped_bodys_hash(raw: dict[str, Any]) -> None:
    """R12: the hash a repeat is compared by does not depend on how it is computed."""
    body = ActivityIn.model_validate(raw)
    assert body.request_hash() == _dumped_hash(body)
    # A body sent again as JSON hashes alike.
    again = ActivityIn.model_validate_json(json.dumps(raw))
    assert again.request_hash() == body.request_hash()


def test_instants_at_offset_zero_are_utc_and_others_keep_their_offset() -> None:
    """R27: the instant is unchanged; only its zone object differs."""
    base = {"type": "visit", "member_id": "m", "idempotency_key": "k"}
    for given_at in ("2025-01-10T12:00:00Z", "2025-01-10T12:00:00+00:00"):
        at = ActivityIn.model_validate({**base, "occurred_at": given_at}).occurred_at
        assert at.tzinfo is UTC
        assert at.isoformat() == "2025-01-10T12:00:00+00:00"
    at = ActivityIn.model_validate({**base, "occurred_at": "2025-01-10T13:00:00+01:00"}).occurred_at
    assert at.isoformat() == "2025-01-10T13:00:00+01:00"


def _error(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/activities", json=body)
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def test_nul_in_any_field_is_refused_naming_that_field(api: Api) -> None:
    """Bad input: a NUL in a text, number or instant field is a 422 naming the field, with
    the NUL message, and nothing is written (as every other request body)."""
    for field, value in (
        ("member_id", "a\x00b"),
        ("amount_minor", "12\x00"),
        ("occurred_at", "2025-01-10\x00"),
        ("currency", "US\x00"),
    ):
        body = activity_body("nul-member", "purchase", amount_minor=100)
        body[field] = value
        error = _error(api, body)
        assert error["code"] == "validation_error"
        assert error["field"] == field
        assert "NUL" in error["message"]
    assert api.get("/v1/members/nul-member/status").status_code == 404


def test_nul_in_a_batch_names_the_item_and_field(api: Api) -> None:
    good = activity_body("nul-batch", "purchase", amount_minor=100)
    bad = activity_body("nul-batch", "purchase", amount_minor=100)
    bad["idempotency_key"] = "k\x00"
    response = api.post("/v1/activities/batch", json={"activities": [good, bad]})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "NUL" in error["message"]
    assert "idempotency_key" in error["field"]
    assert api.get("/v1/members/nul-batch/status").status_code == 404


def test_type_rules_still_refuse_what_they_refused(api: Api) -> None:
    """The quick acceptance of usual bodies leaves the type rules' refusals unchanged."""
    cases: list[tuple[dict[str, Any], str]] = [
        (activity_body("t", "purchase", amount_minor=0), "amount_minor"),
        (activity_body("t", "purchase", amount_minor=10, points=5), "points"),
        (activity_body("t", "purchase", amount_minor=10, quantity=2), "quantity"),
        (activity_body("t", "points_credit", points=5, currency="USD"), "currency"),
        (activity_body("t", "points_redemption", points=5, amount_minor=3), "amount_minor"),
        (activity_body("t", "points_credit", points=5, reverses="x"), "reverses"),
        (activity_body("t", "counter", counter="Bad Name"), "counter"),
    ]
    for body, field in cases:
        error = _error(api, body)
        assert error["field"] == field, (body, error)
