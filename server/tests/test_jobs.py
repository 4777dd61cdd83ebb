"""Dapr's Jobs API on the scheduler store: jobs scheduled, read, listed and deleted per app id,
fired to the app's AppCallbackAlpha/OnJobEventAlpha1 with their data, as often as their
schedule, repeats and TTL say, retried or dropped by their failure policy; kept across a restart
(sqlite); fired once per occurrence by two runtimes sharing Redis or PostgreSQL; Dapr's Python SDK
against it."""

from __future__ import annotations

import asyncio
import datetime
import os
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import backends
import grpc
import pytest
from google.protobuf import json_format, struct_pb2, wrappers_pb2
from server_helpers import free_port
from test_pubsub import wait_for

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc, dapr_pb2_grpc
from layotto.proto.dapr.runtime.v1 import jobs_pb2 as pb
from layotto.server import Runtime, RuntimeConfig
from layotto.server.config import ComponentConfig
from layotto.server.runtime import scheduler as scheduler_loop
from layotto.server.runtime.jobs import JobData


class JobApp(appcallback_pb2_grpc.AppCallbackAlphaServicer):
    """The app side: records each job event; the first ``failures`` events answer INTERNAL."""

    def __init__(self, failures: int = 0) -> None:
        self.events: list[appcallback_pb2.JobEventRequest] = []
        self.refused = 0
        self.failures = failures

    async def OnJobEventAlpha1(self, request: appcallback_pb2.JobEventRequest, context: Any) -> Any:
        if self.refused < self.failures:
            self.refused += 1
            await context.abort(grpc.StatusCode.INTERNAL, "not now")
        self.events.append(request)
        return appcallback_pb2.JobEventResponse()

    def names(self) -> list[str]:
        return [event.name for event in self.events]


