"""The floor for any Python sidecar: a bare grpc.aio server whose GetState, SaveState and
PublishEvent handlers make the one driver call the operation needs, nothing else.

    python bench/minimal_sidecar.py ADDRESS redis|postgresql|nats
"""

from __future__ import annotations

import sys
from typing import Any

import grpc
from _runtime import serve_like_the_runtime
from google.protobuf import empty_pb2

from layotto.proto.runtime.v1 import runtime_pb2 as pb

PG_DSN = "host=127.0.0.1 port=5432 user=layotto password=layotto dbname=layotto"


async def nats_publisher() -> Any:
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    streams: set[str] = set()

    async def publish_event(request: pb.PublishEventRequest, context: Any) -> empty_pb2.Empty:
        if request.topic not in streams:  # the same one-time stream setup the runtime does
            await js.add_stream(name=f"minimal-{request.topic.replace('.', '_')}", subjects=[request.topic])
            streams.add(request.topic)
        await js.publish(request.topic, request.data)
        return empty_pb2.Empty()

    return publish_event


async def main(address: str, backend: str) -> None:
    publish_event: Any = None
    if backend == "nats":
        publish_event = await nats_publisher()

        async def get_state(request: pb.GetStateRequest, context: Any) -> pb.GetStateResponse:
            raise NotImplementedError

        save_state = get_state  # type: ignore[assignment]
    elif backend == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool(max_connections=32))

        async def get_state(request: pb.GetStateRequest, context: Any) -> pb.GetStateResponse:
            return pb.GetStateResponse(data=await client.hget(request.key, "data") or b"")

        async def save_state(request: pb.SaveStateRequest, context: Any) -> empty_pb2.Empty:
            item = request.states[0]
            await client.hset(item.key, "data", item.value)
            return empty_pb2.Empty()

        async def publish_event(request: pb.PublishEventRequest, context: Any) -> empty_pb2.Empty:
            await client.xadd(request.topic, {b"data": request.data})
            return empty_pb2.Empty()
    else:
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(PG_DSN, min_size=4, max_size=16, kwargs={"autocommit": True}, open=False)
        await pool.open(wait=True)
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS bench_direct (key TEXT PRIMARY KEY, value BYTEA)")

        async def get_state(request: pb.GetStateRequest, context: Any) -> pb.GetStateResponse:
            async with pool.connection() as conn:
                row = await (
                    await conn.execute("SELECT value FROM bench_direct WHERE key = %s", (request.key,))
                ).fetchone()
            return pb.GetStateResponse(data=bytes(row[0]) if row else b"")

        async def save_state(request: pb.SaveStateRequest, context: Any) -> empty_pb2.Empty:
            item = request.states[0]
            async with pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO bench_direct (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                    "DO UPDATE SET value = EXCLUDED.value",
                    (item.key, item.value),
                )
            return empty_pb2.Empty()

    server = grpc.aio.server()
    handlers = {
        "GetState": grpc.unary_unary_rpc_method_handler(
            get_state, pb.GetStateRequest.FromString, pb.GetStateResponse.SerializeToString
        ),
        "SaveState": grpc.unary_unary_rpc_method_handler(
            save_state, pb.SaveStateRequest.FromString, empty_pb2.Empty.SerializeToString
        ),
    }
    if publish_event is not None:
        handlers["PublishEvent"] = grpc.unary_unary_rpc_method_handler(
            publish_event, pb.PublishEventRequest.FromString, empty_pb2.Empty.SerializeToString
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("spec.proto.runtime.v1.Runtime", handlers),))
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    serve_like_the_runtime(main(sys.argv[1], sys.argv[2]))
