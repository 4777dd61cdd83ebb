"""MQTT pub/sub (MQTT 5, QoS 1), tested on Mosquitto.

Members of a consumer group share a topic through the shared subscription
``$share/{group}/{topic}``. Messages are acknowledged (PUBACK) by hand, only after the
runtime's delivery returns; a message that fails is offered again in the runtime. MQTT
has no negative acknowledgement: what is unacknowledged when the connection drops is
redelivered when the same session resumes, which needs a stable ``clientID`` and a
``sessionExpiryInSeconds`` longer than the outage. paho-mqtt runs its network loop in
its own thread; callbacks hop onto the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, Health, MetadataField
from layotto.server.components.pubsub import BrokerMessage, Deliver, PubSub, Subscription
from layotto.server.components.pubsub.wire import check_topic, is_control, pack_metadata, unpack_metadata
from layotto.server.errors import BackendError, BackendUnavailable, InvalidArgument
from layotto.tracing import backend_span

log = logging.getLogger(__name__)
MAX_STRING_BYTES = 65_535  # an MQTT UTF-8 string


def unwanted(char: str) -> bool:
    """Characters an MQTT broker refuses in a UTF-8 string by dropping the connection
    (control characters and Unicode non-characters, as Mosquitto checks them)."""
    code = ord(char)
    return is_control(char) or 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def check_mqtt_topic(topic: str) -> None:
    """Refuse (InvalidArgument ``topic``) what MQTT cannot publish to as a literal topic name."""
    check_topic(topic, "MQTT", unwanted=unwanted, wildcards="+#", max_bytes=MAX_STRING_BYTES, reserved_prefix="$")


def check_mqtt_filter(topic: str) -> None:
    """Refuse (InvalidArgument ``topic``) what is not an MQTT topic filter: '+' and '#' are
    wildcards only when they fill a whole level, and '#' only the last one."""
    check_topic(topic, "MQTT", unwanted=unwanted, max_bytes=MAX_STRING_BYTES, reserved_prefix="$")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and (level != "#" or i != len(levels) - 1)):
            raise InvalidArgument(
                "topic", f"level {level!r}: '+' and '#' must fill a whole topic level, and '#' be the last one"
            )


def carries(key: str, value: str) -> bool:
    """Whether an MQTT user property carries the entry as it is."""
    return not any(unwanted(char) for char in key + value)


def share_name(group: str) -> str:
    """The consumer group as a share name (no '/', '+' or '#'; distinct groups stay distinct)."""
    return urllib.parse.quote(group, safe="") if any(not c.isalnum() and c not in "-_." for c in group) else group


def subscription_id(topic_filter: str) -> int:
    """The same MQTT 5 subscription identifier for a filter in every runtime process, so
    messages a resumed session redelivers find their subscription again."""
    return int.from_bytes(hashlib.sha256(topic_filter.encode()).digest()[:4]) % 268_435_455 + 1


@dataclass
class _Route:
    id: int  # the MQTT 5 subscription identifier: incoming messages name the subscription they matched
    topic: str
    filter: str
    deliver: Deliver
    # each message with the connection it came on (its packet id means nothing on another one)
    queue: asyncio.Queue[tuple[mqtt.MQTTMessage, int]] = field(default_factory=asyncio.Queue)


class MqttPubSub(PubSub):
    spec = ComponentSpec(
        type="mqtt",
        building_block="pubsub",
        description="MQTT 5 at QoS 1 (Mosquitto): shared subscriptions per app, manual acknowledgement. "
        "Redelivery after a runtime restart needs a stable clientID and a session expiry. A dropped connection "
        "is made again and its subscriptions renewed. Subscriptions may use MQTT wildcards (a/+/c, a/#): each "
        "message is delivered with the topic it was published to. Publishing refuses wildcards; topics with "
        "control characters, a leading $ or more than 65535 bytes are refused; metadata of any content is "
        "carried exactly (up to 64 KiB).",
        features=frozenset({Feature.ORDERED, Feature.WILDCARD_TOPICS}),
        metadata=(
            MetadataField("url", "Broker address: tcp://HOST:PORT or ssl://HOST:PORT.", default="tcp://127.0.0.1:1883"),
            MetadataField("username", "User name.", default=""),
            MetadataField("password", "Password.", default="", secret=True),
            MetadataField("clientID", "MQTT client id (default: random per runtime).", default=""),
            MetadataField(
                "sessionExpiryInSeconds",
                "How long the broker keeps the session after a disconnect (0: it ends with the connection).",
                type=int,
                default=0,
                minimum=0,
                maximum=4_294_967_295,  # MQTT 5's four-byte interval
            ),
            MetadataField("keepAliveInSeconds", "MQTT keep-alive.", type=int, default=30, minimum=1, maximum=65535),
            MetadataField(
                "timeoutInSeconds", "Connect and publish timeout.", type=float, default=5.0, minimum=0.1, maximum=3600
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._routes: dict[int, _Route] = {}
        self._unrouted: dict[
            int, list[tuple[mqtt.MQTTMessage, int]]
        ] = {}  # resumed-session messages before their route
        self._published: dict[int, asyncio.Future[None]] = {}
        # set once a connection has renewed every subscription, so a publish never overtakes them
        self._renewed = threading.Event()
        self._connection = 0  # counts connections (paho's thread writes it)
        self._subscribing: dict[int, tuple[int, asyncio.Future[None] | None]] = {}  # SUBSCRIBE mid -> route
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False  # close() disconnects: that disconnect is not a lost connection

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout = float(metadata["timeoutInSeconds"])
        scheme, _, address = str(metadata["url"]).rpartition("://")
        host, _, port = address.rpartition(":")
        client_id = str(metadata["clientID"]) or f"{context.app_id}-{uuid.uuid4().hex[:12]}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True)
        if metadata["username"]:
            client.username_pw_set(str(metadata["username"]), str(metadata["password"]) or None)
        if scheme in ("ssl", "tls", "mqtts"):
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect_properties.SessionExpiryInterval = int(metadata["sessionExpiryInSeconds"] or 0)
        self._client = client
        try:
            await asyncio.to_thread(
                client.connect,
                host or "127.0.0.1",
                int(port or 1883),
                keepalive=int(metadata["keepAliveInSeconds"]),
                clean_start=not metadata["clientID"],  # a named client resumes its session
                properties=connect_properties,
            )
        except OSError as error:
            raise BackendUnavailable(self.name, f"cannot connect to {metadata['url']}: {error}") from error
        client.loop_start()
        await asyncio.to_thread(self._renewed.wait, self._timeout)  # the CONNACK, usually at once

    async def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            self._closing = True
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)

    async def connection_health(self) -> Health:
        if not (self._client.is_connected() and self._renewed.is_set()):
            return Health(up=False, details={"error": "not connected to the MQTT broker"})
        return Health(up=True)

    # -- paho's thread -------------------------------------------------------------------------

    def _call_soon(self, callback: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connection += 1
        for route in list(self._routes.values()):  # a new session forgets subscriptions
            self._subscribe_route(route, None)
        self._renewed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._renewed.clear()
        if self._closing:
            log.debug("pubsub %r: MQTT disconnected (closing the component)", self.name)
            return
        log.warning("pubsub %r: MQTT connection lost (%s); reconnecting", self.name, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._call_soon(self._dispatch, message, self._connection)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        self._call_soon(self._subscribe_answered, mid, list(reasons))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self._call_soon(self._published_ack, mid, reason)

    # -- the event loop ----------------------------------------------------------------------

    def _published_ack(self, mid: int, reason: Any) -> None:
        future = self._published.pop(mid, None)
        if future is not None and not future.done():
            if getattr(reason, "is_failure", False):
                future.set_exception(BackendError(self.name, f"publish refused: {reason}"))
            else:
                future.set_result(None)

    def _subscribe_answered(self, mid: int, reasons: list[Any]) -> None:
        """A SUBACK: a refused subscription fails its subscribe() or, when renewed after a
        reconnect, is reported as a fault (never silently deaf)."""
        route_id, future = self._subscribing.pop(mid, (0, None))
        refusal = next((r for r in reasons if getattr(r, "is_failure", False)), None)
        route = self._routes.get(route_id)
        where = f"{route.filter}" if route is not None else f"subscription {route_id}"
        if refusal is not None:
            if future is not None and not future.done():
                future.set_exception(BackendError(self.name, f"the broker refused the subscription: {refusal}"))
            else:
                self.fault(where, f"the broker refused the subscription again: {refusal}")
        else:
            if future is not None and not future.done():
                future.set_result(None)
            self.repaired(where)

    def _dispatch(self, message: mqtt.MQTTMessage, connection: int) -> None:
        ids = getattr(message.properties, "SubscriptionIdentifier", None) or []
        route = next((self._routes[i] for i in ids if i in self._routes), None)
        if route is not None:
            route.queue.put_nowait((message, connection))
        elif ids:  # a resumed session redelivers before the app subscribes again: held for its route
            self._unrouted.setdefault(ids[0], []).append((message, connection))

    async def _consume(self, route: _Route) -> None:
        while True:
            await self._handle(route, *await route.queue.get())

    async def _handle(self, route: _Route, message: mqtt.MQTTMessage, connection: int) -> None:
        user = getattr(message.properties, "UserProperty", None) or []
        broker_message = BrokerMessage(message.topic, bytes(message.payload), unpack_metadata(user), str(message.mid))
        while True:
            try:
                await route.deliver(broker_message)
                break
            except asyncio.CancelledError:
                raise  # not acknowledged: redelivered when the session resumes
            except Exception:
                log.debug("message %s on %s not delivered; offering it again", message.mid, route.topic)
                await asyncio.sleep(1.0)
        if connection == self._connection:
            self._client.ack(message.mid, message.qos)
        else:  # its packet id may name another message now; a resumed session sends it again
            log.debug("message %s on %s came on an earlier connection: not acknowledged", message.mid, route.topic)

    def _subscribe_route(self, route: _Route, answered: asyncio.Future[None] | None) -> MQTTErrorCode:
        """Send SUBSCRIBE; its SUBACK settles ``answered`` (or reports a renewal that failed)."""
        properties = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
        properties.SubscriptionIdentifier = route.id
        result, mid = self._client.subscribe(route.filter, qos=1, properties=properties)
        if mid is not None:
            self._subscribing[mid] = (route.id, answered)
        return result

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        check_mqtt_topic(topic)
        metadata = pack_metadata(metadata, carries, limit=MAX_STRING_BYTES)
        with backend_span("mqtt", "publish", statement=topic):
            await self._publish(topic, data, metadata)

    async def _publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        if not (self._client.is_connected() and self._renewed.is_set()):
            raise BackendUnavailable(self.name, "not connected to the MQTT broker")
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if metadata:
            properties.UserProperty = list(metadata.items())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # the PUBACK is reported through the event loop, so it cannot overtake this registration
        info = self._client.publish(topic, data, qos=1, properties=properties)
        self._published[info.mid] = future
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._published.pop(info.mid, None)
            raise BackendUnavailable(self.name, mqtt.error_string(info.rc))
        try:
            await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            self._published.pop(info.mid, None)
            raise BackendUnavailable(self.name, f"no PUBACK within {self._timeout}s") from None

    async def subscribe(self, topic: str, group: str, deliver: Deliver) -> Subscription:
        check_mqtt_filter(topic)
        shared = f"$share/{share_name(group)}/{topic}"
        route = _Route(subscription_id(shared), topic, shared, deliver)
        self._routes[route.id] = route
        for message in self._unrouted.pop(route.id, []):
            route.queue.put_nowait(message)
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        result = self._subscribe_route(route, answered)
        try:
            if result == mqtt.MQTT_ERR_NO_CONN:
                pass  # renewed with the others when the connection is back
            elif result != mqtt.MQTT_ERR_SUCCESS:
                raise BackendUnavailable(self.name, mqtt.error_string(result))
            else:
                await asyncio.wait_for(answered, self._timeout)  # live on the broker before it is reported so
        except TimeoutError:
            del self._routes[route.id]
            raise BackendUnavailable(self.name, f"no SUBACK within {self._timeout}s") from None
        except BaseException:
            del self._routes[route.id]
            raise

        async def stop() -> None:
            self._routes.pop(route.id, None)
            self.repaired(route.filter)
            with contextlib.suppress(Exception):
                self._client.unsubscribe(route.filter)

        return Subscription([asyncio.create_task(self._consume(route))], on_close=stop)
