"""Public activity ids: written from the ledger row's id, so the ledger stores no second key.

An activity's public id is a UUID (version 8, RFC 9562) that carries its ledger id: a
fixed head that marks the layout (``74696572-7769-8736-9``, from ASCII ``tierwi``), then
the id mixed by a fixed invertible map of 60-bit numbers, so that consecutive activities do
not get consecutive-looking ids. Reading it back is arithmetic, and the row is found by its
primary key: the ledger keeps neither a stored UUID nor a unique index on one for new rows
(issue 2: that index was about a tenth of a batch's PostgreSQL time).

Activities recorded before this layout keep the random UUID stored with them
(``activities.uuid``), which stays their id and is still found through its index.

The id is not a secret and hides nothing that matters: every read is confined to the key's
tenant, so another tenant's id answers 404 like an id that does not exist.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence

_BITS = (1 << 60) - 1
_MIX = 0x9E3779B97F4A7C15 & _BITS  # odd, so multiplying by it modulo 2**60 is invertible
_UNMIX = pow(_MIX, -1, 1 << 60)
_SALT = 0x5DEECE66D1B54A3
_HEAD = "74696572-7769-8736-9"
"""What every such id starts with: version 8 at position 14, the variant digit 9 at 19."""
_HEX = frozenset("0123456789abcdef")


def public_ids(ledger_ids: Sequence[int]) -> list[str]:
    """The public ids of the ledger rows ``ledger_ids`` (positive, below 2**60): the mixed
    numbers written as hex in one go, then cut."""
    mixed = array("Q", [((i * _MIX) & _BITS) ^ _SALT for i in ledger_ids])
    if sys.byteorder == "little":
        mixed.byteswap()
    raw = mixed.tobytes().hex()  # 16 digits each, the first 0 (60 bits)
    return [f"{_HEAD}{h[1:4]}-{h[4:]}" for h in (raw[i : i + 16] for i in range(0, len(raw), 16))]


def public_id(ledger_id: int) -> str:
    """The public id of the ledger row ``ledger_id``."""
    return public_ids((ledger_id,))[0]


def ledger_id(public: str) -> int | None:
    """The ledger id written in ``public`` (in either letter case), or None when ``public``
    is not in this layout (a stored random UUID, or anything else)."""
    if len(public) != 36 or public[23] != "-":
        return None
    text = public.lower()
    digits = text[20:23] + text[24:]
    if not text.startswith(_HEAD) or not _HEX.issuperset(digits):
        return None
    found = ((int(digits, 16) ^ _SALT) * _UNMIX) & _BITS
    return found or None


def shown_id(stored_uuid: str | None, ledger_id: int) -> str:
    """The public id of a ledger row: the UUID stored with it if it has one (recorded
    before this layout), else the one written from its id."""
    return stored_uuid if stored_uuid is not None else public_id(ledger_id)
