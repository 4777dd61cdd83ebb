"""The MySQL/MariaDB connection pool shared by the MySQL components, with error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import aiomysql
import pymysql

from layotto.server.components.base import ConfigError, Health, MetadataField
from layotto.server.errors import BackendError, BackendUnavailable
from layotto.tracing import backend_span, backends_traced, statement_operation

MYSQL_METADATA = (
    MetadataField(
        "connectionString",
        "Go-style DSN as in Dapr (user:password@tcp(host:port)/database) or a mysql:// URL.",
        required=True,
        example="layotto:layotto@tcp(127.0.0.1:3306)/layotto",
    ),
    MetadataField(
        "timeoutInSeconds",
        "Longest wait for a connection or a statement.",
        type=float,
        default=5.0,
        minimum=0.1,
        maximum=3600,
    ),
    MetadataField("maxConns", "Maximum connections in the pool.", type=int, default=16, minimum=1, maximum=1000),
    MetadataField(
        "pemPath",
        "CA certificate (PEM) that signs the server's certificate; turns on verified TLS. Without it, "
        "?tls=true in the connection string verifies against the system's CAs and ?tls=skip-verify "
        "encrypts without verifying.",
        default="",
    ),
)
_TLS_MODES = ("true", "false", "skip-verify", "preferred", "custom")
_CONNECTION_ERRORS = {2003, 2006, 2013, 2055}
_GO_DSN = re.compile(
    r"^(?P<user>[^:@]*)(?::(?P<password>[^@]*))?@tcp\((?P<host>[^:)]+)(?::(?P<port>\d+))?\)/(?P<db>[^?]*)"
)


def parse_connection_string(value: str) -> dict[str, Any]:
    """Dapr's Go DSN (user:pass@tcp(host:port)/db?tls=...) or a mysql:// URL, as aiomysql
    arguments plus ``tls`` (the DSN's tls parameter, "false" when absent)."""
    query = parse_qs(value.partition("?")[2])
    tls = (query.get("tls") or query.get("ssl") or ["false"])[0].lower()
    if tls not in _TLS_MODES:
        raise ValueError(f"tls={tls!r} is not one of {', '.join(_TLS_MODES)}")
    match = _GO_DSN.match(value)
    if match:
        return {
            "user": match["user"],
            "password": match["password"] or "",
            "host": match["host"],
            "port": int(match["port"] or 3306),
            "db": match["db"],
            "tls": tls,
        }
    url = urlparse(value)
    if url.scheme in ("mysql", "mariadb") and url.hostname:
        return {
            "user": unquote(url.username or ""),
            "password": unquote(url.password or ""),
            "host": url.hostname,
            "port": url.port or 3306,
            "db": url.path.lstrip("/"),
            "tls": tls,
        }
    raise ValueError("expected user:password@tcp(host:port)/database or mysql://user:password@host:port/database")


def tls_context(mode: str, ca_file: str) -> ssl.SSLContext | None:
    """The TLS a connection uses: verified against ``ca_file`` (or the system's CAs), encrypted
    without verification (skip-verify, preferred), or none."""
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    if mode in ("true", "custom"):
        return ssl.create_default_context()
    if mode in ("skip-verify", "preferred"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return None


class TracedCursor(aiomysql.Cursor):  # type: ignore[misc]
    """A cursor whose statements each get a backend span when tracing is on."""

    async def execute(self, query: str, args: Any = None) -> int:
        if not backends_traced():
            return int(await super().execute(query, args))
        peer, port = self.connection.host, self.connection.port
        with backend_span("mysql", statement_operation(query), statement=query, peer=peer, port=port):
            return int(await super().execute(query, args))


class TracedStreamCursor(TracedCursor, aiomysql.SSCursor):  # type: ignore[misc]
    """A traced cursor reading rows from the server as they are fetched (not all at execute)."""


def table_name(value: str, where: str) -> str:
    if not value.replace("_", "").isalnum():
        raise ConfigError(f"{where}: {value!r} must be letters, digits and _")
    return f"`{value}`"


#: the key column of every table keyed by strings: VARBINARY compares bytes exactly, trailing
#: spaces included (a VARCHAR with a PAD SPACE collation such as utf8mb4_bin made "k" and "k "
#: one row); 700 bytes of UTF-8, the components' declared max_key_bytes
KEY_COLUMN = "id VARBINARY(700) NOT NULL PRIMARY KEY"


async def migrate_key_column(cur: aiomysql.Cursor, table: str) -> None:
    """Bring a ``table`` created by the old schema (``id VARCHAR(700) ... utf8mb4_bin``) to
    :data:`KEY_COLUMN`. Its rows stay: the old collation kept no two keys that differ only by
    trailing spaces, and every stored key is at most 700 bytes (the declared limit)."""
    await cur.execute(
        "SELECT DATA_TYPE FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME = 'id'",
        (table.strip("`"),),
    )
    row = await cur.fetchone()
    if row is not None and str(row[0]).lower() != "varbinary":
        await cur.execute(f"ALTER TABLE {table} MODIFY id VARBINARY(700) NOT NULL")


class MysqlConnection:
    def __init__(self, component: str) -> None:
        self.component = component
        self.timeout = 5.0
        self._pool: aiomysql.Pool | None = None

    async def open(self, metadata: Mapping[str, Any], where: str) -> None:
        try:
            params = parse_connection_string(str(metadata["connectionString"]))
        except ValueError as error:
            raise ConfigError(f"{where}.connectionString: {error}") from None
        try:
            params["ssl"] = tls_context(params.pop("tls"), str(metadata["pemPath"]))
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"{where}.pemPath: cannot load {metadata['pemPath']!r}: {error}") from None
        self.timeout = float(metadata["timeoutInSeconds"])
        try:
            self._pool = await asyncio.wait_for(
                aiomysql.create_pool(
                    minsize=1,
                    maxsize=int(metadata["maxConns"]),
                    autocommit=True,
                    connect_timeout=self.timeout,
                    pool_recycle=300,
                    **params,
                ),
                self.timeout,
            )
        except (TimeoutError, pymysql.err.OperationalError, OSError) as error:
            cause = f" ({error.__cause__})" if error.__cause__ is not None else ""  # e.g. a TLS failure
            raise BackendUnavailable(self.component, f"cannot connect: {error}{cause}") from error

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()

    @contextlib.asynccontextmanager
    async def cursor(self, transaction: bool = False, streaming: bool = False) -> AsyncIterator[aiomysql.Cursor]:
        assert self._pool is not None, "open() first"
        try:
            conn = await asyncio.wait_for(self._pool.acquire(), self.timeout)
        except (TimeoutError, pymysql.err.OperationalError, OSError) as error:
            raise BackendUnavailable(self.component, f"no connection within {self.timeout}s: {error}") from error
        try:
            async with conn.cursor(TracedStreamCursor if streaming else TracedCursor) as cur:
                if transaction:
                    await conn.begin()
                try:
                    yield cur
                    if transaction:
                        await conn.commit()
                except BaseException:
                    if transaction:
                        with contextlib.suppress(Exception):
                            await conn.rollback()
                    raise
        except pymysql.err.OperationalError as error:
            conn.close()  # the connection may be broken: never hand it out again
            if error.args and error.args[0] in _CONNECTION_ERRORS:
                raise BackendUnavailable(self.component, str(error)) from error
            raise BackendError(self.component, str(error)) from error
        except pymysql.err.MySQLError as error:
            if isinstance(error, pymysql.err.IntegrityError):
                raise
            raise BackendError(self.component, str(error)) from error
        finally:
            self._pool.release(conn)

    async def health(self) -> Health:
        try:
            async with self.cursor() as cur:
                await cur.execute("SELECT 1")
        except (BackendUnavailable, BackendError) as error:
            return Health(up=False, details={"error": error.message})
        return Health(up=True)
