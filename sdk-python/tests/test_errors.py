"""The exception tree: one class per reason of the contract, and the conditions that raise
each, against the in-process runtime (sizes, scopes, a closed client)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layotto.client import (
    BackendUnavailable,
    ClientClosed,
    InvalidArgument,
    LayottoError,
    PayloadTooLarge,
    PermissionDenied,
    RuntimeClient,
    RuntimeUnavailable,
    Unauthenticated,
)
from layotto.client._errors import BY_REASON
from layotto.client.testing import test_runtime
from layotto.proto.reasons import REASONS
from layotto.server import embedded_defaults
from layotto.server.config import ComponentConfig, RuntimeConfig
from layotto.server.runtime.secret_scopes import SecretScope

MiB = 1024 * 1024


def test_every_reason_of_the_contract_has_its_class_and_no_class_names_another() -> None:
    assert set(BY_REASON) == set(REASONS), "the SDK maps exactly the reasons of error_reasons.json"


def test_a_backend_outage_is_not_the_runtime_being_unreachable() -> None:
    assert not issubclass(BackendUnavailable, RuntimeUnavailable)
    assert issubclass(PayloadTooLarge, InvalidArgument) and issubclass(ClientClosed, LayottoError)


async def test_a_5_mib_value_is_saved_and_read_back() -> None:
    value = bytes(range(256)) * (5 * MiB // 256)
    async with test_runtime() as runtime, runtime.client() as client:
        await client.state.save("in-memory", "big", value)
        item = await client.state.get("in-memory", "big")
    assert item.value == value


async def test_too_large_requests_raise_payload_too_large() -> None:
    async with test_runtime() as runtime:
        async with runtime.client() as client:
            with pytest.raises(PayloadTooLarge) as refused:  # over the runtime's publish limit (4 MiB)
                await client.pubsub.publish("in-memory", "t", b"x" * (5 * MiB))
            assert refused.value.reason == "PAYLOAD_TOO_LARGE" and refused.value.field == "data"
            with pytest.raises(PayloadTooLarge):  # over the client's message limit (16 MiB)
                await client.state.save("in-memory", "huge", b"x" * (17 * MiB))
        async with runtime.client(max_message_bytes=64 * MiB) as client:
            with pytest.raises(PayloadTooLarge):  # over the runtime's message limit (16 MiB)
                await client.state.save("in-memory", "huge", b"x" * (17 * MiB))


async def test_a_secret_outside_the_scope_raises_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"open": "1", "closed": "2"}))
    config = RuntimeConfig(
        components={
            **embedded_defaults().components,
            "secret_store": {"files": ComponentConfig("local.file", {"secretsFile": str(path)})},
        },
        secret_scopes=(SecretScope("files", denied=frozenset({"closed"})),),
    )
    async with test_runtime(config) as runtime, runtime.client() as client:
        assert await client.secrets.get("files", "open") == {"open": "1"}
        with pytest.raises(PermissionDenied) as denied:
            await client.secrets.get("files", "closed")
    assert denied.value.reason == "SECRET_ACCESS_DENIED" and denied.value.code == "PERMISSION_DENIED"


async def test_a_runtime_requiring_a_token_raises_unauthenticated_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
    async with test_runtime(embedded_defaults().with_overrides(api_token="t0ken")) as runtime:
        async with runtime.client() as client:
            with pytest.raises(Unauthenticated) as refused:
                await client.state.save("in-memory", "k", "v")
        assert refused.value.reason == "UNAUTHENTICATED" and refused.value.code == "UNAUTHENTICATED"
        async with RuntimeClient(runtime.address, api_token="t0ken") as client:
            await client.state.save("in-memory", "k", "v")


async def test_a_closed_client_raises_client_closed() -> None:
    async with test_runtime() as runtime:
        client = runtime.client()
        await client.state.save("in-memory", "k", "v")
        await client.aclose()
        with pytest.raises(ClientClosed):
            await client.state.get("in-memory", "k")
        with pytest.raises(ClientClosed):
            async with client.pubsub.subscribe("in-memory", "t"):
                pass
