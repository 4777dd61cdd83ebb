"""The cheapest Python sidecars bench/floors.py measures ours against: no runtime logic at all.

    python bench/floor_servers.py forward-a ADDRESS NEXT grpcaio|grpcfuture|pyqwest
    python bench/floor_servers.py forward-b ADDRESS APP grpcaio|grpcfuture|pyqwest
    python bench/floor_servers.py state ADDRESS REDIS_HOST:PORT

Each serves on pygrpc-native (methods registered one by one, no interceptors) on the loop
``layotto serve`` picks:

* ``forward-a``: Layotto's ``Runtime/InvokeService`` in; builds Dapr's ``InvokeServiceRequest``
  and calls ``Dapr/InvokeService`` at NEXT with the hop metadata; answers the data back.
* ``forward-b``: Dapr's ``InvokeService`` in; calls the app's ``AppCallback/OnInvoke`` at APP.
* ``state``: Dapr's ``GetState`` and ``SaveState`` answered straight from Redis with Dapr's
  layout (a hash with ``data`` and ``version``), redis-py asyncio with hiredis, one command each.

The outgoing client is grpc.aio, grpcio's synchronous channel (``grpcfuture``: ``.future()``,
completed on the loop), or pyqwest (a Rust HTTP/2 client, reqwest/hyper on tokio): a unary gRPC
call is a POST of one length-prefixed message, with ``grpc-status`` in the trailers.

``FLOOR_FALLBACK=1`` in the environment adds one bidirectional method, so pygrpc-native starts the
grpc.aio server it keeps behind it for such methods (as the runtime's server always has).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from _runtime import serve_like_the_runtime
from google.protobuf import empty_pb2

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import invoke_pb2, state_pb2
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server.transport import add_services, build_server

HOP = (("layotto-invoke-hop", "1"), ("layotto-caller-app-id", "a"))
Unary = Callable[[bytes, float | None], Awaitable[bytes]]


def grpcaio_unary(address: str, path: str) -> Unary:
    """One unary method at ``address`` through grpc.aio, bytes in and out (no (de)serializer)."""
    channel = grpc.aio.insecure_channel(address)
    method = channel.unary_unary(path)  # identity serializers: the caller encodes

    async def call(body: bytes, timeout: float | None) -> bytes:
        return await method(body, timeout=timeout, metadata=HOP)  # type: ignore[no-any-return]

    return call


def pyqwest_unary(address: str, path: str) -> Unary:
    """The same call as a POST over pyqwest's HTTP/2 (prior knowledge on plain TCP)."""
    import pyqwest

    transport = pyqwest.HTTPTransport(
        http_version=pyqwest.HTTPVersion.HTTP2,
        enable_gzip=False,
        enable_brotli=False,
        enable_zstd=False,
        enable_otel=False,
        follow_redirects=False,
    )
    client = pyqwest.Client(transport)
    url = f"http://{address}{path}"
    headers = [("content-type", "application/grpc"), ("te", "trailers"), *HOP]

    async def call(body: bytes, timeout: float | None) -> bytes:
        sent = headers if timeout is None else [*headers, ("grpc-timeout", f"{int(timeout * 1e6)}u")]
        response = await client.post(url, sent, b"\x00" + struct.pack(">I", len(body)) + body)
        status = response.trailers.get("grpc-status") or response.headers.get("grpc-status")
        if status != "0":
            raise RuntimeError(f"grpc-status {status}: {response.trailers.get('grpc-message')}")
        return response.content[5:]

    return call


def grpcfuture_unary(address: str, path: str) -> Unary:
    """The same call through grpcio's synchronous channel: ``.future()``, completed on the loop."""
    import asyncio

    method = grpc.insecure_channel(address).unary_unary(path)

    async def call(body: bytes, timeout: float | None) -> bytes:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()

        def settle(answer: Any) -> None:
            error = answer.exception()
            if not done.done():
                done.set_exception(error) if error is not None else done.set_result(answer.result())

        method.future(body, timeout=timeout, metadata=HOP).add_done_callback(
            lambda answer: loop.call_soon_threadsafe(settle, answer)
        )
        return await done

    return call


