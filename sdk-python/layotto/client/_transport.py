"""The channel, stubs, deadlines and retries shared by every building block client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import grpc

from layotto.client._retry import RetryPolicy, call_with_retry
from layotto.proto.runtime.v1 import runtime_pb2_grpc

R = TypeVar("R")


class Transport:
    def __init__(
        self,
        address: str,
        *,
        timeout: float | None,
        retry: RetryPolicy,
        metadata: Sequence[tuple[str, str]] = (),
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.retry = retry
        self.metadata = tuple(metadata)
        self.channel = grpc.aio.insecure_channel(address, options=list(options), interceptors=list(interceptors))
        self.runtime = runtime_pb2_grpc.RuntimeStub(self.channel)

    async def unary(self, method: Any, request: Any, timeout: float | None) -> Any:
        deadline = self.timeout if timeout is None else timeout

        async def attempt() -> Any:
            return await method(request, timeout=deadline, metadata=self.metadata)

        return await call_with_retry(self.retry, attempt)

    async def aclose(self) -> None:
        await self.channel.close(grace=None)
