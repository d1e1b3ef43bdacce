"""Pure unit tests of ``tierwise.domain.checks``: what a due check, grace end or
assignment expiry does to a standing (R15-R20), with no database.

The ladder: Bronze (floor) < Silver 1,000 < Gold 2,000 < Platinum 3,000 points earned
over a rolling year, 12-month validity, daily checks. Figures are passed in as
``Measures`` (``{(metric, window): value}``), as the sweep does after measuring them at
``due.measure_at``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tierwise.domain.checks import (
    Context,
    Due,
    DueKind,
    attain_credit,
    downgrade_target,
    handle,
    keep_rule,
    keeps,
    next_due,
    overshoot,
    project,
    with_credit,
)
from tierwise.domain.criteria import Criterion, Measures, Rule
from tierwise.domain.ladder import (
    Downgrade,
    DowngradePolicy,
    Ladder,
    Level,
    RenewalMode,
    Rollover,
    Validity,
    ValidityType,
)
from tierwise.domain.state import Assignment, AssignmentMode, ChangeKind, ChangeSource, TierState
from tierwise.domain.windows import Window, WindowType

UTC_ZONE = ZoneInfo("UTC")
YEAR = Window(type=WindowType.ROLLING_DAYS, days=365)
KEY = ("points_earned", YEAR)

START = datetime(2024, 1, 10, tzinfo=UTC)
EXPIRY = datetime(2025, 1, 9, 23, 59, 59, tzinfo=UTC)
CHECK = datetime(2025, 1, 10, tzinfo=UTC)
NEXT_EXPIRY = datetime(2026, 1, 9, 23, 59, 59, tzinfo=UTC)
NEXT_CHECK = datetime(2026, 1, 10, tzinfo=UTC)
CTX = Context(tz=UTC_ZONE, enrolled_at=datetime(2023, 1, 1, tzinfo=UTC), last_activity_at=START)


def rule(threshold: int) -> Rule:
    return Rule(criteria=(Criterion(metric="points_earned", window=YEAR, threshold=threshold),))


def make_ladder(
    policy: DowngradePolicy = DowngradePolicy.DROP_ONE,
    *,
    floor: bool = True,
    grace_days: int = 0,
    levels: dict[str, dict[str, Any]] | None = None,
    **fields: Any,
) -> Ladder:
    extra = levels or {}
    rungs = [
        Level(key="silver", name="Silver", rank=2, attain=rule(1000), **extra.get("silver", {})),
        Level(key="gold", name="Gold", rank=3, attain=rule(2000), **extra.get("gold", {})),
        Level(
            key="platinum",
            name="Platinum",
            rank=4,
            attain=rule(3000),
            **extra.get("platinum", {}),
        ),
    ]
    if floor:
        rungs.insert(0, Level(key="bronze", name="Bronze", rank=1, is_floor=True))
    return Ladder(
        key="status",
        name="Status",
        levels=tuple(rungs),
        validity=Validity(type=ValidityType.FIXED_MONTHS, months=12),
        downgrade=Downgrade(policy=policy, grace_days=grace_days),
        **fields,
    ).validate_rules()


def held(level_key: str = "platinum", **fields: Any) -> TierState:
    """A standing on ``level_key`` since START, expiring at EXPIRY, checked at CHECK."""
    base = TierState(
        level_key=level_key,
        achieved_at=START,
        cycle_start=START,
        expires_at=EXPIRY,
        check_due_at=CHECK,
        previous_level_key="bronze",
    )
    return replace(base, **fields)


def points(value: int) -> Measures:
    return {KEY: value}


def check(ladder: Ladder, state: TierState, value: int) -> Any:
    due = next_due(state)
    assert due is not None
    return handle(ladder, state, due, points(value), CTX)


def pin(level_key: str, *, mode: AssignmentMode = AssignmentMode.PIN, **fields: Any) -> Assignment:
    return Assignment(
        level_key=level_key,
        mode=mode,
        reason="test",
        actor="key-1",
        assigned_at=datetime(2024, 2, 1, tzinfo=UTC),
        **fields,
    )


# -- next_due (R15, R17, R20) -----------------------------------------------------------


def test_next_due_is_the_check_for_a_plain_standing() -> None:
    """R15: the check instant is what falls due, read as of the second before it."""
    due = next_due(held())
    assert due == Due(DueKind.CHECK, CHECK)
    assert due.measure_at == EXPIRY


def test_next_due_is_nothing_for_a_standing_without_expiry() -> None:
    assert next_due(TierState(level_key="bronze", achieved_at=START)) is None
    assert next_due(TierState()) is None


def test_next_due_skips_the_check_of_a_pinned_standing_but_not_its_expiry() -> None:
    """R20: a pin suspends checks; its own expiry still falls due."""
    assert next_due(held(assignment=pin("platinum"))) is None
    ends = datetime(2024, 6, 1, tzinfo=UTC)
    assert next_due(held(assignment=pin("platinum", expires_at=ends))) == Due(
        DueKind.ASSIGNMENT_EXPIRY, ends
    )


def test_next_due_during_grace_is_the_grace_end_not_the_past_check() -> None:
    """R17: once a grace period runs, its end replaces the (already handled) check."""
    grace = CHECK + timedelta(days=30)
    assert next_due(held(grace_until=grace)) == Due(DueKind.GRACE_END, grace)


def test_next_due_is_the_earliest_of_assignment_expiry_and_check() -> None:
    early = datetime(2024, 6, 1, tzinfo=UTC)
    late = datetime(2025, 6, 1, tzinfo=UTC)
    floor = AssignmentMode.FLOOR
    assert next_due(held(assignment=pin("gold", mode=floor, expires_at=early))).kind is (
        DueKind.ASSIGNMENT_EXPIRY
    )
    assert next_due(held(assignment=pin("gold", mode=floor, expires_at=late))).kind is (
        DueKind.CHECK
    )


def test_the_stored_due_at_agrees_with_next_due() -> None:
    """R15: the sweep claims rows by ``due_at``; it must be the instant ``next_due`` gives."""
    grace = CHECK + timedelta(days=3)
    ends = datetime(2024, 6, 1, tzinfo=UTC)
    for state in (
        held(),
        held(grace_until=grace),
        held(assignment=pin("platinum")),
        held(assignment=pin("platinum", expires_at=ends)),
        held(assignment=pin("gold", mode=AssignmentMode.FLOOR, expires_at=ends)),
        TierState(),
    ):
        due = next_due(state)
        assert state.due_at == (None if due is None else due.at), state


# -- keeps (R16, R17, R18) --------------------------------------------------------------


def test_keep_rule_is_maintain_or_else_attain() -> None:
    """R16: the maintain rule decides renewal; without one, the attain rule."""
    ladder = make_ladder(levels={"platinum": {"maintain": rule(1500)}})
    platinum = ladder.level("platinum")
    gold = ladder.level("gold")
    assert platinum is not None and gold is not None
    assert keep_rule(platinum) == rule(1500)
    assert keep_rule(gold) == rule(2000)


@pytest.mark.parametrize(
    ("value", "kept"),
    [(1499, False), (1500, True), (3000, True)],
)
def test_keeps_with_a_maintain_rule_lower_than_attain(value: int, kept: bool) -> None:
    """R16/R2: maintain 1,500 < attain 3,000, inclusive threshold."""
    ladder = make_ladder(levels={"platinum": {"maintain": rule(1500)}})
    platinum = ladder.level("platinum")
    assert platinum is not None
    assert keeps(ladder, platinum, held(), points(value)) is kept


def test_keeps_always_when_renewal_is_always_or_the_level_is_not_downgradable() -> None:
    """R16 ``always``; R17 ``downgradable = false``."""
    always = make_ladder(renewal=RenewalMode.ALWAYS)
    stuck = make_ladder(levels={"platinum": {"downgradable": False}})
    for ladder in (always, stuck):
        platinum = ladder.level("platinum")
        assert platinum is not None
        assert keeps(ladder, platinum, held(), points(0)) is True


def test_keeps_counts_the_credit_toward_the_keep_rule() -> None:
    """R18: 250 credit + 150 figures = 400 >= 400."""
    ladder = make_ladder(levels={"silver": {"maintain": rule(400)}})
    silver = ladder.level("silver")
    assert silver is not None
    assert keeps(ladder, silver, held("silver", credit=250), points(150)) is True
    assert keeps(ladder, silver, held("silver", credit=249), points(150)) is False
    assert keeps(ladder, silver, held("silver"), points(150)) is False


def test_with_credit_adds_to_the_first_criterion_only() -> None:
    two = Rule(
        criteria=(
            Criterion(metric="points_earned", window=YEAR, threshold=400),
            Criterion(metric="orders", threshold=2),
        )
    )
    boosted = with_credit(two, {KEY: 100, ("orders", Window()): 1}, 250)
    assert boosted[KEY] == 350
    assert boosted[("orders", Window())] == 1
    same = {KEY: 100}
    assert with_credit(two, same, 0) is same


def test_overshoot_and_attain_credit() -> None:
    """R18: 650 against 400 -> 250; nothing for a ladder without credit, or below."""
    assert overshoot(rule(400), points(650)) == 250
    assert overshoot(rule(400), points(300)) == 0
    assert overshoot(rule(400), points(300), credit=150) == 50
    assert overshoot(None, points(650)) == 0
    downward = Rule(criteria=(Criterion(metric="points_earned", operator="<=", threshold=10),))
    assert overshoot(downward, {("points_earned", Window()): 0}) == 0
    silver = Level(key="silver", name="Silver", rank=1, attain=rule(400))
    with_credit_ladder = Ladder(key="s", name="S", levels=(silver,), credit=True)
    without = Ladder(key="s", name="S", levels=(silver,))
    assert attain_credit(with_credit_ladder, silver, points(650)) == 250
    assert attain_credit(without, silver, points(650)) == 0


# -- downgrade_target (R17, R20) --------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "value", "target"),
    [
        (DowngradePolicy.DROP_ONE, 0, "gold"),
        (DowngradePolicy.DROP_ONE, 2500, "gold"),
        (DowngradePolicy.TO_QUALIFYING, 1200, "silver"),
        (DowngradePolicy.TO_QUALIFYING, 0, "bronze"),
        (DowngradePolicy.TO_QUALIFYING, 2500, "gold"),
        (DowngradePolicy.TO_FLOOR, 2500, "bronze"),
        (DowngradePolicy.HOLD, 0, "platinum"),
    ],
)
def test_downgrade_target_by_policy(policy: DowngradePolicy, value: int, target: str) -> None:
    """R17: from Platinum, by policy and today's figures."""
    ladder = make_ladder(policy)
    platinum = ladder.level("platinum")
    assert platinum is not None
    found = downgrade_target(ladder, platinum, held(), points(value))
    assert found is not None and found.key == target


