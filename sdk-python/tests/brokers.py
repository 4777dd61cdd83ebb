"""The brokers the SDK's pub/sub tests run on: in-memory and the real ones on loopback
(scripts/backends starts them; the addresses come from the same variables as the server's tests)."""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest

from layotto.server import RuntimeConfig
from layotto.server.config import ComponentConfig

BROKERS = ("in-memory", "redis", "nats", "rabbitmq", "mqtt")
_ADDRESS = {
    "redis": ("LAYOTTO_TEST_REDIS", "127.0.0.1:6379"),
    "nats": ("LAYOTTO_TEST_NATS", "nats://127.0.0.1:4222"),
    "rabbitmq": ("LAYOTTO_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/"),
    "mqtt": ("LAYOTTO_TEST_MQTT", "tcp://127.0.0.1:1883"),
}


def address(broker: str) -> str:
    variable, default = _ADDRESS[broker]
    return os.environ.get(variable, default)


def require(broker: str) -> None:
    """Skip (or, with LAYOTTO_REQUIRE_BACKENDS=1, fail) when the broker is unreachable."""
    if broker == "in-memory":
        return
    parts = urlsplit(address(broker) if "://" in address(broker) else f"tcp://{address(broker)}")
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return
    except OSError:
        message = f"{broker} is not reachable at {address(broker)} (start it with scripts/backends up)"
        if os.environ.get("LAYOTTO_REQUIRE_BACKENDS") == "1":
            pytest.fail(message)
        pytest.skip(message)


def metadata(broker: str) -> dict[str, str]:
    """Component metadata with quick redelivery, so a lost ack shows within seconds."""
    if broker == "redis":
        return {"redisHost": address(broker), "redeliverIntervalInSeconds": "0.5", "processingTimeoutInSeconds": "1"}
    if broker == "nats":
        return {"natsURL": address(broker), "ackWaitInSeconds": "2"}
    if broker == "rabbitmq":
        return {"connectionString": address(broker)}
    if broker == "mqtt":
        return {"url": address(broker)}
    return {}


#: seconds after which each broker has delivered an unacknowledged message again
REDELIVERY_SECONDS = 3.0


def config(broker: str) -> RuntimeConfig:
    """A runtime (of a fresh app id) with one pubsub component ``bus`` on ``broker``."""
    return RuntimeConfig(
        app_id=f"app-{uuid.uuid4().hex[:8]}",
        components={"pubsub": {"bus": ComponentConfig(broker, metadata(broker))}},
    )
