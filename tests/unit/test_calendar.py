"""The business calendar: when a clock started at a given instant falls due.

China's 2026 holidays and make-up days (调休) are those of the holidays package:
Spring Festival 2026-02-16..23 off, Saturday 2026-02-14 and 2026-02-28 worked;
National Day 2026-10-01..07 off, Sunday 2026-09-20 and Saturday 2026-10-10 worked.
"""

from __future__ import annotations

import time as stopwatch
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from workflow.calendar import BusinessCalendar, build_calendar, warn_at

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
HOUR = timedelta(hours=1)


def sh(month: int, day: int, hour: int, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def be(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN)


@pytest.fixture(scope="module")
def cal() -> BusinessCalendar:
    return build_calendar()


@pytest.fixture(scope="module")
def lunch() -> BusinessCalendar:
    return build_calendar(working_hours=["09:00-12:00", "13:30-18:00"])


# -- the triage clock of DESIGN.md: 1 business hour --------------------------------------


def test_a_friday_1730_ticket_with_one_business_hour_is_due_monday_0930(
    cal: BusinessCalendar,
) -> None:
    due = cal.add_business_time(sh(3, 6, 17, 30), HOUR)
    assert due == sh(3, 9, 9, 30)
    assert due.utcoffset() == timedelta(0)  # results are UTC instants
    assert due == datetime(2026, 3, 9, 1, 30, tzinfo=UTC)


def test_a_monday_holiday_pushes_the_clock_to_tuesday(cal: BusinessCalendar) -> None:
    # Monday 2026-04-06 is the observed Tomb-Sweeping Day.
    assert cal.add_business_time(sh(4, 3, 17, 30), HOUR) == sh(4, 7, 9, 30)


def test_the_make_up_saturday_before_spring_festival_is_worked(cal: BusinessCalendar) -> None:
    assert cal.add_business_time(sh(2, 13, 17, 30), HOUR) == sh(2, 14, 9, 30)
    assert cal.is_working_time(sh(2, 14, 10))
    assert not cal.is_working_time(sh(2, 7, 10))  # an ordinary Saturday


def test_spring_festival_stops_the_clock_for_the_whole_holiday(cal: BusinessCalendar) -> None:
    assert cal.add_business_time(sh(2, 14, 17, 30), HOUR) == sh(2, 24, 9, 30)
    assert not cal.is_working_time(sh(2, 17, 10))
    assert cal.business_time_between(sh(2, 15, 0), sh(2, 24, 0)) == timedelta(0)


def test_national_day_and_its_make_up_days(cal: BusinessCalendar) -> None:
    assert cal.add_business_time(sh(9, 30, 17, 30), HOUR) == sh(10, 8, 9, 30)
    assert not cal.is_working_time(sh(10, 1, 10))
    assert not cal.is_working_time(sh(10, 7, 10))
    assert cal.is_working_time(sh(10, 10, 10))  # Saturday, 调休
    assert cal.is_working_time(sh(9, 20, 10))  # Sunday, 调休
    assert not cal.is_working_time(sh(10, 11, 10))  # the Sunday after is a weekend again


def test_a_clock_that_runs_out_at_closing_time_is_due_at_closing(cal: BusinessCalendar) -> None:
    assert cal.add_business_time(sh(3, 10, 9), 9 * HOUR) == sh(3, 10, 18)


def test_a_clock_started_at_night_counts_from_the_next_opening(cal: BusinessCalendar) -> None:
    assert cal.add_business_time(sh(3, 10, 22), 4 * HOUR) == sh(3, 11, 13)
    assert cal.add_business_time(sh(3, 10, 7), 4 * HOUR) == sh(3, 10, 13)


def test_next_opening(cal: BusinessCalendar) -> None:
    assert cal.next_opening(sh(3, 7, 10)) == sh(3, 9, 9)  # Saturday → Monday
    assert cal.next_opening(sh(3, 10, 10, 15)) == sh(3, 10, 10, 15)  # open now
    assert cal.next_opening(sh(3, 10, 18)) == sh(3, 11, 9)  # closing is not open


# -- several windows a day ---------------------------------------------------------------


def test_the_lunch_break_does_not_count(lunch: BusinessCalendar) -> None:
    assert lunch.add_business_time(sh(3, 10, 11, 30), HOUR) == sh(3, 10, 14)
    assert lunch.add_business_time(sh(3, 10, 9), 4 * HOUR) == sh(3, 10, 14, 30)
    assert lunch.add_business_time(sh(3, 10, 12, 15), HOUR) == sh(3, 10, 14, 30)
    assert not lunch.is_working_time(sh(3, 10, 12, 30))
    assert lunch.is_working_time(sh(3, 10, 13, 30))
    assert lunch.business_time_between(sh(3, 10, 9), sh(3, 10, 18)) == timedelta(hours=7.5)


# -- business days ---------------------------------------------------------------------


def test_one_business_day_from_friday_afternoon_is_monday_afternoon(
    cal: BusinessCalendar,
) -> None:
    assert cal.add_business_days(sh(3, 6, 15), 1) == sh(3, 9, 15)
    assert cal.add_business_days(sh(3, 6, 15), 2) == sh(3, 10, 15)


def test_business_days_skip_national_day(cal: BusinessCalendar) -> None:
    assert cal.add_business_days(sh(9, 30, 15), 1) == sh(10, 8, 15)


def test_business_days_from_outside_hours_are_clamped_into_the_day(
    cal: BusinessCalendar, lunch: BusinessCalendar
) -> None:
    assert cal.add_business_days(sh(3, 10, 20), 1) == sh(3, 11, 18)
    assert cal.add_business_days(sh(3, 10, 7), 1) == sh(3, 11, 9)
    assert lunch.add_business_days(sh(3, 10, 12, 30), 1) == sh(3, 11, 12)


def test_a_saturday_start_gets_a_full_business_day(cal: BusinessCalendar) -> None:
    due = cal.add_business_days(sh(3, 7, 10), 1)
    assert due == sh(3, 10, 9)
    assert cal.business_time_between(sh(3, 7, 10), due) == 9 * HOUR


def test_end_of_next_business_day_skips_mid_autumn_and_the_weekend(
    cal: BusinessCalendar,
) -> None:
    # Friday 2026-09-25 is Mid-Autumn Festival.
    assert cal.end_of_next_business_day(sh(9, 24, 10)) == sh(9, 28, 18)
    assert cal.end_of_next_business_day(sh(3, 10, 23, 59)) == sh(3, 11, 18)


def test_business_time_between(cal: BusinessCalendar) -> None:
    assert cal.business_time_between(sh(3, 6, 17), sh(3, 9, 10)) == 2 * HOUR
    assert cal.business_time_between(sh(3, 9, 10), sh(3, 6, 17)) == -2 * HOUR
    assert cal.business_time_between(sh(3, 7, 0), sh(3, 8, 23)) == timedelta(0)


# -- a zone with daylight saving time ------------------------------------------------------


def test_berlin_windows_keep_their_local_hours_across_the_spring_change() -> None:
    berlin = build_calendar("Europe/Berlin", holidays_country="")
    # Friday 17:30 CET (+01:00); DST starts Sunday 2026-03-29; Monday 09:30 is CEST.
    due = berlin.add_business_time(be(3, 27, 17, 30), HOUR)
    assert due == be(3, 30, 9, 30)
    assert due == datetime(2026, 3, 30, 7, 30, tzinfo=UTC)
    assert berlin.is_working_time(datetime(2026, 3, 30, 7, 0, tzinfo=UTC))  # 09:00 CEST
    assert not berlin.is_working_time(datetime(2026, 3, 27, 7, 30, tzinfo=UTC))  # 08:30 CET


def test_a_round_the_clock_calendar_counts_real_hours_over_dst_changes() -> None:
    always = build_calendar(
        "Europe/Berlin",
        working_hours=["00:00-24:00"],
        working_days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        holidays_country="",
    )
    assert always.business_time_between(be(3, 28, 12), be(3, 29, 12)) == 23 * HOUR
    assert always.business_time_between(be(10, 24, 12), be(10, 25, 12)) == 25 * HOUR
    assert always.add_business_time(be(3, 28, 12), 24 * HOUR) == be(3, 29, 13)


def test_an_instant_given_in_another_zone_is_the_same_instant(cal: BusinessCalendar) -> None:
    # 10:30 in Berlin (CET) on a Monday is 17:30 in Shanghai: half an hour before closing.
    assert cal.add_business_time(be(3, 9, 10, 30), HOUR) == sh(3, 10, 9, 30)


# -- warnings --------------------------------------------------------------------------------


def test_the_warning_comes_at_three_quarters_of_the_business_span(
    cal: BusinessCalendar, lunch: BusinessCalendar
) -> None:
    start = sh(3, 6, 17, 30)
    due = cal.add_business_time(start, HOUR)
    assert warn_at(start, due, 0.75, cal) == sh(3, 9, 9, 15)
    handling_due = lunch.add_business_time(sh(3, 10, 9), 4 * HOUR)
    assert warn_at(sh(3, 10, 9), handling_due, 0.75, lunch) == sh(3, 10, 12)


def test_a_calendar_day_clock_warns_in_elapsed_time() -> None:
    start = sh(3, 6, 10)
    assert warn_at(start, start + timedelta(days=3)) == sh(3, 8, 16)


def test_the_warning_is_never_after_the_deadline(cal: BusinessCalendar) -> None:
    start, due = sh(3, 7, 10), sh(3, 7, 11)  # a due time on a Saturday, set by hand
    assert warn_at(start, due, 0.75, cal) == due
    with pytest.raises(ValueError):
        warn_at(start, due, 1.5, cal)


# -- configuration ---------------------------------------------------------------------------


def test_days_off_and_make_up_days_of_the_deployment_override_the_country() -> None:
    custom = build_calendar(extra_days_off=["2026-12-01"], extra_working_days=[date(2026, 12, 5)])
    assert not custom.is_working_time(sh(12, 1, 10))  # a Tuesday off
    assert custom.is_working_time(sh(12, 5, 10))  # a Saturday worked
    worked_holiday = build_calendar(extra_working_days=["2026-10-02"])
    assert worked_holiday.is_working_time(sh(10, 2, 10))


def test_without_a_country_holidays_are_working_days() -> None:
    plain = build_calendar(holidays_country="")
    assert plain.is_working_time(sh(10, 1, 10))
    assert not plain.is_working_time(sh(10, 10, 10))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "time zone"),
        ({"working_hours": ["18:00-09:00"]}, "open before"),
        ({"working_hours": ["9-18"]}, "09:00-18:00"),
        ({"working_hours": ["09:00-25:00"]}, "not times"),
        ({"working_hours": ["09:00-13:00", "12:00-18:00"]}, "overlap"),
        ({"working_hours": []}, "at least one"),
        ({"working_days": ["funday"]}, "working day"),
        ({"working_days": []}, "working days"),
        ({"holidays_country": "XX"}, "country"),
        ({"extra_days_off": ["2026-13-01"]}, "ISO date"),
        ({"extra_days_off": ["2026-12-01"], "extra_working_days": ["2026-12-01"]}, "both"),
    ],
)
def test_a_bad_setting_is_a_clear_value_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_calendar(**kwargs)  # type: ignore[arg-type]


def test_working_days_may_be_written_in_full() -> None:
    assert build_calendar(working_days=["Monday", "TUE", "sat"]).working_days == {0, 1, 5}


def test_naive_datetimes_are_refused(cal: BusinessCalendar) -> None:
    naive = datetime(2026, 3, 6, 17, 30)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="time zone"):
        cal.is_working_time(naive)
    with pytest.raises(ValueError):
        cal.add_business_time(naive, HOUR)
    with pytest.raises(ValueError):
        warn_at(naive, sh(3, 9, 9, 30))


# -- cost ---------------------------------------------------------------------------------


def test_long_spans_are_computed_window_by_window(lunch: BusinessCalendar) -> None:
    started = stopwatch.perf_counter()
    due = lunch.add_business_time(sh(1, 5, 9), timedelta(days=30))
    elapsed = stopwatch.perf_counter() - started
    # 720 business hours at 7.5 a day are 96 full working days from Monday 2026-01-05,
    # skipping New Year, Spring Festival, Tomb-Sweeping and Labour Day, working 调休 days.
    assert due == sh(5, 27, 18)
    assert lunch.business_time_between(sh(1, 5, 9), due) == timedelta(days=30)
    assert elapsed < 0.5