def test_to_qualifying_when_still_qualifying_for_the_current_level_drops_one() -> None:
    """R17: a member whose keep rule fails but who meets the attain rule of the current
    level (maintain stricter than attain) still moves down: one rank."""
    ladder = make_ladder(
        DowngradePolicy.TO_QUALIFYING, levels={"platinum": {"maintain": rule(5000)}}
    )
    platinum = ladder.level("platinum")
    assert platinum is not None
    found = downgrade_target(ladder, platinum, held(), points(3500))
    assert found is not None and found.key == "gold"


def test_downgrade_target_without_a_floor_can_be_no_level() -> None:
    """R17: ``to_floor`` and ``drop_one`` from the lowest level give None without a floor."""
    ladder = make_ladder(DowngradePolicy.TO_FLOOR, floor=False)
    platinum = ladder.level("platinum")
    assert platinum is not None
    assert downgrade_target(ladder, platinum, held(), points(0)) is None
    drop = make_ladder(DowngradePolicy.DROP_ONE, floor=False)
    silver = drop.level("silver")
    assert silver is not None
    assert downgrade_target(drop, silver, held("silver"), points(0)) is None


def test_downgrade_target_is_held_up_by_a_floor_assignment() -> None:
    """R20 ``floor``: never below the assigned level, whatever the policy."""
    for policy in (DowngradePolicy.TO_FLOOR, DowngradePolicy.TO_QUALIFYING):
        ladder = make_ladder(policy)
        platinum = ladder.level("platinum")
        assert platinum is not None
        state = held(assignment=pin("gold", mode=AssignmentMode.FLOOR))
        found = downgrade_target(ladder, platinum, state, points(0))
        assert found is not None and found.key == "gold"


