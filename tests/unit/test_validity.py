"""Validity expiry and check scheduling (R14, R15, examples E4, E5)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tierwise.domain.calendar import add_months
from tierwise.domain.ladder import CheckSchedule, Validity, ValidityType
from tierwise.domain.validity import check_due_at, expiry_of, next_cycle_start

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
ZONES = [
    ZoneInfo("UTC"),
    AMSTERDAM,
    BERLIN,
    NEW_YORK,
    SYDNEY,
    ZoneInfo("America/Santiago"),
    ZoneInfo("America/Havana"),
    ZoneInfo("Asia/Kolkata"),
    ZoneInfo("Pacific/Apia"),
    ZoneInfo("Pacific/Chatham"),
    ZoneInfo("Australia/Lord_Howe"),
]


def at(
    tz: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """The instant (UTC) of a local wall-clock time in ``tz``."""
    return datetime(year, month, day, hour, minute, second, tzinfo=tz).astimezone(UTC)


def wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive local wall-clock time of ``instant`` in ``tz``."""
    return instant.astimezone(tz).replace(tzinfo=None)


def expiry(validity: Validity, tier_start: datetime, tz: ZoneInfo, **kw: datetime) -> datetime:
    enrolled_at = kw.pop("enrolled_at", tier_start)
    result = expiry_of(validity, tier_start=tier_start, enrolled_at=enrolled_at, tz=tz, **kw)
    assert result is not None
    assert result.tzinfo is UTC
    return result


def fixed_months(n: int) -> Validity:
    return Validity(type=ValidityType.FIXED_MONTHS, months=n)


# -- none ------------------------------------------------------------------------------


def test_a_ladder_without_validity_never_expires() -> None:
    """R14: with no validity the level is permanent."""
    start = at(AMSTERDAM, 2024, 4, 15)
    assert expiry_of(Validity(), tier_start=start, enrolled_at=start, tz=AMSTERDAM) is None


# -- fixed months ----------------------------------------------------------------------


def test_e5_twelve_fixed_months_end_one_second_before_the_same_day_a_year_later() -> None:
    """R14/E5: start 2024-04-15 00:00, 12 months → 2025-04-14 23:59:59 local."""
    result = expiry(fixed_months(12), at(AMSTERDAM, 2024, 4, 15), AMSTERDAM)
    assert wall(result, AMSTERDAM) == datetime(2025, 4, 14, 23, 59, 59)
    assert result == datetime(2025, 4, 14, 21, 59, 59, tzinfo=UTC)


def test_e5_a_re_upgrade_restarts_the_fixed_months_clock() -> None:
    """R14/E5: re-upgraded 2024-10-25 → expiry 2025-10-24 23:59:59 local."""
    result = expiry(fixed_months(12), at(AMSTERDAM, 2024, 10, 25), AMSTERDAM)
    assert wall(result, AMSTERDAM) == datetime(2025, 10, 24, 23, 59, 59)


def test_fixed_months_across_spring_forward_in_berlin_keeps_local_midnight() -> None:
    """R14: Berlin 2024-03-01 00:00 CET + 1 month ends 2024-03-31 23:59:59 CEST."""
    result = expiry(fixed_months(1), at(BERLIN, 2024, 3, 1), BERLIN)
    assert wall(result, BERLIN) == datetime(2024, 3, 31, 23, 59, 59)
    assert result == datetime(2024, 3, 31, 21, 59, 59, tzinfo=UTC)


def test_fixed_months_across_fall_back_in_berlin_keeps_local_midnight() -> None:
    """R14: Berlin 2024-10-15 00:00 CEST + 1 month ends 2024-11-14 23:59:59 CET."""
    result = expiry(fixed_months(1), at(BERLIN, 2024, 10, 15), BERLIN)
    assert wall(result, BERLIN) == datetime(2024, 11, 14, 23, 59, 59)
    assert result == datetime(2024, 11, 14, 22, 59, 59, tzinfo=UTC)


