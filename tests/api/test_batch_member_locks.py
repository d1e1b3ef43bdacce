"""Concurrent batches of different activities for the same members (the bulk write path).

A batch locks its members before it reads their figures and standings, so a batch that
ran concurrently with another for the same members reads what that one committed: both
count, and an upgrade their sum reaches is recorded exactly once (not missed because each
read the figures without the other's, nor twice because each saw the level unreached)."""

from __future__ import annotations

from tests.api.helpers import activity_body, figures, history
from tests.api.test_activities import concurrently, level_of, setup
from tests.conftest import Api

MEMBERS = ("lock-a", "lock-b", "lock-c")


def _batch(round_: str, writer: int, amount: int) -> list[dict[str, object]]:
    """25 purchases of ``amount`` for each member: 75 activities, the COPY path."""
    return [
        activity_body(
            MEMBERS[i % 3],
            "purchase",
            at=f"2025-03-0{1 + writer}T10:{i // 3:02d}:00Z",
            key=f"{round_}-{writer}-{i}",
            amount_minor=amount,
        )
        for i in range(75)
    ]


def _post_concurrently(api: Api, round_: str, amount: int) -> None:
    responses = concurrently(
        4,
        lambda w: api.post("/v1/activities/batch", json={"activities": _batch(round_, w, amount)}),
    )
    assert all(r.status_code == 200 for r in responses), [r.text[:300] for r in responses]
    assert [r.json()["accepted"] for r in responses] == [75] * 4


def test_concurrent_batches_for_the_same_members_count_all_and_upgrade_once(api: Api) -> None:
    setup(api)
    # New members, created by whichever batch comes first: 4 x 300 = 1200 each, silver
    # only once the last batch adds its 300 to the 900 the others committed.
    _post_concurrently(api, "r1", 12)
    for member in MEMBERS:
        assert figures(api, member)["spend"] == 1200
        assert figures(api, member)["orders"] == 100
        assert level_of(api, member) == "silver"
        assert [(e["from_level"], e["to_level"]) for e in history(api, member)] == [
            (None, "silver")
        ]
    # Existing members: 4 x 1000 more, gold (5000) once the last batch commits.
    _post_concurrently(api, "r2", 40)
    for member in MEMBERS:
        assert figures(api, member)["spend"] == 5200
        assert figures(api, member)["orders"] == 200
        assert level_of(api, member) == "gold"
        assert [(e["from_level"], e["to_level"]) for e in history(api, member)] == [
            (None, "silver"),
            ("silver", "gold"),
        ]
