"""`layotto serve` as a real process: defaults, health, durability, shutdown, peers' clients."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from server_helpers import ServerProcess, start_server

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

REFERENCE = Path(__file__).resolve().parents[2] / "proto" / "tests" / "reference" / "layotto-wire.txt"


def test_defaults_serve_health_reflection_and_stop_cleanly(server_process: ServerProcess) -> None:
    assert server_process.http_get("/actuator/health/liveness") == (200, b'{"status": "UP"}')
    status, body = server_process.http_get("/actuator/health/readiness")
    readiness = json.loads(body)
    assert status == 200 and readiness["status"] == "UP"
    assert readiness["components"]["state.sqlite"]["status"] == "UP"
    assert (
        json.loads(server_process.http_get("/actuator/info")[1])["components"]["state.in-memory"]["type"] == "in-memory"
    )
    assert server_process.http_get("/v1.0/healthz/outbound")[0] == 204
    with grpc.insecure_channel(server_process.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "spec.proto.runtime.v1.Runtime", "dapr.proto.runtime.v1.Dapr"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        listed = next(iter(reflection.ServerReflectionInfo(iter([request]), timeout=5)))
        names = {s.name for s in listed.list_services_response.service}
        assert {"spec.proto.runtime.v1.Runtime", "dapr.proto.runtime.v1.Dapr", "grpc.health.v1.Health"} <= names
    code, stderr = server_process.terminate()
    assert code == 0, stderr
    assert "layotto stopped" in stderr


def test_sqlite_state_survives_restart(tmp_path: Path) -> None:
    first = start_server(data_dir=tmp_path)
    with grpc.insecure_channel(first.grpc_address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        stub.SaveState(pb.SaveStateRequest(store_name="sqlite", states=[pb.StateItem(key="k", value=b"kept")]))
        stub.SaveState(pb.SaveStateRequest(store_name="in-memory", states=[pb.StateItem(key="k", value=b"lost")]))
    assert first.terminate()[0] == 0
    second = start_server(data_dir=tmp_path)
    try:
        with grpc.insecure_channel(second.grpc_address) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            assert stub.GetState(pb.GetStateRequest(store_name="sqlite", key="k")).data == b"kept"
            assert stub.GetState(pb.GetStateRequest(store_name="in-memory", key="k")).data == b""
    finally:
        assert second.terminate()[0] == 0


def test_garbage_on_the_wire_does_not_hurt_the_runtime(server_process: ServerProcess) -> None:
    with grpc.insecure_channel(server_process.grpc_address) as channel:
        raw = channel.unary_unary("/spec.proto.runtime.v1.Runtime/SaveState")
        for payload in (b"\xff\xff\xff", b"\x0a\x05ab", bytes(range(256)), bytes.fromhex("0a03fffefd")):
            with pytest.raises(grpc.RpcError) as caught:
                raw(payload, timeout=5)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            assert "spec.proto.runtime.v1.SaveStateRequest" in caught.value.details()  # type: ignore[attr-defined]
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        stub.SaveState(pb.SaveStateRequest(store_name="in-memory", states=[pb.StateItem(key="after", value=b"ok")]))
        assert stub.GetState(pb.GetStateRequest(store_name="in-memory", key="after")).data == b"ok"
    code, logged = server_process.terminate()
    assert code == 0 and "Traceback" not in logged and "ERROR" not in logged


LAYOTTO_STYLE_CLIENT = textwrap.dedent('''
    """A client built the way Layotto's SDKs are: from spec/proto/runtime/v1/runtime.proto."""
    import queue, sys, grpc
    sys.path.insert(0, sys.argv[1])
    from spec.proto.runtime.v1 import runtime_pb2 as pb, runtime_pb2_grpc as rpc
    assert pb.DESCRIPTOR.name == "spec/proto/runtime/v1/runtime.proto"
    stub = rpc.RuntimeStub(grpc.insecure_channel(sys.argv[2]))
    stub.SaveState(pb.SaveStateRequest(store_name="in-memory", states=[pb.StateItem(key="hello", value=b"world")]))
    got = stub.GetState(pb.GetStateRequest(store_name="in-memory", key="hello"))
    assert got.data == b"world" and got.etag, got
    stub.ExecuteStateTransaction(pb.ExecuteStateTransactionRequest(storeName="in-memory", operations=[
        pb.TransactionalStateOperation(operationType="delete", request=pb.StateItem(key="hello"))]))
    assert stub.GetState(pb.GetStateRequest(store_name="in-memory", key="hello")).data == b""

    # locks and ids, as the Go SDK's TryLock / Unlock / GetNextId send them
    lock = dict(store_name="in-memory", resource_id="job", lock_owner="me")
    assert stub.TryLock(pb.TryLockRequest(expire=10, **lock)).success
    assert stub.Unlock(pb.UnlockRequest(**lock)).status == pb.UnlockResponse.SUCCESS
    assert stub.GetNextId(pb.GetNextIdRequest(store_name="in-memory", key="ids")).next_id == 1

    # a streaming subscription (blocking gRPC, as the Java and Go stubs are), then a publish
    from spec.proto.runtime.v1 import appcallback_pb2 as cb
    answers = queue.Queue()
    answers.put(pb.SubscribeTopicEventsRequest(
        initial_request=pb.SubscribeTopicEventsRequestInitial(pubsub_name="in-memory", topic="orders")))
    responses = stub.SubscribeTopicEvents(iter(answers.get, None))
    assert next(responses).HasField("initial_response")
    stub.PublishEvent(pb.PublishEventRequest(pubsub_name="in-memory", topic="orders", data=b'{"id":7}',
                                             data_content_type="application/json"))
    event = next(responses).event_message
    assert event.topic == "orders" and event.data == b'{"id":7}' and event.spec_version == "1.0", event
    answers.put(pb.SubscribeTopicEventsRequest(event_processed=pb.SubscribeTopicEventsRequestProcessed(
        id=event.id, status=cb.TopicEventResponse(status=cb.TopicEventResponse.SUCCESS))))
    answers.put(None)
    responses.cancel()
    print("ok", stub.SayHello(pb.SayHelloRequest(service_name="helloworld", name="layotto")).hello)
''')


def test_a_layotto_style_client_built_from_the_reference_listing(server_process: ServerProcess, tmp_path: Path) -> None:
    from grpc_tools import protoc

    from layotto.proto.wirelisting import parse_listing, write_proto_files

    src, out = tmp_path / "src", tmp_path / "gen"
    out.mkdir()
    files = write_proto_files(parse_listing(REFERENCE.read_text()), src)
    runtime_files = [str(p.relative_to(src)) for p in files if "runtime/v1" in str(p)]
    include = str(Path(protoc.__file__).parent / "_proto")
    assert (
        protoc.main(
            ["protoc", f"-I{src}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", *runtime_files]
        )
        == 0
    )
    for folder in ("spec", "spec/proto", "spec/proto/runtime", "spec/proto/runtime/v1"):
        (out / folder / "__init__.py").touch()
    script = tmp_path / "client.py"
    script.write_text(LAYOTTO_STYLE_CLIENT)
    done = subprocess.run(
        [sys.executable, str(script), str(out), server_process.grpc_address],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok greetings from Layotto, layotto"
