"""WebAssembly functions in the sidecar (Layotto's FaaS model), on a runtime in this process.

Every module is compiled here from WAT (tests/wasm_modules.py); none is checked in. The trigger and
admin listeners, the Redis state store and the gRPC API are real; calls go over loopback.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import backends
import pytest
import wasm_modules as wat
import wasmtime

from layotto.client import AppError, RuntimeClient
from layotto.server import Runtime
from layotto.server.components.base import ConfigError
from layotto.server.config import from_mapping
from layotto.server.wasm.engine import ModuleRefused, WasmEngine
from layotto.server.wasm.settings import Limits, parse_wasm_settings
from layotto.tracing.testing import OtlpReceiver, ReceivedSpan

LIMITS = {"fuel": 5_000_000, "memory_bytes": 2 * 1024 * 1024, "deadline_seconds": 2, "watch_seconds": 0.05}


def _config(tmp_path: Path, functions: dict[str, Any], **state: Any) -> dict[str, Any]:
    return {
        "app_id": "faas",
        "grpc_address": "127.0.0.1:0",
        "http_address": "127.0.0.1:0",
        "data_dir": str(tmp_path),
        **state,
        "wasm": {"address": "127.0.0.1:0", "admin_address": "127.0.0.1:0", **LIMITS, "functions": functions},
    }


def _entry(name: str, path: Path, instance_num: int = 1) -> dict[str, Any]:
    """A function entry as Layotto's config and /wasm/install take it."""
    return {"name": name, "instance_num": instance_num, "vm_config": {"engine": "wasmtime", "path": str(path)}}


class Faas:
    """A started runtime with functions, and an HTTP session to its trigger and admin ports."""

    def __init__(self, runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path) -> None:
        self.runtime, self.http, self.dir = runtime, http, tmp_path
        assert runtime.wasm_listeners is not None
        self.trigger = f"http://127.0.0.1:{runtime.wasm_listeners.port}"
        self.admin = f"http://127.0.0.1:{runtime.wasm_listeners.admin_port}"

    async def call(self, function_id: str, query: str = "", body: bytes = b"") -> tuple[int, bytes, Any]:
        async with self.http.post(f"{self.trigger}/?{query}", data=body, headers={"id": function_id}) as response:
            return response.status, await response.read(), response.headers

    async def admin_post(self, action: str, body: Any) -> tuple[int, dict[str, Any]]:
        async with self.http.post(f"{self.admin}/wasm/{action}", json=body) as response:
            return response.status, await response.json()

    def module(self, name: str, source: str) -> Path:
        return wat.write(self.dir / f"{name}.wasm", source)


async def _start(tmp_path: Path, functions: dict[str, Any], **state: Any) -> Runtime:
    runtime = Runtime(from_mapping(_config(tmp_path, functions, **state)))
    await runtime.start()
    return runtime


@pytest.fixture
async def faas(tmp_path: Path) -> AsyncIterator[Faas]:
    runtime = await _start(tmp_path, {})
    async with aiohttp.ClientSession() as http:
        yield Faas(runtime, http, tmp_path)
    await runtime.stop(grace=1)


async def test_layotto_inventory_scenario_on_redis_state(tmp_path: Path) -> None:
    """Layotto's CI scenario: function 1 answers GET /?name=book1 by invoking function 2, which
    reads book1 from Redis state; the query string is the body. An app reaches it by invocation too."""
    backends.require("redis")
    namespace = uuid.uuid4().hex[:12]
    state = {"state": {"state_demo": {"type": "redis", "metadata": backends.state_metadata("redis", namespace)}}}
    client_path = wat.write(tmp_path / "function_1.wasm", wat.INVENTORY_CLIENT)
    server_path = wat.write(tmp_path / "function_2.wasm", wat.INVENTORY_SERVER)
    functions = {"function1": _entry("function1", client_path), "function2": _entry("function2", server_path)}
    runtime = await _start(tmp_path, functions, **state)
    try:
        async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}") as client:
            await client.state.save("state_demo", "book1", "100")
            assert runtime.wasm_listeners is not None
            url = f"http://127.0.0.1:{runtime.wasm_listeners.port}/?name=book1"
            async with aiohttp.ClientSession() as http, http.get(url, headers={"id": "id_1"}) as response:
                assert (response.status, await response.text()) == (200, "There are 100 inventories for book1.\n")
            answer = await client.invoke("id_1", "inventory", "name=book1")  # app id = function id
            assert answer.data == b"There are 100 inventories for book1.\n"
            await client.state.save("state_demo", "book1", "7")
            answer = await client.invoke("id_2", "inventory", "book1")
            assert answer.data == b"7"
    finally:
        await runtime.stop(grace=1)


