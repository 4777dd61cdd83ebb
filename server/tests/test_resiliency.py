"""Resiliency (Dapr's ``kind: Resiliency``): timeouts, retries and circuit breakers per target app
and per component.

Three runtimes in this test's process (each its own gRPC server on loopback: the caller ``a``
forwards to ``b`` and ``c`` as it would to other machines) and one HTTP app serving both callees
count what reaches the app. The component policy is tested against a private Redis this test
stops and starts; bad specs are refused at start, one through a ``layotto serve`` child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import backends
import pytest
from aiohttp import web
from server_helpers import PrivateBackend, free_port

from layotto.client import (
    NO_RETRY,
    AppError,
    BackendUnavailable,
    CircuitOpen,
    DeadlineExceeded,
    Message,
    RuntimeClient,
    SubscriberApp,
)
from layotto.server import Runtime
from layotto.server.components.base import ConfigError
from layotto.server.config import from_mapping, with_dapr_components
from layotto.server.runtime.resiliency.breaker import CircuitBreaker, State
from layotto.server.runtime.resiliency.policy import waits
from layotto.server.runtime.resiliency.spec import BreakerSpec, RetrySpec, parse_duration

POLICIES = {
    "timeouts": {"short": "500ms"},
    "retries": {
        "threeTimes": {"policy": "constant", "duration": "10ms", "maxRetries": 3},
        "only503": {"policy": "constant", "duration": "10ms", "maxRetries": 3, "matching": {"httpStatusCodes": "503"}},
        "forever": {"policy": "exponential", "maxInterval": "50ms", "maxRetries": -1},
    },
    "circuitBreakers": {"twoStrikes": {"maxRequests": 1, "timeout": "300ms", "trip": "consecutiveFailures >= 2"}},
}


@dataclass
class Mesh:
    a: Runtime
    b: Runtime
    c: Runtime
    calls: Counter[str]
    bodies: list[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.a.grpc_port}"


@asynccontextmanager
async def counting_app(port: int) -> AsyncIterator[tuple[Counter[str], list[bytes]]]:
    """/flaky/{n}: 500 for its first n calls, then 200; /fail: 500; /busy: 503; /slow: 5 s; /ok."""
    calls: Counter[str] = Counter()
    bodies: list[bytes] = []
    released = asyncio.Event()  # set at the end: /slow answers then, so the app stops at once

    async def flaky(request: web.Request) -> web.Response:
        calls[request.path] += 1
        bodies.append(await request.read())
        if calls[request.path] <= int(request.match_info["n"]):
            return web.Response(status=500, text="not yet")
        return web.Response(text=f"ok after {calls[request.path]}")

    async def status(request: web.Request) -> web.Response:
        calls[request.path] += 1
        return web.Response(status={"/fail": 500, "/busy": 503}.get(request.path, 200), text=request.path)

    async def slow(request: web.Request) -> web.Response:
        calls[request.path] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), 5)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_route("*", "/flaky/{n}", flaky)
    app.router.add_route("*", "/slow", slow)
    app.router.add_route("*", "/{name}", status)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield calls, bodies
    finally:
        released.set()
        await runner.cleanup()


def _config(tmp: Path, name: str, raw: dict[str, Any]) -> Any:
    return from_mapping({"app_id": name, **raw}).with_overrides(
        grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", data_dir=str(tmp / name)
    )


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    app_port = free_port()
    callee = {"app_protocol": "http", "app_port": app_port}
    async with counting_app(app_port) as (calls, bodies):
        b = Runtime(_config(tmp_path, "b", callee))
        c = Runtime(_config(tmp_path, "c", callee))
        await b.start()
        await c.start()
        resiliency = {
            "policies": POLICIES,
            "targets": {
                "apps": {
                    "b": {"timeout": "short", "retry": "threeTimes"},
                    "c": {"circuitBreaker": "twoStrikes"},
                    "ghost": {"retry": "forever"},
                }
            },
        }
        apps = {
            "b": [f"127.0.0.1:{b.grpc_port}"],
            "c": [f"127.0.0.1:{c.grpc_port}"],
            "ghost": [f"127.0.0.1:{free_port()}"],
        }
        a = Runtime(
            _config(tmp_path, "a", {"name_resolution": {"type": "static", "apps": apps}, "resiliency": resiliency})
        )
        await a.start()
        try:
            yield Mesh(a, b, c, calls, bodies)
        finally:
            for runtime in (a, b, c):
                await runtime.stop(grace=0)


async def test_retries_resend_the_call_until_the_app_answers(mesh: Mesh) -> None:
    async with RuntimeClient(mesh.address, retry=NO_RETRY) as client:
        reply = await client.invoke("b", "flaky/2", b"order-1", timeout=10)
        assert reply.data == b"ok after 3"
    assert mesh.calls["/flaky/2"] == 3  # two 500s, then the answer: each retry reached the app
    assert mesh.bodies == [b"order-1"] * 3  # re-sent whole
    async with aiohttp.ClientSession() as http:  # Dapr's HTTP API passes statuses through: retried all the same
        async with http.post(f"http://127.0.0.1:{mesh.a.http_port}/v1.0/invoke/b/method/flaky/1", data=b"x") as reply:
            assert (reply.status, await reply.text()) == (200, "ok after 2")
        async with http.post(f"http://127.0.0.1:{mesh.a.http_port}/v1.0/invoke/b/method/fail") as reply:
            assert reply.status == 500  # the app's last answer, after maxRetries
    assert mesh.calls["/fail"] == 4


async def test_retries_stop_at_max_retries_and_the_callee_is_not_retried_by_its_own_sidecar(mesh: Mesh) -> None:
    async with RuntimeClient(mesh.address, retry=NO_RETRY) as client:
        with pytest.raises(AppError) as failed:
            await client.invoke("b", "flaky/9", timeout=10)
        assert failed.value.http_status == 500
        assert mesh.calls["/flaky/9"] == 4  # the call and its 3 retries, not 4 x 4
        async with RuntimeClient(f"127.0.0.1:{mesh.b.grpc_port}", retry=NO_RETRY) as own:  # b has no policy
            with pytest.raises(AppError):
                await own.invoke("b", "fail", timeout=10)
        assert mesh.calls["/fail"] == 1


async def test_the_timeout_policy_cuts_each_attempt_with_deadline_exceeded(mesh: Mesh) -> None:
    async with RuntimeClient(mesh.address, retry=NO_RETRY) as client:
        with pytest.raises(DeadlineExceeded) as cut:
            await client.invoke("b", "slow", timeout=30)
    assert cut.value.code == "DEADLINE_EXCEEDED"
    assert 2 <= mesh.calls["/slow"] <= 4  # attempts cut at 500 ms, then retried (4 attempts: maxRetries 3)


async def test_the_callers_deadline_bounds_unlimited_retries(mesh: Mesh) -> None:
    async with RuntimeClient(mesh.address, retry=NO_RETRY) as client:
        with pytest.raises(DeadlineExceeded):  # the runtime's, or the client's own at the same moment
            await client.invoke("ghost", "anything", timeout=0.5)  # no sidecar answers; retries: forever


async def test_a_breaker_opens_after_consecutive_failures_and_half_opens_after_its_timeout(mesh: Mesh) -> None:
    policy = mesh.a.resiliency.app("c") if mesh.a.resiliency else None
    assert policy is not None and policy.breaker is not None
    async with RuntimeClient(mesh.address, retry=NO_RETRY) as client:
        for _ in range(2):
            with pytest.raises(AppError):
                await client.invoke("c", "fail", timeout=10)
        with pytest.raises(CircuitOpen) as refused:
            await client.invoke("c", "ok", timeout=10)
        assert refused.value.code == "UNAVAILABLE" and refused.value.reason == "CIRCUIT_OPEN"
        assert "app 'c'" in str(refused.value) and refused.value.breaker == "twoStrikes"
        assert mesh.calls["/ok"] == 0  # refused by the caller's sidecar: nothing reached the app
        await asyncio.sleep(0.35)  # the breaker's timeout: open for 300 ms
        assert policy.breaker.state is State.HALF_OPEN
        assert (await client.invoke("c", "ok", timeout=10)).data == b"/ok"  # the trial call closes it
        assert policy.breaker.state is State.CLOSED
        for _ in range(2):
            with pytest.raises(AppError):
                await client.invoke("c", "busy", timeout=10)
        with pytest.raises(CircuitOpen):  # open again, without a retry policy: one call each
            await client.invoke("c", "ok", timeout=10)
    assert (mesh.calls["/fail"], mesh.calls["/busy"], mesh.calls["/ok"]) == (2, 2, 1)


def test_breaker_half_open_admits_max_requests_and_a_failed_trial_reopens() -> None:
    now = [0.0]
    breaker = CircuitBreaker(BreakerSpec("cb", max_requests=2, timeout=1.0, trip_above=0), "app 'x'", lambda: now[0])
    breaker.after(breaker.before(), success=False)
    assert breaker.state is State.OPEN
    now[0] = 1.0
    first, second = breaker.before(), breaker.before()
    assert breaker.state is State.HALF_OPEN
    with pytest.raises(Exception, match="half-open"):
        breaker.before()
    breaker.after(first, success=True)
    breaker.after(second, success=False)
    assert breaker.state is State.OPEN
    now[0] = 2.0
    for generation in (breaker.before(), breaker.before()):
        breaker.after(generation, success=True)
    assert breaker.state is State.CLOSED


def test_backoff_follows_the_policy() -> None:
    assert list(waits(RetrySpec("r", duration=0.2, max_retries=3))) == [0.2, 0.2, 0.2]
    exponential = list(waits(RetrySpec("r", "exponential", max_interval=1.0, max_retries=6), lambda: 0.5))
    assert exponential == [0.5, 0.75, 1.0, 1.0, 1.0, 1.0]  # x1.5 from 500 ms, capped at maxInterval
    assert list(waits(None)) == []


def test_go_durations() -> None:
    assert [parse_duration(d, "d") for d in ("5s", "100ms", "1m30s", "1h", "1.5s", "0", "250us")] == [
        5,
        0.1,
        90,
        3600,
        1.5,
        0,
        0.00025,
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"targets": {"apps": {"b": {"retry": "nope"}}}}, "targets.apps.b.retry: no policy 'nope' in policies.retries"),
        ({"policies": {"timeouts": {"t": "5 seconds"}}}, "policies.timeouts.t: expected a duration"),
        ({"policies": {"timeouts": {"t": "-1s"}}}, "policies.timeouts.t: expected a duration"),
        (  # was inf: accepted, then every call timed out at once
            {"policies": {"timeouts": {"t": "9" * 400 + "h"}}},
            "policies.timeouts.t: '999",
        ),
        ({"policies": {"retries": {"r": {"duration": "2562048h"}}}}, "is longer than Go's longest duration"),
        ({"policies": {"retries": {"r": {"maxRetries": -2}}}}, "policies.retries.r.maxRetries: expected an integer"),
        ({"policies": {"retries": {"r": {"policy": "linear"}}}}, "policies.retries.r.policy: expected constant or"),
        ({"policies": {"circuitBreakers": {"cb": {"maxRequests": -1}}}}, "circuitBreakers.cb.maxRequests"),
        (
            {"policies": {"circuitBreakers": {"cb": {"trip": "totalFailures > 3"}}}},
            "circuitBreakers.cb.trip: only 'consecutiveFailures > N' and 'consecutiveFailures >= N' are served",
        ),
        ({"policies": {"retries": {"r": {"matching": {"httpStatusCodes": "5xx"}}}}}, "matching.httpStatusCodes"),
        ({"targets": {"components": {"s": {"sideways": {}}}}}, "targets.components.s.sideways: unknown key"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_key(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as refused:
        from_mapping({"resiliency": spec})
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert str(refused.value).startswith("resiliency.")


def test_manifests_are_loaded_by_scope_and_merged(tmp_path: Path) -> None:
    manifest = (
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {{name: {name}}}\n{scopes}"
        "spec:\n  policies: {{timeouts: {{t: 1s}}}}\n  targets: {{apps: {{{target}: {{timeout: t}}}}}}\n"
    )
    (tmp_path / "mine.yaml").write_text(manifest.format(name="mine", scopes="scopes: [a]\n", target="b"))
    (tmp_path / "all.yaml").write_text(manifest.format(name="all", scopes="", target="c"))
    (tmp_path / "other.yaml").write_text(manifest.format(name="other", scopes="scopes: [z]\n", target="d"))
    config = with_dapr_components(from_mapping({"app_id": "a", "components_path": str(tmp_path)}))
    assert config.resiliency is not None
    assert sorted(config.resiliency.apps) == ["b", "c"] and config.resiliency.apps["b"].timeout == 1.0
    (tmp_path / "twice.yaml").write_text(manifest.format(name="twice", scopes="", target="c"))
    with pytest.raises(ConfigError, match=r"targets\.apps\.c: has policies in two resiliency specs"):
        with_dapr_components(from_mapping({"app_id": "a", "components_path": str(tmp_path)}))


async def test_a_component_target_naming_no_component_is_refused_at_start(tmp_path: Path) -> None:
    spec = {"policies": POLICIES, "targets": {"components": {"nosuch": {"outbound": {"retry": "threeTimes"}}}}}
    runtime = Runtime(_config(tmp_path, "a", {"state": {"mem": {"type": "in-memory"}}, "resiliency": spec}))
    with pytest.raises(ConfigError, match=r"targets\.components\.nosuch: no component named 'nosuch' is configured"):
        await runtime.start()
    await runtime.stop(grace=0)


async def test_an_inbound_target_naming_a_state_store_is_refused_at_start(tmp_path: Path) -> None:
    spec = {"policies": POLICIES, "targets": {"components": {"mem": {"inbound": {"retry": "threeTimes"}}}}}
    runtime = Runtime(_config(tmp_path, "a", {"state": {"mem": {"type": "in-memory"}}, "resiliency": spec}))
    with pytest.raises(ConfigError, match=r"mem\.inbound: only pub/sub and input binding components deliver"):
        await runtime.start()
    await runtime.stop(grace=0)


async def test_an_inbound_policy_retries_a_delivery_to_the_app(tmp_path: Path) -> None:
    """maxDeliveryAttempts 1: without the policy the first RETRY would drop the message."""
    app, calls, delivered = SubscriberApp(), [0], asyncio.Event()

    @app.subscribe("bus", "orders", max_delivery_attempts=1)
    async def handle(message: Message) -> None:
        calls[0] += 1
        if calls[0] < 3:
            raise RuntimeError("not yet")
        delivered.set()

    spec = {"policies": POLICIES, "targets": {"components": {"bus": {"inbound": {"retry": "threeTimes"}}}}}
    port = free_port()
    raw = {"app_callback_address": f"127.0.0.1:{port}", "pubsub": {"bus": {"type": "in-memory"}}, "resiliency": spec}
    runtime = Runtime(_config(tmp_path, "a", raw))
    async with app.serve(f"127.0.0.1:{port}"):
        await runtime.start()
        try:
            assert runtime.app_subscriptions is not None
            await asyncio.wait_for(runtime.app_subscriptions.listed.wait(), 10)
            async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}", retry=NO_RETRY) as client:
                await client.pubsub.publish("bus", "orders", {"id": 1})
            await asyncio.wait_for(delivered.wait(), 10)
        finally:
            await runtime.stop(grace=0)
    assert calls[0] == 3


def test_layotto_serve_exits_with_one_line_for_a_bad_manifest(tmp_path: Path) -> None:
    manifests = tmp_path / "components"
    manifests.mkdir()
    (manifests / "resiliency.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: r}\n"
        "spec:\n  policies: {retries: {r: {duration: 5}}}\n  targets: {}\n"
    )
    (tmp_path / "runtime.yaml").write_text(f"app_id: a\ncomponents_path: {manifests}\n")
    done = subprocess.run(
        [sys.executable, "-m", "layotto.server", "serve", "-c", str(tmp_path / "runtime.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "spec.policies.retries.r.duration: expected a duration" in lines[0], done.stderr


async def test_a_component_policy_retries_a_state_call_across_a_redis_restart(tmp_path: Path) -> None:
    if not shutil.which("redis-server"):
        backends.require_installed("redis-server")
    redis = PrivateBackend("redis", tmp_path / "redis")
    redis.start()
    spec = {
        "policies": {
            "retries": {"steady": {"policy": "constant", "duration": "50ms", "maxRetries": -1}},
            "circuitBreakers": {"watch": {"trip": "consecutiveFailures > 1000"}},  # counts failures, never trips
        },
        "targets": {"components": {"cache": {"outbound": {"retry": "steady", "circuitBreaker": "watch"}}}},
    }
    metadata = {**redis.metadata, "keyPrefix": uuid.uuid4().hex, "timeoutInSeconds": "1"}
    runtime = Runtime(
        _config(tmp_path, "a", {"state": {"cache": {"type": "redis", "metadata": metadata}}, "resiliency": spec})
    )
    await runtime.start()
    try:
        policy = runtime.resiliency.outbound("cache") if runtime.resiliency else None
        assert policy is not None and policy.breaker is not None
        async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}", retry=NO_RETRY) as client:
            await client.state.save("cache", "k", b"before")
            redis.stop()
            save = asyncio.create_task(client.state.save("cache", "k", b"after", timeout=30))
            for _ in range(1000):  # until the first attempt failed: Redis is down
                if policy.breaker.consecutive_failures or save.done():
                    break
                await asyncio.sleep(0.01)
            assert policy.breaker.consecutive_failures >= 1
            assert not save.done()  # being retried, not failed
            redis.start()
            await save
            assert (await client.state.get("cache", "k")).value == b"after"
    finally:
        await runtime.stop(grace=0)
        redis.stop()


def test_print_config_shows_the_spec_in_daprs_shape_and_it_loads_again() -> None:
    raw = {
        "policies": POLICIES,
        "targets": {
            "apps": {"b": {"timeout": "short", "retry": "only503", "circuitBreaker": "twoStrikes"}},
            "components": {"s": {"outbound": {"retry": "forever"}, "inbound": {"timeout": "short"}}},
        },
    }
    config = from_mapping({"resiliency": raw})
    printed = config.to_dict()["resiliency"]
    assert printed["targets"]["apps"]["b"] == {"timeout": "short", "retry": "only503", "circuitBreaker": "twoStrikes"}
    assert printed["policies"]["retries"]["only503"]["matching"] == {"httpStatusCodes": "503"}
    assert printed["policies"]["timeouts"] == {"short": "0.5s"}
    assert from_mapping({"resiliency": printed}).resiliency == config.resiliency


async def test_a_component_breaker_opens_on_backend_failures_only(tmp_path: Path) -> None:
    if not shutil.which("redis-server"):
        backends.require_installed("redis-server")
    redis = PrivateBackend("redis", tmp_path / "redis")
    redis.start()
    spec = {"policies": POLICIES, "targets": {"components": {"cache": {"outbound": {"circuitBreaker": "twoStrikes"}}}}}
    metadata = {**redis.metadata, "keyPrefix": uuid.uuid4().hex, "timeoutInSeconds": "1"}
    raw = {"state": {"cache": {"type": "redis", "metadata": metadata}}, "resiliency": spec}
    runtime = Runtime(_config(tmp_path, "a", raw))
    await runtime.start()
    try:
        async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}", retry=NO_RETRY) as client:
            await client.state.save("cache", "k", b"v")
            for _ in range(3):  # an etag mismatch is the request's outcome, not the backend's failure
                with pytest.raises(Exception, match="etag"):
                    await client.state.save("cache", "k", b"w", etag="999", timeout=10)
            assert (await client.state.get("cache", "k")).value == b"v"  # still closed
            redis.stop()
            for _ in range(2):
                with pytest.raises(BackendUnavailable):
                    await client.state.get("cache", "k", timeout=10)
            redis.start()
            with pytest.raises(CircuitOpen) as refused:  # Redis is back, but the breaker is open
                await client.state.get("cache", "k", timeout=10)
            assert "component 'cache'" in str(refused.value) and refused.value.code == "UNAVAILABLE"
    finally:
        await runtime.stop(grace=0)
        redis.stop()
