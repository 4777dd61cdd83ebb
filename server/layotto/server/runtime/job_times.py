"""The time expressions of Dapr's Jobs API: schedules, due times, TTLs and durations.

* **Schedule**: six cron fields with seconds first (``0 30 * * * *``; ranges as Dapr's:
  seconds and minutes 0-59, hours 0-23, day of month 1-31, month 1-12 or jan-dec, day of
  week 0-6 or sun-sat), ``@every <Go duration>`` (``@every 1h30m``), a bare Go duration
  (``2h45m``, the same as ``@every``), or ``@yearly``, ``@annually``, ``@monthly``,
  ``@weekly``, ``@daily``, ``@midnight``, ``@hourly``. Cron times are the runtime's local time.
* **Point in time or duration** (``due_time``, ``ttl``): RFC 3339 (``2026-12-09T16:09:53Z``;
  without an offset, the runtime's local time), a Go duration (``30s``, ``1h``, ``500ms``) or a
  non-repeating ISO 8601 duration (``PT1H30M``, ``P1D``), durations counted from ``now``.

Every parser raises :class:`~layotto.server.errors.InvalidArgument` naming the field.
"""

from __future__ import annotations

import datetime as dt
import re

from croniter import CroniterBadDateError, croniter

from layotto.server.errors import InvalidArgument

#: the longest duration or the farthest point in time a job may name: 10 years
MAX_SECONDS = 10 * 366 * 24 * 3600
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_ISO = re.compile(
    r"P(?:(?P<Y>\d+)Y)?(?:(?P<Mo>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?"
    r"(?:T(?:(?P<H>\d+)H)?(?:(?P<Mi>\d+)M)?(?:(?P<S>\d+(?:\.\d+)?)S)?)?"
)
_ISO_UNITS = {"Y": 365 * 86400, "Mo": 30 * 86400, "W": 7 * 86400, "D": 86400, "H": 3600, "Mi": 60, "S": 1}
_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_DURATION_HINT = "a Go duration such as 500ms, 30s or 1h30m"


def go_duration(text: str) -> float | None:
    """Seconds in a Go duration string (``1h30m``, ``500ms``, ``0s``), None when it is not one."""
    position, total = 0, 0.0
    if text == "0":  # Go's one duration without a unit
        return 0.0
    if not text:
        return None
    while position < len(text):
        match = _GO_PART.match(text, position)
        if match is None:
            return None
        total += float(match[1]) * _GO_UNITS[match[2]]
        position = match.end()
    return total


def iso_duration(text: str) -> float | None:
    """Seconds in a non-repeating ISO 8601 duration (``PT1H30M``, ``P1D``), None when it is not one."""
    match = _ISO.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        return None
    return sum(float(value) * _ISO_UNITS[unit] for unit, value in match.groupdict().items() if value)


def require_duration(seconds: float, field: str, *, minimum: float = 0.0) -> float:
    """``seconds`` if within ``minimum`` .. :data:`MAX_SECONDS`, else InvalidArgument naming ``field``."""
    if not minimum <= seconds <= MAX_SECONDS:
        bound = "above 0" if minimum > 0 else "at least 0"
        raise InvalidArgument(field, f"must be {bound} and at most {MAX_SECONDS} seconds (10 years), got {seconds:g}s")
    return seconds


def point_in_time(text: str, field: str, now: float) -> float:
    """Epoch seconds of ``text`` (RFC 3339, or a Go or ISO 8601 duration from ``now``).

    Raises InvalidArgument naming ``field`` when it is none of those or lies more than
    :data:`MAX_SECONDS` from ``now``.
    """
    stripped = text.strip()
    seconds = go_duration(stripped)
    if seconds is None:
        seconds = iso_duration(stripped)
    if seconds is not None:
        return now + require_duration(seconds, field)
    try:
        moment = dt.datetime.fromisoformat(stripped)
    except ValueError:
        raise InvalidArgument(
            field, f"{text!r} is not an RFC 3339 time (2026-12-09T16:09:53Z), {_DURATION_HINT}, or PT1H"
        ) from None
    at = (moment if moment.tzinfo else moment.astimezone()).timestamp()
    if abs(at - now) > MAX_SECONDS:
        raise InvalidArgument(field, f"{text!r} is more than 10 years away")
    return at


class Schedule:
    """A parsed job schedule: :meth:`next_after` gives the next occurrence."""

    def __init__(self, text: str, field: str) -> None:
        """Raises InvalidArgument naming ``field`` when ``text`` is not a schedule."""
        stripped = " ".join(text.split())
        self.every: float | None = None
        self.cron = ""
        every = stripped.removeprefix("@every ") if stripped.startswith("@every ") else stripped
        seconds = go_duration(every)
        if seconds is not None:
            self.every = require_duration(seconds, field, minimum=1e-9)
            return
        if stripped.startswith("@every "):
            raise InvalidArgument(field, f"{text!r}: after @every comes {_DURATION_HINT}")
        expression = _DESCRIPTORS.get(stripped, stripped)
        if len(expression.split()) != 6 or not croniter.is_valid(expression, second_at_beginning=True):
            raise InvalidArgument(
                field,
                f"{text!r} is not a schedule: expected 6 cron fields with seconds first (0 30 * * * *), "
                "@every <duration>, a duration, or a descriptor such as @hourly or @daily",
            )
        self.cron = expression
        try:
            self.next_after(dt.datetime.now().timestamp())
        except CroniterBadDateError:
            raise InvalidArgument(field, f"{text!r} never occurs (a day that no month has, such as 30 2)") from None

    def next_after(self, moment: float) -> float:
        """The first occurrence after ``moment`` (epoch seconds)."""
        if self.every is not None:
            return moment + self.every
        start = dt.datetime.fromtimestamp(moment).astimezone()
        found = croniter(self.cron, start, second_at_beginning=True).get_next(dt.datetime)
        assert isinstance(found, dt.datetime)
        return found.timestamp()