async def test_a_function_call_is_a_span_with_its_state_read_and_invocation_as_children(tmp_path: Path) -> None:
    client_path = wat.write(tmp_path / "function_1.wasm", wat.INVENTORY_CLIENT)
    server_path = wat.write(tmp_path / "function_2.wasm", wat.INVENTORY_SERVER)
    functions = {"function1": _entry("function1", client_path), "function2": _entry("function2", server_path)}
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with OtlpReceiver() as otlp:
        tracing = {"exporters": ["otlp"], "otlp_endpoint": otlp.endpoint, "service_name": "faas"}
        runtime = await _start(tmp_path, functions, state={"state_demo": {"type": "in-memory"}}, tracing=tracing)
        try:
            async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}") as client:
                await client.state.save("state_demo", "book1", "3")
            assert runtime.wasm_listeners is not None
            url = f"http://127.0.0.1:{runtime.wasm_listeners.port}/?name=book1"
            headers = {"id": "id_1", "traceparent": traceparent}
            async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
                assert await response.text() == "There are 3 inventories for book1.\n"
        finally:
            await runtime.stop(grace=1)

        def complete(spans: list[ReceivedSpan]) -> bool:
            return {"wasm id_1", "proxy_invoke_service id_2", "wasm id_2", "proxy_get_state state_demo"} <= {
                s.name for s in spans
            }

        spans = {s.name: s for s in otlp.wait_for(complete, timeout=10)}
    outer = spans["wasm id_1"]
    assert (outer.trace_id, outer.parent_span_id, outer.kind) == (traceparent[3:35], traceparent[36:52], 2)
    chain = ["wasm id_1", "proxy_invoke_service id_2", "wasm id_2", "proxy_get_state state_demo"]
    for parent, child in itertools.pairwise(chain):
        assert spans[child].parent_span_id == spans[parent].span_id, (child, parent)
        assert spans[child].trace_id == outer.trace_id


async def test_another_sidecar_reaches_a_function_by_its_id(faas: Faas, tmp_path: Path) -> None:
    """App id = function id across sidecars: a hop from another runtime lands on the function."""
    assert (await faas.admin_post("install", _entry("echo", faas.module("echo", wat.echo("echo", "b:")))))[0] == 200
    caller_config = {
        "app_id": "caller",
        "grpc_address": "127.0.0.1:0",
        "http_address": "127.0.0.1:0",
        "data_dir": str(tmp_path / "caller"),
        "name_resolution": {"type": "static", "apps": {"echo": [f"127.0.0.1:{faas.runtime.grpc_port}"]}},
    }
    caller = Runtime(from_mapping(caller_config))
    await caller.start()
    try:
        async with RuntimeClient(f"127.0.0.1:{caller.grpc_port}") as client:
            answer = await client.invoke("echo", "anything", "from afar")
        assert answer.data == b"b:from afar"
    finally:
        await caller.stop(grace=1)


async def test_install_update_uninstall_over_http(faas: Faas) -> None:
    path = faas.module("echo", wat.echo("echo", "echo:"))
    assert await faas.admin_post("install", _entry("echo", path)) == (200, {"name": "echo", "id": "echo"})
    assert (await faas.call("echo", body=b"hi"))[:2] == (200, b"echo:hi")
    status, body = await faas.admin_post("install", _entry("echo", path))
    assert status == 409 and "already installed" in body["error"]

    assert await faas.admin_post("update", {"name": "echo", "instance_num": 3}) == (
        200,
        {"name": "echo", "instance_num": 3},
    )
    assert faas.runtime.functions is not None and faas.runtime.functions.find("echo").size == 3
    answers = await asyncio.gather(*(faas.call("echo", body=str(n).encode()) for n in range(6)))
    assert sorted(a[1] for a in answers) == [f"echo:{n}".encode() for n in range(6)]
    status, body = await faas.admin_post("update", {"name": "echo", "instance_num": 0})
    assert status == 400 and body["error"].startswith("instance_num:")
    assert (await faas.admin_post("update", {"name": "echo", "instance_num": 1}))[0] == 200
    assert faas.runtime.functions.find("echo").size == 1

    assert await faas.admin_post("uninstall", {"name": "echo"}) == (200, {"name": "echo", "id": "echo"})
    status, body, _ = await faas.call("echo", body=b"hi")
    assert status == 404 and json.loads(body)["kind"] == "not_found"
    status, body = await faas.admin_post("uninstall", {"name": "echo"})
    assert status == 404 and "no function 'echo'" in body["error"]
    status, body = await faas.admin_post("install", {"instance_num": 1})
    assert status == 400 and body["error"].startswith("body.name: expected a non-empty string")


