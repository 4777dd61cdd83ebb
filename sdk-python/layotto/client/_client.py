"""RuntimeClient: the entry point of the SDK."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import any_pb2

from layotto.client._bindings import BindingsClient
from layotto.client._configuration import ConfigurationClient
from layotto.client._crypto import CryptoClient
from layotto.client._errors import ClientClosed
from layotto.client._files import FilesClient
from layotto.client._invoke import InvokeResponse, invoke
from layotto.client._jobs import JobsClient
from layotto.client._lock import LockClient, SequencerClient
from layotto.client._pubsub import PubSubClient
from layotto.client._retry import RetryPolicy
from layotto.client._secrets import SecretsClient
from layotto.client._state import StateClient
from layotto.client._tls import TlsConfig
from layotto.client._transport import DEFAULT_MAX_MESSAGE_BYTES, GrpcTransport, Transport
from layotto.client._values import Value
from layotto.proto.runtime.v1 import runtime_pb2 as pb

ADDRESS_ENV = "LAYOTTO_GRPC_ENDPOINT"
API_TOKEN_ENV = "DAPR_API_TOKEN"
TOKEN_METADATA = "dapr-api-token"
DEFAULT_ADDRESS = "127.0.0.1:34904"
DEFAULT_TIMEOUT = 10.0


#: gRPC target schemes passed to the channel as they are
_URI_SCHEMES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:")
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+")


def check_address(address: str) -> None:
    """Raise ValueError (naming ``address``) unless it is ``host:port``, ``[ipv6]:port``
    (port 1-65535) or a URI of a gRPC scheme (``unix:path``, ``dns:///host:port``, ...)."""
    if address.startswith(_URI_SCHEMES):
        return
    host, _, port = address.rpartition(":")
    if not (_HOST.fullmatch(host) and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"address {address!r} is not host:port, [ipv6]:port or a unix:/dns: target")


@dataclass(frozen=True)
class Hello:
    greeting: str
    data: bytes


class RuntimeClient:
    """An asyncio client of a Layotto runtime.

    ::

        async with RuntimeClient() as client:
            await client.state.save("sqlite", "greeting", {"text": "hi"})
            item = await client.state.get("sqlite", "greeting")

    The address comes from the argument, else ``LAYOTTO_GRPC_ENDPOINT``, else
    127.0.0.1:34904. ``timeout`` is the default deadline of every call in seconds
    (None: no deadline); each method also takes its own ``timeout``. Calls that find
    the runtime unreachable or restarting are retried per ``retry``, within their deadline.
    ``max_message_bytes`` bounds what is sent and received (the runtime's default, 16 MiB);
    a larger message raises :class:`PayloadTooLarge`. ``transport`` replaces the gRPC
    connection (and the options that configure it), e.g. with
    ``layotto.client.testing.MockTransport`` in tests. An ``address`` that is not a gRPC
    target (``host:port``, ``[ipv6]:port``, or a ``unix:``/``dns:`` style URI) raises ValueError.
    ``api_token`` (else ``DAPR_API_TOKEN``) is sent as ``dapr-api-token`` metadata on every call, for a
    runtime that requires it (a missing or wrong token raises :class:`Unauthenticated`).
    ``tls``: connect over TLS, a :class:`TlsConfig` (the CA of the runtime's certificate, the client's
    certificate for mutual TLS) or True (the system's CAs); None or False: plaintext. ``unix:/path``
    addresses reach a runtime listening on a Unix socket.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        channel_options: Sequence[tuple[str, Any]] = (),
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        transport: Transport | None = None,
        api_token: str | None = None,
        tls: TlsConfig | bool | None = None,
    ) -> None:
        address = address or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
        token = api_token or os.environ.get(API_TOKEN_ENV)
        if token:
            metadata = (*metadata, (TOKEN_METADATA, token))
        if transport is None:
            check_address(address)
        self._closed = False
        self._transport: Transport = transport or GrpcTransport(
            address,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            metadata=metadata,
            interceptors=interceptors,
            options=channel_options,
            max_message_bytes=max_message_bytes,
            tls=TlsConfig() if tls is True else (tls or None),
        )
        self.state = StateClient(self._transport)
        self.lock = LockClient(self._transport)
        self.sequencer = SequencerClient(self._transport)
        self.pubsub = PubSubClient(self._transport)
        self.secrets = SecretsClient(self._transport)
        self.configuration = ConfigurationClient(self._transport)
        self.crypto = CryptoClient(self._transport)
        self.bindings = BindingsClient(self._transport)
        self.jobs = JobsClient(self._transport)
        self.files = FilesClient(self._transport)

    @property
    def address(self) -> str:
        return self._transport.address

    async def say_hello(
        self, name: str = "", *, service: str = "", data: bytes | None = None, timeout: float | None = None
    ) -> Hello:
        """Greets through a hello component; ``data`` is echoed back."""
        request = pb.SayHelloRequest(service_name=service, name=name)
        if data is not None:
            request.data.CopyFrom(any_pb2.Any(value=data))
        response = await self._transport.unary("SayHello", request, timeout, idempotent=True)
        return Hello(greeting=response.hello, data=response.data.value)

    async def invoke(
        self,
        app_id: str,
        method: str,
        data: Value = None,
        *,
        verb: str = "NONE",
        querystring: str = "",
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> InvokeResponse:
        """Call ``method`` of app ``app_id`` through the runtime (and the app's sidecar).

        ``data`` is sent as bytes (str as UTF-8, other values as JSON; its content type
        follows unless ``content_type`` is given). ``verb`` (GET, POST, ... or NONE: POST for an
        HTTP app) and ``querystring`` reach an HTTP app as such; ``headers`` reach the app as
        headers or gRPC metadata. Not retried once it may have reached the runtime.
        Raises AppNotFound, AppUnavailable, AppError (the app's own error), DeadlineExceeded,
        InvalidArgument (empty app id or method, an unknown verb, a header gRPC cannot carry)."""
        return await invoke(
            self._transport,
            app_id,
            method,
            data,
            verb=verb,
            querystring=querystring,
            content_type=content_type,
            headers=headers,
            timeout=timeout,
        )

    async def aclose(self) -> None:
        self._closed = True
        await self._transport.aclose()

    async def __aenter__(self) -> RuntimeClient:
        """The client itself; raises :class:`ClientClosed` when it was closed already."""
        if self._closed:
            raise ClientClosed("the client is closed: it cannot be used in async with again", code="CANCELLED")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
