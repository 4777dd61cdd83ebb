"""The SDK's one TTL rule, for state, lock and publish: None is no TTL, a positive duration is
sent as whole seconds rounded up, anything else raises InvalidArgument naming ``ttl`` before any call."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from layotto.client import InvalidArgument, RuntimeClient
from layotto.client._ttl import ttl_seconds
from layotto.client.testing import TestRuntime, test_runtime

INVALID = [-1, -5, 0, 0.0, -0.2, math.nan, math.inf, -math.inf, True, False, dt.timedelta(0), dt.timedelta(seconds=-3)]


@pytest.fixture
async def client() -> AsyncIterator[RuntimeClient]:
    runtime: TestRuntime
    async with test_runtime() as runtime, runtime.client() as c:
        yield c


@pytest.mark.parametrize(
    ("ttl", "seconds"), [(0.2, 1), (1, 1), (1.5, 2), (2.0001, 3), (10, 10), (dt.timedelta(milliseconds=1500), 2)]
)
def test_positive_durations_are_whole_seconds_rounded_up(ttl: float | dt.timedelta, seconds: int) -> None:
    assert ttl_seconds(ttl) == seconds


@pytest.mark.parametrize("ttl", [*INVALID, "5", None])
def test_anything_else_is_invalid_argument_naming_the_parameter(ttl: object) -> None:
    with pytest.raises(InvalidArgument) as caught:
        ttl_seconds(ttl, "ttl")
    assert caught.value.field == "ttl"
    assert caught.value.code == "INVALID_ARGUMENT"
    assert str(caught.value).startswith("ttl: ")


def calls(client: RuntimeClient, ttl: object) -> dict[str, Callable[[], Awaitable[object]]]:
    any_ttl: float = ttl  # type: ignore[assignment]  # the point is to pass what the types forbid
    return {
        "state.save": lambda: client.state.save("in-memory", "k", "v", ttl=any_ttl),
        "lock.try_lock": lambda: client.lock.try_lock("in-memory", "r", "alice", ttl=any_ttl),
        "lock.keep_alive": lambda: client.lock.keep_alive("in-memory", "r", "alice", ttl=any_ttl),
        "pubsub.publish": lambda: client.pubsub.publish("in-memory", "t", "x", ttl=any_ttl),
    }


@pytest.mark.parametrize("ttl", INVALID)
async def test_state_lock_and_publish_refuse_invalid_ttls_before_any_call(client: RuntimeClient, ttl: object) -> None:
    for name, call in calls(client, ttl).items():
        with pytest.raises(InvalidArgument) as caught:
            await call()
        assert caught.value.field == "ttl", name
    with pytest.raises(InvalidArgument):
        client.lock.acquire("in-memory", "r", ttl=ttl)  # type: ignore[arg-type]
    assert not (await client.state.get("in-memory", "k")).found  # ttl=-1 used to save with a 1 s TTL
    assert await client.lock.try_lock("in-memory", "r", "bob", ttl=10)  # ttl=-5 used to take the lock


class Recorder(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Keeps every unary request the client sends."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.requests.append(request)
        return await continuation(details, request)


async def test_fractions_are_sent_rounded_up_and_served() -> None:
    recorder = Recorder()
    runtime: TestRuntime
    async with test_runtime() as runtime, runtime.client(interceptors=[recorder]) as client:
        await client.state.save("in-memory", "k", "v", ttl=2.2)
        await client.state.save("in-memory", "forever", "v", ttl=None)
        assert await client.lock.try_lock("in-memory", "r", "alice", ttl=0.2)
        await client.pubsub.publish("in-memory", "t", "x", ttl=0.5)  # int(0.5) sent "0", which was refused
        assert (await client.state.get("in-memory", "k")).expires_at is not None
        assert (await client.state.get("in-memory", "forever")).expires_at is None
    save, forever, lock, publish = recorder.requests[:4]
    assert save.states[0].metadata["ttlInSeconds"] == "3"  # round() sent 2: gone before the time asked for
    assert "ttlInSeconds" not in forever.states[0].metadata
    assert lock.expire == 1
    assert publish.metadata["ttlInSeconds"] == "1"
