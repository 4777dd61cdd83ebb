"""Test doubles for applications: ``MockTransport`` (no runtime at all) and an in-process
runtime (``test_runtime``, needs ``layotto-sdk[testing]``).

``MockTransport`` answers each call with what a handler returns, like httpx's MockTransport::

    from layotto.client import RuntimeClient, StoreNotFound
    from layotto.client.testing import MockTransport
    from layotto.proto.runtime.v1 import runtime_pb2 as pb

    def handler(method: str, request: Any) -> Any:
        if method == "spec.proto.runtime.v1.Runtime.GetState":
            return pb.GetStateResponse(data=b"42", etag="1")
        raise StoreNotFound("no such store")

    client = RuntimeClient(transport=MockTransport(handler))

``test_runtime`` serves a real runtime::

    from layotto.client.testing import test_runtime

    async def test_my_app():
        async with test_runtime() as runtime, runtime.client() as client:
            await client.state.save("in-memory", "k", "v")

The runtime serves the embedded defaults (state stores ``in-memory`` and ``sqlite``,
the latter in a temporary directory) on free loopback ports, and stops on exit.
"""

from __future__ import annotations

import asyncio
import inspect
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from google.protobuf import message_factory

from layotto.client._client import RuntimeClient
from layotto.client._errors import ClientClosed, DeadlineExceeded, NotImplementedByRuntime
from layotto.client._retry import NO_RETRY
from layotto.client._transport import EOF, SERVICE, StreamCall, Transport
from layotto.proto.dapr.runtime.v1 import dapr_pb2
from layotto.proto.extension.v1.cryption import cryption_pb2
from layotto.proto.runtime.v1 import runtime_pb2

__all__ = ["MockHandler", "MockTransport", "TestRuntime", "test_runtime"]

#: ``handler(method, request)``: ``method`` is the RPC's full name
#: (``"spec.proto.runtime.v1.Runtime.GetState"``, ``"dapr.proto.runtime.v1.Dapr.ScheduleJob"`` for
#: the jobs and crypto clients' Dapr RPCs), ``request`` the decoded request message.
#: A unary RPC's handler returns its response message (None: an empty one) or raises a
#: ``LayottoError``; a stream's handler gets the first request and returns the responses
#: to send (an iterable), after which the stream stays open until the client closes it —
#: unless it returned none (None or empty): then the stream ends at once, as a runtime
#: ending it without answering would. A response of another message type than the RPC's
#: raises ``TypeError``. A server stream's handler (``GetFile``) returns its responses (an
#: iterable), after which the stream ends; a client stream's handler (``PutFile``) gets the list
#: of the requests sent and returns the response. Handlers may be ``async``: they run under the
#: call's timeout.
MockHandler = Callable[[str, Any], Any]

#: the services a client method name's prefix names (``"GetState"``, ``"dapr/ScheduleJob"``, ``"cryption/Encrypt"``)
_SERVICES = {
    "": runtime_pb2.DESCRIPTOR.services_by_name["Runtime"],
    "dapr": dapr_pb2.DESCRIPTOR.services_by_name["Dapr"],
    "cryption": cryption_pb2.DESCRIPTOR.services_by_name["CryptionService"],
}


def _descriptor(method: str) -> Any:
    """The RPC's method descriptor (None: no such RPC)."""
    service, _, name = method.rpartition("/")
    found = _SERVICES.get(service)
    return found.methods_by_name.get(name) if found is not None else None


def _full_name(method: str) -> str:
    """The RPC's full name: ``"dapr/GetJob"`` -> ``"dapr.proto.runtime.v1.Dapr.GetJob"``."""
    descriptor = _descriptor(method)
    return descriptor.full_name if descriptor is not None else f"{SERVICE}.{method}"


def _copy(message: Any) -> Any:
    """The message as the other side decodes it (a round trip through bytes)."""
    return type(message).FromString(message.SerializeToString())


async def _call(handler: MockHandler, method: str, request: Any, timeout: float | None) -> Any:
    """The handler's answer; an async handler's within ``timeout`` seconds (None: no limit),
    else :class:`DeadlineExceeded`."""
    result = handler(_full_name(method), request if isinstance(request, list) else _copy(request))
    if not inspect.isawaitable(result):
        return result
    try:
        async with asyncio.timeout(timeout):
            return await result
    except TimeoutError:
        raise DeadlineExceeded(
            f"{method}: the handler did not answer within {timeout} s", code="DEADLINE_EXCEEDED"
        ) from None


def _checked(method: str, response: Any) -> Any:
    """``response`` as the client decodes it; TypeError when it is not ``method``'s output type."""
    expected = _descriptor(method).output_type.full_name
    descriptor = getattr(response, "DESCRIPTOR", None)
    if getattr(descriptor, "full_name", None) != expected:
        raise TypeError(
            f"MockTransport: the handler of {method} returned {type(response).__name__}, expected {expected}"
        )
    return _copy(response)


