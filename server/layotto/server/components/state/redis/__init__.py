"""Redis state store: a hash per key (fields ``data`` and ``version``, as Dapr's redis
state store lays them out), etags from one global counter so an etag is never reused,
compare-and-set and transactions in Lua, TTL by native key expiry."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis.exceptions import ResponseError

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, Limits, MetadataField
from layotto.server.components.redis_client import REDIS_METADATA, RedisConnection
from layotto.server.components.state import (
    DeleteRequest,
    StateEntry,
    StateStore,
    WriteRequest,
    parse_etag,
)
from layotto.server.errors import BackendError, EtagMismatch, LayottoError

# ARGV per operation: kind ("set"/"del"), value, etag ("" for none), first_write ("1"/"0"), ttl_ms ("0" for none).
# KEYS: the operations' keys, then the etag counter. Every check runs before any write,
# against the state the earlier operations leave, so a transaction is all or nothing.
_WRITE_SCRIPT = """
local n = #KEYS - 1
local seq = KEYS[#KEYS]
local after = {}
for i = 1, n do
  local key, base = KEYS[i], (i - 1) * 5
  local kind, etag, first = ARGV[base + 1], ARGV[base + 3], ARGV[base + 4]
  local current = after[key]
  if current == nil then current = redis.call('HGET', key, 'version') or false end
  if etag ~= '' then
    if current == false or current == 'new' or current ~= etag then return redis.error_reply('ETAG_MISMATCH ' .. i) end
  elseif first == '1' and kind == 'set' and current ~= false then
    return redis.error_reply('ETAG_MISMATCH ' .. i)
  end
  if kind == 'set' then after[key] = 'new' else after[key] = false end
end
for i = 1, n do
  local key, base = KEYS[i], (i - 1) * 5
  if ARGV[base + 1] == 'del' then
    redis.call('DEL', key)
  else
    local version = redis.call('INCR', seq)
    redis.call('DEL', key)
    redis.call('HSET', key, 'data', ARGV[base + 2], 'version', version)
    local ttl = tonumber(ARGV[base + 5])
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  end
end
return n
"""

_GET_SCRIPT = """
local found = redis.call('HMGET', KEYS[1], 'data', 'version')
if not found[2] then return false end
return {found[1], found[2], redis.call('PTTL', KEYS[1])}
"""


class RedisStateStore(StateStore):
    spec = ComponentSpec(
        type="redis",
        building_block="state",
        description="Keeps state in Redis (standalone): shared by every runtime that points at the same server.",
        features=frozenset({Feature.ETAG, Feature.FIRST_WRITE, Feature.TRANSACTIONAL, Feature.TTL}),
        limits=Limits(max_key_bytes=512 * 1024 * 1024, max_value_bytes=512 * 1024 * 1024),  # Redis strings
        metadata=(
            *REDIS_METADATA,
            MetadataField("keyPrefix", "Prepended to every key (namespaces several apps on one server).", default=""),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._redis = self.connect(RedisConnection(name))
        self._prefix = ""
        self._seq_key = "layotto:state-etag-seq"

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        await self._redis.open(metadata)
        self._prefix = str(metadata["keyPrefix"])
        self._seq_key = f"{self._prefix}layotto:state-etag-seq"
        self._write = self._redis.client.register_script(_WRITE_SCRIPT)
        self._get = self._redis.client.register_script(_GET_SCRIPT)

    def _argv(self, request: WriteRequest) -> list[str | bytes]:
        parse_etag(request)  # refuses malformed etags before the script runs
        if isinstance(request, DeleteRequest):
            return ["del", b"", request.etag or "", "0", "0"]
        ttl_ms = str(request.ttl_seconds * 1000) if request.ttl_seconds else "0"
        first = "1" if request.concurrency.name == "FIRST_WRITE" else "0"
        return ["set", request.value, request.etag or "", first, ttl_ms]

    async def _run_writes(self, requests: Sequence[WriteRequest]) -> None:
        keys = [self._prefix + r.key for r in requests] + [self._seq_key]
        argv: list[str | bytes] = []
        for request in requests:
            argv += self._argv(request)
        try:
            async with self._redis.errors("EVALSHA save"):
                await self._write(keys=keys, args=argv)
        except BackendError as error:
            mismatch = self._etag_mismatch(error, requests)
            if mismatch is None:
                raise
            raise mismatch from None

    @staticmethod
    def _etag_mismatch(error: BackendError, requests: Sequence[WriteRequest]) -> EtagMismatch | None:
        """EtagMismatch naming the write the script refused, when that is what ``error`` says."""
        cause = error.__cause__
        if isinstance(cause, ResponseError) and str(cause).startswith("ETAG_MISMATCH"):
            index = int(str(cause).split()[1]) - 1
            return EtagMismatch(requests[index].key)
        return None

    @staticmethod
    def _entry(key: str, found: Any) -> StateEntry | None:
        if not found:
            return None
        data, version, pttl = found
        expire_at = time.time() + int(pttl) / 1000 if int(pttl) > 0 else None
        return StateEntry(key, bytes(data), version.decode() if isinstance(version, bytes) else str(version), expire_at)

    async def get(self, key: str) -> StateEntry | None:
        async with self._redis.errors("EVALSHA get"):
            return self._entry(key, await self._get(keys=[self._prefix + key]))

    async def bulk_get(self, keys: Sequence[str]) -> list[StateEntry | LayottoError | None]:
        """All keys in one pipelined round trip."""
        async with self._redis.errors("PIPELINE get"), self._redis.client.pipeline(transaction=False) as pipe:
            for key in keys:
                await self._get(keys=[self._prefix + key], client=pipe)
            found = await pipe.execute()
        return [self._entry(key, result) for key, result in zip(keys, found, strict=True)]

    async def bulk_write(self, requests: Sequence[WriteRequest]) -> dict[str, LayottoError]:
        """Every write its own compare-and-set, all in one pipelined round trip."""
        async with self._redis.errors("PIPELINE save"), self._redis.client.pipeline(transaction=False) as pipe:
            for request in requests:
                await self._write(
                    keys=[self._prefix + request.key, self._seq_key], args=self._argv(request), client=pipe
                )
            outcomes = await pipe.execute(raise_on_error=False)
        failures: dict[str, LayottoError] = {}
        for request, outcome in zip(requests, outcomes, strict=True):
            if isinstance(outcome, ResponseError) and str(outcome).startswith("ETAG_MISMATCH"):
                failures[request.key] = EtagMismatch(request.key)
            elif isinstance(outcome, Exception):
                raise BackendError(self.name, str(outcome)) from outcome
        return failures

    async def set(self, request: WriteRequest) -> None:
        """One write (a save, or a delete: see ``delete``), :meth:`_run_writes` of one in this frame:
        every save runs it, and a Redis reply resumes each frame of the await chain."""
        argv = self._argv(request)
        try:
            async with self._redis.errors("EVALSHA save"):
                await self._write(keys=[self._prefix + request.key, self._seq_key], args=argv)
        except BackendError as error:
            mismatch = self._etag_mismatch(error, (request,))
            if mismatch is None:
                raise
            raise mismatch from None

    delete = set

    async def transact(self, requests: Sequence[WriteRequest]) -> None:
        if requests:
            await self._run_writes(requests)
