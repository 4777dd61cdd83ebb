"""Dapr's ``bindings.mqtt3``: ``create`` publishes the data to a topic; as an input binding it
delivers the messages of its ``topic``.

Output: the topic is the request's ``topic`` metadata, else the component's ``topic``. Messages
go at QoS 1 and the call answers once the broker acknowledged (PUBACK). Input: a shared
subscription per app id (an app's replicas share the messages) at QoS 1; each message is
acknowledged to the broker only once the app took it, and offered again every second until it
does, so delivery is at least once while the runtime runs; messages in flight when it stops
are delivered again only when the session outlives it (a fixed ``consumerID`` and
``sessionExpiryInSeconds`` > 0). The connection is the pubsub ``mqtt`` component's
(reconnecting, renewing the subscription, topics checked the same way).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, Health, MetadataField
from layotto.server.components.bindings import (
    BindingEvent,
    BindingRequest,
    BindingResponse,
    EventHandler,
    InputBinding,
    OutputBinding,
)
from layotto.server.components.pubsub import BrokerMessage
from layotto.server.components.pubsub.mqtt import MqttPubSub
from layotto.server.errors import InvalidArgument


class MqttBinding(OutputBinding, InputBinding):
    spec = ComponentSpec(
        type="mqtt3",
        building_block="bindings",
        description="Publishes each invocation's data to an MQTT topic (the request's topic metadata, else the "
        "component's) at QoS 1, answering once the broker acknowledged it; as an input, delivers the messages "
        "of its topic at least once while the runtime runs.",
        features=frozenset({Feature.OUTPUT_BINDING, Feature.INPUT_BINDING}),
        operations=("create",),
        metadata=(
            MetadataField(
                "url",
                "Broker address: tcp://HOST:PORT or ssl://HOST:PORT.",
                required=True,
                example="tcp://127.0.0.1:1883",
            ),
            MetadataField(
                "topic",
                "Output: topic of a request that names none. Input: the topic read.",
                required=True,
                example="orders",
            ),
            MetadataField("consumerID", "MQTT client id (default: random per runtime).", default=""),
            MetadataField("username", "User name.", default=""),
            MetadataField("password", "Password.", default="", secret=True),
            MetadataField(
                "timeoutInSeconds", "Connect and publish timeout.", type=float, default=5.0, minimum=0.1, maximum=3600
            ),
            MetadataField(
                "sessionExpiryInSeconds",
                "How long the broker keeps the session (and unacknowledged input messages) after a disconnect; "
                "needs a fixed consumerID.",
                type=int,
                default=0,
                minimum=0,
                maximum=4_294_967_295,  # MQTT 5's four-byte interval
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._mqtt = MqttPubSub(name)
        self._topic = ""
        self._group = ""

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._topic = str(metadata["topic"])
        connection = {
            "url": metadata["url"],
            "username": metadata["username"],
            "password": metadata["password"],
            "clientID": metadata["consumerID"],
            "sessionExpiryInSeconds": metadata["sessionExpiryInSeconds"],
            "keepAliveInSeconds": 30,
            "timeoutInSeconds": metadata["timeoutInSeconds"],
        }
        self._group = context.app_id
        await self._mqtt.init(connection, context)

    async def read(self, handler: EventHandler) -> None:
        async def deliver(message: BrokerMessage) -> None:
            await handler(BindingEvent(data=message.data, metadata={"topic": message.topic}))

        subscription = await self._mqtt.subscribe(self._topic, self._group, deliver)
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            await subscription.aclose()

    async def close(self) -> None:
        await self._mqtt.close()

    async def health(self) -> Health:
        return await self._mqtt.health()

    async def invoke(self, request: BindingRequest) -> BindingResponse:
        topic = request.metadata.get("topic") or self._topic
        if not topic:
            raise InvalidArgument("metadata.topic", "required: neither the request nor the component names one")
        try:
            await self._mqtt.publish(topic, request.data, {})
        except InvalidArgument as error:  # the shared client names the topic as pub/sub does; here it is metadata
            if error.field != "topic":
                raise
            raise InvalidArgument("metadata.topic", error.message.removeprefix("topic: ")) from None
        return BindingResponse()
