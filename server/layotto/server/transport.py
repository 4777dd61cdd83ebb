"""The runtime's gRPC server on one of two transports, chosen by the ``grpc_transport`` config key.

* ``grpcio``: ``grpc.aio.server()``, gRPC's C core.
* ``native``: ``pygrpc_native.aio.server()`` (the ``native`` extra of layotto-server): HTTP/2 framing,
  flow control, deadlines and cancellation in Rust outside the GIL; handlers, interceptors and
  ``context`` behave as in grpc.aio. Unary and server-streaming methods registered one by one are
  served natively; client and bidirectional streaming methods (reflection, the topic subscription
  streams) go to a grpc.aio server behind it on a Unix socket. It refuses TLS, connection age and
  idle options and response compression.
* ``auto``: native when it is installed and takes the server's options, else grpcio. With TLS
  configured (``tls``), grpcio: pygrpc-native 0.5 serves no TLS, and ``native`` is a config error.
  Both serve ``unix:PATH`` addresses.

Start-up logs the transport and why it was chosen in one line.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc

from layotto.server.components.base import ConfigError
from layotto.server.config import GRPC_TRANSPORTS

log = logging.getLogger(__name__)

NATIVE_EXTRA = "pip install 'layotto-server[native]'"
NO_NATIVE_TLS = "tls is configured and pygrpc-native serves no TLS"

MethodHandlers: TypeAlias = "Mapping[str, grpc.RpcMethodHandler[Any, Any]]"
"""RPC name -> its handler, for one service."""


@dataclass(frozen=True)
class GrpcServer:
    """A gRPC server not yet started, the transport it runs on (``native`` or ``grpcio``) and why."""

    server: grpc.aio.Server
    transport: str
    reason: str


class _NativeRefused(Exception):
    """pygrpc-native cannot serve this runtime: not installed, or it refuses an option."""


def refuse_native_tls(requested: str, *, tls: bool) -> None:
    """ConfigError when ``native`` is asked for with TLS configured (checked before anything starts)."""
    if tls and requested == "native":
        raise ConfigError(f"grpc_transport: native: {NO_NATIVE_TLS}")


def build_server(
    requested: str,
    *,
    options: Sequence[tuple[str, Any]],
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]],
    tls: bool = False,
) -> GrpcServer:
    """The server ``requested`` (one of :data:`GRPC_TRANSPORTS`) asks for, with grpc.aio's options and interceptors.

    ``tls``: the server will listen with TLS, which only grpcio serves. Raises ConfigError naming
    ``grpc_transport`` for an unknown value, and for ``native`` when pygrpc-native is not
    installed, refuses an option or TLS is configured. Logs the choice in one line.
    """
    if requested not in GRPC_TRANSPORTS:
        raise ConfigError(f"grpc_transport: expected one of {', '.join(GRPC_TRANSPORTS)}, got {requested!r}")
    if requested == "grpcio":
        chosen = GrpcServer(_grpcio_server(options, interceptors), "grpcio", "grpc_transport: grpcio")
    else:
        try:
            if tls:
                raise _NativeRefused(NO_NATIVE_TLS)
            server, version = _native_server(options, interceptors)
            chosen = GrpcServer(server, "native", f"grpc_transport: {requested}, pygrpc-native {version}")
        except _NativeRefused as refusal:
            if requested == "native":
                raise ConfigError(f"grpc_transport: native: {refusal}") from None
            chosen = GrpcServer(_grpcio_server(options, interceptors), "grpcio", f"grpc_transport: auto, {refusal}")
    log.info("gRPC transport: %s (%s)", chosen.transport, chosen.reason)
    return chosen


def _grpcio_server(
    options: Sequence[tuple[str, Any]], interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]]
) -> grpc.aio.Server:
    return grpc.aio.server(options=list(options), interceptors=list(interceptors))


def _native_server(
    options: Sequence[tuple[str, Any]], interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]]
) -> tuple[grpc.aio.Server, str]:
    try:
        native_server = importlib.import_module("layotto.server.native_server")
    except ImportError as error:
        raise _NativeRefused(f"pygrpc-native is not installed ({NATIVE_EXTRA}): {error}") from None
    try:
        server = native_server.server(options=list(options), interceptors=list(interceptors))
    except (ValueError, NotImplementedError) as error:
        raise _NativeRefused(f"pygrpc-native {native_server.VERSION} refuses the config: {error}") from None
    return server, native_server.VERSION


def add_services(server: grpc.aio.Server, services: Mapping[str, MethodHandlers]) -> None:
    """Registers each service's methods one by one (service full name -> {RPC name -> handler}).

    As grpcio-tools' generated code does: a generic handler plus the per-method registration,
    which is what pygrpc-native serves on its fast path (it drops the generic handler of a
    registered service) and what grpc.aio looks up first.
    """
    for service_name, handlers in services.items():
        table = dict(handlers)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_name, table),))
        server.add_registered_method_handlers(service_name, table)  # type: ignore[attr-defined]  # grpc-stubs: pre-1.64
