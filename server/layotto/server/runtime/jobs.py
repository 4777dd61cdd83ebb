"""Dapr's Jobs API: named jobs of an app, kept in the runtime's scheduler store and fired to the app.

A job is one item of the scheduler store under the key ``job@<app id>||<name>`` (so jobs are
namespaced per app id, and a runtime claims only its own app's jobs). The item's due time is
the job's next occurrence; its payload (JSON) holds the job as scheduled and its firing state:
occurrences consumed, failed attempts of the current one. When due, the scheduler loop calls
:meth:`JobService.fire`, which delivers the job to the app and answers the item that replaces
it (the next occurrence, or a retry) or None when the job is over (repeats reached, past its
TTL, a one-shot job done).

Failure policy (a delivery the app refuses, or an app that does not answer): ``drop`` gives
the occurrence up; ``constant`` tries again after ``interval`` (0 when unset), up to
``max_retries`` times (unlimited when unset). Without a policy: constant, 1 s, 3 retries
(Dapr's default). A recurring job goes on to its next occurrence either way.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from layotto.server.components.loader import ComponentSet
from layotto.server.components.scheduler import ScheduledItem
from layotto.server.errors import (
    AppUnavailable,
    InvalidArgument,
    JobAlreadyExists,
    JobNotFound,
    LayottoError,
    PayloadTooLarge,
)
from layotto.server.runtime.job_times import Schedule, point_in_time, require_duration
from layotto.server.runtime.scheduler import DueSoon, find_scheduler

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 512
MAX_EXPRESSION_CHARS = 256
MAX_REPEATS = 2**32 - 1


@dataclass(frozen=True)
class JobData:
    """A job's data: a protobuf ``Any`` (``type_url`` and serialized ``value``)."""

    type_url: str
    value: bytes


@dataclass(frozen=True)
class DropPolicy:
    """A failed occurrence is given up at once."""


@dataclass(frozen=True)
class ConstantPolicy:
    """A failed occurrence is tried again every ``interval_seconds`` (None: at once), up to
    ``max_retries`` times (None: without end)."""

    interval_seconds: float | None = None
    max_retries: int | None = None


FailurePolicy = DropPolicy | ConstantPolicy
DEFAULT_POLICY = ConstantPolicy(interval_seconds=1.0, max_retries=3)


@dataclass(frozen=True)
class JobSpec:
    """A job as scheduled: the fields of Dapr's ``Job`` message (None: not set)."""

    name: str
    schedule: str | None = None
    due_time: str | None = None
    repeats: int | None = None
    ttl: str | None = None
    data: JobData | None = None
    failure_policy: FailurePolicy | None = None


#: delivers a due job to the app: (name, data); raises LayottoError when the app does not take it
JobDeliverer = Callable[[str, JobData | None], Awaitable[None]]


def _policy_json(policy: FailurePolicy | None) -> dict[str, Any] | None:
    if isinstance(policy, DropPolicy):
        return {"kind": "drop"}
    if isinstance(policy, ConstantPolicy):
        return {"kind": "constant", "interval": policy.interval_seconds, "maxRetries": policy.max_retries}
    return None


def _policy_from(value: dict[str, Any] | None) -> FailurePolicy | None:
    if value is None:
        return None
    if value["kind"] == "drop":
        return DropPolicy()
    return ConstantPolicy(value["interval"], value["maxRetries"])


def _spec_from(state: dict[str, Any]) -> JobSpec:
    data = state["data"]
    return JobSpec(
        name=state["name"],
        schedule=state["schedule"],
        due_time=state["dueTime"],
        repeats=state["repeats"],
        ttl=state["ttl"],
        data=JobData(data["typeUrl"], base64.b64decode(data["value"])) if data else None,
        failure_policy=_policy_from(state["failurePolicy"]),
    )


def _require_name(name: str, field: str) -> str:
    if not name:
        raise InvalidArgument(field, "is empty")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidArgument(field, f"is {len(name)} characters, over the {MAX_NAME_CHARS}-character limit")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgument(field, "holds a control character")
    return name


def _require_policy(policy: FailurePolicy | None) -> None:
    if isinstance(policy, ConstantPolicy):
        if policy.interval_seconds is not None:
            require_duration(policy.interval_seconds, "job.failure_policy.constant.interval")
        if policy.max_retries is not None and not 0 <= policy.max_retries <= MAX_REPEATS:
            raise InvalidArgument("job.failure_policy.constant.max_retries", f"must be 0 .. {MAX_REPEATS}")


