"""A purchase that lifts a member takes the general path, which reads the window sums the
compiled plan already read (``ingest_plan.Starts.values``) instead of measuring them again
(``measuring.measure``). Here the same activities are recorded twice, in two programs with
the same ladders: once as usual, once with the plan's sums turned off everywhere (every
sum then measured). Answers (points, their rate and timing, R11; level changes, R9, with
their attain credit, R18), figures (R5-R7) and history (R22) must be the same, with
windows of every shared kind (rolling days and months, calendar and fixed year) beside
the lifetime, some activities late (R13), under each upgrade timing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import (
    comparable_result,
    criterion,
    figures,
    history_rows,
    level,
    meter,
    only_ladder,
    twin_programs,
)
from tests.api.test_ingest_quick_path import _bodies, record_stream
from tests.conftest import Api
from tierwise.services.ingest_plan import Starts


def _windows_ladder(timing: str) -> dict[str, Any]:
    return {
        "key": "windows",
        "name": "Windows",
        "upgrade_timing": timing,
        "validity": {"type": "fixed_months", "months": 12},
        "credit": True,  # the attain overshoot is kept (R18): the sums' exact values show
        "levels": [
            level("base", 1, is_floor=True, earn_multiplier="1.1"),
            level(
                "silver",
                2,
                criterion("spend", 30_000, window={"type": "rolling_months", "months": 1}),
                criterion("orders", 4, window={"type": "calendar_year"}),
                earn_multiplier="1.5",
            ),
            level(
                "gold",
                3,
                criterion("spend", 100_000, window={"type": "fixed_year", "month": 1, "day": 15}),
                criterion("points_earned", 1_200),
                criterion("spend", 45_000, window={"type": "rolling_days", "days": 10}),
                mode="any",
                earn_multiplier="2.25",
                maintain={"mode": "all", "criteria": [criterion("spend", 150_000)]},
            ),
        ],
    }


def _without_ids(value: Any) -> Any:
    """``value`` without the ids that differ between the two programs' ladders."""
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k not in _IDS}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


_IDS = {"id", "ladder_id", "program_id", "uuid"}


@pytest.mark.parametrize(("timing", "days"), [("lazy", 89), ("eager", 40), ("dynamic", 89)])
def test_the_plan_sums_decide_as_measured_sums_do(
    api: Api, monkeypatch: pytest.MonkeyPatch, timing: str, days: int
) -> None:
    planned, measured = twin_programs(
        api,
        ("Planned", "Measured"),
        [_windows_ladder(timing), meter(window={"type": "rolling_days", "days": 30})],
    )
    results = {}
    for p, prefix in ((planned, "p"), (measured, "m")):
        bodies = _bodies(p["id"], prefix, days)
        if p is measured:
            monkeypatch.setattr(Starts, "values", lambda *_: None)
        results[prefix] = record_stream(api, bodies)
        monkeypatch.undo()

    by_plan, by_measure = ([comparable_result(r) for r in results[k]] for k in ("p", "m"))
    assert by_plan == by_measure
    changes = [c for r in results["p"] for c in r["tier_changes"]]
    assert {c["to"] for c in changes} >= {"silver", "gold"}
    for i in range(8):
        assert figures(api, f"p{i}", program_id=planned["id"]) == figures(
            api, f"m{i}", program_id=measured["id"]
        )
        assert history_rows(api, f"p{i}", planned["id"]) == history_rows(
            api, f"m{i}", measured["id"]
        )
        views = [
            _without_ids(only_ladder(api, f"{prefix}{i}", ladder="windows", program_id=p["id"]))
            for p, prefix in ((planned, "p"), (measured, "m"))
        ]
        assert views[0] == views[1]
