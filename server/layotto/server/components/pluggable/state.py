"""A state store served by a pluggable component (``dapr.proto.components.v1.StateStore``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import grpc

from layotto.proto.components.v1 import common_pb2, state_pb2, state_pb2_grpc
from layotto.server.components.base import ComponentContext, ConfigError, Feature, Health
from layotto.server.components.pluggable import (
    CALL_TIMEOUT,
    PACKAGE,
    OpenSpec,
    backend_error,
    instance_metadata,
    known_features,
)
from layotto.server.components.state import (
    Concurrency,
    DeleteRequest,
    SetRequest,
    StateEntry,
    StateStore,
    WriteRequest,
)
from layotto.server.errors import EtagInvalid, EtagMismatch, LayottoError

if TYPE_CHECKING:
    from layotto.server.components.pluggable import Discovered


def pluggable_state_store(type_name: str, found: Discovered) -> type[PluggableStateStore]:
    """A state store class of type ``type_name`` talking to the socket ``found`` describes.

    Its features are those the component declared that the runtime knows (``ETAG``, ``TTL``,
    ``TRANSACTIONAL`` when the socket also serves ``TransactionalStateStore``, ...); first-write
    saves are passed on when it declares ``ETAG``, as Dapr's first-write builds on etags.
    """
    features = set(known_features(found.features))
    if f"{PACKAGE}.TransactionalStateStore" not in found.services:
        features.discard(Feature.TRANSACTIONAL)
    if Feature.ETAG in features:
        features.add(Feature.FIRST_WRITE)
    spec = OpenSpec(
        type=type_name,
        building_block="state",
        description=f"Pluggable state store on {found.socket}",
        features=frozenset(features),
    )
    return type(f"PluggableStateStore_{type_name}", (PluggableStateStore,), {"spec": spec, "socket": str(found.socket)})


_CONCURRENCY = {
    Concurrency.UNSPECIFIED: state_pb2.StateOptions.CONCURRENCY_UNSPECIFIED,
    Concurrency.FIRST_WRITE: state_pb2.StateOptions.CONCURRENCY_FIRST_WRITE,
    Concurrency.LAST_WRITE: state_pb2.StateOptions.CONCURRENCY_LAST_WRITE,
}


class PluggableStateStore(StateStore):
    """Forwards each operation to the component's socket; its gRPC errors become domain errors:
    FAILED_PRECONDITION an etag mismatch, INVALID_ARGUMENT on a write with an etag an invalid etag
    (Dapr's codes), UNAVAILABLE or DEADLINE_EXCEEDED BackendUnavailable, anything else BackendError."""

    socket: ClassVar[str]

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._channel: grpc.aio.Channel | None = None
        self._stub: state_pb2_grpc.StateStoreAsyncStub | None = None
        self._transactional: state_pb2_grpc.TransactionalStateStoreAsyncStub | None = None

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._channel = grpc.aio.insecure_channel(f"unix:{self.socket}")
        self._stub = state_pb2_grpc.StateStoreStub(self._channel)
        self._transactional = state_pb2_grpc.TransactionalStateStoreStub(self._channel)
        request = state_pb2.InitRequest(metadata=common_pb2.MetadataRequest(properties=dict(metadata)))
        try:
            await self._stub.Init(request, timeout=CALL_TIMEOUT, metadata=self._metadata())
        except grpc.aio.AioRpcError as error:
            raise ConfigError(f"state.{self.name}: pluggable component refused Init: {error.details()}") from None

    def _metadata(self) -> tuple[tuple[str, str]]:
        return instance_metadata(self.name)

    def _client(self) -> state_pb2_grpc.StateStoreAsyncStub:
        assert self._stub is not None, "init() first"
        return self._stub

    def _error(self, error: grpc.aio.AioRpcError, request: WriteRequest | None = None) -> LayottoError:
        code = error.code()
        if request is not None and code == grpc.StatusCode.FAILED_PRECONDITION:
            return EtagMismatch(request.key, first_write=not request.etag)
        if request is not None and request.etag and code == grpc.StatusCode.INVALID_ARGUMENT:
            return EtagInvalid(request.key, request.etag)
        return backend_error(self.name, error)

    async def get(self, key: str) -> StateEntry | None:
        try:
            answer = await self._client().Get(
                state_pb2.GetRequest(key=key), timeout=CALL_TIMEOUT, metadata=self._metadata()
            )
        except grpc.aio.AioRpcError as error:
            raise self._error(error) from None
        if not answer.data and not answer.HasField("etag"):
            return None
        return StateEntry(key=key, value=answer.data, etag=answer.etag.value)

    async def set(self, request: SetRequest) -> None:
        try:
            await self._client().Set(_set(request), timeout=CALL_TIMEOUT, metadata=self._metadata())
        except grpc.aio.AioRpcError as error:
            raise self._error(error, request) from None

    async def delete(self, request: DeleteRequest) -> None:
        try:
            await self._client().Delete(_delete(request), timeout=CALL_TIMEOUT, metadata=self._metadata())
        except grpc.aio.AioRpcError as error:
            raise self._error(error, request) from None

    async def transact(self, requests: Sequence[WriteRequest]) -> None:
        assert self._transactional is not None, "init() first"
        operations = [
            state_pb2.TransactionalStateOperation(set=_set(r))
            if isinstance(r, SetRequest)
            else state_pb2.TransactionalStateOperation(delete=_delete(r))
            for r in requests
        ]
        try:
            await self._transactional.Transact(
                state_pb2.TransactionalStateRequest(operations=operations),
                timeout=CALL_TIMEOUT,
                metadata=self._metadata(),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                key = next((r.key for r in requests if r.etag), requests[0].key if requests else "")
                raise EtagMismatch(key) from None
            raise self._error(error) from None

    async def health(self) -> Health:
        try:
            await self._client().Ping(common_pb2.PingRequest(), timeout=5, metadata=self._metadata())
        except grpc.aio.AioRpcError as error:
            return Health(up=False, details={"error": f"{error.code().name}: {error.details()}"})
        return Health(up=True)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None


def _etag(value: str | None) -> state_pb2.Etag | None:
    return state_pb2.Etag(value=value) if value else None


def _set(request: SetRequest) -> state_pb2.SetRequest:
    metadata = {"ttlInSeconds": str(request.ttl_seconds)} if request.ttl_seconds else {}
    return state_pb2.SetRequest(
        key=request.key,
        value=request.value,
        etag=_etag(request.etag),
        metadata=metadata,
        options=state_pb2.StateOptions(concurrency=_CONCURRENCY[request.concurrency]),
    )


def _delete(request: DeleteRequest) -> state_pb2.DeleteRequest:
    return state_pb2.DeleteRequest(
        key=request.key,
        etag=_etag(request.etag),
        options=state_pb2.StateOptions(concurrency=_CONCURRENCY[request.concurrency]),
    )