@asynccontextmanager
async def serving(app: JobApp, port: int = 0) -> AsyncIterator[str]:
    server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackAlphaServicer_to_server(app, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def config(data_dir: Path, app: str | None, *, store: str = "sqlite", app_id: str = "jobs-app", **meta: str) -> Any:
    scheduler = ComponentConfig(store, dict(meta))
    return RuntimeConfig(
        app_id=app_id,
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(data_dir),
        app_callback_address=app or "",
        components={"scheduler": {"jobs": scheduler}},
    )


@asynccontextmanager
async def runtime_and_stub(cfg: Any) -> AsyncIterator[tuple[Runtime, dapr_pb2_grpc.DaprStub]]:
    async with Runtime(cfg) as runtime, grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield runtime, dapr_pb2_grpc.DaprStub(channel)


def text_data(text: str) -> Any:
    """An ``Any`` of Dapr's own descriptor pool holding a StringValue."""
    packed = type(pb.Job().data)()
    packed.Pack(wrappers_pb2.StringValue(value=text))
    return packed


def duration(seconds: int = 0, nanos: int = 0) -> Any:
    """A ``Duration`` of Dapr's own descriptor pool."""
    return type(common_pb2.JobFailurePolicyConstant().interval)(seconds=seconds, nanos=nanos)


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def gone(dapr: dapr_pb2_grpc.DaprStub, name: str) -> bool:
    """Whether GetJob answers NOT_FOUND for ``name`` within 5 s (a fired job is removed after its delivery)."""
    for _ in range(100):
        if await code_of(dapr.GetJob(pb.GetJobRequest(name=name))) == grpc.StatusCode.NOT_FOUND:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_job_fires_once_with_its_data_and_is_then_gone(tmp_path: Path) -> None:
    app = JobApp()
    async with serving(app) as address, runtime_and_stub(config(tmp_path, address)) as (_, dapr):
        job = pb.Job(name="backup", due_time="300ms", data=text_data("db-1"))
        await dapr.ScheduleJobAlpha1(pb.ScheduleJobRequest(job=job))
        got = await dapr.GetJob(pb.GetJobRequest(name="backup"))
        assert got.job.due_time == "300ms" and not got.job.HasField("schedule")
        assert got.job.data == job.data
        await wait_for(lambda: app.events)
        event = app.events[0]
        assert event.name == "backup" and event.method == "job/backup" and event.data == job.data
        assert await gone(dapr, "backup")
        missing = await code_of(dapr.GetJobAlpha1(pb.GetJobRequest(name="backup")))
        assert missing == grpc.StatusCode.NOT_FOUND
        assert app.names() == ["backup"]


class SlowJobApp(JobApp):
    """Holds the delivery of the job named ``slow`` until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def OnJobEventAlpha1(self, request: appcallback_pb2.JobEventRequest, context: Any) -> Any:
        if request.name == "slow":
            await self.release.wait()
        return await super().OnJobEventAlpha1(request, context)


async def test_a_slow_delivery_does_not_hold_back_the_acknowledgements_of_its_batch(tmp_path: Path) -> None:
    """The jobs of one claim are acknowledged (gone) while another of them is still being delivered, so
    their leases never run out waiting for it (another runtime would fire them again)."""
    app = SlowJobApp()
    async with serving(app) as address, runtime_and_stub(config(tmp_path, address, store="in-memory")) as (_, dapr):
        due = datetime.datetime.fromtimestamp(time.time() + 1, datetime.UTC).isoformat()  # one instant: one claim
        for name in ("slow", "quick"):
            await dapr.ScheduleJobAlpha1(pb.ScheduleJobRequest(job=pb.Job(name=name, due_time=due)))
        try:
            await wait_for(lambda: "quick" in app.names())
            assert await gone(dapr, "quick")
            assert await code_of(dapr.GetJob(pb.GetJobRequest(name="slow"))) == grpc.StatusCode.OK  # still firing
        finally:
            app.release.set()
        await wait_for(lambda: "slow" in app.names())
        assert await gone(dapr, "slow")


async def test_jobs_scheduled_through_the_runtime_wake_its_loop_when_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job scheduled through this runtime, and each next occurrence of a recurring one, wakes the
    scheduler loop at its due time: with an hour-long idle poll they still fire."""
    monkeypatch.setattr(scheduler_loop, "POLL_SECONDS", 3600.0)
    app = JobApp()
    async with serving(app) as address, runtime_and_stub(config(tmp_path, address, store="in-memory")) as (_, dapr):
        await dapr.ScheduleJobAlpha1(pb.ScheduleJobRequest(job=pb.Job(name="soon", due_time="300ms")))
        tick = pb.Job(name="tick", schedule="@every 300ms", repeats=3)
        await dapr.ScheduleJobAlpha1(pb.ScheduleJobRequest(job=tick))
        await wait_for(lambda: len(app.events) == 4)
        assert sorted(app.names()) == ["soon", "tick", "tick", "tick"]


async def test_a_job_waits_for_an_app_that_starts_after_the_runtime(tmp_path: Path) -> None:
    """The runtime's callback channels have met a refused connection before the app listens: the due job
    is delivered once it does, not failed fast until its retries (3, 1 s apart) are spent."""
    app, port = JobApp(), free_port()
    async with runtime_and_stub(config(tmp_path, f"127.0.0.1:{port}", store="in-memory")) as (_, dapr):
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="early", due_time="0s")))
        await asyncio.sleep(3.5)  # past the default policy's last retry, were deliveries failing fast
        async with serving(app, port):
            await wait_for(lambda: app.events, seconds=10)
        assert app.names() == ["early"]


async def test_a_recurring_job_fires_as_often_as_its_repeats_say(tmp_path: Path) -> None:
    app = JobApp()
    async with serving(app) as address, runtime_and_stub(config(tmp_path, address, store="in-memory")) as (_, dapr):
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="tick", schedule="@every 100ms", repeats=3)))
        await wait_for(lambda: len(app.events) >= 3)
        assert await gone(dapr, "tick")
        assert app.names() == ["tick"] * 3