CLIENTS = {"grpcaio": grpcaio_unary, "pyqwest": pyqwest_unary, "grpcfuture": grpcfuture_unary}


def remaining(context: Any) -> float | None:
    left = context.time_remaining()
    return None if left is None or left > 1e9 else float(left)


async def forward_a(address: str, next_hop: str, client: str) -> None:
    call = CLIENTS[client](next_hop, "/dapr.proto.runtime.v1.Dapr/InvokeService")

    async def invoke(request: pb.InvokeServiceRequest, context: Any) -> pb.InvokeResponse:
        hop = invoke_pb2.InvokeServiceRequest(id=request.id)
        body, message = request.message, hop.message
        message.method, message.content_type = body.method, body.content_type
        message.data.type_url, message.data.value = body.data.type_url, body.data.value
        answer = common_pb2.InvokeResponse.FromString(await call(hop.SerializeToString(), remaining(context)))
        response = pb.InvokeResponse(content_type=answer.content_type)
        response.data.type_url, response.data.value = answer.data.type_url, answer.data.value
        return response

    handler = grpc.unary_unary_rpc_method_handler(
        invoke, pb.InvokeServiceRequest.FromString, pb.InvokeResponse.SerializeToString
    )
    await serve(address, {"spec.proto.runtime.v1.Runtime": {"InvokeService": handler}})


async def forward_b(address: str, app: str, client: str) -> None:
    call = CLIENTS[client](app, "/dapr.proto.runtime.v1.AppCallback/OnInvoke")

    async def invoke(request: invoke_pb2.InvokeServiceRequest, context: Any) -> bytes:
        return await call(request.message.SerializeToString(), remaining(context))  # the app's answer as is

    handler = grpc.unary_unary_rpc_method_handler(invoke, invoke_pb2.InvokeServiceRequest.FromString, None)
    await serve(address, {"dapr.proto.runtime.v1.Dapr": {"InvokeService": handler}})


async def state(address: str, redis_address: str) -> None:
    import redis.asyncio as aioredis

    host, port = redis_address.rsplit(":", 1)
    pool = aioredis.BlockingConnectionPool(host=host, port=int(port), max_connections=32)  # waits, never refuses
    client = aioredis.Redis(connection_pool=pool)
    empty = empty_pb2.Empty()

    async def get_state(request: state_pb2.GetStateRequest, context: Any) -> state_pb2.GetStateResponse:
        data, version = await client.hmget(request.key, (b"data", b"version"))
        return state_pb2.GetStateResponse(data=data or b"", etag=(version or b"").decode())

    async def save_state(request: state_pb2.SaveStateRequest, context: Any) -> empty_pb2.Empty:
        item = request.states[0]
        await client.hset(item.key, mapping={b"data": item.value, b"version": b"1"})
        return empty

    handlers = {
        "GetState": grpc.unary_unary_rpc_method_handler(
            get_state, state_pb2.GetStateRequest.FromString, state_pb2.GetStateResponse.SerializeToString
        ),
        "SaveState": grpc.unary_unary_rpc_method_handler(
            save_state, state_pb2.SaveStateRequest.FromString, empty_pb2.Empty.SerializeToString
        ),
    }
    await serve(address, {"dapr.proto.runtime.v1.Dapr": handlers})


async def serve(address: str, services: dict[str, dict[str, Any]]) -> None:
    import os

    if os.environ.get("FLOOR_FALLBACK"):  # a bidi method: pygrpc-native starts its grpc.aio server behind

        async def chat(requests: Any, context: Any) -> Any:
            async for request in requests:
                yield request

        services = {**services, "floor.Chat": {"Chat": grpc.stream_stream_rpc_method_handler(chat)}}
    server = build_server("native", options=[], interceptors=[]).server
    add_services(server, services)
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    main = {"forward-a": forward_a, "forward-b": forward_b, "state": state}[role]
    serve_like_the_runtime(main(*args))  # type: ignore[operator]
