"""Where the tests find the real backends (scripts/backends starts them).

Each backend's address comes from an environment variable with a loopback default.
An unreachable backend skips its tests with the reason, unless LAYOTTO_REQUIRE_BACKENDS=1
(as in CI), where it fails them.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

import pytest

ENV = {
    "redis": ("LAYOTTO_TEST_REDIS", "127.0.0.1:6379"),
    "postgresql": ("LAYOTTO_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=layotto password=layotto dbname=layotto"),
    "mysql": ("LAYOTTO_TEST_MYSQL", "layotto:layotto@tcp(127.0.0.1:3306)/layotto"),
    "etcd": ("LAYOTTO_TEST_ETCD", "127.0.0.1:2379"),
    "zookeeper": ("LAYOTTO_TEST_ZOOKEEPER", "127.0.0.1:2181"),
    "nats": ("LAYOTTO_TEST_NATS", "nats://127.0.0.1:4222"),
    "rabbitmq": ("LAYOTTO_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/"),
    "mqtt": ("LAYOTTO_TEST_MQTT", "tcp://127.0.0.1:1883"),
    "dns": ("LAYOTTO_TEST_DNS", "127.0.0.1:5353"),  # dnsmasq, serving the zone layotto.test
    "smtp": ("LAYOTTO_TEST_SMTP", "127.0.0.1:2525"),  # aiosmtpd (smtp_server.py), STARTTLS, AUTH layotto/layotto
    "s3": ("LAYOTTO_TEST_S3", "http://127.0.0.1:9000"),  # moto's S3 server: any access key and secret
}
_BACKENDS_DIR = os.environ.get("LAYOTTO_BACKENDS_DIR", "/tmp/layotto-backends")
#: the maildir where the shared SMTP server stores every message it accepts, and its self-signed certificate
SMTP_MAILDIR = os.environ.get("LAYOTTO_TEST_SMTP_MAILDIR", os.path.join(_BACKENDS_DIR, "smtp", "maildir"))
SMTP_CA = os.environ.get("LAYOTTO_TEST_SMTP_CA", os.path.join(_BACKENDS_DIR, "smtp", "cert.pem"))
#: the CA (here: the self-signed certificate) of the TLS-enabled MariaDB that scripts/backends starts
MYSQL_CA = os.environ.get(
    "LAYOTTO_TEST_MYSQL_CA",
    os.path.join(os.environ.get("LAYOTTO_BACKENDS_DIR", "/tmp/layotto-backends"), "mariadb-tls", "cert.pem"),
)


def mysql_ca_present() -> bool:
    return os.path.exists(MYSQL_CA)


REAL_STATE_STORES = ("redis", "postgresql", "mysql", "etcd")
REAL_LOCK_STORES = ("redis", "etcd", "postgresql", "zookeeper")
REAL_SEQUENCERS = ("redis", "etcd", "postgresql", "mysql", "zookeeper")
REAL_BROKERS = ("redis", "nats", "rabbitmq", "mqtt")


def pubsub_metadata(broker: str, **extra: str) -> dict[str, str]:
    """Component metadata pointing a pubsub component at the test broker (quick redelivery)."""
    if broker == "redis":
        base = {"redisHost": address("redis"), "redeliverIntervalInSeconds": "0.5", "processingTimeoutInSeconds": "1"}
    elif broker == "nats":
        base = {"natsURL": address("nats"), "ackWaitInSeconds": "2"}
    elif broker == "rabbitmq":
        base = {"connectionString": address("rabbitmq")}
    elif broker == "mqtt":
        base = {"url": address("mqtt")}
    else:
        base = {}
    return {**base, **extra}


def address(backend: str) -> str:
    variable, default = ENV[backend]
    return os.environ.get(variable, default)


def _host_port(backend: str) -> tuple[str, int]:
    value = address(backend)
    if backend == "postgresql":
        host = re.search(r"host=(\S+)", value)
        port = re.search(r"port=(\d+)", value)
        return (host.group(1) if host else "127.0.0.1", int(port.group(1)) if port else 5432)
    if backend == "mysql":
        match = re.search(r"tcp\(([^:]+):(\d+)\)", value)
        return (match.group(1), int(match.group(2))) if match else ("127.0.0.1", 3306)
    if backend == "rabbitmq":
        match = re.search(r"@([^:/]+):(\d+)", value)
        return (match.group(1), int(match.group(2))) if match else ("127.0.0.1", 5672)
    host, _, port = value.split("://")[-1].rstrip("/").rpartition(":")
    return host, int(port)


def reachable(backend: str) -> bool:
    try:
        with socket.create_connection(_host_port(backend), timeout=2):
            return True
    except OSError:
        return False


def require(backend: str) -> None:
    """Skip (or, with LAYOTTO_REQUIRE_BACKENDS=1, fail) when the backend is unreachable."""
    if reachable(backend):
        return
    message = f"{backend} is not reachable at {address(backend)} (start it with scripts/backends up)"
    if os.environ.get("LAYOTTO_REQUIRE_BACKENDS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_installed(what: str) -> None:
    """Skip (or, with LAYOTTO_REQUIRE_BACKENDS=1, fail) when backend servers are not installed."""
    message = f"needs {what} installed (scripts/backends up installs them)"
    if os.environ.get("LAYOTTO_REQUIRE_BACKENDS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def lock_metadata(backend: str, namespace: str) -> dict[str, str]:
    """Metadata of a lock or sequencer component on this backend, isolated under ``namespace``."""
    if backend == "redis":
        return {"redisHost": address("redis")}
    if backend == "postgresql":
        return {"connectionString": address("postgresql"), "tableName": f"locks_{namespace}"}
    if backend == "mysql":
        return {"connectionString": address("mysql"), "tableName": f"seq_{namespace}"}
    if backend == "etcd":
        return {"endpoints": address("etcd")}
    if backend == "zookeeper":
        return {"zookeeperHosts": address("zookeeper"), "basePath": f"/layotto-test/{namespace}"}
    return {}


def state_metadata(backend: str, namespace: str) -> dict[str, str]:
    """Metadata of a state component on this backend, isolated under ``namespace``."""
    if backend == "redis":
        return {"redisHost": address("redis"), "keyPrefix": f"{namespace}:"}
    if backend == "postgresql":
        return {"connectionString": address("postgresql"), "tableName": f"state_{namespace}"}
    if backend == "mysql":
        return {"connectionString": address("mysql"), "tableName": f"state_{namespace}"}
    if backend == "etcd":
        return {"endpoints": address("etcd"), "keyPrefixPath": f"/layotto-test/{namespace}"}
    return {}


def s3_client() -> Any:
    """An aiobotocore S3 client of the test S3 server (an async context manager)."""
    from aiobotocore.session import get_session

    return get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=address("s3"),
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def s3_metadata(bucket: str) -> dict[str, str]:
    """Metadata of an s3 file store or binding on ``bucket`` of the test S3 server (5 MiB parts, 64 KiB chunks)."""
    return {
        "bucket": bucket,
        "endpoint": address("s3"),
        "accessKey": "test",
        "secretKey": "test",
        "forcePathStyle": "true",
        "partSize": str(5 * 1024 * 1024),
        "chunkSize": str(64 * 1024),
    }
