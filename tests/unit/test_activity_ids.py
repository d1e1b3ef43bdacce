"""Public activity ids written from ledger ids (``domain/activity_ids.py``): each reads
back to its ledger id alone, and nothing else reads as one (a stored random UUID, a
tampered or malformed text)."""

from __future__ import annotations

import uuid

import pytest

from tierwise.domain.activity_ids import ledger_id, public_id, public_ids, shown_id

IDS = [1, 2, 3, 41, 1_000_000, 2**31 - 1, 2**31, 2**53 + 7, 2**60 - 1]


def test_every_id_reads_back_and_is_a_version_8_uuid() -> None:
    for i in IDS:
        text = public_id(i)
        assert ledger_id(text) == i
        assert ledger_id(text.upper()) == i
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 8
        assert parsed.variant == uuid.RFC_4122


def test_neighbouring_ids_do_not_look_like_neighbours_and_never_collide() -> None:
    texts = public_ids(range(1, 20_001))
    assert len(set(texts)) == 20_000
    assert texts == [public_id(i) for i in range(1, 20_001)]
    # the part that varies is not a counter
    assert sorted(texts[:100]) != texts[:100]


@pytest.mark.parametrize(
    "text",
    [
        str(uuid.uuid4()),
        str(uuid.UUID(int=0)),
        public_id(77)[:-1],
        public_id(77) + "0",
        public_id(77).replace("-", "_"),
        "74696572-7769-8736-9+12-000000000000",
        "74696572-7769-8736-9_12-000000000000",
        "74696572-7769-8736-9g12-000000000000",
        "74696572-7769-8736-9١٢٣-000000000000",
        "74696572-7769-8736-4123-000000000000",
        "",
        "x" * 36,
    ],
)
def test_other_texts_are_not_ledger_ids(text: str) -> None:
    assert ledger_id(text) is None


def test_the_text_of_ledger_id_zero_is_no_id() -> None:
    assert ledger_id(public_ids([0])[0]) is None


def test_a_tampered_id_is_not_read_as_a_neighbour() -> None:
    text = public_id(500)
    flipped = text[:-1] + ("0" if text[-1] != "0" else "1")
    assert ledger_id(flipped) not in (499, 500, 501)


def test_a_row_with_a_stored_uuid_keeps_it() -> None:
    old = str(uuid.uuid4())
    assert shown_id(old, 9) == old
    assert shown_id(None, 9) == public_id(9)
