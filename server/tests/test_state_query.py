"""Dapr's state query: the stores that answer it (in-memory, SQLite, PostgreSQL) agree with the
reference semantics on one data set, the query is checked once (errors name the field), and both
fronts (HTTP ``/v1.0-alpha1/state/{store}/query``, gRPC ``QueryStateAlpha1``) serve it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import backends
import grpc
import pytest
from test_state_stores import make_store

from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, state_pb2
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.state import SetRequest, StateEntry, StateStore
from layotto.server.components.state.query import Query, evaluate
from layotto.server.config import ComponentConfig
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.state_query import parse_query

QUERY_STORES = ("in-memory", "sqlite", "postgresql")
DOCUMENTS: dict[str, Any] = {
    "a": {"state": "CA", "person": {"org": "Dev", "id": 3}, "n": 1},
    "b": {"state": "WA", "person": {"org": "Ops", "id": 1}, "n": 1.0},
    "c": {"state": "CA", "person": {"org": "Ops", "id": 2}, "n": "1"},
    "d": {"state": "NY", "person": {"org": "Dev"}, "n": True},
    "e": {"state": "CA", "person": {"org": "Été", "id": 2.5}, "n": [1]},
    "f": {"state": None, "person": "solo", "n": {"x": 1}},
    "g": ["not", "an", "object"],
    "h": "zz",
}
RAW = {"x-not-json": b"\xff\xfe{", "y-text": b"plain text"}


def parsed(raw: dict[str, Any]) -> Query:
    return parse_query(raw, "query")


QUERIES: list[tuple[dict[str, Any], list[str]]] = [
    ({}, ["a", "b", "c", "d", "e", "f", "g", "h"]),
    ({"filter": {"EQ": {"state": "CA"}}}, ["a", "c", "e"]),
    ({"filter": {"EQ": {"n": 1}}}, ["a", "b"]),  # 1 == 1.0, not "1" nor true
    ({"filter": {"EQ": {"n": True}}}, ["d"]),
    ({"filter": {"EQ": {"n": "1"}}}, ["c"]),
    ({"filter": {"IN": {"person.org": ["Ops", "Été"]}}}, ["b", "c", "e"]),
    ({"filter": {"AND": [{"EQ": {"state": "CA"}}, {"EQ": {"person.org": "Ops"}}]}}, ["c"]),
    ({"filter": {"OR": [{"EQ": {"person.id": 1}}, {"EQ": {"state": "NY"}}]}}, ["b", "d"]),
    ({"filter": {"EQ": {"person.missing": "x"}}}, []),
    ({"sort": [{"key": "person.id"}]}, ["d", "f", "g", "h", "b", "c", "e", "a"]),
    ({"sort": [{"key": "person.id", "order": "DESC"}]}, ["a", "e", "c", "b", "d", "f", "g", "h"]),
    (
        {"sort": [{"key": "person.org"}, {"key": "person.id", "order": "DESC"}]},
        ["f", "g", "h", "a", "d", "c", "b", "e"],
    ),
    ({"sort": [{"key": "n"}]}, ["g", "h", "c", "a", "b", "d", "e", "f"]),
    ({"filter": {"EQ": {"state": "CA"}}, "sort": [{"key": "person.org", "order": "DESC"}]}, ["e", "c", "a"]),
]


@pytest.fixture(params=QUERY_STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param == "postgresql":
        backends.require("postgresql")
    s = await make_store(request.param, tmp_path, **backends.state_metadata(request.param, uuid.uuid4().hex[:12]))
    for key, document in DOCUMENTS.items():
        await s.set(SetRequest(key, json.dumps(document).encode()))
    for key, value in RAW.items():
        await s.set(SetRequest(key, value))
    yield s
    await s.close()


async def all_entries(store: StateStore) -> list[StateEntry]:
    entries = await store.bulk_get([*DOCUMENTS, *RAW])
    return [e for e in entries if isinstance(e, StateEntry)]


@pytest.mark.parametrize(("raw", "expected"), QUERIES, ids=[json.dumps(q)[:60] for q, _ in QUERIES])
async def test_store_answers_as_the_reference(store: StateStore, raw: dict[str, Any], expected: list[str]) -> None:
    query = parsed(raw)
    result = await store.query(query)
    assert [e.key for e in result.entries] == expected
    assert result.token == ""
    assert result.entries == evaluate(await all_entries(store), query).entries  # keys, values, etags


async def test_pages_walk_every_entry_once(store: StateStore) -> None:
    raw: dict[str, Any] = {"filter": {"OR": [{"EQ": {"state": "CA"}}, {"EQ": {"state": "WA"}}]}, "page": {"limit": 2}}
    raw["sort"] = [{"key": "person.id", "order": "DESC"}]
    seen: list[str] = []
    for _ in range(5):
        result = await store.query(parsed(raw))
        seen += [e.key for e in result.entries]
        if not result.token:
            break
        raw["page"]["token"] = result.token
    assert seen == ["a", "e", "c", "b"]
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ([], "query"),
        ({"filter": {"EQ": {"a": 1}, "IN": {"b": [1]}}}, "query.filter"),
        ({"filter": {"LIKE": {"a": "x"}}}, "query.filter"),
        ({"filter": {"EQ": {"a": {"b": 1}}}}, "query.filter.EQ.a"),
        ({"filter": {"EQ": {"a..b": 1}}}, "query.filter.EQ"),
        ({"filter": {"IN": {"a": []}}}, "query.filter.IN.a"),
        ({"filter": {"AND": [{"EQ": {"a": 1}}, {"IN": {"b": [1, None]}}]}}, "query.filter.AND[1].IN.b[1]"),
        ({"filter": {"OR": [{"EQ": {"a": 1}}]}}, "query.filter.OR"),
        ({"sort": [{"key": "a", "order": "UP"}]}, "query.sort[0].order"),
        ({"sort": [{"order": "ASC"}]}, "query.sort[0].key"),
        ({"page": {"limit": -1}}, "query.page.limit"),
        ({"page": {"limit": 2, "token": "abc"}}, "query.page.token"),
        ({"pages": {}}, "query.pages"),
    ],
)
def test_bad_queries_name_the_field(raw: Any, field: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        parse_query(raw, "query")
    assert error.value.field == field


def test_deep_filters_are_refused() -> None:
    deep: Any = {"EQ": {"a": 1}}
    for _ in range(40):
        deep = {"AND": [deep, {"EQ": {"b": 2}}]}
    with pytest.raises(InvalidArgument, match="nests deeper"):
        parse_query({"filter": deep})


# -- both fronts, through a runtime ----------------------------------------------------------


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    backends.require("postgresql")
    backends.require("redis")
    namespace = uuid.uuid4().hex[:12]
    state = {name: ComponentConfig(name, backends.state_metadata(name, namespace)) for name in (*QUERY_STORES, "redis")}
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", data_dir=str(tmp_path), components={"state": state}
    )
    async with Runtime(config) as rt:
        for name in QUERY_STORES:
            await rt.services.state.write(
                name, [SetRequest(k, json.dumps(v).encode()) for k, v in DOCUMENTS.items()], list(DOCUMENTS)
            )
        yield rt


QUERY = {"filter": {"EQ": {"state": "CA"}}, "sort": [{"key": "person.id"}], "page": {"limit": 2}}


@pytest.mark.parametrize("name", QUERY_STORES)
async def test_http_and_grpc_answer_the_same_pages(runtime: Runtime, name: str) -> None:
    url = f"http://127.0.0.1:{runtime.http_port}/v1.0-alpha1/state/{name}/query"
    async with aiohttp.ClientSession() as http, grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as ch:
        async with http.post(url, json=QUERY) as response:
            assert response.status == 200
            first = await response.json()
        assert [(r["key"], r["data"]) for r in first["results"]] == [("c", DOCUMENTS["c"]), ("e", DOCUMENTS["e"])]
        assert first["token"] == "2" and all(r["etag"] for r in first["results"])
        async with http.post(url, json={**QUERY, "page": {"limit": 2, "token": "2"}}) as response:
            assert [r["key"] for r in (await response.json())["results"]] == ["a"]
        dapr = dapr_pb2_grpc.DaprStub(ch)
        answer = await dapr.QueryStateAlpha1(state_pb2.QueryStateRequest(store_name=name, query=json.dumps(QUERY)))
        assert [(i.key, json.loads(i.data)) for i in answer.results] == [("c", DOCUMENTS["c"]), ("e", DOCUMENTS["e"])]
        assert answer.token == "2"


async def test_errors_over_both_fronts(runtime: Runtime) -> None:
    base = f"http://127.0.0.1:{runtime.http_port}/v1.0-alpha1/state"
    async with aiohttp.ClientSession() as http, grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as ch:
        async with http.post(f"{base}/redis/query", json=QUERY) as response:
            body = await response.json()
            assert (response.status, body["errorCode"]) == (501, "ERR_STATE_STORE_NOT_SUPPORTED")
            assert body["message"] == "component 'redis' does not support queries"
        async with http.post(f"{base}/sqlite/query", json={"filter": {"IN": {"state": "CA"}}}) as response:
            body = await response.json()
            assert (response.status, body["errorCode"]) == (400, "ERR_MALFORMED_REQUEST")
            assert body["message"].startswith("body.filter.IN.state: must be a non-empty array")
        deep = '{"filter": ' + "[" * 100_000 + "]" * 100_000 + "}"  # nested past the decoder's recursion limit
        async with http.post(f"{base}/sqlite/query", data=deep, headers={"Content-Type": "application/json"}) as r:
            body = await r.json()
            assert (r.status, body["errorCode"]) == (400, "ERR_MALFORMED_REQUEST")
            assert body["message"].startswith("body: is not valid JSON")
        dapr = dapr_pb2_grpc.DaprStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await dapr.QueryStateAlpha1(state_pb2.QueryStateRequest(store_name="redis", query="{}"))
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await dapr.QueryStateAlpha1(state_pb2.QueryStateRequest(store_name="in-memory", query="{oops"))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (error.value.details() or "").startswith("query: is not JSON")
