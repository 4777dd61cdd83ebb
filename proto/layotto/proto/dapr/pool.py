"""The private descriptor pool of this package's copy of Dapr's contract (``dapr.proto.*``).

Dapr's own Python SDK (``import dapr.clients``) registers the same message, enum and
service names (``dapr.proto.common.v1.HTTPExtension``, ``dapr.proto.runtime.v1.Dapr``,
...) in protobuf's default descriptor pool, which refuses a name twice. The generated
modules under ``layotto.proto.dapr`` therefore build their descriptors in :data:`POOL`
instead (``proto/scripts/generate.py`` writes them so), and both copies of the contract
live in one process, whichever is imported first. Names on the wire are unchanged.

What this means for code using these modules:

- ``descriptor_pool.Default()`` (and so ``json_format`` resolving ``Any`` type URLs,
  or gRPC reflection by default) does not know these messages: look them up in
  :data:`POOL`.
- Well-known types used inside these messages (``google.protobuf.Any``, ``Duration``,
  ``Struct``, ``Timestamp``, ``Empty``, ``google.rpc.Status``) are copies in :data:`POOL`,
  so their classes differ from ``google.protobuf.any_pb2.Any`` and the like. Their
  helpers work (``msg.data.Pack(x)``, ``msg.ts.FromDatetime(d)``), and a value made with
  the default classes is assigned by bytes:
  ``msg.data.ParseFromString(any_value.SerializeToString())``; ``CopyFrom`` refuses it.
  gRPC stubs and servicers still take and return ``google.protobuf.empty_pb2.Empty``.
"""

from __future__ import annotations

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

POOL = descriptor_pool.DescriptorPool()
"""Every file of ``layotto.proto.dapr`` plus copies of the files they import from outside it."""


def add_serialized_file(serialized: bytes) -> descriptor.FileDescriptor:
    """Add one generated file (a serialized ``FileDescriptorProto``) to :data:`POOL`.

    Its imports from outside this package (well-known types, ``google/rpc/status.proto``)
    are copied from the default pool first, where the generated module's own imports have
    put them. Raises ``KeyError`` when an import is in neither pool and ``TypeError`` when
    the file conflicts with what :data:`POOL` holds.
    """
    for dependency in descriptor_pb2.FileDescriptorProto.FromString(serialized).dependency:
        _copy_from_default(dependency)
    return POOL.AddSerializedFile(serialized)


def _copy_from_default(file_name: str) -> None:
    try:
        POOL.FindFileByName(file_name)
        return
    except KeyError:
        pass
    source = descriptor_pool.Default().FindFileByName(file_name)
    for dependency in source.dependencies:
        _copy_from_default(dependency.name)
    POOL.AddSerializedFile(source.serialized_pb)