def test_fixed_months_across_dst_in_new_york_keeps_the_local_time_of_day() -> None:
    """R14: New York 2024-03-01 09:30 EST + 1 month ends 2024-04-01 09:29:59 EDT."""
    result = expiry(fixed_months(1), at(NEW_YORK, 2024, 3, 1, 9, 30), NEW_YORK)
    assert wall(result, NEW_YORK) == datetime(2024, 4, 1, 9, 29, 59)
    assert result == datetime(2024, 4, 1, 13, 29, 59, tzinfo=UTC)
    back = expiry(fixed_months(1), at(NEW_YORK, 2024, 10, 20, 9, 30), NEW_YORK)
    assert back == datetime(2024, 11, 20, 14, 29, 59, tzinfo=UTC)


def test_fixed_months_ending_right_after_a_dst_gap_expire_one_real_second_before() -> None:
    """R14: 2023-03-31 03:00 + 12 months ends at 2024-03-31 03:00 CEST, right after
    Berlin's spring-forward gap; the expiry is one real second earlier, 01:59:59 CET
    (02:59:59 does not exist that day)."""
    result = expiry(fixed_months(12), at(BERLIN, 2023, 3, 31, 3, 0), BERLIN)
    assert result == datetime(2024, 3, 31, 0, 59, 59, tzinfo=UTC)
    assert wall(result, BERLIN) == datetime(2024, 3, 31, 1, 59, 59)


def test_fixed_months_ending_inside_a_dst_gap_land_after_the_gap() -> None:
    """R14: 2023-03-31 02:30 + 12 months is 2024-03-31 02:30, which Berlin skips; the
    end moves past the gap to 03:30 CEST, so the expiry is 03:29:59 CEST."""
    result = expiry(fixed_months(12), at(BERLIN, 2023, 3, 31, 2, 30), BERLIN)
    assert result == datetime(2024, 3, 31, 1, 29, 59, tzinfo=UTC)
    assert wall(result, BERLIN) == datetime(2024, 3, 31, 3, 29, 59)


def test_fixed_months_ending_in_a_repeated_hour_use_its_first_occurrence() -> None:
    """R14: 2024-09-27 02:30 + 1 month is 2024-10-27 02:30, which Berlin lives twice;
    the end is the first (CEST) one, so the expiry is 02:29:59 CEST."""
    result = expiry(fixed_months(1), at(BERLIN, 2024, 9, 27, 2, 30), BERLIN)
    assert result == datetime(2024, 10, 27, 0, 29, 59, tzinfo=UTC)


def test_fixed_months_clamp_to_the_last_day_of_a_shorter_month() -> None:
    """R14: Jan 31 + 1 month → Feb 29 (leap) / Feb 28, minus one second."""
    leap = expiry(fixed_months(1), at(AMSTERDAM, 2024, 1, 31), AMSTERDAM)
    assert wall(leap, AMSTERDAM) == datetime(2024, 2, 28, 23, 59, 59)
    common = expiry(fixed_months(1), at(AMSTERDAM, 2025, 1, 31, 12), AMSTERDAM)
    assert wall(common, AMSTERDAM) == datetime(2025, 2, 28, 11, 59, 59)


# -- enrolment anniversary -------------------------------------------------------------


def test_e4_the_anniversary_validity_ends_at_the_end_of_the_next_anniversary() -> None:
    """R14/E4: enrolled and achieved 2021-01-21 → expiry 2022-01-21 23:59:59 local."""
    start = at(AMSTERDAM, 2021, 1, 21, 10, 15)
    result = expiry(Validity(type=ValidityType.ENROLMENT_ANNIVERSARY), start, AMSTERDAM)
    assert wall(result, AMSTERDAM) == datetime(2022, 1, 21, 23, 59, 59)


def test_the_anniversary_is_the_first_one_after_the_tier_start() -> None:
    """R14: enrolled 2020-06-10, level reached 2021-01-21 → anniversary 2021-06-10."""
    result = expiry(
        Validity(type=ValidityType.ENROLMENT_ANNIVERSARY),
        at(AMSTERDAM, 2021, 1, 21),
        AMSTERDAM,
        enrolled_at=at(AMSTERDAM, 2020, 6, 10, 0, 30),
    )
    assert wall(result, AMSTERDAM) == datetime(2021, 6, 10, 23, 59, 59)


