"""What "now" means: a callable handed in by whoever runs the code.

``workflow`` never reads the clock; its functions take the time as an argument. The
services take a ``Clock`` so that a test, a simulation or ``--now`` can fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

Clock = Callable[[], datetime]


def fixed_clock(at: datetime) -> Clock:
    """A clock that always says ``at``.

    >>> from datetime import UTC
    >>> fixed_clock(datetime(2026, 11, 27, 2, 0, tzinfo=UTC))().isoformat()
    '2026-11-27T02:00:00+00:00'
    """
    if at.tzinfo is None:
        raise ValueError("a fixed clock needs an aware datetime")
    return lambda: at


def parse_instant(text: str, default_zone: str) -> datetime:
    """An ISO 8601 instant; without an offset it is read in the department's zone.

    >>> parse_instant("2026-11-27T10:00", "Asia/Shanghai").isoformat()
    '2026-11-27T10:00:00+08:00'
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time, e.g. 2026-11-27T10:00+08:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(default_zone))
    return value
