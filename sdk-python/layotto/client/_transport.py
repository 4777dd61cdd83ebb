"""How the building-block clients reach a runtime: the ``Transport`` interface and its gRPC
implementation (channel, stubs, deadlines, retries, error translation).

Clients name RPCs of ``spec.proto.runtime.v1.Runtime`` by their short name (``"GetState"``),
and those of the other services by a prefix (``"dapr/EncryptAlpha1"``, ``"cryption/Encrypt"``);
a transport answers with the decoded response message or raises a :class:`LayottoError`.
``layotto.client.testing.MockTransport`` is the other implementation.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any, Protocol

import grpc

from layotto.client._errors import GRPC_ERRORS, ClientClosed, RuntimeUnavailable, translate
from layotto.client._retry import RetryPolicy, call_with_retry, retry_after
from layotto.client._tls import TlsConfig
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
from layotto.proto.extension.v1.cryption import cryption_pb2_grpc
from layotto.proto.runtime.v1 import runtime_pb2_grpc

#: the runtime's default message size limit (``max_message_bytes`` of its config), in bytes
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SERVICE = "spec.proto.runtime.v1.Runtime"
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]


class StreamCall(Protocol):
    """One bidirectional stream: ``write`` returns once the message is handed to the connection;
    ``read`` answers the next response or ``EOF``; both raise :class:`LayottoError`."""

    async def write(self, request: Any) -> None: ...
    async def done_writing(self) -> None: ...
    async def read(self) -> Any: ...
    def cancel(self) -> None: ...


class Transport(ABC):
    """What a client needs of a runtime connection."""

    address: str
    timeout: float | None  # the default deadline of a call, in seconds
    retry: RetryPolicy

    @abstractmethod
    async def unary(self, method: str, request: Any, timeout: float | None, *, idempotent: bool = False) -> Any:
        """Call ``method``; ``timeout`` None: the transport's default. ``idempotent`` calls may be
        retried after an outage that may have reached the runtime."""

    async def unary_with_headers(
        self, method: str, request: Any, timeout: float | None, metadata: Sequence[tuple[str, str]]
    ) -> tuple[Any, tuple[tuple[str, str], ...]]:
        """Call ``method`` with extra ``metadata`` (never retried once it may have reached the
        runtime); the response and the response's initial metadata. This default sends no
        metadata and answers no headers."""
        return await self.unary(method, request, timeout), ()

    @abstractmethod
    def stream(self, method: str) -> StreamCall:
        """Open the bidirectional stream ``method`` (no deadline)."""

    @abstractmethod
    def unary_stream(self, method: str, request: Any, timeout: float | None) -> AsyncIterator[Any]:
        """Call the server-streaming ``method``: its responses in order. ``timeout``: seconds for
        the whole stream, None for no deadline. Closing the iterator early cancels the call."""

    @abstractmethod
    async def stream_unary(self, method: str, requests: AsyncIterable[Any], timeout: float | None) -> Any:
        """Send ``requests`` on the client-streaming ``method`` and answer its response.
        ``timeout``: seconds for the whole call, None for no deadline. When ``requests`` raises,
        the call is cancelled (the runtime sees a cancel, not the stream's end) and the exception
        propagates."""

    @abstractmethod
    async def aclose(self) -> None: ...


class GrpcStreamCall:
    """A grpc.aio stream-stream call whose errors are the SDK's."""

    def __init__(self, call: Any) -> None:
        self._call = call

    async def write(self, request: Any) -> None:
        try:
            await self._call.write(request)
        except GRPC_ERRORS as error:
            raise translate(error) from None

    async def done_writing(self) -> None:
        try:
            await self._call.done_writing()
        except GRPC_ERRORS as error:
            raise translate(error) from None

    async def read(self) -> Any:
        try:
            return await self._call.read()
        except GRPC_ERRORS as error:
            raise translate(error) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._call.cancelled() and task is not None and not task.cancelling():
                # an earlier read was cancelled (a wait_for timeout), which cancels the call
                raise RuntimeUnavailable("the stream was cancelled", code="CANCELLED") from None
            raise

    def cancel(self) -> None:
        self._call.cancel()


class GrpcTransport(Transport):
    def __init__(
        self,
        address: str,
        *,
        timeout: float | None,
        retry: RetryPolicy,
        metadata: Sequence[tuple[str, str]] = (),
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        options: Sequence[tuple[str, Any]] = (),
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        tls: TlsConfig | None = None,
    ) -> None:
        """``tls``: connect over TLS (see :class:`TlsConfig`); None: in plaintext."""
        self.address = address
        self.timeout = timeout
        self.retry = retry
        self.metadata = tuple(metadata)
        limits = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if tls is None:
            self.channel = grpc.aio.insecure_channel(
                address, options=[*limits, *options], interceptors=list(interceptors)
            )
        else:
            self.channel = grpc.aio.secure_channel(
                address,
                tls.credentials(),
                options=[*limits, *tls.channel_options(address), *options],
                interceptors=list(interceptors),
            )
        self._stubs: dict[str, Any] = {
            "": runtime_pb2_grpc.RuntimeStub(self.channel),
            "dapr": dapr_pb2_grpc.DaprStub(self.channel),
            "cryption": cryption_pb2_grpc.CryptionServiceStub(self.channel),
        }
        self._methods: dict[str, Any] = {}  # "GetState" -> the stub's bound method
        self._closed = False

    def _method(self, method: str) -> Any:
        if self._closed:
            raise ClientClosed(f"the client is closed: cannot call {method}", code="CANCELLED")
        bound = self._methods.get(method)
        if bound is None:
            service, _, name = method.rpartition("/")
            bound = self._methods[method] = getattr(self._stubs[service], name)
        return bound

    async def unary(self, method: str, request: Any, timeout: float | None, *, idempotent: bool = False) -> Any:
        stub_method = self._method(method)
        deadline = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        ends_at = None if deadline is None else loop.time() + deadline
        try:  # the first attempt straight away: the retry machinery only once it failed
            return await stub_method(request, timeout=deadline, metadata=self.metadata)
        except grpc.aio.AioRpcError as error:
            first_error = error
        except grpc.aio.BaseError as error:
            raise translate(error) from None

        async def attempt() -> Any:
            remaining = None if ends_at is None else max(0.0, ends_at - loop.time())
            try:
                return await stub_method(request, timeout=remaining, metadata=self.metadata)
            except grpc.aio.BaseError as error:
                raise translate(error) from None

        return await retry_after(first_error, self.retry, attempt, idempotent=idempotent, ends_at=ends_at)

    async def unary_with_headers(
        self, method: str, request: Any, timeout: float | None, metadata: Sequence[tuple[str, str]]
    ) -> tuple[Any, tuple[tuple[str, str], ...]]:
        stub_method = self._method(method)
        deadline = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        ends_at = None if deadline is None else loop.time() + deadline

        async def attempt() -> tuple[Any, tuple[tuple[str, str], ...]]:
            remaining = None if ends_at is None else max(0.0, ends_at - loop.time())
            call = stub_method(request, timeout=remaining, metadata=(*self.metadata, *metadata))
            try:
                response = await call
                headers = await call.initial_metadata()
            except grpc.aio.AioRpcError:
                raise  # call_with_retry retries what never reached the runtime, and translates
            except grpc.aio.BaseError as error:
                raise translate(error) from None
            return response, tuple((k, v) for k, v in headers or () if isinstance(v, str))

        return await call_with_retry(self.retry, attempt, idempotent=False, ends_at=ends_at)

    def stream(self, method: str) -> StreamCall:
        return GrpcStreamCall(self._method(method)(metadata=self.metadata))

    async def unary_stream(self, method: str, request: Any, timeout: float | None) -> AsyncIterator[Any]:
        call = self._method(method)(request, timeout=timeout, metadata=self.metadata)
        try:
            while (response := await call.read()) is not EOF:
                yield response
        except GRPC_ERRORS as error:
            raise translate(error) from None
        finally:
            call.cancel()  # a no-op once the stream ended; else the consumer stopped early

    async def stream_unary(self, method: str, requests: AsyncIterable[Any], timeout: float | None) -> Any:
        call = self._method(method)(timeout=timeout, metadata=self.metadata)
        try:
            async for request in requests:
                await call.write(request)
            await call.done_writing()
            return await call
        except GRPC_ERRORS as error:
            raise translate(error) from None
        except BaseException:
            call.cancel()  # the requests' source failed (or the caller was cancelled): store nothing
            raise

    async def aclose(self) -> None:
        self._closed = True
        await self.channel.close(grace=None)