async def test_a_job_past_its_ttl_stops_firing(tmp_path: Path) -> None:
    app = JobApp()
    async with serving(app) as address, runtime_and_stub(config(tmp_path, address, store="in-memory")) as (_, dapr):
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="short", schedule="@every 100ms", ttl="600ms")))
        await wait_for(lambda: app.events)
        assert await gone(dapr, "short")
        fired = len(app.events)
        await asyncio.sleep(0.4)
        assert len(app.events) == fired  # nothing after the TTL


async def test_overwrite_replaces_and_without_it_the_name_is_taken(tmp_path: Path) -> None:
    async with runtime_and_stub(config(tmp_path, None)) as (_, dapr):
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="report", schedule="@daily")))
        again = pb.ScheduleJobRequest(job=pb.Job(name="report", schedule="0 0 6 * * *"))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await dapr.ScheduleJob(again)
        assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "report" in (raised.value.details() or "")
        again.overwrite = True
        await dapr.ScheduleJob(again)
        assert (await dapr.GetJob(pb.GetJobRequest(name="report"))).job.schedule == "0 0 6 * * *"


async def test_list_and_delete_see_only_the_apps_own_jobs(tmp_path: Path) -> None:
    """Two app ids sharing one sqlite file: each lists, deletes and fires only its own jobs."""
    async with (
        runtime_and_stub(config(tmp_path, None, app_id="alpha")) as (_, alpha),
        runtime_and_stub(config(tmp_path, None, app_id="beta")) as (_, beta),
    ):
        for name in ("report-daily", "report-weekly", "cleanup"):
            await alpha.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name=name, schedule="@hourly")))
        await beta.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="cleanup", due_time="1h")))
        listed = await alpha.ListJobsAlpha1(pb.ListJobsRequestAlpha1())
        assert [job.name for job in listed.jobs] == ["cleanup", "report-daily", "report-weekly"]
        await alpha.DeleteJobsByPrefix(pb.DeleteJobsByPrefixRequest(name_prefix="report-"))
        await alpha.DeleteJob(pb.DeleteJobRequest(name="cleanup"))
        await alpha.DeleteJob(pb.DeleteJobRequest(name="cleanup"))  # deleting what is gone is fine
        assert list((await alpha.ListJobs(pb.ListJobsRequest())).jobs) == []
        assert [job.name for job in (await beta.ListJobs(pb.ListJobsRequest())).jobs] == ["cleanup"]
        assert (await beta.GetJob(pb.GetJobRequest(name="cleanup"))).job.due_time == "1h"


def constant(interval: Any = None, retries: int | None = None) -> common_pb2.JobFailurePolicy:
    policy = common_pb2.JobFailurePolicy(constant=common_pb2.JobFailurePolicyConstant())
    if interval is not None:
        policy.constant.interval.CopyFrom(interval)
    if retries is not None:
        policy.constant.max_retries = retries
    return policy


async def test_a_refused_job_is_retried_by_its_constant_policy(tmp_path: Path) -> None:
    app = JobApp(failures=2)
    async with serving(app) as address, runtime_and_stub(config(tmp_path, address, store="in-memory")) as (_, dapr):
        policy = constant(duration(nanos=100_000_000), retries=3)
        job = pb.Job(name="flaky", due_time="0s", failure_policy=policy)
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=job))
        await wait_for(lambda: app.events)
        assert app.refused == 2 and app.names() == ["flaky"]
        assert await gone(dapr, "flaky")


async def test_a_refused_job_with_the_drop_policy_is_given_up(tmp_path: Path) -> None:
    app = JobApp(failures=100)
    async with serving(app) as address, runtime_and_stub(config(tmp_path, address, store="in-memory")) as (_, dapr):
        drop = common_pb2.JobFailurePolicy(drop=common_pb2.JobFailurePolicyDrop())
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="once", due_time="0s", failure_policy=drop)))
        policy = constant(duration(nanos=50_000_000), retries=2)
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="thrice", due_time="0s", failure_policy=policy)))
        assert await gone(dapr, "once") and await gone(dapr, "thrice")
        assert app.refused == 1 + 3  # drop: one attempt; constant with 2 retries: three
        assert app.events == []


