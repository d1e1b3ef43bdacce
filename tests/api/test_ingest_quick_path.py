"""The one-pass purchase path records exactly what the general path records.

``services.activities._Batch._quick_purchase`` takes the usual purchase (in order, in the
program's currency, lifting nobody) and hands every other one to ``_apply``. Here the same
activities are recorded twice, once as usual and once with the quick path turned off, in
two programs with the same ladders; the answers (effects, points and their rate, R11;
level changes, R9), the figures (R5-R7) and the history (R22) must be the same. The
ladders upgrade on windowed spend and lifetime points under each upgrade timing, with
earn rates and multipliers whose points need rounding, some activities late (R13).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.api.helpers import (
    activity_body,
    batch,
    comparable_result,
    figures,
    history_rows,
    meter,
    spend_ladder,
    twin_programs,
)
from tests.conftest import Api
from tierwise.services import activities


def _bodies(program_id: int, prefix: str, days: int) -> list[dict[str, Any]]:
    """300 activities of eight members over ``days`` days, mostly purchases in order
    (over a few days, each member buys several times a day)."""
    rng = random.Random(11)
    out = []
    for i in range(300):
        member = f"{prefix}{i % 8}"
        day = 1 + i * days // 300
        if i % 23 == 0:
            day = max(1, day - rng.randrange(1, 30))  # late (R13)
        month, dom = 1 + (day - 1) // 28, 1 + (day - 1) % 28
        hour = (i * 24 * days // 300) % 24 if days < 30 else rng.randrange(24)
        at = f"2025-{month:02d}-{dom:02d}T{hour:02d}:{rng.randrange(60):02d}:00Z"
        kind = rng.choice(["purchase"] * 8 + ["points_credit", "visit"])
        fields: dict[str, Any] = {"program_id": program_id}
        if kind == "purchase":
            fields["amount_minor"] = rng.randrange(1, 9_000)
            if rng.random() < 0.5:
                fields["currency"] = "EUR"
        elif kind == "points_credit":
            fields["points"] = rng.randrange(1, 40)
        out.append(activity_body(member, kind, at=at, key=f"{prefix}-{i}", **fields))
    return out


def record_stream(api: Api, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``bodies`` recorded as clients send them, some alone and the rest in batches of 100
    (single and batch requests alike); their answers, in order."""
    answers = [api.post("/v1/activities", json=b).json() for b in bodies[:20]]
    for start in range(20, len(bodies), 100):
        answers += batch(api, bodies[start : start + 100])["results"]
    return answers


@pytest.mark.parametrize(
    ("timing", "days"), [("lazy", 89), ("eager", 89), ("dynamic", 89), ("lazy", 6), ("eager", 6)]
)
def test_the_quick_path_records_what_the_general_path_records(
    api: Api, monkeypatch: pytest.MonkeyPatch, timing: str, days: int
) -> None:
    quick, general = twin_programs(
        api,
        ("Quick", "General"),
        [spend_ladder(timing, silver=40_000, gold=90_000, gold_points=1_500), meter()],
    )
    results = {}
    for p, prefix in ((quick, "q"), (general, "g")):
        bodies = _bodies(p["id"], prefix, days)
        if p is general:
            monkeypatch.setattr(activities._Batch, "_quick_purchase", lambda *_: None)
        results[prefix] = record_stream(api, bodies)
        monkeypatch.undo()

    by_quick, by_general = ([comparable_result(r) for r in results[k]] for k in ("q", "g"))
    assert by_quick == by_general
    assert any(r["tier_changes"] for r in results["q"])
    for i in range(8):
        assert figures(api, f"q{i}", program_id=quick["id"]) == figures(
            api, f"g{i}", program_id=general["id"]
        )
        assert history_rows(api, f"q{i}", quick["id"]) == history_rows(api, f"g{i}", general["id"])