def test_the_anniversary_uses_the_local_enrolment_date() -> None:
    """R14: 2020-06-09 23:30 UTC is 2020-06-10 in Sydney, so the anniversary is June 10."""
    result = expiry(
        Validity(type=ValidityType.ENROLMENT_ANNIVERSARY),
        at(SYDNEY, 2021, 1, 21),
        SYDNEY,
        enrolled_at=datetime(2020, 6, 9, 23, 30, tzinfo=UTC),
    )
    assert wall(result, SYDNEY) == datetime(2021, 6, 10, 23, 59, 59)


def test_a_feb_29_enrolment_anniversary_falls_on_feb_28_in_a_common_year() -> None:
    """R14: enrolled 2024-02-29 → anniversary 2025-02-28 23:59:59 local."""
    enrolled = at(AMSTERDAM, 2024, 2, 29, 8)
    result = expiry(
        Validity(type=ValidityType.ENROLMENT_ANNIVERSARY),
        enrolled,
        AMSTERDAM,
        enrolled_at=enrolled,
    )
    assert wall(result, AMSTERDAM) == datetime(2025, 2, 28, 23, 59, 59)


def test_a_feb_29_enrolment_anniversary_falls_on_feb_29_in_a_leap_year() -> None:
    """R14: enrolled 2024-02-29, level reached 2027-03-01 → anniversary 2028-02-29."""
    result = expiry(
        Validity(type=ValidityType.ENROLMENT_ANNIVERSARY),
        at(AMSTERDAM, 2027, 3, 1),
        AMSTERDAM,
        enrolled_at=at(AMSTERDAM, 2024, 2, 29),
    )
    assert wall(result, AMSTERDAM) == datetime(2028, 2, 29, 23, 59, 59)


def test_an_anniversary_with_a_minimum_stay_skips_anniversaries_that_come_too_soon() -> None:
    """R14: enrolled Jan 21, level reached 2021-12-01, min stay 3 months → the first
    anniversary on or after 2022-03-01 is 2023-01-21."""
    validity = Validity(type=ValidityType.ENROLMENT_ANNIVERSARY, min_stay_months=3)
    result = expiry(
        validity,
        at(AMSTERDAM, 2021, 12, 1),
        AMSTERDAM,
        enrolled_at=at(AMSTERDAM, 2020, 1, 21),
    )
    assert wall(result, AMSTERDAM) == datetime(2023, 1, 21, 23, 59, 59)
    without = Validity(type=ValidityType.ENROLMENT_ANNIVERSARY)
    sooner = expiry(
        without, at(AMSTERDAM, 2021, 12, 1), AMSTERDAM, enrolled_at=at(AMSTERDAM, 2020, 1, 21)
    )
    assert wall(sooner, AMSTERDAM) == datetime(2022, 1, 21, 23, 59, 59)


def test_a_minimum_stay_counts_an_anniversary_falling_exactly_on_its_end() -> None:
    """R14: min stay ends 2022-01-21, which is an anniversary: on or after includes it."""
    validity = Validity(type=ValidityType.ENROLMENT_ANNIVERSARY, min_stay_months=12)
    result = expiry(validity, at(AMSTERDAM, 2021, 1, 21), AMSTERDAM)
    assert wall(result, AMSTERDAM) == datetime(2022, 1, 21, 23, 59, 59)


# -- fixed date ------------------------------------------------------------------------


def test_a_fixed_date_validity_ends_on_the_next_occurrence_of_that_date() -> None:
    """R14: fixed date June 30, level reached 2024-07-01 → 2025-06-30 23:59:59."""
    validity = Validity(type=ValidityType.FIXED_DATE, month=6, day=30)
    assert wall(expiry(validity, at(BERLIN, 2024, 7, 1), BERLIN), BERLIN) == datetime(
        2025, 6, 30, 23, 59, 59
    )
    assert wall(expiry(validity, at(BERLIN, 2024, 6, 30, 12), BERLIN), BERLIN) == datetime(
        2025, 6, 30, 23, 59, 59
    )
    assert wall(expiry(validity, at(BERLIN, 2024, 6, 29), BERLIN), BERLIN) == datetime(
        2024, 6, 30, 23, 59, 59
    )


