"""The business calendar: when the department works, and business-time arithmetic.

The policy's clocks run in business time ("handle within 4 hours", "by the next day"):
a request that arrives at 17:30 on a Friday with one business hour to go is due at 09:30
on Monday, not at 18:30 on Friday. The calendar knows the working windows of a day (one
or several: 09:00-12:00 and 13:30-18:00 leave the lunch break out), the working weekdays,
the public holidays, and China's make-up working days (调休), on which a Saturday or a
Sunday is worked to bridge a holiday.

Windows are wall-clock times in the department's zone, so in a zone with daylight
saving time a window keeps its local hours and the arithmetic counts the real time
elapsed; every result is an instant, returned in UTC. Nothing here reads the clock.

The arithmetic walks window by window and day by day, never minute by minute, so a
span of months costs a few hundred steps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_WARN_SHARE = 0.75
# A window may close at "24:00", which no ``time`` can hold; this value stands for it.
END_OF_DAY = time.max
# A calendar without a single working day in ten years is misconfigured; stop searching
# instead of looping for ever.
_MAX_IDLE_DAYS = 3660
_WINDOW = re.compile(r"\s*(\d{1,2}):(\d{2})\s*[-–~]\s*(\d{1,2}):(\d{2})\s*")

Window = tuple[datetime, datetime]


def _require_aware(*instants: datetime) -> None:
    for instant in instants:
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError(f"{instant.isoformat()} has no time zone; pass an aware datetime")


@dataclass(frozen=True)
class BusinessCalendar:
    """Working windows, weekdays, holidays and make-up days of one department."""

    timezone: ZoneInfo
    # Several windows allowed, e.g. 09:00-12:00 and 13:30-18:00; END_OF_DAY means 24:00.
    working_hours: tuple[tuple[time, time], ...]
    working_days: frozenset[int]  # 0 = Monday, as date.weekday()
    holidays: frozenset[date]
    # Worked although the weekday is not a working day, or a holiday: 调休 make-up days.
    extra_working_days: frozenset[date]

    def __post_init__(self) -> None:
        if not self.working_hours:
            raise ValueError("a calendar needs at least one working window")
        previous_end: time | None = None
        for start, end in self.working_hours:
            if start.tzinfo is not None or end.tzinfo is not None:
                raise ValueError("working windows are local wall-clock times, without tzinfo")
            if start >= end:
                raise ValueError(f"window {start:%H:%M}-{end:%H:%M} must open before it closes")
            if previous_end is not None and start < previous_end:
                raise ValueError("working windows must be in order and must not overlap")
            previous_end = end
        if not self.working_days or not self.working_days <= set(range(7)):
            raise ValueError("working days must be a non-empty set of weekdays 0 (Mon) to 6")

    # -- days and windows -------------------------------------------------------------

    def is_working_day(self, day: date) -> bool:
        """Whether ``day`` (a local date) is worked: a make-up day, or a working weekday
        that is not a holiday."""
        if day in self.extra_working_days:
            return True
        return day.weekday() in self.working_days and day not in self.holidays

    def working_windows(self, day: date) -> tuple[Window, ...]:
        """The working windows of a local date as UTC instants; empty on a day off."""
        if not self.is_working_day(day):
            return ()
        return tuple((self._instant(day, s), self._instant(day, e)) for s, e in self.working_hours)

    def _instant(self, day: date, at: time) -> datetime:
        if at == END_OF_DAY:
            day, at = day + timedelta(days=1), time(0)
        # A wall-clock time skipped by a DST change resolves with the offset before the
        # change (fold=0), which moves it forward by the gap, as clocks themselves do.
        return datetime.combine(day, at, tzinfo=self.timezone).astimezone(UTC)

    def _local_day(self, at: datetime) -> date:
        return at.astimezone(self.timezone).date()

    def _nth_working_day_after(self, day: date, count: int) -> date:
        idle = 0
        while count > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count, idle = count - 1, 0
            else:
                idle += 1
                if idle > _MAX_IDLE_DAYS:
                    raise ValueError(f"the calendar has no working day after {day}")
        return day

    def _windows_from(self, at: datetime) -> Iterator[Window]:
        """Working windows from ``at`` on, the first one clipped to start at ``at``."""
        day = self._local_day(at)
        idle = 0
        while True:
            windows = self.working_windows(day)
            idle = 0 if windows else idle + 1
            if idle > _MAX_IDLE_DAYS:
                raise ValueError(f"the calendar has no working time after {at.isoformat()}")
            for start, end in windows:
                if end > at:
                    yield max(start, at), end
            day += timedelta(days=1)

    def _clamp(self, at: time) -> time:
        """A local time of day moved into the working windows: before opening to the
        opening, after closing to the closing, in a break to the close before it."""
        if at <= self.working_hours[0][0]:
            return self.working_hours[0][0]
        closing = self.working_hours[0][1]
        for start, end in self.working_hours:
            if at < start:
                return closing
            if at <= end:
                return at
            closing = end
        return closing

    # -- questions and arithmetic -------------------------------------------------------

    def is_working_time(self, at: datetime) -> bool:
        """Whether ``at`` falls inside a working window (opening included, closing not)."""
        _require_aware(at)
        return any(start <= at < end for start, end in self.working_windows(self._local_day(at)))

    def next_opening(self, at: datetime) -> datetime:
        """``at`` itself during working time, otherwise the next window's opening (UTC)."""
        _require_aware(at)
        start, _ = next(self._windows_from(at.astimezone(UTC)))
        return start

    def add_business_time(self, start: datetime, span: timedelta) -> datetime:
        """The instant when ``span`` of working time has passed since ``start`` (UTC).

        Outside working time the count begins at the next opening. A span that ends
        exactly at a closing time is due at that closing, not at the next opening.
        """
        _require_aware(start)
        if span < timedelta(0):
            raise ValueError(f"a business-time span cannot be negative: {span}")
        remaining = span
        for window_start, window_end in self._windows_from(start.astimezone(UTC)):
            available = window_end - window_start
            if remaining <= available:
                return window_start + remaining
            remaining -= available
        raise AssertionError("unreachable: _windows_from never ends")

    def add_business_days(self, start: datetime, days: int) -> datetime:
        """The same local time of day on the ``days``-th next working day (UTC).

        The time is clamped into that day's windows ("1 business day" from 19:00 is the
        next working day's closing). A start on a day off counts from the next opening,
        so a request on a Saturday gets a full working day, not one hour of Monday.
        Zero days is the next opening.
        """
        _require_aware(start)
        if days < 0:
            raise ValueError(f"a number of business days cannot be negative: {days}")
        if days == 0:
            return self.next_opening(start)
        local = start.astimezone(self.timezone)
        if not self.is_working_day(local.date()):
            local = self.next_opening(start).astimezone(self.timezone)
        target = self._nth_working_day_after(local.date(), days)
        return self._instant(target, self._clamp(local.time()))

    def end_of_next_business_day(self, start: datetime) -> datetime:
        """The closing time of the first working day after ``start``'s local date (UTC)."""
        _require_aware(start)
        target = self._nth_working_day_after(self._local_day(start), 1)
        return self._instant(target, self.working_hours[-1][1])

    def business_time_between(self, a: datetime, b: datetime) -> timedelta:
        """The working time from ``a`` to ``b``; negative if ``b`` comes first."""
        _require_aware(a, b)
        if b < a:
            return -self.business_time_between(b, a)
        total = timedelta(0)
        day, last_day = self._local_day(a), self._local_day(b)
        while day <= last_day:
            for start, end in self.working_windows(day):
                overlap = min(end, b) - max(start, a)
                if overlap > timedelta(0):
                    total += overlap
            day += timedelta(days=1)
        return total


