"""MySQL/MariaDB over TLS: verified against a CA file, encrypted without verification, and
refused when the server's certificate cannot be verified."""

from __future__ import annotations

import uuid
from pathlib import Path

import backends
import pytest

from layotto.server.components.base import ComponentContext
from layotto.server.components.mysql_client import MysqlConnection
from layotto.server.components.registry import registry_for
from layotto.server.components.state import SetRequest
from layotto.server.errors import BackendUnavailable


async def cipher(connection: MysqlConnection) -> str:
    async with connection.cursor() as cur:
        await cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
        row = await cur.fetchone()
    return str(row[1]) if row else ""


@pytest.mark.parametrize(
    ("query", "use_ca"),
    [("?tls=skip-verify", False), ("?tls=true", True), ("", True)],
    ids=["skip-verify", "verified", "pemPath-alone"],
)
async def test_connections_are_encrypted(tmp_path: Path, query: str, use_ca: bool) -> None:
    backends.require("mysql")
    if not backends.mysql_ca_present():
        backends.require_installed("a TLS-enabled MariaDB (scripts/backends up mariadb)")
    spec = registry_for("state").get("mysql", "state.tls").spec
    metadata = spec.parse_metadata(
        {
            "connectionString": backends.address("mysql") + query,
            "tableName": f"tls_{uuid.uuid4().hex[:8]}",
            "pemPath": backends.MYSQL_CA if use_ca else "",
        },
        "state.tls.metadata",
    )
    connection = MysqlConnection("tls")
    await connection.open(metadata, "state.tls.metadata")
    try:
        assert await cipher(connection), "the connection is not encrypted"
    finally:
        await connection.close()
    store = registry_for("state").get("mysql", "state.tls")("tls")
    store.metadata = metadata
    await store.init(metadata, ComponentContext("app", tmp_path))
    try:
        await store.set(SetRequest("k", b"over tls"))
        found = await store.get("k")
        assert found is not None and found.value == b"over tls"
    finally:
        await store.close()


async def test_an_unverifiable_server_is_refused() -> None:
    backends.require("mysql")
    spec = registry_for("state").get("mysql", "state.tls").spec
    metadata = spec.parse_metadata(
        {"connectionString": backends.address("mysql") + "?tls=true", "tableName": "unused"}, "state.tls.metadata"
    )
    connection = MysqlConnection("tls")
    with pytest.raises(BackendUnavailable) as caught:
        await connection.open(metadata, "state.tls.metadata")
    assert "certificate" in caught.value.message.lower()
