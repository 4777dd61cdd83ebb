"""The baseline: a bare server answering Runtime/GetState with a fixed value.

It does what any Python sidecar must do for a GetState (decode the request, encode a
response) and nothing else, so the runtime's figures can be read against it.

    python bench/echo_server.py ADDRESS [grpcio|native]

On grpc.aio (the default) or on pygrpc-native, the GetState method registered one by one.
"""

from __future__ import annotations

import sys
from typing import Any

import grpc
from _runtime import serve_like_the_runtime

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server.transport import add_services, build_server

RESPONSE = pb.GetStateResponse(data=b"v" * 100, etag="1")


async def get_state(request: pb.GetStateRequest, context: Any) -> pb.GetStateResponse:
    return RESPONSE


async def main(address: str, transport: str) -> None:
    server = build_server(transport, options=[], interceptors=[]).server
    handler = grpc.unary_unary_rpc_method_handler(
        get_state,
        request_deserializer=pb.GetStateRequest.FromString,
        response_serializer=pb.GetStateResponse.SerializeToString,
    )
    add_services(server, {"spec.proto.runtime.v1.Runtime": {"GetState": handler}})
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    serve_like_the_runtime(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "grpcio"))
