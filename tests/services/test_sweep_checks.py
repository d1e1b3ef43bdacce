"""The sweep's one-step constructions in ``domain.checks`` give exactly what the general
forms give: ``entered`` is ``lifecycle.enter``, ``level_of`` is ``Ladder.level``, and a
renewal changes only the cycle, grace, credit and validity of a standing."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from tierwise.domain import checks
from tierwise.domain.checks import Context, Due, DueKind, entered, handle, level_of
from tierwise.domain.criteria import Criterion, Rule
from tierwise.domain.ladder import Ladder, Level, Validity, ValidityType
from tierwise.domain.lifecycle import enter
from tierwise.domain.state import Assignment, AssignmentMode, TierState
from tierwise.domain.windows import Window, WindowType

YEAR = Window(type=WindowType.ROLLING_DAYS, days=365)
BASE = datetime(2024, 1, 1, tzinfo=UTC)


def ladder(validity: Validity) -> Ladder:
    def rule(threshold: int) -> Rule:
        return Rule(criteria=(Criterion(metric="points_earned", window=YEAR, threshold=threshold),))

    return Ladder(
        key="status",
        name="Status",
        validity=validity,
        levels=(
            Level(key="bronze", name="Bronze", rank=1, is_floor=True),
            Level(key="silver", name="Silver", rank=2, attain=rule(1000), is_assignable=True),
            Level(key="gold", name="Gold", rank=3, attain=rule(2000), maintain=rule(1500)),
        ),
    )


VALIDITIES = st.sampled_from(
    [
        Validity(type=ValidityType.FIXED_MONTHS, months=12),
        Validity(type=ValidityType.FIXED_MONTHS, months=3),
        Validity(type=ValidityType.CALENDAR_YEAR),
        Validity(type=ValidityType.ENROLMENT_ANNIVERSARY),
        Validity(type=ValidityType.FIXED_DATE, month=3, day=31),
        Validity(type=ValidityType.INACTIVITY, inactivity_days=180),
    ]
)
INSTANTS = st.integers(0, 900 * 86400).map(lambda s: BASE + timedelta(seconds=s))
KEYS = st.sampled_from([None, "bronze", "silver", "gold", "removed"])
ASSIGNMENTS = st.one_of(
    st.none(),
    st.builds(
        Assignment,
        level_key=st.sampled_from(["silver", "gold"]),
        mode=st.sampled_from(list(AssignmentMode)),
        reason=st.just("r"),
        actor=st.just("a"),
        assigned_at=INSTANTS,
        expires_at=st.one_of(st.none(), INSTANTS),
    ),
)
STATES = st.builds(
    TierState,
    level_key=KEYS,
    achieved_at=st.one_of(st.none(), INSTANTS),
    cycle_start=st.one_of(st.none(), INSTANTS),
    expires_at=st.one_of(st.none(), INSTANTS),
    check_due_at=st.one_of(st.none(), INSTANTS),
    previous_level_key=KEYS,
    assignment=ASSIGNMENTS,
    grace_until=st.one_of(st.none(), INSTANTS),
    credit=st.integers(0, 900),
)
CONTEXTS = st.builds(
    Context,
    tz=st.sampled_from([ZoneInfo("UTC"), ZoneInfo("Europe/Paris"), ZoneInfo("Asia/Tokyo")]),
    enrolled_at=INSTANTS,
    last_activity_at=st.one_of(st.none(), INSTANTS),
)


def test_the_state_has_the_fields_the_direct_constructions_assume() -> None:
    assert checks._DIRECT
    assert tuple(f.name for f in fields(TierState)) == checks._STATE_FIELDS


@settings(max_examples=300, deadline=None)
@given(
    validity=VALIDITIES,
    state=STATES,
    target=KEYS,
    at=INSTANTS,
    ctx=CONTEXTS,
    assignment=ASSIGNMENTS,
)
def test_entered_is_enter(
    validity: Validity,
    state: TierState,
    target: str | None,
    at: datetime,
    ctx: Context,
    assignment: Assignment | None,
) -> None:
    track = ladder(validity)
    level = track.level(target) if target else None
    expected = enter(
        track,
        state,
        level,
        at,
        tz=ctx.tz,
        enrolled_at=ctx.enrolled_at,
        last_activity_at=ctx.last_activity_at,
        assignment=assignment,
    )
    assert entered(track, state, level, at, ctx, assignment) == expected


@given(validity=VALIDITIES, key=st.text(max_size=8) | KEYS.filter(lambda k: k is not None))
def test_level_of_is_ladder_level(validity: Validity, key: str) -> None:
    track = ladder(validity)
    assert level_of(track, key) is track.level(key)


@settings(max_examples=300, deadline=None)
@given(
    validity=VALIDITIES,
    state=STATES,
    ctx=CONTEXTS,
    points=st.sampled_from([0, 900, 1200, 1600, 2100, 3000]),
    kind=st.sampled_from([DueKind.CHECK, DueKind.GRACE_END]),
    at=INSTANTS,
)
def test_handle_changes_only_what_a_check_may_change(
    validity: Validity,
    state: TierState,
    ctx: Context,
    points: int,
    kind: DueKind,
    at: datetime,
) -> None:
    """A renewal keeps the level, achievement, previous level and assignment; a move is
    ``enter``'s result (with a ``floor`` assignment kept)."""
    track = ladder(validity)
    outcome = handle(track, state, Due(kind, at), {("points_earned", YEAR): points}, ctx)
    new = outcome.state
    if outcome.change is not None and outcome.change.kind.value == "renewed":
        assert new == replace(
            state,
            cycle_start=new.cycle_start,
            grace_until=None,
            credit=new.credit,
            expires_at=new.expires_at,
            check_due_at=new.check_due_at,
        )
    elif outcome.change is not None and outcome.change.kind.value in ("downgraded", "lost"):
        held = state.assignment
        assert new == enter(
            track,
            replace(state, grace_until=None),
            track.level(new.level_key) if new.level_key else None,
            at,
            tz=ctx.tz,
            enrolled_at=ctx.enrolled_at,
            last_activity_at=ctx.last_activity_at,
            assignment=held if held is not None and held.mode is AssignmentMode.FLOOR else None,
        )
