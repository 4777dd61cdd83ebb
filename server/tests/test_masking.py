"""Secrets never shown: --print-config, config errors and log lines mask passwords."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from layotto.server.cli import main
from layotto.server.components.base import MetadataField
from layotto.server.components.registry import BUILDING_BLOCKS, registry_for
from layotto.server.masking import MASK, MaskingFormatter, is_secret_key, mask_text

CONFIG = """
state:
  cache: {type: redis, metadata: {redisHost: "127.0.0.1:6379", redisPassword: "pw-redis"}}
  orders: {type: postgresql, metadata: {connectionString: "host=db user=app password=pw-libpq dbname=app"}}
  quoted: {type: postgresql, metadata: {connectionString: "host=db user=app password='pw libpq quoted' dbname=app"}}
  users: {type: postgresql, metadata: {connectionString: "postgresql://app:pw-pgurl@db:5432/app?sslmode=disable"}}
  carts: {type: mysql, metadata: {connectionString: "app:pw-go@dsn@tcp(db:3306)/app?tls=false"}}
  items: {type: mysql, metadata: {connectionString: "mysql://app:pw-myurl@db:3306/app"}}
pubsub:
  rabbit: {type: rabbitmq, metadata: {connectionString: "amqp://guest:pw-amqp@rabbit:5672/"}}
  nats: {type: nats, metadata: {natsURL: "nats://app:pw-natsurl@nats:4222", token: "pw-token"}}
  mqtt: {type: mqtt, metadata: {url: "tcp://mqtt:1883", password: "pw-mqtt"}}
lock:
  zk: {type: zookeeper, metadata: {zookeeperHosts: "zk:2181", zookeeperPassword: "app:pw-zk"}}
"""


def test_print_config_masks_every_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "runtime.yaml"
    config.write_text(CONFIG)
    assert main(["serve", "-c", str(config), "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "pw-" not in out and "pw libpq" not in out, out
    printed = json.loads(out)
    assert printed["state"]["cache"]["metadata"]["redisPassword"] == MASK
    assert printed["state"]["orders"]["metadata"]["connectionString"] == f"host=db user=app password={MASK} dbname=app"
    assert (
        printed["state"]["users"]["metadata"]["connectionString"]
        == f"postgresql://app:{MASK}@db:5432/app?sslmode=disable"
    )
    assert printed["state"]["carts"]["metadata"]["connectionString"] == f"app:{MASK}@tcp(db:3306)/app?tls=false"
    assert printed["pubsub"]["rabbit"]["metadata"]["connectionString"] == f"amqp://guest:{MASK}@rabbit:5672/"
    assert printed["pubsub"]["nats"]["metadata"]["token"] == MASK
    assert printed["lock"]["zk"]["metadata"]["zookeeperHosts"] == "zk:2181"  # what is not secret stays


def test_a_config_error_echoing_a_value_masks_its_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--app-callback", "http://app:pw-callback@host", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "--app-callback: expected HOST:PORT" in err
    assert "pw-callback" not in err and f"http://app:{MASK}@host" in err


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("connect amqp://u:secret@h:5672/ failed", f"connect amqp://u:{MASK}@h:5672/ failed"),
        ("dsn 'u:p@ss@tcp(h:3306)/db'", f"dsn 'u:{MASK}@tcp(h:3306)/db'"),
        ('host=h password="a b" port=1', f"host=h password={MASK} port=1"),
        ("https://h/x?user=u&password=p&x=1", f"https://h/x?user=u&password={MASK}&x=1"),
        ("PASSWORD = p", f"PASSWORD = {MASK}"),
        ("no secret at 127.0.0.1:6379 or in http://h:80/x", "no secret at 127.0.0.1:6379 or in http://h:80/x"),
    ],
)
def test_mask_text(text: str, shown: str) -> None:
    assert mask_text(text) == shown


def test_log_lines_and_tracebacks_are_masked() -> None:
    try:
        raise ConnectionError("cannot reach amqp://guest:pw-traceback@rabbit/")
    except ConnectionError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "dsn %s", ("u:pw-arg@tcp(h)/d",), sys.exc_info())
    line = MaskingFormatter("%(message)s").format(record)
    assert "pw-" not in line and "Traceback" in line


def test_every_secret_metadata_field_is_named_as_one() -> None:
    """The spec's ``secret=True`` and the name rule that masks values agree, both ways."""
    fields: list[MetadataField] = []
    for block in BUILDING_BLOCKS:
        registry = registry_for(block)
        fields += [f for t in registry.types() for f in registry.spec(t).metadata]
    assert any(f.secret for f in fields)
    assert [f.name for f in fields if f.secret != is_secret_key(f.name)] == []


TLS_AND_AUTH = """
pubsub:
  mqtt:
    type: mqtt
    metadata:
      url: "tcp://mqtt:1883"
      tlsKey: "-----BEGIN PRIVATE KEY-----\\nMIIEpw-pem-body\\n-----END PRIVATE KEY-----"
      auth: "pw-auth"
      pass: "pw-pass"
      privateKeyFile: "/etc/pw-private.pem"
      keyPrefix: "orders"
      secretStore: "vault"
"""


def test_print_config_masks_keys_auth_and_pass_but_not_key_prefixes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "runtime.yaml"
    config.write_text(TLS_AND_AUTH)
    assert main(["serve", "-c", str(config), "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "pw-" not in out and "PRIVATE KEY" not in out, out
    metadata = json.loads(out)["pubsub"]["mqtt"]["metadata"]
    assert metadata["tlsKey"] == metadata["auth"] == metadata["pass"] == metadata["privateKeyFile"] == MASK
    assert metadata["keyPrefix"] == "orders" and metadata["secretStore"] == "vault"  # names, not secrets


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("tlsKey", True),
        ("auth", True),
        ("pass", True),
        ("sessionToken", True),
        ("privateKeyFile", True),
        ("TLS_KEY", True),
        ("clientCredentials", True),
        ("keyPrefix", False),
        ("workerKeyPrefix", False),
        ("listKey", False),
        ("routingKey", False),
        ("secretStore", False),
        ("tlsCert", False),
        ("redisUsername", False),
    ],
)
def test_is_secret_key(name: str, secret: bool) -> None:
    assert is_secret_key(name) is secret
