"""A member's purchases in a batch, recorded together, record what one by one records.

``services.activities._Batch._quick_run`` takes all of a member's purchases in a batch
at once when they are usual purchases, in order, on one local day, and even all of them
together lift the member on no ladder whose rules only ask for at least a threshold.
Here the same batches are recorded twice, in two programs with the same ladders: once
as usual and once with both quick paths turned off (every activity through ``_apply``).
The answers (effects, points and their rate, R11; level changes, R9), the figures
(R5-R7) and the history (R22) must be the same.

The batches hold members whose runs qualify, members who cross a threshold in the
middle of a run (the run is then recorded one by one), runs over midnight, out of order,
mixed with another kind of activity or late (R13). One ladder has a level reached at an
exact number of orders (``==``): a run that passes through that number without ending
on it must not be taken whole.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.api.helpers import (
    activity_body,
    batch,
    comparable_result,
    criterion,
    figures,
    history_rows,
    level,
    meter,
    spend_ladder,
    twin_programs,
)
from tests.conftest import Api
from tierwise.services import activities

MEMBERS = 10
PER_MEMBER = 10


def _exact_orders() -> dict[str, Any]:
    """A level reached at exactly 13 orders in the lifetime (not monotone)."""
    return {
        "key": "club",
        "name": "Club",
        "levels": [
            level("guest", 1, is_floor=True),
            level("thirteen", 2, criterion("orders", 13, operator="==")),
        ],
    }


def _batches(program_id: int, prefix: str) -> list[list[dict[str, Any]]]:
    """Five batches of 100 (ten members, ten activities each, interleaved), one per day."""
    rng = random.Random(5)
    out = []
    for b in range(5):
        day = 3 + 4 * b
        bodies = []
        for i in range(MEMBERS * PER_MEMBER):
            m, n = i % MEMBERS, i // MEMBERS
            hour, minute = 8 + n, rng.randrange(60)
            kind = "purchase"
            fields: dict[str, Any] = {"program_id": program_id}
            at_day = day
            if m == 6 and n >= 7:  # over midnight: the last three the next day
                at_day = day + 1
            if m == 7 and n == 4:  # out of order within the batch
                hour = 7
            if m == 8 and n == 5:  # another kind among the purchases
                kind = "points_credit"
            if m == 9 and b == 3:  # late: before the member's latest activity (R13)
                at_day = day - 6
            if kind == "purchase":
                fields["amount_minor"] = rng.randrange(500, 4_000) * (1 + m % 3)
                if rng.random() < 0.3:
                    fields["currency"] = "EUR"
            else:
                fields["points"] = rng.randrange(1, 50)
            at = f"2025-03-{at_day:02d}T{hour:02d}:{minute:02d}:{n:02d}Z"
            key = f"{prefix}-{b}-{i}"
            bodies.append(activity_body(f"{prefix}{m}", kind, at=at, key=key, **fields))
        out.append(bodies)
    return out


@pytest.mark.parametrize(
    ("timing", "exact"), [("lazy", False), ("eager", False), ("dynamic", False), ("lazy", True)]
)
def test_runs_of_purchases_record_what_one_by_one_records(
    api: Api, monkeypatch: pytest.MonkeyPatch, timing: str, exact: bool
) -> None:
    spend = spend_ladder(timing, silver=60_000, gold=150_000, gold_points=900)
    runs, general = twin_programs(
        api, ("Runs", "General"), [spend, *([_exact_orders()] if exact else []), meter()]
    )
    taken: list[int] = []
    quick_run = activities._Batch._quick_run

    def counting(self: Any, run: list[int], *args: Any) -> Any:
        found = quick_run(self, run, *args)
        if found is not None:
            taken.append(len(run))
        return found

    results = {}
    for p, prefix in ((runs, "r"), (general, "g")):
        if p is general:
            monkeypatch.setattr(activities._Batch, "_quick_purchase", lambda *_: None)
            monkeypatch.setattr(activities._Batch, "_quick_run", lambda *_: None)
        else:
            monkeypatch.setattr(activities._Batch, "_quick_run", counting)
        answers = []
        for bodies in _batches(p["id"], prefix):
            answers += batch(api, bodies)["results"]
        results[prefix] = answers
        monkeypatch.undo()

    if exact:  # a level at exactly 13 orders: no run may be taken whole
        assert not taken
    else:  # runs were taken whole, and not for every member (some cross a threshold, R9)
        assert len(taken) >= 10
        assert len(taken) < 5 * MEMBERS
    by_runs, by_general = ([comparable_result(r) for r in results[k]] for k in ("r", "g"))
    assert by_runs == by_general
    changes = [c for r in results["r"] for c in r["tier_changes"]]
    assert {c["to"] for c in changes} >= {"silver", "gold", *(["thirteen"] if exact else [])}
    for i in range(MEMBERS):
        for key in ("meter", "status", *(["club"] if exact else [])):
            assert figures(api, f"r{i}", ladder_key=key, program_id=runs["id"]) == figures(
                api, f"g{i}", ladder_key=key, program_id=general["id"]
            )
        assert history_rows(api, f"r{i}", runs["id"]) == history_rows(api, f"g{i}", general["id"])