async def test_the_admin_api_needs_the_runtimes_api_token(tmp_path: Path) -> None:
    path = wat.write(tmp_path / "echo.wasm", wat.echo("echo"))
    runtime = await _start(tmp_path, {}, api_token="secret")
    try:
        assert runtime.wasm_listeners is not None
        admin = f"http://127.0.0.1:{runtime.wasm_listeners.admin_port}/wasm/install"
        async with aiohttp.ClientSession() as http:
            async with http.post(admin, json=_entry("echo", path)) as response:
                assert response.status == 401 and "missing dapr-api-token" in (await response.json())["error"]
            async with http.post(admin, json=_entry("echo", path), headers={"dapr-api-token": "wrong"}) as response:
                assert response.status == 401
            assert runtime.functions is not None and runtime.functions.ids() == []
            async with http.post(admin, json=_entry("echo", path), headers={"dapr-api-token": "secret"}) as response:
                assert response.status == 200
    finally:
        await runtime.stop(grace=1)


async def test_a_missing_import_is_refused_naming_it(faas: Faas, tmp_path: Path) -> None:
    path = faas.module("missing", wat.MISSING_IMPORT)
    status, body = await faas.admin_post("install", _entry("missing", path))
    assert status == 400
    assert body["error"] == (f"{path}: imports env.proxy_open_the_pod_bay_doors, which this runtime does not provide")
    wasi = wat.module(
        "wasi",
        "(i32.const 0)",
        imports='(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))',
    )
    status, body = await faas.admin_post("install", _entry("wasi", faas.module("wasi", wasi)))
    assert status == 400 and "imports wasi_snapshot_preview1.fd_write, and WASI is off" in body["error"]
    big = wat.module("big", "(i32.const 0)").replace('(memory (export "memory") 1)', '(memory (export "memory") 64)')
    status, body = await faas.admin_post("install", _entry("big", faas.module("big", big)))
    assert status == 400 and "cannot start an instance" in body["error"]  # 4 MiB initial memory, 2 MiB limit
    endless_id = wat.module("endless", "(i32.const 0)").replace(
        '(func (export "proxy_get_id")', '(func (export "proxy_get_id") (loop $l (br $l))'
    )
    status, body = await faas.admin_post("install", _entry("endless", faas.module("endless", endless_id)))
    assert status == 400 and "used up its fuel" in body["error"] and "proxy_get_id" in body["error"]
    assert faas.runtime.functions is not None and faas.runtime.functions.ids() == []
    with pytest.raises(ConfigError, match="proxy_open_the_pod_bay_doors, which this runtime does not provide"):
        await _start(tmp_path / "other", {"missing": _entry("missing", path)})


async def test_hot_reload_on_file_change_keeps_the_last_good_module(faas: Faas) -> None:
    path = faas.module("greeter", wat.echo("greeter", "v1:"))
    assert (await faas.admin_post("install", _entry("greeter", path)))[0] == 200
    assert (await faas.call("greeter", body=b"x"))[1] == b"v1:x"
    wat.write(path, wat.echo("greeter", "v2:"))
    assert await _eventually(lambda: faas.call("greeter", body=b"x"), lambda answer: answer[1] == b"v2:x")

    path.write_bytes(b"\0asm but not really")  # a broken deploy: logged, the running version kept
    manager = faas.runtime.functions
    assert manager is not None
    stamp = (path.stat().st_mtime_ns, path.stat().st_size)
    assert await _eventually(lambda: _async(manager.find("greeter").stamp), lambda seen: seen == stamp)
    assert (await faas.call("greeter", body=b"x"))[:2] == (200, b"v2:x")


async def test_trap_loop_and_memory_hog_are_contained(faas: Faas) -> None:
    for name, source in (("trap", wat.TRAP), ("loop", wat.LOOP), ("hog", wat.MEMORY_HOG), ("ok", wat.echo("ok"))):
        assert (await faas.admin_post("install", _entry(name, faas.module(name, source))))[0] == 200
    spin = _entry(
        "spin", faas.module("spin", wat.LOOP.replace('"loop"', '"spin"'))
    )  # fuel to spare: the clock stops it
    assert (await faas.admin_post("install", {**spin, "fuel": 2**60, "deadline_seconds": 0.2}))[0] == 200
    for name, kind, words in (
        ("trap", "trap", "unreachable"),
        ("loop", "fuel", "used up its fuel"),
        ("spin", "deadline", "ran past its deadline (0.2 s)"),
        ("hog", "trap", "memory in use"),
    ):
        for _ in range(2):  # the failed instance is replaced: the function answers (and fails) again
            status, body, headers = await faas.call(name, body=b"x")
            error = json.loads(body)
            assert (status, headers["Content-Type"], error["id"], error["kind"]) == (
                500,
                "application/json; charset=utf-8",
                name,
                kind,
            )
            assert words in error["error"]
            assert (await faas.call("ok", body=b"still here"))[:2] == (200, b"still here")
    status, body, _ = await faas.call("hog", body=b"x")
    used = int(json.loads(body)["error"].split("memory in use: ")[1].split()[0])
    assert used <= LIMITS["memory_bytes"]