async def test_an_unexpected_error_in_a_delivery_does_not_stop_the_loop(tmp_path: Path) -> None:
    delivered: list[str] = []

    async def deliver(name: str, data: JobData | None) -> None:
        if name == "boom":
            raise RuntimeError("a bug in delivery")
        delivered.append(name)

    async with runtime_and_stub(config(tmp_path, None, store="in-memory")) as (runtime, dapr):
        assert runtime.services is not None
        runtime.services.jobs.deliver_to(deliver)
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="boom", due_time="0s")))
        await asyncio.sleep(0.3)  # a poll of the loop has met it
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="fine", due_time="0s")))
        await wait_for(lambda: delivered == ["fine"])


async def test_the_policy_reads_back_as_scheduled(tmp_path: Path) -> None:
    async with runtime_and_stub(config(tmp_path, None, store="in-memory")) as (_, dapr):
        policy = constant(duration(seconds=2, nanos=500_000_000), retries=4)
        job = pb.Job(name="p", schedule="0 30 * * * *", repeats=7, ttl="24h", failure_policy=policy)
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=job))
        assert (await dapr.GetJob(pb.GetJobRequest(name="p"))).job == job


BAD_JOBS = [
    (pb.Job(name="", due_time="1s"), "job.name"),
    (pb.Job(name="a\nb", due_time="1s"), "job.name"),
    (pb.Job(name="x" * 513, due_time="1s"), "job.name"),
    (pb.Job(name="n"), "job.schedule"),
    (pb.Job(name="n", schedule="* * * * *"), "job.schedule"),  # 5 fields: Dapr's take 6
    (pb.Job(name="n", schedule="61 * * * * *"), "job.schedule"),
    (pb.Job(name="n", schedule="@every soon"), "job.schedule"),
    (pb.Job(name="n", schedule="@every 0s"), "job.schedule"),
    (pb.Job(name="n", schedule="@every 100000h"), "job.schedule"),
    (pb.Job(name="n", schedule="0 0 0 30 2 *"), "job.schedule"),  # valid fields, but no February 30th
    (pb.Job(name="n", due_time="1s", schedule="0 0 0 31 2 *"), "job.schedule"),
    (pb.Job(name="n", due_time="tomorrow"), "job.due_time"),
    (pb.Job(name="n", due_time="-1s"), "job.due_time"),
    (pb.Job(name="n", due_time="99999h"), "job.due_time"),
    (pb.Job(name="n", due_time="2999-01-01T00:00:00Z"), "job.due_time"),
    (pb.Job(name="n", due_time="1h", ttl="10m"), "job.ttl"),
    (pb.Job(name="n", due_time="1s", ttl="forever"), "job.ttl"),
    (pb.Job(name="n", schedule="@hourly", repeats=0), "job.repeats"),
    (
        pb.Job(name="n", due_time="1s", failure_policy=constant(duration(seconds=-1))),
        "job.failure_policy.constant.interval",
    ),
    (
        pb.Job(name="n", due_time="1s", failure_policy=constant(duration(seconds=10**9))),
        "job.failure_policy.constant.interval",
    ),
    (pb.Job(name="n", due_time="1s", failure_policy=common_pb2.JobFailurePolicy()), "job.failure_policy"),
]


async def test_bad_jobs_are_invalid_argument_naming_the_field(tmp_path: Path) -> None:
    async with runtime_and_stub(config(tmp_path, None, store="in-memory")) as (_, dapr):  # one runtime for all
        for job, field in BAD_JOBS:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await dapr.ScheduleJob(pb.ScheduleJobRequest(job=job))
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, job
            assert (raised.value.details() or "").startswith(f"{field}:"), (job, raised.value.details())
        for call in (dapr.GetJob(pb.GetJobRequest(name="")), dapr.DeleteJob(pb.DeleteJobRequest(name=""))):
            assert await code_of(call) == grpc.StatusCode.INVALID_ARGUMENT
        assert list((await dapr.ListJobs(pb.ListJobsRequest())).jobs) == []  # nothing was stored