def test_downgrade_target_ignores_pin_and_one_shot_assignments() -> None:
    ladder = make_ladder(DowngradePolicy.TO_FLOOR)
    platinum = ladder.level("platinum")
    assert platinum is not None
    state = held(assignment=pin("gold", mode=AssignmentMode.ONE_SHOT))
    found = downgrade_target(ladder, platinum, state, points(0))
    assert found is not None and found.key == "bronze"


# -- handle: checks (R15-R18) -----------------------------------------------------------


def test_a_kept_level_is_renewed_with_a_new_cycle_from_the_second_after_expiry() -> None:
    """R16: renewed, ``achieved_at`` kept, next cycle 2025-01-10 .. 2026-01-09 23:59:59."""
    ladder = make_ladder()
    outcome = check(ladder, held(), 3000)
    assert outcome.change is not None
    assert outcome.change.kind is ChangeKind.RENEWED
    assert (outcome.change.from_level, outcome.change.to_level) == ("platinum", "platinum")
    assert outcome.change.at == CHECK
    assert outcome.change.source is ChangeSource.SWEEP
    state = outcome.state
    assert state.level_key == "platinum"
    assert state.achieved_at == START
    assert state.cycle_start == CHECK
    assert (state.expires_at, state.check_due_at) == (NEXT_EXPIRY, NEXT_CHECK)
    assert state.due_at == NEXT_CHECK