def test_a_fixed_date_with_a_minimum_stay_waits_for_the_stay_to_end() -> None:
    """R14: June 30 with min stay 6 months, reached 2024-05-01 → 2025-06-30 (2024-06-30
    comes before 2024-11-01)."""
    validity = Validity(type=ValidityType.FIXED_DATE, month=6, day=30, min_stay_months=6)
    result = expiry(validity, at(BERLIN, 2024, 5, 1), BERLIN)
    assert wall(result, BERLIN) == datetime(2025, 6, 30, 23, 59, 59)


def test_a_fixed_date_past_the_end_of_its_month_is_clamped() -> None:
    """R14: a configured Feb 31 falls on the month's last day."""
    validity = Validity(type=ValidityType.FIXED_DATE, month=2, day=31)
    result = expiry(validity, at(BERLIN, 2024, 3, 1), BERLIN)
    assert wall(result, BERLIN) == datetime(2025, 2, 28, 23, 59, 59)


# -- calendar year ---------------------------------------------------------------------


def test_a_calendar_year_in_sydney_ends_at_local_new_years_eve() -> None:
    """R14: Dec 31 23:59:59 AEDT (UTC+11) is 12:59:59 UTC on Dec 31."""
    result = expiry(Validity(type=ValidityType.CALENDAR_YEAR), at(SYDNEY, 2024, 7, 1), SYDNEY)
    assert result == datetime(2024, 12, 31, 12, 59, 59, tzinfo=UTC)
    assert wall(result, SYDNEY) == datetime(2024, 12, 31, 23, 59, 59)


def test_the_calendar_year_is_the_local_year_of_the_tier_start() -> None:
    """R14: 2024-12-31 14:00 UTC is already 2025-01-01 in Sydney → end of 2025."""
    result = expiry(
        Validity(type=ValidityType.CALENDAR_YEAR),
        datetime(2024, 12, 31, 14, 0, tzinfo=UTC),
        SYDNEY,
    )
    assert wall(result, SYDNEY) == datetime(2025, 12, 31, 23, 59, 59)


def test_a_calendar_year_extended_by_three_months_ends_on_march_31() -> None:
    """R14: calendar year + extend_months 3 → Mar 31 23:59:59 of the next year."""
    validity = Validity(type=ValidityType.CALENDAR_YEAR, extend_months=3)
    result = expiry(validity, at(NEW_YORK, 2024, 5, 5), NEW_YORK)
    assert wall(result, NEW_YORK) == datetime(2025, 3, 31, 23, 59, 59)
    two = Validity(type=ValidityType.CALENDAR_YEAR, extend_months=2)
    assert wall(expiry(two, at(NEW_YORK, 2023, 5, 5), NEW_YORK), NEW_YORK) == datetime(
        2024, 2, 29, 23, 59, 59
    )


def test_a_level_reached_in_the_last_second_of_the_year_is_checked_at_the_boundary() -> None:
    """R14/R15: the period end is the expiry even for a start in its final second; the
    check is still due after the start."""
    start = at(BERLIN, 2024, 12, 31, 23, 59, 59)
    result = expiry(Validity(type=ValidityType.CALENDAR_YEAR), start, BERLIN)
    assert result == start
    assert check_due_at(result, CheckSchedule.DAILY, BERLIN) == at(BERLIN, 2025, 1, 1)
    assert next_cycle_start(result) > start


# -- fixed year ------------------------------------------------------------------------


def test_a_fixed_year_ends_the_day_before_the_next_period_starts() -> None:
    """R14: periods start Apr 1; reached 2024-08-10 → 2025-03-31 23:59:59."""
    validity = Validity(type=ValidityType.FIXED_YEAR, month=4, day=1)
    result = expiry(validity, at(BERLIN, 2024, 8, 10), BERLIN)
    assert wall(result, BERLIN) == datetime(2025, 3, 31, 23, 59, 59)