def warn_at(
    start: datetime,
    due: datetime,
    share: float = DEFAULT_WARN_SHARE,
    cal: BusinessCalendar | None = None,
) -> datetime:
    """The instant at ``share`` of a clock's span, counted in business time (UTC).

    Without a calendar the span is plain elapsed time, for the clocks that run in
    calendar days (the callback). Never later than ``due``.

    >>> from datetime import UTC, datetime
    >>> start, due = datetime(2026, 3, 2, 1, tzinfo=UTC), datetime(2026, 3, 2, 5, tzinfo=UTC)
    >>> warn_at(start, due).isoformat()
    '2026-03-02T04:00:00+00:00'
    """
    _require_aware(start, due)
    if not 0 <= share <= 1:
        raise ValueError(f"the warning share must be between 0 and 1, not {share}")
    if due <= start:
        return due.astimezone(UTC)
    if cal is None:
        return (start + (due - start) * share).astimezone(UTC)
    span = cal.business_time_between(start, due)
    return min(cal.add_business_time(start, span * share), due).astimezone(UTC)


# -- building a calendar from the settings ---------------------------------------------


def _parse_window(text: str) -> tuple[time, time]:
    match = _WINDOW.fullmatch(text)
    if not match:
        raise ValueError(f"working hours {text!r} must look like 09:00-18:00")
    h1, m1, h2, m2 = (int(group) for group in match.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
        raise ValueError(f"working hours {text!r} are not times of day")
    end = END_OF_DAY if h2 == 24 else time(h2, m2)
    if time(h1, m1) >= end:
        raise ValueError(f"working hours {text!r} must open before they close, within a day")
    return time(h1, m1), end


def _parse_day(name: str) -> int:
    key = name.strip().lower()
    # "mon", "Mon", "tues" and "Monday" all name a day; two letters are too few.
    for number, full_name in enumerate(_FULL_DAY_NAMES):
        if len(key) >= 3 and full_name.startswith(key):
            return number
    raise ValueError(f"working day {name!r} must be one of {', '.join(DAY_NAMES)}")


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"{value!r} is a datetime; extra days are dates")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO date such as 2026-12-01") from None


