"""Flow control (``flow_control:`` rules): a `layotto serve` child process whose buckets refill
once an hour, so the calls beyond a threshold are refused by count, not by timing."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import grpc
import pytest
from server_helpers import ServerProcess, free_port, start_server
from test_invocation import http_app

from layotto.client import RateLimited, RuntimeClient
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, metadata_pb2
from layotto.proto.runtime.v1 import runtime_pb2, runtime_pb2_grpc
from layotto.server.components.base import ConfigError
from layotto.server.config import from_mapping
from layotto.server.runtime.flow_control import FlowControl, Rule, TokenBucket, parse_flow_control

HOUR_MS = 3_600_000
CONFIG = f"""\
app_id: a
app_protocol: http
app_port: {{port}}
hellos:
  x: {{{{type: helloworld}}}}
flow_control:
  global_switch: true
  rules:
    - {{{{resource: /spec.proto.runtime.v1.Runtime/SayHello, grantType: 1, threshold: 3, statIntervalInMs: {HOUR_MS}}}}}
    - {{{{appId: a, threshold: 2, statIntervalInMs: {HOUR_MS}}}}}
"""


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    root = tmp_path_factory.mktemp("flow")
    port = free_port()
    (root / "a.yaml").write_text(CONFIG.format(port=port))
    server = start_server("-c", str(root / "a.yaml"), data_dir=root / "a")
    yield server, port
    server.process.kill()
    server.process.wait()


async def test_a_method_beyond_its_threshold_is_refused_with_a_retry_hint(
    limited: tuple[ServerProcess, int],
) -> None:
    server, _ = limited
    async with grpc.aio.insecure_channel(server.grpc_address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        for _ in range(3):
            assert (await stub.SayHello(runtime_pb2.SayHelloRequest(service_name="x"), timeout=5)).hello
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SayHello(runtime_pb2.SayHelloRequest(service_name="x"), timeout=5)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "/spec.proto.runtime.v1.Runtime/SayHello: over its rate limit of 3" in (refused.value.details() or "")
        trailers = dict(refused.value.trailing_metadata() or ())
        assert int(trailers["retry-after"]) > 1000  # seconds: the hour's bucket refills slowly
    async with RuntimeClient(server.grpc_address) as client:
        with pytest.raises(RateLimited) as by_sdk:
            await client.say_hello("x")
        assert by_sdk.value.reason == "RATE_LIMITED" and (by_sdk.value.retry_after or 0) > 1000
    async with grpc.aio.insecure_channel(server.grpc_address) as channel:  # another method: not limited
        dapr = dapr_pb2_grpc.DaprStub(channel)
        for _ in range(5):
            assert (await dapr.GetMetadata(metadata_pb2.GetMetadataRequest(), timeout=5)).id == "a"


async def test_invocations_of_an_app_beyond_its_threshold_are_refused(limited: tuple[ServerProcess, int]) -> None:
    server, port = limited
    async with http_app(port) as seen, RuntimeClient(server.grpc_address) as client:
        assert (await client.invoke("a", "orders/1", verb="GET")).status == 201
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{server.http_address}/v1.0/invoke/a/method/orders/2") as reply:
                assert reply.status == 201  # the second token, taken over HTTP
            async with http.get(f"http://{server.http_address}/v1.0/invoke/a/method/orders/3") as reply:
                body = await reply.json()
                assert reply.status == 429 and body["details"][0]["reason"] == "RATE_LIMITED", body
        with pytest.raises(RateLimited, match="invocations of app 'a': over its rate limit of 2"):
            await client.invoke("a", "orders/4", verb="GET")
        assert len(seen) == 2  # the refused calls never reached the app


def test_the_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(2, per_second=0.5, clock=lambda: now[0])
    assert bucket.take() == 0.0 and bucket.take() == 0.0
    assert bucket.take() == pytest.approx(2.0)  # one token every 2 s
    now[0] = 2.0
    assert bucket.take() == 0.0 and bucket.take() == pytest.approx(2.0)
    now[0] = 100.0  # never more than the capacity
    assert [bucket.take() for _ in range(3)][2] > 0


def test_the_switch_and_the_rules_are_checked() -> None:
    off = FlowControl(methods={"/a.B/C": Rule(1)}, enabled=False)
    for _ in range(3):
        off.admit_method("/a.B/C")  # global_switch false: nothing is limited
    cases = [
        ({"rules": [{"resource": "/a.B/C"}]}, r"fc.rules\[0\].threshold: expected a positive integer"),
        ({"rules": [{"resource": "SayHello", "threshold": 1}]}, r"fc.rules\[0\].resource: expected a gRPC method"),
        ({"rules": [{"threshold": 1}]}, r"fc.rules\[0\]: expected one of resource .* or appId"),
        ({"rules": [{"appId": "b", "threshold": 1, "statIntervalInMs": 0}]}, r"statIntervalInMs: expected a positive"),
        ({"global_switch": "yes"}, "fc.global_switch: expected true or false"),
        ({"rule": []}, "fc.rule: unknown key"),
        (  # Sentinel's 0 limits concurrent calls: it was taken as QPS
            {"rules": [{"appId": "b", "threshold": 1, "grantType": 0}]},
            r"fc.rules\[0\].grantType: only 1 \(QPS\) is served, got 0",
        ),
        (  # the second rule replaced the first without a word
            {"rules": [{"appId": "b", "threshold": 1}, {"appId": "b", "threshold": 9}]},
            r"fc.rules\[1\].appId: 'b' has a rule already",
        ),
        (
            {"rules": [{"resource": "/a.B/C", "threshold": 1}, {"resource": "/a.B/C", "threshold": 9}]},
            r"fc.rules\[1\].resource: '/a.B/C' has a rule already",
        ),
    ]
    for raw, message in cases:
        with pytest.raises(ConfigError, match=message):
            parse_flow_control(raw, "fc")


def test_the_config_key_reaches_the_runtime() -> None:
    config = from_mapping({"flow_control": {"rules": [{"appId": "b", "threshold": 7}]}})
    assert config.flow_control is not None and config.flow_control.apps["b"] == Rule(7, 1000)