async def test_time_expressions_dapr_takes_are_accepted(tmp_path: Path) -> None:
    async with runtime_and_stub(config(tmp_path, None, store="in-memory")) as (_, dapr):
        accepted = [
            pb.Job(name="a", schedule="@every 1h30m"),
            pb.Job(name="b", schedule="0 15 3 * * *"),
            pb.Job(name="c", schedule="0 0 9 * jan-mar mon-fri"),
            pb.Job(name="d", schedule="2h45m"),
            pb.Job(name="e", schedule="@weekly", due_time="2030-12-09T16:09:53+01:00"),
            pb.Job(name="f", due_time="PT1H30M", ttl="P1D"),
            pb.Job(name="g", due_time="2030-12-09T16:09:53Z", repeats=5, schedule="@monthly"),
        ]
        for job in accepted:
            await dapr.ScheduleJob(pb.ScheduleJobRequest(job=job))
        assert len((await dapr.ListJobs(pb.ListJobsRequest())).jobs) == len(accepted)


async def test_a_pending_job_fires_after_a_restart(tmp_path: Path) -> None:
    async with runtime_and_stub(config(tmp_path, None)) as (_, dapr):  # sqlite, no app: it must not fire here
        due = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="kept", due_time=due, data=text_data("x"))))
    app = JobApp()
    async with serving(app) as address, runtime_and_stub(config(tmp_path, address)):
        await wait_for(lambda: app.events, seconds=20)
        assert app.names() == ["kept"] and app.events[0].data == text_data("x")


@pytest.mark.parametrize("store", ["postgresql", "etcd"])  # redis: three processes in test_many_runtimes_scheduler
async def test_two_runtimes_sharing_a_store_fire_each_occurrence_once(tmp_path: Path, store: str) -> None:
    backends.require(store)
    if store == "redis":
        meta = {"redisHost": backends.address("redis"), "queueName": f"jobs-{uuid.uuid4().hex[:8]}"}
    elif store == "etcd":
        meta = {"endpoints": backends.address("etcd"), "keyPrefix": f"jobs-{uuid.uuid4().hex[:8]}/"}
    else:
        meta = {"connectionString": backends.address("postgresql"), "tableName": f"jobs_{uuid.uuid4().hex[:8]}"}
    app = JobApp()
    async with (
        serving(app) as address,
        runtime_and_stub(config(tmp_path / "a", address, store=store, **meta)) as (_, first),
        runtime_and_stub(config(tmp_path / "b", address, store=store, **meta)),
    ):
        for n in range(4):
            job = pb.Job(name=f"job-{n}", schedule="@every 150ms", repeats=5)
            await first.ScheduleJob(pb.ScheduleJobRequest(job=job))
        await wait_for(lambda: len(app.events) >= 20, seconds=30)
        for _ in range(100):
            if not (await first.ListJobs(pb.ListJobsRequest())).jobs:
                break
            await asyncio.sleep(0.05)
        assert not (await first.ListJobs(pb.ListJobsRequest())).jobs
        assert sorted(app.names()) == sorted(f"job-{n}" for n in range(4) for _ in range(5))


