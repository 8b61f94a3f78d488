"""The policy's settings turned into the objects the rules work with."""

from __future__ import annotations

from workflow.calendar import BusinessCalendar, build_calendar
from workflow.settings import Settings


def business_calendar(settings: Settings) -> BusinessCalendar:
    """The department's business hours, holidays and make-up days (DESIGN.md "Clocks")."""
    policy = settings.policy
    return build_calendar(
        timezone=settings.timezone,
        working_hours=policy.working_hours,
        working_days=policy.working_days,
        holidays_country=policy.holidays,
        extra_days_off=policy.extra_days_off,
        extra_working_days=policy.extra_working_days,
    )
