"""Jobs: named jobs the runtime keeps in its scheduler store and fires to the app (Dapr's Jobs API).

::

    await client.jobs.schedule("nightly-report", schedule="0 0 2 * * *", data={"format": "csv"})

    @app.job("nightly-report")
    async def report(event: JobEvent) -> None:
        ...  # returning acknowledges; raising has the job's failure policy decide (retry or drop)

``data`` travels as the value of the job's ``Any`` (bytes as is, str as UTF-8, anything else as
JSON) with no type URL, as Dapr's Go SDK sends it: Dapr's own apps read it as the event's bytes.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from layotto.client._transport import Transport
from layotto.client._values import Value, encode
from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import jobs_pb2 as pb

__all__ = ["ConstantPolicy", "DropPolicy", "FailurePolicy", "Job", "JobEvent", "JobHandler", "JobsClient"]


@dataclass(frozen=True)
class DropPolicy:
    """A delivery the app refuses is given up (a recurring job goes on to its next occurrence)."""


@dataclass(frozen=True)
class ConstantPolicy:
    """A delivery the app refuses is tried again every ``interval`` seconds (None: at once), up to
    ``max_retries`` times (None: without end)."""

    interval: float | None = None
    max_retries: int | None = None


FailurePolicy = DropPolicy | ConstantPolicy


@dataclass(frozen=True)
class Job:
    """A job as the runtime keeps it (None: not set). ``due_time`` and ``ttl`` are the strings it
    was scheduled with (RFC 3339, or a duration from when it was scheduled)."""

    name: str
    schedule: str | None = None
    due_time: str | None = None
    repeats: int | None = None
    ttl: str | None = None
    data: bytes | None = None
    failure_policy: FailurePolicy | None = None


@dataclass(frozen=True)
class JobEvent:
    """A due job delivered to the app: its ``name`` and ``data`` (bytes)."""

    name: str
    data: bytes

    def text(self) -> str:
        return self.data.decode()

    def json(self) -> Any:
        return json.loads(self.data)


#: handles one due job; returning acknowledges it, raising has its failure policy decide what follows
JobHandler = Callable[[JobEvent], Awaitable[None]]

TimeSpec = str | dt.datetime | dt.timedelta


def _time_text(value: TimeSpec) -> str:
    """RFC 3339 for a datetime (a naive one is local time), a Go duration for a timedelta."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.astimezone()).isoformat()
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds():g}s"
    return value


def _policy_message(policy: FailurePolicy) -> common_pb2.JobFailurePolicy:
    if isinstance(policy, DropPolicy):
        return common_pb2.JobFailurePolicy(drop=common_pb2.JobFailurePolicyDrop())
    constant = common_pb2.JobFailurePolicyConstant()
    if policy.interval is not None:
        constant.interval.FromNanoseconds(round(policy.interval * 1e9))
    if policy.max_retries is not None:
        constant.max_retries = policy.max_retries
    return common_pb2.JobFailurePolicy(constant=constant)


def _policy_from(message: pb.Job) -> FailurePolicy | None:
    if not message.HasField("failure_policy"):
        return None
    if message.failure_policy.HasField("drop"):
        return DropPolicy()
    constant = message.failure_policy.constant
    interval = constant.interval.ToNanoseconds() / 1e9 if constant.HasField("interval") else None
    return ConstantPolicy(interval, constant.max_retries if constant.HasField("max_retries") else None)


def job_from(message: pb.Job) -> Job:
    return Job(
        name=message.name,
        schedule=message.schedule if message.HasField("schedule") else None,
        due_time=message.due_time if message.HasField("due_time") else None,
        repeats=message.repeats if message.HasField("repeats") else None,
        ttl=message.ttl if message.HasField("ttl") else None,
        data=bytes(message.data.value) if message.HasField("data") else None,
        failure_policy=_policy_from(message),
    )


class JobsClient:
    """Schedules, reads and deletes the app's jobs (namespaced by the runtime's app id)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def schedule(
        self,
        name: str,
        *,
        schedule: str | None = None,
        due_time: TimeSpec | None = None,
        repeats: int | None = None,
        ttl: TimeSpec | None = None,
        data: Value = None,
        overwrite: bool = False,
        failure_policy: FailurePolicy | None = None,
        timeout: float | None = None,
    ) -> None:
        """Schedule job ``name``: on ``schedule`` (6 cron fields with seconds first, ``@every 1h30m``,
        ``@daily``, ...), first at ``due_time`` (RFC 3339 string or datetime, or a duration string
        or timedelta from now), at most ``repeats`` times, until ``ttl`` (the same forms). At least
        one of ``schedule`` and ``due_time``. ``failure_policy`` None: the runtime's default
        (constant, 1 s, 3 retries).

        Raises JobAlreadyExists when the name is taken and ``overwrite`` is False, InvalidArgument
        naming the field (``job.schedule``, ``job.due_time``, ``job.ttl``, ``job.repeats``, ...),
        PayloadTooLarge (``job.data``), NoComponentsConfigured (the runtime has no scheduler).
        Retried only with ``overwrite`` (otherwise a retry could find its own first attempt).
        """
        job = pb.Job(name=name)
        if schedule is not None:
            job.schedule = schedule
        if due_time is not None:
            job.due_time = _time_text(due_time)
        if repeats is not None:
            job.repeats = repeats
        if ttl is not None:
            job.ttl = _time_text(ttl)
        if data is not None:
            job.data.value = encode(data)
        if failure_policy is not None:
            job.failure_policy.CopyFrom(_policy_message(failure_policy))
        request = pb.ScheduleJobRequest(job=job, overwrite=overwrite)
        await self._t.unary("dapr/ScheduleJob", request, timeout, idempotent=overwrite)

    async def get(self, name: str, *, timeout: float | None = None) -> Job:
        """The job ``name``. Raises JobNotFound (none of that name, or it is over), InvalidArgument (empty name)."""
        response = await self._t.unary("dapr/GetJob", pb.GetJobRequest(name=name), timeout, idempotent=True)
        return job_from(response.job)

    async def delete(self, name: str, *, timeout: float | None = None) -> None:
        """Delete the job ``name`` (nothing happens when there is none). Raises InvalidArgument (empty name)."""
        await self._t.unary("dapr/DeleteJob", pb.DeleteJobRequest(name=name), timeout, idempotent=True)

    async def delete_prefix(self, prefix: str, *, timeout: float | None = None) -> None:
        """Delete every job whose name starts with ``prefix`` ("": all the app's jobs)."""
        request = pb.DeleteJobsByPrefixRequest(name_prefix=prefix)
        await self._t.unary("dapr/DeleteJobsByPrefix", request, timeout, idempotent=True)

    async def list(self, *, timeout: float | None = None) -> builtins.list[Job]:
        """Every job of the app, by name."""
        response = await self._t.unary("dapr/ListJobs", pb.ListJobsRequest(), timeout, idempotent=True)
        return [job_from(job) for job in response.jobs]