def test_a_failed_check_moves_down_and_starts_the_new_level_at_the_check() -> None:
    """R17 ``drop_one``: Platinum -> Gold at 2025-01-10, Gold's own 12-month cycle."""
    outcome = check(make_ladder(), held(), 0)
    assert outcome.change is not None
    assert outcome.change.kind is ChangeKind.DOWNGRADED
    assert (outcome.change.from_level, outcome.change.to_level) == ("platinum", "gold")
    state = outcome.state
    assert (state.level_key, state.previous_level_key) == ("gold", "platinum")
    assert (state.achieved_at, state.cycle_start) == (CHECK, CHECK)
    assert (state.expires_at, state.check_due_at) == (NEXT_EXPIRY, NEXT_CHECK)


def test_a_failed_check_to_the_floor_leaves_a_permanent_standing() -> None:
    """R14/R17: the floor never expires, so nothing is due afterwards."""
    outcome = check(make_ladder(DowngradePolicy.TO_FLOOR), held(), 0)
    assert outcome.state.level_key == "bronze"
    assert (outcome.state.expires_at, outcome.state.check_due_at) == (None, None)
    assert next_due(outcome.state) is None


def test_a_failed_check_without_a_floor_loses_the_level() -> None:
    outcome = check(make_ladder(DowngradePolicy.TO_FLOOR, floor=False), held(), 0)
    assert outcome.change is not None
    assert outcome.change.kind is ChangeKind.LOST
    assert outcome.change.to_level is None
    assert outcome.state.level_key is None
    assert outcome.state.achieved_at is None
    assert next_due(outcome.state) is None


def test_hold_renews_instead_of_moving_down() -> None:
    """R17 ``hold``: never downgrade (renewed), even with a grace period configured."""
    outcome = check(make_ladder(DowngradePolicy.HOLD, grace_days=30), held(), 0)
    assert outcome.change is not None and outcome.change.kind is ChangeKind.RENEWED
    assert outcome.state.grace_until is None
    assert outcome.state.expires_at == NEXT_EXPIRY


def test_a_failed_check_with_grace_days_only_opens_the_grace_period() -> None:
    """R17 ``grace_days``: no change yet; the grace end is what falls due next."""
    outcome = check(make_ladder(grace_days=30), held(), 0)
    assert outcome.change is None
    assert outcome.state.level_key == "platinum"
    assert outcome.state.grace_until == CHECK + timedelta(days=30)
    assert next_due(outcome.state) == Due(DueKind.GRACE_END, CHECK + timedelta(days=30))