def test_a_level_reached_on_the_first_day_of_a_fixed_year_lasts_the_whole_period() -> None:
    """R14: reached on 2024-04-01 (a period start) → 2025-03-31; on 2024-03-31 → same day."""
    validity = Validity(type=ValidityType.FIXED_YEAR, month=4, day=1)
    first = expiry(validity, at(BERLIN, 2024, 4, 1), BERLIN)
    assert wall(first, BERLIN) == datetime(2025, 3, 31, 23, 59, 59)
    last = expiry(validity, at(BERLIN, 2024, 3, 31, 8), BERLIN)
    assert wall(last, BERLIN) == datetime(2024, 3, 31, 23, 59, 59)


def test_a_fixed_year_extended_by_months_ends_at_a_month_end() -> None:
    """R14: periods start Jul 1 (last day Jun 30) + 2 months → Aug 31 23:59:59."""
    validity = Validity(type=ValidityType.FIXED_YEAR, month=7, day=1, extend_months=2)
    result = expiry(validity, at(SYDNEY, 2024, 9, 15), SYDNEY)
    assert wall(result, SYDNEY) == datetime(2025, 8, 31, 23, 59, 59)


# -- inactivity ------------------------------------------------------------------------


def test_inactivity_validity_counts_from_the_tier_start_without_activity() -> None:
    """R14: 90 days of inactivity from the start, minus one second."""
    start = datetime(2024, 1, 10, 9, 0, tzinfo=UTC)
    validity = Validity(type=ValidityType.INACTIVITY, inactivity_days=90)
    assert expiry(validity, start, BERLIN) == start + timedelta(days=90) - timedelta(seconds=1)


def test_every_activity_restarts_the_inactivity_clock() -> None:
    """R14: the clock runs from the latest activity, never from before the tier start."""
    start = datetime(2024, 1, 10, 9, 0, tzinfo=UTC)
    validity = Validity(type=ValidityType.INACTIVITY, inactivity_days=30)
    later = datetime(2024, 2, 1, 12, 0, tzinfo=UTC)
    assert expiry(validity, start, BERLIN, last_activity_at=later) == datetime(
        2024, 3, 2, 11, 59, 59, tzinfo=UTC
    )
    earlier = datetime(2023, 12, 1, tzinfo=UTC)
    assert expiry(validity, start, BERLIN, last_activity_at=earlier) == datetime(
        2024, 2, 9, 8, 59, 59, tzinfo=UTC
    )


# -- checks and cycles -----------------------------------------------------------------


def test_a_daily_check_is_due_the_second_after_expiry() -> None:
    """R15: daily checks run right after the expiry."""
    result = at(BERLIN, 2025, 4, 14, 23, 59, 59)
    assert check_due_at(result, CheckSchedule.DAILY, BERLIN) == at(BERLIN, 2025, 4, 15)


def test_a_month_end_check_is_due_when_the_expiry_month_is_over() -> None:
    """R15: expiry 2025-04-14 23:59:59 Berlin → check due 2025-05-01 00:00 local."""
    result = at(BERLIN, 2025, 4, 14, 23, 59, 59)
    due = check_due_at(result, CheckSchedule.MONTH_END, BERLIN)
    assert due == at(BERLIN, 2025, 5, 1)
    assert due == datetime(2025, 4, 30, 22, 0, tzinfo=UTC)


def test_a_month_end_check_uses_the_local_month_of_the_expiry() -> None:
    """R15: 2024-12-31 13:30 UTC is already January in Sydney → due 2025-02-01 local."""
    due = check_due_at(datetime(2024, 12, 31, 13, 30, tzinfo=UTC), CheckSchedule.MONTH_END, SYDNEY)
    assert due == at(SYDNEY, 2025, 2, 1)


def test_a_renewed_cycle_starts_one_second_after_the_expiry() -> None:
    """R16: the next cycle starts where the previous one ended."""
    result = at(AMSTERDAM, 2025, 4, 14, 23, 59, 59)
    assert next_cycle_start(result) == at(AMSTERDAM, 2025, 4, 15)
    assert next_cycle_start(result).tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    """R27: every instant must carry its offset."""
    with pytest.raises(ValueError, match="offset"):
        expiry_of(
            fixed_months(1),
            tier_start=datetime(2024, 1, 1),
            enrolled_at=datetime(2024, 1, 1, tzinfo=UTC),
            tz=BERLIN,
        )
    with pytest.raises(ValueError, match="offset"):
        next_cycle_start(datetime(2024, 1, 1))