class MockTransport(Transport):
    """A transport that needs no runtime: ``handler`` answers every call.

    ``requests`` lists every request the client sent, in order, as ``(method, message)``
    (a stream's answers, such as a subscription's acks, included). No retries. ``timeout`` is
    the default deadline of a call in seconds (None: none), as the client's ``timeout``; an
    async handler answering later raises :class:`DeadlineExceeded`, and a subscription whose
    stream does not answer its first request in time raises it too.
    """

    def __init__(self, handler: MockHandler, *, address: str = "mock", timeout: float | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self.retry = NO_RETRY
        self.requests: list[tuple[str, Any]] = []
        self._handler = handler
        self._closed = False

    def _check(self, method: str) -> None:
        if self._closed:
            raise ClientClosed(f"the client is closed: cannot call {method}", code="CANCELLED")
        if _descriptor(method) is None:
            raise NotImplementedByRuntime(f"{_full_name(method)} is not an RPC", code="UNIMPLEMENTED")

    async def unary(self, method: str, request: Any, timeout: float | None, *, idempotent: bool = False) -> Any:
        self._check(method)
        self.requests.append((_full_name(method), _copy(request)))
        response = await _call(self._handler, method, request, self.timeout if timeout is None else timeout)
        return self._response(method, response)

    @staticmethod
    def _response(method: str, response: Any) -> Any:
        """A unary answer as the client decodes it (None: an empty message)."""
        if response is None:
            return message_factory.GetMessageClass(_descriptor(method).output_type)()
        return _checked(method, response)

    def stream(self, method: str) -> StreamCall:
        self._check(method)
        return _MockStream(self, method)

    async def unary_stream(self, method: str, request: Any, timeout: float | None) -> AsyncIterator[Any]:
        self._check(method)
        self.requests.append((_full_name(method), _copy(request)))
        for response in await _call(self._handler, method, request, timeout) or ():
            yield _checked(method, response)

    async def stream_unary(self, method: str, requests: AsyncIterable[Any], timeout: float | None) -> Any:
        self._check(method)
        sent = [_copy(request) async for request in requests]
        self.requests.extend((_full_name(method), request) for request in sent)
        response = await _call(self._handler, method, sent, timeout)
        return self._response(method, response)

    async def aclose(self) -> None:
        self._closed = True


class _MockStream:
    def __init__(self, transport: MockTransport, method: str) -> None:
        self._transport, self._method = transport, method
        self._responses: asyncio.Queue[Any] = asyncio.Queue()
        self._started = False

    async def write(self, request: Any) -> None:
        self._transport.requests.append((_full_name(self._method), _copy(request)))
        if not self._started:
            self._started = True
            handler, timeout = self._transport._handler, self._transport.timeout
            responses = [_checked(self._method, r) for r in await _call(handler, self._method, request, timeout) or ()]
            for response in responses:
                self._responses.put_nowait(response)
            if not responses:
                self._responses.put_nowait(EOF)  # nothing to send: the stream ends

    async def done_writing(self) -> None:
        self._responses.put_nowait(EOF)

    async def read(self) -> Any:
        return await self._responses.get()

    def cancel(self) -> None:
        self._responses.put_nowait(EOF)


@dataclass(frozen=True)
class TestRuntime:
    """A running in-process runtime."""

    __test__ = False  # not a pytest test class

    address: str
    http_address: str
    runtime: Any  # layotto.server.Runtime

    def client(self, **options: Any) -> RuntimeClient:
        return RuntimeClient(self.address, **options)


#: how to install the runtime test_runtime() starts: layotto-server and the project's distributions it
#: needs are not on a package index, so ``pip install 'layotto-sdk[testing]'`` cannot find them
INSTALL_RUNTIME = "from the repository's root, pip install ./proto ./tracing ./server './sdk-python[testing]'"


@asynccontextmanager
async def test_runtime(config: Any = None, *, port: int = 0) -> AsyncIterator[TestRuntime]:
    """Start a runtime (embedded defaults unless a ``RuntimeConfig`` is given) on loopback
    ``port`` (0: a free one; give one to restart a runtime where clients expect it)."""
    try:
        from layotto.server import Runtime, embedded_defaults
    except ImportError as error:
        raise ImportError(f"test_runtime() needs the runtime beside the SDK: {INSTALL_RUNTIME}") from error
    with tempfile.TemporaryDirectory(prefix="layotto-test-") as data_dir:
        base = config if config is not None else embedded_defaults()
        cfg = base.with_overrides(grpc_address=f"127.0.0.1:{port}", http_address="127.0.0.1:0", data_dir=data_dir)
        runtime = Runtime(cfg)
        await runtime.start()
        try:
            yield TestRuntime(f"127.0.0.1:{runtime.grpc_port}", f"127.0.0.1:{runtime.http_port}", runtime)
        finally:
            await runtime.stop(grace=1.0)


test_runtime.__test__ = False  # type: ignore[attr-defined]