async def test_both_abi_versions_local_responses_and_request_errors(faas: Faas) -> None:
    old = faas.module("old", wat.echo("old", "0.1.0:", abi="0_1_0"))
    assert (await faas.admin_post("install", _entry("old", old)))[0] == 200
    assert (await faas.call("old", query="a=1"))[:2] == (200, b"0.1.0:a=1")  # no body: the query string
    assert (await faas.call("old", query="a=1", body=b"b=2"))[:2] == (200, b"0.1.0:b=2")
    assert (await faas.admin_post("install", _entry("teapot", faas.module("teapot", wat.TEAPOT))))[0] == 200
    status, body, headers = await faas.call("teapot", body=b"brew")
    assert (status, body, headers["x-teapot"]) == (418, b"teapot", "yes")
    assert (await faas.admin_post("install", _entry("bad", faas.module("bad", wat.BAD_POINTER))))[0] == 200
    assert (await faas.call("bad_pointer", body=b"x"))[:2] == (200, b"invalid memory access")
    async with faas.http.get(faas.trigger) as response:
        assert response.status == 400 and (await response.json())["error"].startswith("header id:")
    async with faas.http.post(f"{faas.admin}/wasm/install", data=b"{not json") as response:
        assert response.status == 400 and (await response.json())["error"].startswith("body: not JSON")


async def test_an_app_sees_a_failing_function_as_an_app_error(faas: Faas) -> None:
    assert (await faas.admin_post("install", _entry("trap", faas.module("trap", wat.TRAP))))[0] == 200
    async with RuntimeClient(f"127.0.0.1:{faas.runtime.grpc_port}") as client:
        with pytest.raises(AppError, match="trapped"):
            await client.invoke("trap", "m", b"x")


def test_the_wasm_section_is_checked_naming_the_key() -> None:
    settings = parse_wasm_settings({"functions": {"f": {"vm_config": {"path": "f.wasm"}}}}, "wasm")
    assert settings.address == "127.0.0.1:2045" and settings.functions[0].name == "f"
    assert settings.limits == Limits() and settings.wasi is False
    own = parse_wasm_settings({"fuel": 5000, "functions": {"f": {"path": "f.wasm", "memory_bytes": 65536}}}, "wasm")
    assert own.functions[0].limits(own.limits) == Limits(fuel=5000, memory_bytes=65536)
    for raw, message in (
        ({"fule": 1}, "wasm.fule: unknown key"),
        ({"fuel": 0}, "wasm.fuel: expected an integer"),
        ({"functions": {"f": {}}}, "wasm.functions.f.vm_config.path: required"),
        ({"functions": {"f": {"path": "x", "instance_num": 0}}}, "wasm.functions.f.instance_num: expected"),
        ({"functions": {"f": {"path": "x", "deadline_seconds": 0}}}, "wasm.functions.f.deadline_seconds: expected"),
        ({"functions": {"f": {"vm_config": {"engine": "wamr", "path": "x"}}}}, "vm_config.engine: only wasmtime"),
        ({"address": "2045"}, "wasm.address: expected HOST:PORT"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_wasm_settings(raw, "wasm")
    assert from_mapping({"wasm": {"wasi": False}}).wasm == WasmSettingsDefault
    layotto_shaped = {"wasm": {"functions": {"function1": {**_entry("function1", Path("f.wasm")), "fuel": 9000}}}}
    config = from_mapping(layotto_shaped)
    assert from_mapping(config.to_dict()).wasm == config.wasm  # --print-config gives a config that loads
    with pytest.raises(ModuleRefused, match="exports no proxy-wasm ABI version"):
        WasmEngine().compile(wasmtime.wat2wasm('(module (memory (export "memory") 1))'), "bare")


WasmSettingsDefault = parse_wasm_settings({}, "wasm")


async def _async(value: Any) -> Any:
    return value


async def _eventually(produce: Any, accept: Any, seconds: float = 10.0) -> bool:
    """Whether ``accept(await produce())`` holds within ``seconds`` (polled every 20 ms)."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    while loop.time() < ends:
        if accept(await produce()):
            return True
        await asyncio.sleep(0.02)
    return False
