"""Dapr's ``bindings.mqtt3`` output binding: ``create`` publishes the data to a topic.

The topic is the request's ``topic`` metadata, else the component's ``topic``. Messages go at
QoS 1 and the call answers once the broker acknowledged (PUBACK); the connection is the pubsub
``mqtt`` component's (reconnecting, topics checked the same way).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, Health, MetadataField
from layotto.server.components.bindings import BindingRequest, BindingResponse, OutputBinding
from layotto.server.components.pubsub.mqtt import MqttPubSub


class MqttBinding(OutputBinding):
    spec = ComponentSpec(
        type="mqtt3",
        building_block="bindings",
        description="Publishes each invocation's data to an MQTT topic (the request's topic metadata, else the "
        "component's) at QoS 1, answering once the broker acknowledged it.",
        features=frozenset({Feature.OUTPUT_BINDING}),
        operations=("create",),
        metadata=(
            MetadataField(
                "url",
                "Broker address: tcp://HOST:PORT or ssl://HOST:PORT.",
                required=True,
                example="tcp://127.0.0.1:1883",
            ),
            MetadataField("topic", "Topic of a request that names none.", required=True, example="orders"),
            MetadataField("consumerID", "MQTT client id (default: random per runtime).", default=""),
            MetadataField("username", "User name.", default=""),
            MetadataField("password", "Password.", default=""),
            MetadataField("timeoutInSeconds", "Connect and publish timeout.", type=float, default=5.0),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._mqtt = MqttPubSub(name)
        self._topic = ""

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._topic = str(metadata["topic"])
        connection = {
            "url": metadata["url"],
            "username": metadata["username"],
            "password": metadata["password"],
            "clientID": metadata["consumerID"],
            "sessionExpiryInSeconds": 0,
            "keepAliveInSeconds": 30,
            "timeoutInSeconds": metadata["timeoutInSeconds"],
        }
        await self._mqtt.init(connection, context)

    async def close(self) -> None:
        await self._mqtt.close()

    async def health(self) -> Health:
        return await self._mqtt.health()

    async def invoke(self, request: BindingRequest) -> BindingResponse:
        await self._mqtt.publish(request.metadata.get("topic") or self._topic, request.data, {})
        return BindingResponse()
