"""The fingerprint of an activity's request body, by which a repeat of its idempotency key
is told from a reuse with another body (R12)."""

from __future__ import annotations

import hashlib
from json.encoder import encode_basestring_ascii


def purchase_hash(
    amount_minor: int,
    currency: str | None,
    idempotency_key: str,
    member_id: str,
    stamp: str,
    program_id: int | None = None,
) -> str:
    """``ActivityIn.request_hash`` of the usual purchase (these fields, ``currency`` and
    ``program_id`` when given, and nothing else), the same text written in one piece:
    1.2 against 2.0 µs. ``stamp`` is the instant as ``orjson.dumps(occurred_at,
    option=orjson.OPT_UTC_Z)`` writes it (quotes included), for an instant in
    ``datetime.UTC``. The property tests of ``tests/unit/test_batch_commands.py`` keep the
    two texts identical."""
    text = encode_basestring_ascii
    currency_part = "" if currency is None else f'"currency": {text(currency)}, '
    program_part = "" if program_id is None else f'"program_id": {program_id}, '
    body = (
        f'{{"amount_minor": {amount_minor}, {currency_part}'
        f'"idempotency_key": {text(idempotency_key)}, '
        f'"member_id": {text(member_id)}, "occurred_at": {stamp}, {program_part}'
        '"type": "purchase"}'
    )
    return hashlib.sha256(body.encode()).hexdigest()
