"""client.bindings against an in-process runtime with an http output binding aimed at a real
aiohttp server on loopback."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from layotto.client import BackendError, BindingResult, InvalidArgument, RuntimeClient, StoreNotFound
from layotto.client.testing import MockTransport, test_runtime
from layotto.server import embedded_defaults
from layotto.server.config import ComponentConfig, RuntimeConfig


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        status = 503 if request.path.endswith("/down") else 201
        return web.Response(status=status, body=await request.read() + b"!", headers={"X-Method": request.method})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()


def with_http(url: str) -> RuntimeConfig:
    bindings = {"web": ComponentConfig("http", {"url": url})}
    return RuntimeConfig(components={**embedded_defaults().components, "bindings": bindings})


async def test_invoke_answers_a_frozen_result_with_data_and_metadata(url: str) -> None:
    async with test_runtime(with_http(url)) as runtime, runtime.client() as client:
        result = await client.bindings.invoke("web", "put", b"body", {"path": "items/1"})
        assert isinstance(result, BindingResult) and result.data == b"body!"
        assert result.metadata["statusCode"] == "201" and result.metadata["X-Method"] == "PUT"
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.data = b""  # type: ignore[misc]


async def test_invoke_errors_are_the_sdks(url: str) -> None:
    async with test_runtime(with_http(url)) as runtime, runtime.client() as client:
        with pytest.raises(InvalidArgument) as bad:
            await client.bindings.invoke("web", "query")
        assert "its operations: create, get, head, post, put, patch, delete, options, trace" in str(bad.value)
        with pytest.raises(StoreNotFound):
            await client.bindings.invoke("nope", "get")
        with pytest.raises(BackendError) as failed:
            await client.bindings.invoke("web", "get", metadata={"path": "down"})
        assert "received status code 503" in str(failed.value)


@pytest.mark.parametrize(
    ("data", "metadata", "field"),
    [
        (b"x", {"ttlInSeconds": 60}, "metadata['ttlInSeconds']"),
        (b"x", {"key": None}, "metadata['key']"),
        ({"id": 7}, {}, "data"),
        ("text", {}, "data"),
    ],
    ids=["int-metadata", "none-metadata", "dict-data", "str-data"],
)
async def test_what_the_wire_cannot_carry_is_invalid_argument_naming_it(
    data: Any, metadata: dict[str, Any], field: str
) -> None:
    """protobuf raised TypeError("bad argument type for built-in operation"), naming nothing."""
    transport = MockTransport(lambda method, request: None)
    async with RuntimeClient(transport=transport) as client:
        with pytest.raises(InvalidArgument) as bad:
            await client.bindings.invoke("web", "create", data, metadata)
    assert bad.value.field == field and transport.requests == []