async def test_dapr_http_jobs_api(tmp_path: Path) -> None:
    """Dapr's HTTP endpoints: JSON data reaches a gRPC app as an Any of google.protobuf.Value."""
    app = JobApp()
    async with serving(app) as address, runtime_and_stub(config(tmp_path, address)) as (runtime, _):
        base = f"http://127.0.0.1:{runtime.http_port}/v1.0-alpha1/jobs"
        async with aiohttp.ClientSession() as http:
            body = {"dueTime": "200ms", "data": {"spice": 5}, "failure_policy": {"constant": {"interval": "1s"}}}
            async with http.post(f"{base}/spice", json=body) as reply:
                assert reply.status == 204, await reply.text()
            async with http.get(f"{base}/spice") as reply:
                got = await reply.json()
            assert got == {
                "name": "spice",
                "dueTime": "200ms",
                "data": {"spice": 5},
                "failurePolicy": {"constant": {"interval": "1s"}},
            }
            async with http.post(f"{base}/spice", json=body) as reply:
                assert reply.status == 409 and (await reply.json())["details"][0]["reason"] == "JOB_ALREADY_EXISTS"
            async with http.post(f"{base}/bad", json={"schedule": "@every soon"}) as reply:
                error = await reply.json()
                assert reply.status == 400 and error["message"].startswith("job.schedule:"), error
            await wait_for(lambda: app.events)
            assert app.events[0].data.type_url == "type.googleapis.com/google.protobuf.Value"
            value = struct_pb2.Value.FromString(app.events[0].data.value)
            assert json_format.MessageToDict(value) == {"spice": 5}
            async with http.post(f"{base}/later", json={"dueTime": "1h"}) as reply:
                assert reply.status == 204
            async with http.delete(f"http://127.0.0.1:{runtime.http_port}/v1.0/jobs/later") as reply:
                assert reply.status == 204
            async with http.get(f"{base}/later") as reply:
                assert reply.status == 404
                assert (await reply.json())["errorCode"] == "DAPR_SCHEDULER_GET_JOB"


DAPR_JOBS_APP = textwrap.dedent("""
    import sys, threading
    from dapr.clients import DaprClient
    from dapr.clients.grpc._jobs import ConstantFailurePolicy, Job
    from dapr.ext.grpc import App, JobEvent

    app = App()
    fired = threading.Event()
    seen = []

    @app.job_event("nightly")
    def on_job(event: JobEvent) -> None:
        seen.append((event.name, event.data))
        fired.set()

    threading.Thread(target=app.run, args=(int(sys.argv[1]),), daemon=True).start()
    with DaprClient() as client:
        job = Job(name="nightly", schedule="@every 300ms", repeats=1, failure_policy=ConstantFailurePolicy(3, 1))
        client.schedule_job(job)
        got = client.get_job("nightly")
        assert (got.name, got.schedule, got.repeats) == ("nightly", "@every 300ms", 1), got
        assert got.failure_policy.max_retries == 3 and got.failure_policy.interval_seconds == 1, vars(got.failure_policy)
        try:
            client.schedule_job(job)
            raise SystemExit("a second job of one name was accepted")
        except Exception as error:
            assert "already exists" in str(error), error
        assert fired.wait(30), "the job never reached the app"
        client.schedule_job(Job(name="later", due_time="1h"))
        client.delete_job("later")
        try:
            client.get_job("later")
            raise SystemExit("a deleted job was found")
        except Exception as error:
            assert "no job named" in str(error), error
    assert seen == [("nightly", b"")], seen
    print("dapr jobs ok")
""")


async def test_dapr_python_sdk_schedules_jobs_and_handles_them(tmp_path: Path) -> None:
    app_port = free_port()
    cfg = config(tmp_path, f"127.0.0.1:{app_port}")
    async with Runtime(cfg) as runtime:
        env = {
            **os.environ,
            "DAPR_GRPC_ENDPOINT": f"127.0.0.1:{runtime.grpc_port}",
            "DAPR_HTTP_ENDPOINT": f"http://127.0.0.1:{runtime.http_port}",
            "DAPR_HEALTH_TIMEOUT": "10",
        }
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            DAPR_JOBS_APP,
            str(app_port),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(child.communicate(), 90)
    assert child.returncode == 0, out.decode() + err.decode()
    assert out.decode().strip().endswith("dapr jobs ok")