class JobService:
    """Schedules, reads and deletes the jobs of one app (``app_id``), and fires them."""

    def __init__(self, components: ComponentSet, app_id: str, max_data_bytes: int) -> None:
        self._components = components
        self._app_id = app_id
        self.partition = f"job@{app_id}||"
        self._max_data_bytes = max_data_bytes
        self._deliver: JobDeliverer = self._no_app
        #: the due times of the jobs scheduled through this runtime, for the scheduler loop
        self.due_soon = DueSoon()

    async def _no_app(self, name: str, data: JobData | None) -> None:
        raise AppUnavailable(self._app_id, f"job {name!r} is due and no app_callback_address is configured")

    def deliver_to(self, deliverer: JobDeliverer) -> None:
        """Fire due jobs through ``deliverer`` (the app's callback) from now on."""
        self._deliver = deliverer

    def _key(self, name: str) -> str:
        return self.partition + name

    async def schedule(self, spec: JobSpec, *, overwrite: bool) -> None:
        """Store ``spec``, first due at its due time (else its schedule's first occurrence).

        Raises InvalidArgument naming the field (``job.name``, ``job.schedule``, ``job.due_time``,
        ``job.ttl``, ``job.repeats``, ``job.failure_policy.constant.interval``), PayloadTooLarge
        (``job.data``), JobAlreadyExists (``overwrite`` unset and the name is taken),
        NoComponentsConfigured (no scheduler) and the store's errors.
        """
        _require_name(spec.name, "job.name")
        now = time.time()
        for field, text in (("job.schedule", spec.schedule), ("job.due_time", spec.due_time), ("job.ttl", spec.ttl)):
            if text is not None and len(text) > MAX_EXPRESSION_CHARS:
                raise InvalidArgument(field, f"is over {MAX_EXPRESSION_CHARS} characters")
        if not spec.schedule and not spec.due_time:
            raise InvalidArgument("job.schedule", "a job needs a schedule or a due_time (or both)")
        schedule = Schedule(spec.schedule, "job.schedule") if spec.schedule else None
        if spec.due_time:
            first = point_in_time(spec.due_time, "job.due_time", now)
        else:
            assert schedule is not None
            first = schedule.next_after(now)
        expires = point_in_time(spec.ttl, "job.ttl", now) if spec.ttl else None
        if expires is not None and expires < first:
            raise InvalidArgument("job.ttl", f"{spec.ttl!r} ends before the job is first due")
        if spec.repeats is not None and not 1 <= spec.repeats <= MAX_REPEATS:
            raise InvalidArgument("job.repeats", f"must be 1 .. {MAX_REPEATS} when set, got {spec.repeats}")
        _require_policy(spec.failure_policy)
        if spec.data is not None and len(spec.data.value) > self._max_data_bytes:
            raise PayloadTooLarge("job.data", len(spec.data.value), self._max_data_bytes)
        state = {
            "name": spec.name,
            "schedule": spec.schedule or None,
            "dueTime": spec.due_time or None,
            "repeats": spec.repeats,
            "ttl": spec.ttl or None,
            "expiresAt": expires,
            "data": {"typeUrl": spec.data.type_url, "value": base64.b64encode(spec.data.value).decode()}
            if spec.data is not None
            else None,
            "failurePolicy": _policy_json(spec.failure_policy),
            "fired": 0,
            "attempt": 0,
            "occurrence": first,
        }
        item = ScheduledItem(self._key(spec.name), first, json.dumps(state).encode())
        store = find_scheduler(self._components)
        if overwrite:
            await store.put(item)
        elif not await store.create(item):
            raise JobAlreadyExists("job.name", spec.name)
        self.due_soon.add(first)

    async def get(self, name: str) -> JobSpec:
        """The job ``name`` as scheduled. Raises InvalidArgument (``name``), JobNotFound, NoComponentsConfigured."""
        item = await find_scheduler(self._components).get(self._key(_require_name(name, "name")))
        if item is None:
            raise JobNotFound("name", name)
        return _spec_from(json.loads(item.payload))

    async def delete(self, name: str) -> None:
        """Delete the job ``name`` (nothing when there is none). Raises InvalidArgument (``name``)."""
        await find_scheduler(self._components).delete(self._key(_require_name(name, "name")))

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every job whose name starts with ``prefix`` ("" : all the app's jobs); how many."""
        store = find_scheduler(self._components)
        found = await store.list_prefix(self.partition + prefix)
        deleted = 0
        for item in found:
            deleted += await store.delete(item.key)
        return deleted

    async def all(self) -> list[JobSpec]:
        """Every job of the app, by name."""
        found = await find_scheduler(self._components).list_prefix(self.partition)
        return sorted((_spec_from(json.loads(item.payload)) for item in found), key=lambda spec: spec.name)

    async def fire(self, item: ScheduledItem) -> ScheduledItem | None:
        """Deliver a due job; the item replacing it (next occurrence, retry) or None when it is over.

        The app's refusal is handled by the job's failure policy, never raised. Raises
        ValueError/KeyError when the payload is malformed.
        """
        state = json.loads(item.payload)
        now = time.time()
        expires = state["expiresAt"]
        if expires is not None and now > expires:
            log.info("job %r expired (ttl %s) before it fired", state["name"], state["ttl"])
            return None
        spec = _spec_from(state)
        try:
            await self._deliver(spec.name, spec.data)
        except LayottoError as error:
            policy = spec.failure_policy or DEFAULT_POLICY
            retries = policy.max_retries if isinstance(policy, ConstantPolicy) else 0
            if retries is None or state["attempt"] < retries:
                assert isinstance(policy, ConstantPolicy)
                state["attempt"] += 1
                log.warning("job %r: delivery failed (attempt %d): %s", spec.name, state["attempt"], error.message)
                retry_at = now + (policy.interval_seconds or 0.0)
                if expires is not None and retry_at > expires:
                    return None
                return ScheduledItem(item.key, retry_at, json.dumps(state).encode())
            log.warning("job %r: delivery failed, occurrence given up: %s", spec.name, error.message)
        return self._following(item.key, state, now)

    def _following(self, key: str, state: dict[str, Any], now: float) -> ScheduledItem | None:
        """The next occurrence after the current one was consumed, None when the job is over."""
        state["fired"] += 1
        state["attempt"] = 0
        if state["schedule"] is None or (state["repeats"] is not None and state["fired"] >= state["repeats"]):
            return None
        schedule = Schedule(state["schedule"], "job.schedule")
        following = schedule.next_after(state["occurrence"])
        if following <= now:  # occurrences missed while no runtime ran (or fired late) are skipped
            following = schedule.next_after(now)
        if state["expiresAt"] is not None and following > state["expiresAt"]:
            return None
        state["occurrence"] = following
        return ScheduledItem(key, following, json.dumps(state).encode())
