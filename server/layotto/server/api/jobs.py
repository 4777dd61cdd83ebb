"""Dapr's Jobs API (``ScheduleJob``, ``GetJob``, ``DeleteJob``, ``DeleteJobsByPrefix``,
``ListJobs``, each also under its ``Alpha1`` name): messages to and from runtime/jobs.py."""

from __future__ import annotations

from google.protobuf import duration_pb2

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import jobs_pb2 as pb
from layotto.server.api.adapter import Context
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.jobs import ConstantPolicy, DropPolicy, FailurePolicy, JobData, JobService, JobSpec

_INTERVAL_FIELD = "job.failure_policy.constant.interval"


def _interval_seconds(interval: duration_pb2.Duration) -> float:
    if interval.seconds < 0 or interval.nanos < 0 or interval.nanos > 999_999_999:
        raise InvalidArgument(_INTERVAL_FIELD, "must be a non-negative duration (nanos 0 .. 999999999)")
    return interval.seconds + interval.nanos / 1e9


def policy_from(message: pb.Job) -> FailurePolicy | None:
    """The job's failure policy, None when it sets none. Raises InvalidArgument naming the field."""
    if not message.HasField("failure_policy"):
        return None
    policy = message.failure_policy
    which = policy.WhichOneof("policy")
    if which == "drop":
        return DropPolicy()
    if which == "constant":
        constant = policy.constant
        interval = _interval_seconds(constant.interval) if constant.HasField("interval") else None
        return ConstantPolicy(interval, constant.max_retries if constant.HasField("max_retries") else None)
    raise InvalidArgument("job.failure_policy", "sets neither drop nor constant")


def spec_from(message: pb.Job) -> JobSpec:
    return JobSpec(
        name=message.name,
        schedule=message.schedule if message.HasField("schedule") else None,
        due_time=message.due_time if message.HasField("due_time") else None,
        repeats=message.repeats if message.HasField("repeats") else None,
        ttl=message.ttl if message.HasField("ttl") else None,
        data=JobData(message.data.type_url, message.data.value) if message.HasField("data") else None,
        failure_policy=policy_from(message),
    )


def to_message(spec: JobSpec) -> pb.Job:
    message = pb.Job(name=spec.name)
    if spec.schedule is not None:
        message.schedule = spec.schedule
    if spec.due_time is not None:
        message.due_time = spec.due_time
    if spec.repeats is not None:
        message.repeats = spec.repeats
    if spec.ttl is not None:
        message.ttl = spec.ttl
    if spec.data is not None:
        message.data.type_url = spec.data.type_url
        message.data.value = spec.data.value
    policy = spec.failure_policy
    if isinstance(policy, DropPolicy):
        message.failure_policy.drop.SetInParent()
    elif isinstance(policy, ConstantPolicy):
        constant = common_pb2.JobFailurePolicyConstant()
        if policy.interval_seconds is not None:
            constant.interval.FromNanoseconds(round(policy.interval_seconds * 1e9))
        if policy.max_retries is not None:
            constant.max_retries = policy.max_retries
        message.failure_policy.constant.CopyFrom(constant)
    return message


class JobsApi:
    def __init__(self, service: JobService) -> None:
        self._service = service

    async def ScheduleJob(self, request: pb.ScheduleJobRequest, context: Context) -> pb.ScheduleJobResponse:
        if not request.HasField("job"):
            raise InvalidArgument("job", "is missing")
        await self._service.schedule(spec_from(request.job), overwrite=request.overwrite)
        return pb.ScheduleJobResponse()

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=to_message(await self._service.get(request.name)))

    async def DeleteJob(self, request: pb.DeleteJobRequest, context: Context) -> pb.DeleteJobResponse:
        await self._service.delete(request.name)
        return pb.DeleteJobResponse()

    async def DeleteJobsByPrefix(
        self, request: pb.DeleteJobsByPrefixRequest, context: Context
    ) -> pb.DeleteJobsByPrefixResponse:
        await self._service.delete_prefix(request.name_prefix)
        return pb.DeleteJobsByPrefixResponse()

    async def DeleteJobsByPrefixAlpha1(
        self, request: pb.DeleteJobsByPrefixRequestAlpha1, context: Context
    ) -> pb.DeleteJobsByPrefixResponseAlpha1:
        await self._service.delete_prefix(request.name_prefix)
        return pb.DeleteJobsByPrefixResponseAlpha1()

    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        return pb.ListJobsResponse(jobs=[to_message(spec) for spec in await self._service.all()])

    async def ListJobsAlpha1(self, request: pb.ListJobsRequestAlpha1, context: Context) -> pb.ListJobsResponseAlpha1:
        return pb.ListJobsResponseAlpha1(jobs=[to_message(spec) for spec in await self._service.all()])
