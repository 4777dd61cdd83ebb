"""The cheapest Python sidecars bench/floors.py measures ours against: no runtime logic at all.

    python bench/floor_servers.py forward-a ADDRESS NEXT grpcaio|grpcfuture|pyqwest
    python bench/floor_servers.py forward-b ADDRESS APP grpcaio|grpcfuture|pyqwest
    python bench/floor_servers.py state ADDRESS REDIS_HOST:PORT
    python bench/floor_servers.py files ADDRESS native|grpcio S3_ENDPOINT BUCKET PART_BYTES CHUNK_BYTES

Each serves on pygrpc-native (methods registered one by one, no interceptors; ``files`` on either
transport) on the loop ``layotto serve`` picks:

* ``forward-a``: Layotto's ``Runtime/InvokeService`` in; builds Dapr's ``InvokeServiceRequest``
  and calls ``Dapr/InvokeService`` at NEXT with the hop metadata; answers the data back.
* ``forward-b``: Dapr's ``InvokeService`` in; calls the app's ``AppCallback/OnInvoke`` at APP.
* ``state``: Dapr's ``GetState`` and ``SaveState`` answered straight from Redis with Dapr's
  layout (a hash with ``data`` and ``version``), redis-py asyncio with hiredis, one command each.
* ``files``: Layotto's ``Runtime/GetFile`` (server stream) and ``Runtime/PutFile`` (client stream)
  on BUCKET through one aiobotocore client (the s3 store's client config: SigV4, path style).
  GetFile reads ``get_object``'s body as the s3 store does (``read_chunks``: reads gathered into
  CHUNK_BYTES messages, since aiohttp hands out 64-256 KiB per read) and yields a GetFileResponse
  per chunk. PutFile keeps the data messages of the stream and, as the store's ``upload_stream``
  does, sends one PutObject for a file up to PART_BYTES, else a multipart upload of PART_BYTES
  parts, each part sent while the next is received (one in flight). No store name, metadata or
  size checks, no error mapping, no abort of a failed upload. glibc's allocator is set as
  ``layotto serve`` sets it (``keep_large_buffers``), so 1 MiB buffers are reused as there. On
  pygrpc-native a client-streaming method (PutFile) is served by the grpc.aio server it keeps
  behind it on a Unix socket, in the same process, as in the runtime: that is part of its floor.

The outgoing client is grpc.aio, grpcio's synchronous channel (``grpcfuture``: ``.future()``,
completed on the loop), or pyqwest (a Rust HTTP/2 client, reqwest/hyper on tokio): a unary gRPC
call is a POST of one length-prefixed message, with ``grpc-status`` in the trailers.

``FLOOR_FALLBACK=1`` in the environment adds one bidirectional method, so pygrpc-native starts the
grpc.aio server it keeps behind it for such methods (as the runtime's server always has).
"""

from __future__ import annotations

import asyncio
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
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


async def files(address: str, transport: str, endpoint: str, bucket: str, part_bytes: str, chunk_bytes: str) -> None:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(signature_version="s3v4", s3={"addressing_style": "path"})
    opening = get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=config,
    )
    async with opening as client:
        chunk_size, part_size = int(chunk_bytes), int(part_bytes)

        async def get_file(request: pb.GetFileRequest, context: Any) -> AsyncIterator[pb.GetFileResponse]:
            body = (await client.get_object(Bucket=bucket, Key=request.name))["Body"]
            try:
                while pieces := await read_filled(body, chunk_size):
                    yield pb.GetFileResponse(data=pieces[0] if len(pieces) == 1 else b"".join(pieces))
            finally:
                body.close()

        async def put_file(requests: AsyncIterator[pb.PutFileRequest], context: Any) -> empty_pb2.Empty:
            await upload(client, bucket, requests, part_size)
            return empty_pb2.Empty()

        handlers = {
            "GetFile": grpc.unary_stream_rpc_method_handler(
                get_file, pb.GetFileRequest.FromString, pb.GetFileResponse.SerializeToString
            ),
            "PutFile": grpc.stream_unary_rpc_method_handler(
                put_file, pb.PutFileRequest.FromString, empty_pb2.Empty.SerializeToString
            ),
        }
        await serve(address, {"spec.proto.runtime.v1.Runtime": handlers}, transport)


async def read_filled(body: Any, size: int) -> list[bytes]:
    """The pieces of the next ``size`` bytes of ``body`` (fewer at its end; none after it)."""
    pieces: list[bytes] = []
    while size and (piece := await body.read(size)):
        pieces.append(piece)
        size -= len(piece)
    return pieces


async def upload(client: Any, bucket: str, requests: AsyncIterator[pb.PutFileRequest], part_size: int) -> None:
    """The stream's data as the object its first message names: one PutObject up to ``part_size``
    bytes, else a multipart upload of ``part_size`` parts, each sent while the next is received."""
    key, upload_id, size = "", "", 0
    chunks: list[bytes] = []
    parts: list[dict[str, Any]] = []
    in_flight: asyncio.Future[dict[str, Any]] | None = None

    async def send(number: int, data: bytes) -> dict[str, Any]:
        sent = await client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)
        return {"ETag": sent["ETag"], "PartNumber": number}

    async for request in requests:
        if not key:
            key = request.name
        data = request.data  # read once: each read of a bytes field copies it
        chunks.append(data)
        size += len(data)
        if size >= part_size:
            if not upload_id:
                upload_id = (await client.create_multipart_upload(Bucket=bucket, Key=key))["UploadId"]
            if in_flight is not None:
                parts.append(await in_flight)
            in_flight = asyncio.ensure_future(send(len(parts) + 1, b"".join(chunks)))
            chunks, size = [], 0
    if not upload_id:
        await client.put_object(Bucket=bucket, Key=key, Body=b"".join(chunks))
        return
    if in_flight is not None:
        parts.append(await in_flight)
    if chunks:
        parts.append(await send(len(parts) + 1, b"".join(chunks)))
    await client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})


async def serve(address: str, services: dict[str, dict[str, Any]], transport: str = "native") -> None:
    import os

    if os.environ.get("FLOOR_FALLBACK"):  # a bidi method: pygrpc-native starts its grpc.aio server behind

        async def chat(requests: Any, context: Any) -> Any:
            async for request in requests:
                yield request

        services = {**services, "floor.Chat": {"Chat": grpc.stream_stream_rpc_method_handler(chat)}}
    server = build_server(transport, options=[], interceptors=[]).server
    add_services(server, services)
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    main = {"forward-a": forward_a, "forward-b": forward_b, "state": state, "files": files}[role]
    if role == "files":
        from layotto.server.memory import keep_large_buffers

        keep_large_buffers()  # before any thread starts, as `layotto serve` does
    serve_like_the_runtime(main(*args))  # type: ignore[operator]
