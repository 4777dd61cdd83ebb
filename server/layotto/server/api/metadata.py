"""Dapr's GetMetadata, SetMetadata and Shutdown over gRPC: what Dapr SDKs poll for readiness and
capabilities; the semantics are :class:`~layotto.server.runtime.metadata.MetadataService`'s."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from layotto.proto.dapr.runtime.v1 import metadata_pb2
from layotto.server.api.adapter import Context
from layotto.server.runtime.metadata import AppSubscription, MetadataService


def _subscription(entry: AppSubscription) -> metadata_pb2.PubsubSubscription:
    s = entry.subscription
    rules = [metadata_pb2.PubsubSubscriptionRule(match=r.match, path=r.path) for r in s.rules]
    if s.path:
        rules.append(metadata_pb2.PubsubSubscriptionRule(path=s.path))
    return metadata_pb2.PubsubSubscription(
        pubsub_name=s.pubsub,
        topic=s.topic,
        metadata=dict(s.metadata),
        rules=metadata_pb2.PubsubSubscriptionRules(rules=rules),
        dead_letter_topic=s.dead_letter_topic,
        type=metadata_pb2.PubsubSubscriptionType.Value(entry.kind),
    )


class MetadataApi:
    def __init__(self, metadata: MetadataService) -> None:
        self._metadata = metadata

    async def GetMetadata(self, request: Any, context: Context) -> metadata_pb2.GetMetadataResponse:
        return metadata_pb2.GetMetadataResponse(
            id=self._metadata.app_id,
            registered_components=[
                metadata_pb2.RegisteredComponents(
                    name=c.name, type=c.type, version=c.version, capabilities=c.capabilities
                )
                for c in self._metadata.components()
            ],
            extended_metadata=self._metadata.extended(),
            runtime_version=self._metadata.version,
            subscriptions=[_subscription(s) for s in self._metadata.subscriptions()],
        )

    async def SetMetadata(self, request: Any, context: Context) -> empty_pb2.Empty:
        self._metadata.set_attribute(request.key, request.value)
        return empty_pb2.Empty()

    async def Shutdown(self, request: Any, context: Context) -> empty_pb2.Empty:
        self._metadata.shutdown("the Dapr Shutdown RPC")
        return empty_pb2.Empty()