def test_at_the_grace_end_the_member_moves_down_measured_then() -> None:
    """R17: at the grace end the figures decide again: still short -> downgraded there."""
    ladder = make_ladder(DowngradePolicy.TO_QUALIFYING, grace_days=30)
    in_grace = check(ladder, held(), 0).state
    outcome = check(ladder, in_grace, 1200)
    grace_end = CHECK + timedelta(days=30)
    assert outcome.change is not None
    assert outcome.change.kind is ChangeKind.DOWNGRADED
    assert (outcome.change.to_level, outcome.change.at) == ("silver", grace_end)
    assert outcome.state.grace_until is None
    assert outcome.state.achieved_at == grace_end


def test_re_qualifying_by_the_grace_end_renews_from_the_old_expiry() -> None:
    """R17: re-qualified by the grace end -> renewed; the new cycle follows the old one."""
    ladder = make_ladder(grace_days=30)
    in_grace = check(ladder, held(), 0).state
    outcome = check(ladder, in_grace, 3000)
    assert outcome.change is not None and outcome.change.kind is ChangeKind.RENEWED
    assert outcome.state.grace_until is None
    assert (outcome.state.expires_at, outcome.state.check_due_at) == (NEXT_EXPIRY, NEXT_CHECK)


def test_a_handled_event_is_never_due_at_the_same_instant_again() -> None:
    """R15 idempotency at the domain level: after ``handle`` the next due instant (if any)
    lies after the handled one, for every policy and outcome."""
    for policy in DowngradePolicy:
        for grace in (0, 30):
            ladder = make_ladder(policy, grace_days=grace)
            for value in (0, 1200, 2500, 3000):
                state = held()
                seen = []
                for _ in range(6):
                    due = next_due(state)
                    if due is None:
                        break
                    assert not seen or due.at > seen[-1], (policy, grace, value, seen, due)
                    seen.append(due.at)
                    state = handle(ladder, state, due, points(value), CTX).state


def test_carry_excess_rollover_keeps_the_overshoot_as_credit_and_reset_drops_it() -> None:
    """R18: at renewal ``carry_excess`` keeps what is above the keep threshold (1,600 -
    1,000 = 600, plus any credit carried in); ``reset`` starts from 0."""
    carry = make_ladder(rollover=Rollover.CARRY_EXCESS)
    reset = make_ladder()
    assert check(carry, held("silver"), 1600).state.credit == 600
    assert check(carry, held("silver", credit=600), 500).state.credit == 100
    assert check(reset, held("silver", credit=600), 1600).state.credit == 0


def test_credit_can_carry_a_member_through_a_check() -> None:
    """R18: 200 + 250 credit >= 400 renews; without credit the member drops."""
    ladder = make_ladder(levels={"silver": {"maintain": rule(400)}})
    assert check(ladder, held("silver", credit=250), 200).change.kind is ChangeKind.RENEWED
    assert check(ladder, held("silver"), 200).change.kind is ChangeKind.DOWNGRADED


def test_a_check_on_a_level_the_ladder_no_longer_has_clears_the_schedule() -> None:
    """A standing on a removed level is not checked forever: nothing is due after."""
    outcome = check(make_ladder(), held("diamond"), 0)
    assert outcome.change is None
    assert next_due(outcome.state) is None


def test_a_floor_assignment_stays_through_a_downgrade_and_a_one_shot_does_not() -> None:
    """R20: a ``floor`` assignment outlives the downgrade it stopped; a ``one_shot`` ends."""
    ladder = make_ladder(DowngradePolicy.TO_FLOOR)
    floored = held(assignment=pin("gold", mode=AssignmentMode.FLOOR))
    outcome = check(ladder, floored, 0)
    assert outcome.state.level_key == "gold"
    assert outcome.state.assignment == floored.assignment
    once = held(assignment=pin("gold", mode=AssignmentMode.ONE_SHOT))
    dropped = check(ladder, once, 0)
    assert dropped.state.level_key == "bronze"
    assert dropped.state.assignment is None


# -- handle: assignment expiry (R20, E7) -------------------------------------------------


