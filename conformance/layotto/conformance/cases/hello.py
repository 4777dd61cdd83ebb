"""SayHello cases (Layotto API only)."""

from __future__ import annotations

from google.protobuf import any_pb2

from layotto.conformance.model import Case, CaseContext, check
from layotto.proto.runtime.v1 import runtime_pb2, runtime_pb2_grpc


async def _say_hello(ctx: CaseContext) -> None:
    stub = runtime_pb2_grpc.RuntimeStub(ctx.channel)
    payload = bytes(range(256)) * 4
    request = runtime_pb2.SayHelloRequest(
        service_name=ctx.component, name="conformance", data=any_pb2.Any(value=payload)
    )
    response = await stub.SayHello(request, timeout=ctx.timeout)
    check(response.hello != "", "SayHello must answer a greeting")
    check(response.data.value == payload, "SayHello must echo data back unchanged")


HELLO_CASES = [
    Case(
        "say-hello",
        "hellos",
        "SayHello greets and echoes data",
        ("spec.proto.runtime.v1.Runtime/SayHello",),
        _say_hello,
        apis=("layotto",),
    ),
]
