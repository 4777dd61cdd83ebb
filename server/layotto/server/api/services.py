"""Assembles the building-block APIs into the gRPC services the runtime serves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from layotto.proto.dapr.runtime.v1 import appcallback_pb2 as dapr_appcallback_pb2
from layotto.proto.dapr.runtime.v1 import dapr_pb2, secret_pb2, state_pb2
from layotto.proto.dapr.runtime.v1 import pubsub_pb2 as dapr_pubsub_pb2
from layotto.proto.runtime.v1 import appcallback_pb2, runtime_pb2
from layotto.server.api.adapter import rpc_methods, service_handler
from layotto.server.api.configuration import DaprConfigurationApi, LayottoConfigurationApi
from layotto.server.api.hello import HelloApi
from layotto.server.api.lock import LockApi
from layotto.server.api.metadata import MetadataApi
from layotto.server.api.pubsub import PubSubApi, PubSubMessages
from layotto.server.api.secrets import SecretMessages, SecretsApi
from layotto.server.api.sequencer import SequencerApi
from layotto.server.api.state import StateApi, StateMessages
from layotto.server.components.loader import ComponentSet
from layotto.server.runtime.delivery import Topics
from layotto.server.runtime.secret_scopes import SecretPolicy

LAYOTTO_STATE = StateMessages(
    get_state_response=runtime_pb2.GetStateResponse,
    get_bulk_state_response=runtime_pb2.GetBulkStateResponse,
    bulk_state_item=runtime_pb2.BulkStateItem,
)
DAPR_STATE = StateMessages(
    get_state_response=state_pb2.GetStateResponse,
    get_bulk_state_response=state_pb2.GetBulkStateResponse,
    bulk_state_item=state_pb2.BulkStateItem,
)

LAYOTTO_PUBSUB = PubSubMessages(
    topic_event_request=appcallback_pb2.TopicEventRequest,
    stream_response=runtime_pb2.SubscribeTopicEventsResponse,
    initial_response=runtime_pb2.SubscribeTopicEventsResponseInitial,
    has_metadata=True,
)
DAPR_PUBSUB = PubSubMessages(
    topic_event_request=dapr_appcallback_pb2.TopicEventRequest,
    stream_response=dapr_pubsub_pb2.SubscribeTopicEventsResponseAlpha1,
    initial_response=dapr_pubsub_pb2.SubscribeTopicEventsResponseInitialAlpha1,
    has_metadata=False,
)

LAYOTTO_SECRETS = SecretMessages(
    get_secret_response=runtime_pb2.GetSecretResponse,
    get_bulk_secret_response=runtime_pb2.GetBulkSecretResponse,
    secret_response=runtime_pb2.SecretResponse,
)
DAPR_SECRETS = SecretMessages(
    get_secret_response=secret_pb2.GetSecretResponse,
    get_bulk_secret_response=secret_pb2.GetBulkSecretResponse,
    secret_response=secret_pb2.SecretResponse,
)

RUNTIME_SERVICE = runtime_pb2.DESCRIPTOR.services_by_name["Runtime"]
DAPR_SERVICE = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"]


def api_handlers(
    components: ComponentSet,
    *,
    app_id: str,
    version: str,
    shutdown: Callable[[], None],
    topics: Topics,
    max_publish_bytes: int,
    secret_policy: SecretPolicy,
) -> list[grpc.GenericRpcHandler[Any, Any]]:
    """``topics`` is shared: streams of both APIs and the app callback compete for one topic's messages."""
    lock = LockApi(components, app_id)
    sequencer = SequencerApi(components, app_id)
    layotto_pubsub = PubSubApi(components, app_id, LAYOTTO_PUBSUB, topics, max_publish_bytes)
    dapr_pubsub = PubSubApi(components, app_id, DAPR_PUBSUB, topics, max_publish_bytes)
    layotto = rpc_methods(
        StateApi(components, LAYOTTO_STATE),
        HelloApi(components),
        lock,
        sequencer,
        layotto_pubsub,
        SecretsApi(components, LAYOTTO_SECRETS, secret_policy),
        LayottoConfigurationApi(components, app_id),
    )
    dapr = rpc_methods(
        StateApi(components, DAPR_STATE),
        MetadataApi(app_id, version, components, shutdown),
        lock,
        dapr_pubsub,
        SecretsApi(components, DAPR_SECRETS, secret_policy),
        DaprConfigurationApi(components, app_id),
    )
    return [service_handler(RUNTIME_SERVICE, layotto), service_handler(DAPR_SERVICE, dapr)]


SERVICE_NAMES = (RUNTIME_SERVICE.full_name, DAPR_SERVICE.full_name)
