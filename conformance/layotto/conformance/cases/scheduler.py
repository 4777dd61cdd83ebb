"""Scheduler cases: delayed messages (Layotto's DelayQueue) and Dapr's jobs, per scheduler component.

The runtime keeps delayed messages and jobs in its first scheduler component, so each case starts
runtimes of its own (``layotto serve``) holding only the component under test, declared as the
target's runtime config declares it (the runner config's ``runtime:``), with an in-memory pub/sub
``bus`` and, for jobs, an AppCallbackAlpha server in this process. Bounds: an item fires no earlier
than its due time and at most ``LATE_BOUND_SECONDS`` after it (the runtime polls every 0.25 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import wrappers_pb2

from layotto.conformance.cases.own_runtime import declaration, own_runtimes
from layotto.conformance.model import Case, CaseContext, CaseFailed, check
from layotto.conformance.spawn import free_port
from layotto.proto.dapr.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc, dapr_pb2_grpc
from layotto.proto.dapr.runtime.v1 import jobs_pb2 as jobs
from layotto.proto.extension.v1.delay_queue import delay_queue_pb2, delay_queue_pb2_grpc
from layotto.proto.runtime.v1 import appcallback_pb2 as layotto_callback
from layotto.proto.runtime.v1 import runtime_pb2, runtime_pb2_grpc

DELAY_RPCS = ("spec.proto.extension.v1.delay_queue.DelayQueue/PublishDelayMessage",)
JOB_RPCS = tuple(f"dapr.proto.runtime.v1.Dapr/{n}" for n in ("ScheduleJobAlpha1", "GetJobAlpha1", "ListJobsAlpha1"))
#: the latest an item may fire after its due time: the 0.25 s poll plus delivery on a loaded machine
LATE_BOUND_SECONDS = 1.0
#: the earliest, allowing for the rounding of the runtime's and this process's clocks
EARLY_SLACK_SECONDS = 0.02
WAIT_SECONDS = 15.0


@contextlib.asynccontextmanager
async def _runtimes(ctx: CaseContext, count: int, app_address: str = "") -> AsyncIterator[list[str]]:
    """``count`` runtimes of one app id holding only the component under test; their gRPC addresses."""
    config = {
        "app_id": ctx.key("scheduler-app"),
        "pubsub": {"bus": {"type": "in-memory"}},
        "scheduler": {ctx.component: declaration(ctx, "scheduler")},
    }
    if app_address:
        config["app_callback_address"] = app_address
    async with own_runtimes(config, count) as addresses:
        yield addresses


def _check_on_time(what: str, due: float, arrived: float) -> None:
    late = arrived - due
    check(late >= -EARLY_SLACK_SECONDS, f"{what} arrived {-late:.3f}s before its due time")
    check(late <= LATE_BOUND_SECONDS, f"{what} arrived {late:.3f}s after its due time (bound {LATE_BOUND_SECONDS}s)")


async def _delay_accuracy(ctx: CaseContext) -> None:
    topic = ctx.key("delayed")
    async with _runtimes(ctx, 1) as (address,), grpc.aio.insecure_channel(address) as channel:
        runtime = runtime_pb2_grpc.RuntimeStub(channel)
        requests: asyncio.Queue[runtime_pb2.SubscribeTopicEventsRequest | None] = asyncio.Queue()
        initial = runtime_pb2.SubscribeTopicEventsRequestInitial(pubsub_name="bus", topic=topic)
        requests.put_nowait(runtime_pb2.SubscribeTopicEventsRequest(initial_request=initial))

        async def outgoing() -> AsyncIterator[runtime_pb2.SubscribeTopicEventsRequest]:
            while (request := await requests.get()) is not None:
                yield request

        stream = runtime.SubscribeTopicEvents(outgoing())
        try:
            await asyncio.wait_for(stream.read(), ctx.timeout)  # the initial response: subscribed
            delay = delay_queue_pb2_grpc.DelayQueueStub(channel)
            sent = time.time()
            request = delay_queue_pb2.DelayMessageRequest(
                component_name="bus", topic=topic, data=b"due", delay_in_seconds=1
            )
            reply = await delay.PublishDelayMessage(request, timeout=ctx.timeout)
            check(bool(reply.message_id), "PublishDelayMessage answered no message_id")
            response = await asyncio.wait_for(stream.read(), WAIT_SECONDS)
            arrived = time.time()
            if not isinstance(response, runtime_pb2.SubscribeTopicEventsResponse):
                raise CaseFailed("the subscription ended before the delayed message arrived")
            event = response.event_message
            check(event.data == b"due", f"the delayed message arrived as {event.data!r}")
            _check_on_time("the delayed message", sent + 1, arrived)
            status = layotto_callback.TopicEventResponse(status=layotto_callback.TopicEventResponse.SUCCESS)
            processed = runtime_pb2.SubscribeTopicEventsRequestProcessed(id=event.id, status=status)
            requests.put_nowait(runtime_pb2.SubscribeTopicEventsRequest(event_processed=processed))
        finally:
            requests.put_nowait(None)
            stream.cancel()


class _JobApp(appcallback_pb2_grpc.AppCallbackAlphaServicer):
    def __init__(self) -> None:
        self.events: list[tuple[appcallback_pb2.JobEventRequest, float]] = []
        self.changed = asyncio.Event()

    async def OnJobEventAlpha1(self, request: appcallback_pb2.JobEventRequest, context: Any) -> Any:
        self.events.append((request, time.time()))
        self.changed.set()
        return appcallback_pb2.JobEventResponse()

    async def OnBulkTopicEventAlpha1(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no bulk subscriptions")

    async def until(self, count: int) -> None:
        async with asyncio.timeout(WAIT_SECONDS):
            while len(self.events) < count:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def _job_app() -> AsyncIterator[tuple[_JobApp, str]]:
    app = _JobApp()
    server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackAlphaServicer_to_server(app, server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    try:
        yield app, address
    finally:
        await server.stop(0)


async def _job_fires_with_data(ctx: CaseContext) -> None:
    async with (
        _job_app() as (app, address),
        _runtimes(ctx, 1, address) as (runtime,),
        grpc.aio.insecure_channel(runtime) as channel,
    ):
        dapr = dapr_pb2_grpc.DaprStub(channel)
        job = jobs.Job(name="report", due_time="500ms")
        job.data.Pack(wrappers_pb2.StringValue(value="csv"))
        scheduled = time.time()
        await dapr.ScheduleJobAlpha1(jobs.ScheduleJobRequest(job=job), timeout=ctx.timeout)
        got = await dapr.GetJobAlpha1(jobs.GetJobRequest(name="report"), timeout=ctx.timeout)
        check(got.job.due_time == "500ms" and got.job.data == job.data, f"GetJob answered {got.job}")
        await app.until(1)
        event, arrived = app.events[0]
        check(event.name == "report" and event.method == "job/report", f"the app got {event.name!r}")
        check(event.data == job.data, "the job's data did not reach the app as scheduled")
        _check_on_time("the job", scheduled + 0.5, arrived)


async def _fires_once_across_runtimes(ctx: CaseContext) -> None:
    names = [f"job-{n}" for n in range(3)]
    async with (
        _job_app() as (app, address),
        _runtimes(ctx, 3, address) as (first, _, _),
        grpc.aio.insecure_channel(first) as channel,
    ):
        dapr = dapr_pb2_grpc.DaprStub(channel)
        for name in names:
            job = jobs.Job(name=name, schedule="@every 200ms", repeats=3)
            await dapr.ScheduleJobAlpha1(jobs.ScheduleJobRequest(job=job), timeout=ctx.timeout)
        await app.until(len(names) * 3)
        for _ in range(20):  # the last deliveries are acknowledged: no job is left
            if not (await dapr.ListJobsAlpha1(jobs.ListJobsRequestAlpha1(), timeout=ctx.timeout)).jobs:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # a duplicate, if any, would arrive within a poll
    fired = sorted(event.name for event, _ in app.events)
    check(fired == sorted(names * 3), f"three runtimes sharing the store fired {fired}, expected each job 3 times")


async def _survives_a_restart(ctx: CaseContext) -> None:
    """A job scheduled through one runtime, which stops before it is due, fires through the next."""
    async with _job_app() as (app, address):
        async with _runtimes(ctx, 1, address) as (first,), grpc.aio.insecure_channel(first) as channel:
            job = jobs.Job(name="restart-report", due_time="2s")
            job.data.Pack(wrappers_pb2.StringValue(value="kept"))
            scheduled = time.time()
            await dapr_pb2_grpc.DaprStub(channel).ScheduleJobAlpha1(
                jobs.ScheduleJobRequest(job=job), timeout=ctx.timeout
            )
        check(time.time() - scheduled < 2 and not app.events, "the first runtime stopped after the job was due")
        async with _runtimes(ctx, 1, address):
            await app.until(1)
    event, arrived = app.events[0]
    check(event.name == "restart-report" and event.data == job.data, f"after the restart the app got {event}")
    check(arrived >= scheduled + 2 - EARLY_SLACK_SECONDS, "the job fired before its due time")


SCHEDULER_CASES = (
    Case(
        "scheduler-delay-due-time",
        "scheduler",
        f"a delayed message reaches its subscriber between its due time and {LATE_BOUND_SECONDS}s after",
        DELAY_RPCS,
        _delay_accuracy,
        apis=("layotto",),
    ),
    Case(
        "scheduler-job-fires-with-data",
        "scheduler",
        f"a job reaches the app with its data between its due time and {LATE_BOUND_SECONDS}s after",
        JOB_RPCS[:2],
        _job_fires_with_data,
        apis=("dapr",),
    ),
    Case(
        "scheduler-once-across-runtimes",
        "scheduler",
        "three runtimes sharing the store fire each occurrence of a recurring job once",
        JOB_RPCS,
        _fires_once_across_runtimes,
        requires=frozenset({"SHARED"}),
        apis=("dapr",),
    ),
    Case(
        "scheduler-survives-restart",
        "scheduler",
        "a job scheduled through a runtime that stops before it is due fires through the next runtime on the store",
        JOB_RPCS[:1],
        _survives_a_restart,
        requires=frozenset({"SHARED"}),
        apis=("dapr",),
    ),
)
