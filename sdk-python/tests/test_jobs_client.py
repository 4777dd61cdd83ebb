"""client.jobs against an in-process runtime (its embedded sqlite scheduler), due jobs delivered
to a SubscriberApp's ``@app.job`` handlers, and the jobs client on MockTransport."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from layotto.client import (
    ConstantPolicy,
    DropPolicy,
    InvalidArgument,
    Job,
    JobAlreadyExists,
    JobEvent,
    JobNotFound,
    RuntimeClient,
    SubscriberApp,
)
from layotto.client.testing import MockTransport, test_runtime
from layotto.proto.dapr.runtime.v1 import jobs_pb2
from layotto.server import embedded_defaults


@asynccontextmanager
async def runtime_with_app(app: SubscriberApp) -> AsyncIterator[RuntimeClient]:
    async with app.serve("127.0.0.1:0") as port:
        config = embedded_defaults().with_overrides(app_callback_address=f"127.0.0.1:{port}")
        async with test_runtime(config) as runtime, runtime.client() as client:
            yield client


async def test_schedule_get_list_delete_answer_frozen_jobs() -> None:
    async with test_runtime() as runtime, runtime.client() as client:
        policy = ConstantPolicy(interval=2.5, max_retries=4)
        await client.jobs.schedule(
            "report", schedule="0 0 2 * * *", repeats=3, ttl="720h", data={"format": "csv"}, failure_policy=policy
        )
        await client.jobs.schedule(
            "later", due_time=dt.timedelta(hours=1, milliseconds=500), failure_policy=DropPolicy()
        )
        at = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        await client.jobs.schedule("at", due_time=at)
        job = await client.jobs.get("report")
        assert job == Job("report", "0 0 2 * * *", None, 3, "720h", b'{"format":"csv"}', policy)
        with pytest.raises(dataclasses.FrozenInstanceError):
            job.name = "x"  # type: ignore[misc]
        assert (await client.jobs.get("later")).due_time == "3600.5s"
        assert (await client.jobs.get("later")).failure_policy == DropPolicy()
        assert (await client.jobs.get("at")).due_time == "2030-01-02T03:04:05+00:00"
        assert [j.name for j in await client.jobs.list()] == ["at", "later", "report"]
        await client.jobs.delete("later")
        await client.jobs.delete_prefix("re")
        assert [j.name for j in await client.jobs.list()] == ["at"]


async def test_errors_are_the_sdks() -> None:
    async with test_runtime() as runtime, runtime.client() as client:
        await client.jobs.schedule("taken", schedule="@hourly")
        with pytest.raises(JobAlreadyExists):
            await client.jobs.schedule("taken", schedule="@daily")
        await client.jobs.schedule("taken", schedule="@daily", overwrite=True)
        assert (await client.jobs.get("taken")).schedule == "@daily"
        with pytest.raises(JobNotFound):
            await client.jobs.get("missing")
        with pytest.raises(InvalidArgument) as bad:
            await client.jobs.schedule("n", schedule="@every never")
        assert bad.value.field == "job.schedule"
        with pytest.raises(InvalidArgument) as bad:
            await client.jobs.schedule("n", due_time="1s", repeats=0)
        assert bad.value.field == "job.repeats"


async def test_due_jobs_reach_their_handlers_and_a_failing_one_is_retried() -> None:
    app = SubscriberApp()
    seen: asyncio.Queue[JobEvent] = asyncio.Queue()
    attempts: list[str] = []

    @app.job("hello")
    async def hello(event: JobEvent) -> None:
        await seen.put(event)

    @app.job("flaky")
    async def flaky(event: JobEvent) -> None:
        attempts.append(event.text())
        if len(attempts) == 1:
            raise RuntimeError("not yet")
        await seen.put(event)

    with pytest.raises(ValueError, match="already has a handler"):
        app.job("hello")(hello)
    async with runtime_with_app(app) as client:
        await client.jobs.schedule("hello", due_time="100ms", data={"to": "you"})
        await client.jobs.schedule("flaky", due_time="0s", data="again", failure_policy=ConstantPolicy(0.1, 2))
        events = {}
        for _ in range(2):
            event = await asyncio.wait_for(seen.get(), 15)
            events[event.name] = event
        assert events["hello"].json() == {"to": "you"}
        assert events["flaky"].text() == "again" and attempts == ["again", "again"]


async def test_the_jobs_client_runs_on_mock_transport() -> None:
    def handler(method: str, request: Any) -> Any:
        assert method == "dapr.proto.runtime.v1.Dapr.GetJob"
        return jobs_pb2.GetJobResponse(job=jobs_pb2.Job(name=request.name, schedule="@daily"))

    transport = MockTransport(handler)
    async with RuntimeClient(transport=transport) as client:
        assert await client.jobs.get("j") == Job("j", schedule="@daily")
    assert [method for method, _ in transport.requests] == ["dapr.proto.runtime.v1.Dapr.GetJob"]
