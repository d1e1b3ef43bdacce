"""The activity path's quick answers agree with the general ones.

- ``MemberFigures.value`` (running sums, kept up to date by ``apply``) against a plain
  sum of the buckets;
- ``Plan.target`` against ``decide_upgrade`` (R9, R10, R20: the same level, or none), for
  random ladders, standings and figures.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tierwise.domain.criteria import Criterion, Mode, Operator, Rule
from tierwise.domain.evaluation import decide_upgrade
from tierwise.domain.figures import MemberFigures
from tierwise.domain.ladder import Ladder, Level
from tierwise.domain.state import Assignment, AssignmentMode, ChangeSource, TierState
from tierwise.domain.windows import LIFETIME, Interval, Window, WindowType
from tierwise.services.ingest_plan import plan_for

UTC_ZONE = ZoneInfo("UTC")


def test_window_sums_match_a_plain_sum_while_activities_are_applied() -> None:
    rng = random.Random(3)
    figures = MemberFigures(tz=UTC_ZONE)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    instants = sorted(start + timedelta(hours=rng.randrange(0, 24 * 200)) for _ in range(300))
    # Mostly in order, some late.
    for i, at in enumerate(instants):
        if i % 13 == 0:
            at -= timedelta(days=rng.randrange(1, 60))
        figures.apply(at, {"spend": rng.randrange(-50, 500), "orders": 1})
        if i % 7:
            continue
        for _ in range(5):
            first = start.date() + timedelta(days=rng.randrange(0, 210))
            last = first + timedelta(days=rng.randrange(0, 60))
            for metric in ("spend", "orders", "visits"):
                want = sum(v for d, v in figures.days.get(metric, {}).items() if first <= d <= last)
                assert figures.range_sum(metric, first, last) == want
                begin = datetime(first.year, first.month, first.day, tzinfo=UTC)
                end = datetime(last.year, last.month, last.day, 23, 59, tzinfo=UTC)
                if figures.last_activity_at is not None and figures.last_activity_at > end:
                    continue  # needs the day's single activities (loaded from the store)
                assert figures.value(metric, Interval(begin, end)) == want


def test_direct_bucket_writes_are_seen_by_later_sums() -> None:
    figures = MemberFigures(tz=UTC_ZONE)
    figures.days["spend"] = {date(2025, 1, 1): 5}
    assert figures.range_sum("spend", None, None) == 5
    figures.days["spend"][date(2025, 1, 2)] = 7  # as the loaders fill them
    assert figures.range_sum("spend", date(2025, 1, 2), None) == 7


ROLLING = Window(type=WindowType.ROLLING_DAYS, days=30)
KEYS = [("spend", LIFETIME), ("spend", ROLLING), ("orders", LIFETIME), ("visits", ROLLING)]


def _ladder(rng: random.Random) -> Ladder:
    levels = []
    for rank in range(1, rng.randrange(2, 5)):
        criteria = tuple(
            Criterion(
                metric=metric,
                window=window,
                operator=rng.choice(list(Operator)),
                threshold=rng.randrange(0, 40),
            )
            for metric, window in rng.sample(KEYS, rng.randrange(1, 3))
        )
        attain = (
            Rule(mode=rng.choice(list(Mode)), criteria=criteria)
            if rank > 1 or rng.random() < 0.7
            else None
        )
        levels.append(
            Level(
                key=f"l{rank}", name=f"L{rank}", rank=rank, attain=attain, is_floor=attain is None
            )
        )
    return Ladder(key="status", name="Status", levels=tuple(levels))


def test_the_compiled_rules_decide_the_level_decide_upgrade_decides() -> None:
    rng = random.Random(11)
    at = datetime(2025, 6, 1, tzinfo=UTC)
    for _ in range(3000):
        ladder = _ladder(rng)
        keys = frozenset(ladder.measure_keys()) | {("spend", LIFETIME)}
        plan = plan_for(ladder, keys)
        values = [rng.randrange(-5, 45) for _ in plan.keys]
        measures = dict(zip(plan.keys, values, strict=True))
        level_key = rng.choice([None, *(level.key for level in ladder.levels), "gone"])
        assignment = None
        if rng.random() < 0.2:
            assignment = Assignment(
                level_key="l1",
                mode=rng.choice(list(AssignmentMode)),
                reason="r",
                actor="a",
                assigned_at=at,
            )
        state = TierState(level_key=level_key, assignment=assignment)
        decided = decide_upgrade(ladder, state, measures, at=at, source=ChangeSource.ACTIVITY)
        target = plan.target(values, state)
        assert (target is None) is (decided is None)
        if decided is not None:
            assert target is decided.level