def _country_days(country: str, years: range) -> tuple[frozenset[date], frozenset[date]]:
    """The country's public holidays and make-up working days for ``years``."""
    if not country:
        return frozenset(), frozenset()
    try:
        calendar = holidays_lib.country_holidays(country, years=years)
    except (NotImplementedError, KeyError) as error:
        raise ValueError(f"no public holidays are known for country {country!r}") from error
    # The holidays package lists China's 调休 Saturdays and Sundays as weekend_workdays.
    makeup: set[date] = getattr(calendar, "weekend_workdays", set())
    return frozenset(calendar), frozenset(day for day in makeup if day.year in years)


def build_calendar(
    timezone: str = "Asia/Shanghai",
    working_hours: Sequence[str] = ("09:00-18:00",),
    working_days: Sequence[str] = ("mon", "tue", "wed", "thu", "fri"),
    holidays_country: str = "CN",
    extra_days_off: Sequence[date | str] = (),
    extra_working_days: Sequence[date | str] = (),
    years: range = range(2020, 2036),
) -> BusinessCalendar:
    """The calendar of the ``[policy]`` settings; ValueError names what is wrong.

    A deployment's own days override the country's: a date in ``extra_days_off`` is
    off even if the country works it, one in ``extra_working_days`` is worked even if
    it is a public holiday. ``extra_*`` take dates or ISO strings, as the TOML has them.

    >>> cal = build_calendar(working_hours=["09:00-12:00", "13:30-18:00"])
    >>> cal.is_working_time(datetime(2026, 10, 10, 10, 0, tzinfo=cal.timezone))  # 调休
    True
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r}, e.g. Asia/Shanghai") from None
    windows = tuple(sorted(_parse_window(window) for window in working_hours))
    for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
        if start < end:
            raise ValueError(f"working hours {list(working_hours)} overlap")
    days = frozenset(_parse_day(day) for day in working_days)
    days_off = frozenset(map(_as_date, extra_days_off))
    days_on = frozenset(map(_as_date, extra_working_days))
    if days_off & days_on:
        clash = ", ".join(sorted(day.isoformat() for day in days_off & days_on))
        raise ValueError(f"{clash} is both an extra day off and an extra working day")
    public, makeup = _country_days(holidays_country, years)
    return BusinessCalendar(
        timezone=zone,
        working_hours=windows,
        working_days=days,
        holidays=(public - days_on) | days_off,
        extra_working_days=(makeup - days_off) | days_on,
    )
