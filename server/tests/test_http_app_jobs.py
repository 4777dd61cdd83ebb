"""Due jobs delivered to an app that speaks only HTTP (``app_protocol: http``) as daprd does:
``POST /job/<name>`` with the job's ``Any`` as Go's JSON (``type_url``, base64 ``value``), the app
token, and the job's failure policy applied to non-2xx answers. One runtime in-process, an aiohttp
app in-process."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from server_helpers import free_port
from test_jobs import constant, duration, gone, text_data
from test_pubsub import wait_for

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
from layotto.proto.dapr.runtime.v1 import jobs_pb2 as pb
from layotto.server import Runtime, RuntimeConfig
from layotto.server.config import ComponentConfig


class HttpJobApp:
    """Records each ``POST /job/<name>`` (path, JSON body, headers); the first ``failures`` answer ``status``."""

    def __init__(self, failures: int = 0, status: int = 500) -> None:
        self.port = free_port()
        self.posts: list[tuple[str, Any, dict[str, str]]] = []
        self.refused = 0
        self.failures = failures
        self.status = status

    async def _job(self, request: web.Request) -> web.Response:
        if self.refused < self.failures:
            self.refused += 1
            return web.Response(status=self.status, text="not now")
        self.posts.append((request.raw_path, json.loads(await request.read()), dict(request.headers)))
        return web.Response(status=200)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        app = web.Application()
        app.router.add_post("/job/{name}", self._job)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            yield
        finally:
            await runner.cleanup()


@asynccontextmanager
async def runtime_for(app: HttpJobApp, tmp_path: Path) -> AsyncIterator[dapr_pb2_grpc.DaprStub]:
    cfg = RuntimeConfig(
        app_id="http-jobs",
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_protocol="http",
        app_port=app.port,
        components={"scheduler": {"jobs": ComponentConfig("in-memory", {})}},
    )
    async with Runtime(cfg) as runtime, grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield dapr_pb2_grpc.DaprStub(channel)


async def test_a_due_job_is_posted_to_the_http_app_with_its_data_and_the_app_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_API_TOKEN", "app-secret")
    app = HttpJobApp()
    async with app.serving(), runtime_for(app, tmp_path) as dapr:
        job = pb.Job(name="db backup/1", due_time="100ms", data=text_data("db-1"))
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=job))
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="bare", due_time="0s")))
        await wait_for(lambda: len(app.posts) == 2)
        by_path = {path: (body, headers) for path, body, headers in app.posts}
        body, headers = by_path["/job/db%20backup%2F1"]
        assert body == {"type_url": job.data.type_url, "value": base64.b64encode(job.data.value).decode()}
        assert headers["Content-Type"] == "application/json" and headers["dapr-api-token"] == "app-secret"
        assert by_path["/job/bare"][0] is None  # no data: daprd's JSON of a nil Any
        assert await gone(dapr, "db backup/1") and await gone(dapr, "bare")


async def test_an_http_apps_error_answers_go_through_the_failure_policy(tmp_path: Path) -> None:
    app = HttpJobApp(failures=2, status=503)
    async with app.serving(), runtime_for(app, tmp_path) as dapr:
        policy = constant(duration(nanos=50_000_000), retries=3)
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="flaky", due_time="0s", failure_policy=policy)))
        await wait_for(lambda: app.posts)
        assert app.refused == 2 and [path for path, _, _ in app.posts] == ["/job/flaky"]
        assert await gone(dapr, "flaky")


async def test_an_http_apps_refusal_with_the_drop_policy_is_given_up(tmp_path: Path) -> None:
    app = HttpJobApp(failures=100, status=404)
    async with app.serving(), runtime_for(app, tmp_path) as dapr:
        drop = common_pb2.JobFailurePolicy(drop=common_pb2.JobFailurePolicyDrop())
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="once", due_time="0s", failure_policy=drop)))
        assert await gone(dapr, "once")
        assert app.refused == 1 and app.posts == []


async def test_a_job_waits_for_an_http_app_that_starts_after_the_runtime(tmp_path: Path) -> None:
    app = HttpJobApp()
    async with runtime_for(app, tmp_path) as dapr:
        drop = common_pb2.JobFailurePolicy(drop=common_pb2.JobFailurePolicyDrop())
        await dapr.ScheduleJob(pb.ScheduleJobRequest(job=pb.Job(name="early", due_time="0s", failure_policy=drop)))
        await asyncio.sleep(0.5)  # due at once: its POSTs are refused a connection meanwhile (no event to await)
        async with app.serving():
            await wait_for(lambda: app.posts)
            assert [path for path, _, _ in app.posts] == ["/job/early"]