# -- properties ------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2090, 12, 31),
    timezones=st.just(UTC),
)
zones = st.sampled_from(ZONES)
months = st.integers(min_value=1, max_value=120)
month_days = st.tuples(
    st.integers(min_value=1, max_value=12), st.integers(min_value=1, max_value=31)
)
optional_months = st.none() | months

validities = st.one_of(
    st.builds(lambda n: Validity(type=ValidityType.FIXED_MONTHS, months=n), months),
    st.builds(
        lambda m: Validity(type=ValidityType.ENROLMENT_ANNIVERSARY, min_stay_months=m),
        optional_months,
    ),
    st.builds(
        lambda md, m: Validity(
            type=ValidityType.FIXED_DATE, month=md[0], day=md[1], min_stay_months=m
        ),
        month_days,
        optional_months,
    ),
    st.builds(
        lambda k: Validity(type=ValidityType.CALENDAR_YEAR, extend_months=k), optional_months
    ),
    st.builds(
        lambda md, k: Validity(
            type=ValidityType.FIXED_YEAR, month=md[0], day=md[1], extend_months=k
        ),
        month_days,
        optional_months,
    ),
    st.builds(
        lambda d: Validity(type=ValidityType.INACTIVITY, inactivity_days=d),
        st.integers(min_value=1, max_value=3660),
    ),
)


def _before_last_local_second(instant: datetime, tz: ZoneInfo) -> bool:
    return instant.astimezone(tz).time() < time(23, 59, 59)


@given(
    validity=validities,
    tier_start=instants,
    enrolled_at=instants,
    tz=zones,
    activity=st.none() | instants,
)
def test_every_expiry_comes_after_the_tier_start(
    validity: Validity,
    tier_start: datetime,
    enrolled_at: datetime,
    tz: ZoneInfo,
    activity: datetime | None,
) -> None:
    """R14: a held level is valid for a non-empty time (starts in a local day's last
    second are the documented edge case of day-end expiries, tested above)."""
    assume(_before_last_local_second(tier_start, tz))
    result = expiry_of(
        validity, tier_start=tier_start, enrolled_at=enrolled_at, tz=tz, last_activity_at=activity
    )
    assert result is not None
    assert result.tzinfo is UTC
    assert result > tier_start
    assert next_cycle_start(result) > tier_start


@given(expiry_at=instants, tz=zones, schedule=st.sampled_from(CheckSchedule))
def test_a_check_is_always_due_after_the_expiry(
    expiry_at: datetime, tz: ZoneInfo, schedule: CheckSchedule
) -> None:
    """R15: no level is checked before it expires; month-end checks fall in the next
    local month, on its first day at midnight."""
    due = check_due_at(expiry_at, schedule, tz)
    assert due > expiry_at
    assert due.tzinfo is UTC
    if schedule is CheckSchedule.MONTH_END:
        assert due - expiry_at <= timedelta(days=32)
        local_due = due.astimezone(tz).date()
        local_expiry = expiry_at.astimezone(tz).date()
        assert local_due == add_months(local_expiry.replace(day=1), 1)


def _exists(naive: datetime, tz: ZoneInfo) -> bool:
    return wall(naive.replace(tzinfo=tz).astimezone(UTC), tz) == naive


@given(tier_start=instants, tz=zones, n=months)
def test_fixed_months_expire_one_second_before_the_start_wall_clock_time(
    tier_start: datetime, tz: ZoneInfo, n: int
) -> None:
    """R14: fixed months keep the local wall-clock time of the start, minus one second,
    whenever that local time exists on the expiry day."""
    start_wall = wall(tier_start, tz)
    end_wall = datetime.combine(add_months(start_wall.date(), n), start_wall.time())
    assume(_exists(end_wall - timedelta(seconds=1), tz))
    result = expiry(fixed_months(n), tier_start, tz)
    assert wall(result, tz) == end_wall - timedelta(seconds=1)
