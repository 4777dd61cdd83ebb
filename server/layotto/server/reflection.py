"""gRPC server reflection over the descriptors the runtime really serves.

The services come from two descriptor pools: Layotto's, gRPC health and reflection live
in protobuf's default pool, Dapr's contract in the private pool of
``layotto.proto.dapr.pool`` (so that Dapr's own SDK can be imported next to the runtime).
Reflection answers from one pool, so the files declaring the served services are copied,
with every file they import, into one pool of their own. Looking names up there, never in
the default pool, also keeps an SDK's copy of ``dapr.proto.*`` out of the answers. The pool also
holds the messages an error's ``grpc-status-details-bin`` packs (``google.rpc.ErrorInfo`` and the
other ``google.rpc`` details, in a ``google.rpc.Status``), so a reflection client such as grpcurl
decodes an error's reason and field instead of showing the bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import grpc
from google.protobuf import descriptor, descriptor_pool
from google.rpc import error_details_pb2, status_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2


@functools.cache
def services_pool(services: tuple[descriptor.ServiceDescriptor, ...]) -> descriptor_pool.DescriptorPool:
    """A pool holding the files that declare ``services`` and, transitively, their imports, and
    the files of ``google.rpc.Status`` and its error details.

    Built once per tuple of services (runtimes of one process share it: reflection only reads
    it). Raises ``TypeError`` when two different files declare the same name.
    """
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: descriptor.FileDescriptor) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        pool.AddSerializedFile(file.serialized_pb)
        added.add(file.name)

    for service in services:
        add(service.file)
    for details in (status_pb2.DESCRIPTOR, error_details_pb2.DESCRIPTOR):  # what errors carry
        add(details)
    return pool


def enable_reflection(server: grpc.aio.Server, services: Iterable[descriptor.ServiceDescriptor]) -> None:
    """Serve ``grpc.reflection.v1alpha.ServerReflection`` on ``server``, listing ``services`` and itself."""
    listed = (*services, reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"])
    names = tuple(service.full_name for service in listed)
    reflection.enable_server_reflection(names, server, pool=services_pool(listed))