def test_an_expired_assignment_is_removed_and_the_member_re_evaluated() -> None:
    """E7/R20: pinned Gold, figures qualify for Silver at the expiry -> Silver, ``expired``,
    a new Silver cycle from the expiry."""
    ends = datetime(2024, 6, 1, tzinfo=UTC)
    state = held("gold", assignment=pin("gold", expires_at=ends))
    outcome = check(make_ladder(), state, 1200)
    assert outcome.change is not None
    assert outcome.change.kind is ChangeKind.EXPIRED
    assert (outcome.change.from_level, outcome.change.to_level) == ("gold", "silver")
    assert outcome.change.at == ends
    assert outcome.change.reason == "assignment expired"
    assert outcome.state.assignment is None
    assert outcome.state.level_key == "silver"
    assert outcome.state.achieved_at == ends
    assert outcome.state.expires_at == datetime(2025, 5, 31, 23, 59, 59, tzinfo=UTC)


def test_an_expired_assignment_without_qualifying_figures_lands_on_the_floor() -> None:
    ends = datetime(2024, 6, 1, tzinfo=UTC)
    state = held("gold", assignment=pin("gold", expires_at=ends))
    outcome = check(make_ladder(), state, 0)
    assert outcome.state.level_key == "bronze"
    no_floor = check(make_ladder(floor=False), state, 0)
    assert no_floor.state.level_key is None
    assert no_floor.change is not None and no_floor.change.kind is ChangeKind.EXPIRED


def test_after_an_expired_pin_on_a_still_qualifying_level_nothing_earlier_falls_due() -> None:
    """R15/R20: pinned on their own Platinum (check 2025-01-10 suspended by the pin), the
    pin ends 2025-06-01 and the member still qualifies. Whatever falls due next must lie
    after the expiry: time does not run backwards."""
    ends = datetime(2025, 6, 1, tzinfo=UTC)
    state = held(assignment=pin("platinum", expires_at=ends))
    outcome = check(make_ladder(), state, 3000)
    assert outcome.state.level_key == "platinum"
    due = next_due(outcome.state)
    assert due is None or due.at > ends


# -- project (R19) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "value", "projected"),
    [
        (DowngradePolicy.DROP_ONE, 0, "gold"),
        (DowngradePolicy.DROP_ONE, 3000, "platinum"),
        (DowngradePolicy.TO_QUALIFYING, 1200, "silver"),
        (DowngradePolicy.TO_FLOOR, 2500, "bronze"),
        (DowngradePolicy.HOLD, 0, "platinum"),
    ],
)
def test_project_is_what_the_check_would_decide_on_these_figures(
    policy: DowngradePolicy, value: int, projected: str
) -> None:
    """R19: the projected level equals the level ``handle`` would produce."""
    ladder = make_ladder(policy)
    found = project(ladder, held(), points(value), CTX, START)
    assert found is not None and found.key == projected
    assert check(ladder, held(), value).state.level_key == projected


def test_project_with_grace_days_looks_through_the_grace_period() -> None:
    """R19: a check that would open a grace period projects the level at its end."""
    ladder = make_ladder(DowngradePolicy.TO_QUALIFYING, grace_days=30)
    found = project(ladder, held(), points(1200), CTX, START)
    assert found is not None and found.key == "silver"
    in_grace = check(ladder, held(), 0).state
    during = project(ladder, in_grace, points(1200), CTX, CHECK)
    assert during is not None and during.key == "silver"
    kept = project(ladder, in_grace, points(3000), CTX, CHECK)
    assert kept is not None and kept.key == "platinum"


def test_project_keeps_pinned_floor_and_unchecked_standings_where_they_are() -> None:
    """R19/R20: pinned -> the pinned level; no check scheduled -> the current level;
    no level -> None."""
    ladder = make_ladder()
    pinned = held(assignment=pin("platinum"))
    assert project(ladder, pinned, points(0), CTX, START) == ladder.level("platinum")
    floor = TierState(level_key="bronze", achieved_at=START)
    assert project(ladder, floor, points(0), CTX, START) == ladder.level("bronze")
    assert project(ladder, TierState(), points(5000), CTX, START) is None


def test_project_does_not_change_the_standing() -> None:
    ladder = make_ladder()
    state = held()
    project(ladder, state, points(0), CTX, START)
    assert state == held()
