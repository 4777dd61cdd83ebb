"""Dapr's ``bindings.cron`` input binding: an event on a schedule (croniter).

Schedules as Dapr's (robfig/cron with optional seconds) takes them: five fields
(``*/5 * * * *``), six fields whose first is the second (``*/2 * * * * *``), the descriptors
``@yearly``, ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``, ``@hourly``,
and ``@every <Go duration>`` (``@every 1s``, ``@every 1m30s``; 100ms .. ten years). Times are the runtime's local
time. Each event has empty data and the metadata ``timeZone`` and ``readTimeUTC``.

Delivery is at most once: a tick the app fails to take is not delivered again (as in Dapr),
and ticks missed while a delivery is still running are skipped, not queued.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from croniter import CroniterBadDateError, croniter

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, Feature, MetadataField
from layotto.server.components.bindings import BindingEvent, EventHandler, InputBinding
from layotto.server.components.bindings.duration import parse_duration

log = logging.getLogger(__name__)

#: the longest ``@every`` interval: ten years (as a job's schedule takes)
MAX_EVERY_SECONDS = 10 * 365 * 24 * 3600
#: the shortest: Dapr rounds anything under a second up to 1s; here 100ms (an @every 1ns spun a core)
MIN_EVERY_SECONDS = 0.1

_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class Schedule:
    """A parsed schedule: :meth:`next_after` gives the next firing time."""

    def __init__(self, text: str) -> None:
        """Raises ValueError naming what is wrong with ``text``."""
        stripped = " ".join(text.split())
        self._every: float | None = None
        self._cron = ""
        if stripped.startswith("@every "):
            self._every = parse_duration(stripped.removeprefix("@every "))
            if self._every > MAX_EVERY_SECONDS:
                raise ValueError(f"{text!r} is more than 10 years: the longest @every is {MAX_EVERY_SECONDS}s")
            if self._every < MIN_EVERY_SECONDS:
                raise ValueError(f"{text!r} is under 100ms, the shortest @every (each tick is a call to the app)")
            return
        expression = _DESCRIPTORS.get(stripped, stripped)
        fields = len(expression.split())
        if fields not in (5, 6) or not croniter.is_valid(expression, second_at_beginning=fields == 6):
            raise ValueError(
                f"{text!r} is not a schedule: expected 5 cron fields, 6 with seconds first, "
                "@every <duration> or a descriptor such as @hourly"
            )
        self._cron = expression
        try:
            self.next_after(_now())
        except CroniterBadDateError:
            raise ValueError(f"{text!r} never occurs (a day that no month has, such as 30 2)") from None

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        if self._every is not None:
            return moment + dt.timedelta(seconds=self._every)
        seconds_first = len(self._cron.split()) == 6
        found = croniter(self._cron, moment, second_at_beginning=seconds_first).get_next(dt.datetime)
        assert isinstance(found, dt.datetime)
        return found


class CronBinding(InputBinding):
    spec = ComponentSpec(
        type="cron",
        building_block="bindings",
        description="Delivers an event to the app on a schedule (cron fields, seconds optional, or @every "
        "<duration>). At most once: a tick the app fails is not delivered again.",
        features=frozenset({Feature.INPUT_BINDING}),
        metadata=(
            MetadataField(
                "schedule",
                "When to fire: 5 cron fields, 6 with seconds first, @every <Go duration>, or @hourly, @daily, ...",
                required=True,
                example="@every 15s",
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.schedule: Schedule | None = None

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        try:
            self.schedule = Schedule(str(metadata["schedule"]))
        except ValueError as error:
            raise ConfigError(f"bindings.{self.name}.metadata.schedule: {error}") from None

    async def read(self, handler: EventHandler) -> None:
        assert self.schedule is not None, "init() first"
        loop = asyncio.get_running_loop()
        due = self.schedule.next_after(_now())
        while True:
            await asyncio.sleep(max(0.0, (due - _now()).total_seconds()))
            fired = dt.datetime.now(dt.UTC)
            event = BindingEvent(
                metadata={"timeZone": "Local", "readTimeUTC": f"{fired:%Y-%m-%d %H:%M:%S.%f} +0000 UTC"}
            )
            started = loop.time()
            try:
                await handler(event)
            except Exception as error:  # at most once: the tick is dropped, the schedule goes on
                log.warning("cron binding %r: the app did not take the event: %s", self.name, error)
            log.debug("cron binding %r delivered in %.3fs", self.name, loop.time() - started)
            due = self.schedule.next_after(max(due, _now()))


def _now() -> dt.datetime:
    return dt.datetime.now().astimezone()
