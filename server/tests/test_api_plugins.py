"""API plugins: the example package (examples/api-plugin) serves its Greeter service from the runtime.

tox installs the example into this env (tox.ini: server deps), so its entry point is found as a
third-party package's would be.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from layotto_greeting import greeting_pb2, greeting_pb2_grpc

from layotto.client import RuntimeClient
from layotto.server import Runtime, embedded_defaults
from layotto.server.components.base import ConfigError
from layotto.server.config import ComponentConfig, RuntimeConfig, from_mapping

GREETER = "layotto.example.greeting.v1.Greeter"


def config(tmp_path: Path, transport: str, plugins: dict[str, dict[str, str]]) -> RuntimeConfig:
    return embedded_defaults().with_overrides(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        grpc_transport=transport,
        components={"state": {"greetings": ComponentConfig(type="in-memory")}},
        api_plugins=plugins,
    )


@pytest.fixture(params=["grpcio", "native"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = Runtime(config(tmp_path, request.param, {"greeting": {"store": "greetings"}}))
    await rt.start()
    assert rt.grpc_transport == request.param
    yield rt
    await rt.stop(grace=1)


async def test_plugin_serves_its_api_over_the_runtimes_components(runtime: Runtime) -> None:
    address = f"127.0.0.1:{runtime.grpc_port}"
    async with grpc.aio.insecure_channel(address) as channel:
        greeter = greeting_pb2_grpc.GreeterStub(channel)
        unknown = await greeter.Greet(greeting_pb2.GreetRequest(name="Bob"))
        assert (unknown.message, unknown.stored) == ("Hello, Bob!", False)
        await greeter.SetGreeting(greeting_pb2.SetGreetingRequest(name="Ada", greeting="Bonjour"))
        known = await greeter.Greet(greeting_pb2.GreetRequest(name="Ada"))
        assert (known.message, known.stored) == ("Bonjour, Ada!", True)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await greeter.Greet(greeting_pb2.GreetRequest(name=""))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == "name: must not be empty"
    async with RuntimeClient(address) as client:  # the same store the state API serves
        assert (await client.state.get("greetings", "greeting:Ada")).value == b"Bonjour"
        await client.state.save("greetings", "greeting:Bob", b"Hi")
    async with grpc.aio.insecure_channel(address) as channel:
        greeted = await greeting_pb2_grpc.GreeterStub(channel).Greet(greeting_pb2.GreetRequest(name="Bob"))
        assert greeted.message == "Hi, Bob!"


async def test_reflection_and_health_list_the_plugins_service(runtime: Runtime) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        asks = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=GREETER),
        ]
        answers = [answer async for answer in reflection.ServerReflectionInfo(iter(asks))]
        assert GREETER in {s.name for s in answers[0].list_services_response.service}
        files = answers[1].file_descriptor_response.file_descriptor_proto
        assert files and b"layotto.example.greeting.v1" in files[0]
        health = health_pb2_grpc.HealthStub(channel)
        checked = await health.Check(health_pb2.HealthCheckRequest(service=GREETER))
        assert checked.status == health_pb2.HealthCheckResponse.SERVING


async def test_plugin_refusing_its_metadata_stops_start_up(tmp_path: Path) -> None:
    rt = Runtime(config(tmp_path, "grpcio", {"greeting": {"store": "nope"}}))
    with pytest.raises(ConfigError, match=r"^api_plugins\.greeting: store: no state store named 'nope'"):
        await rt.start()


def test_config_section_is_checked() -> None:
    assert from_mapping({"api_plugins": {"greeting": {"store": "s", "n": 3}}}).api_plugins == {
        "greeting": {"store": "s", "n": "3"}
    }
    assert from_mapping({"api_plugins": {"greeting": None}}).api_plugins == {"greeting": {}}
    with pytest.raises(ConfigError, match=r"^api_plugins\.greeting\.store: expected a string"):
        from_mapping({"api_plugins": {"greeting": {"store": ["a"]}}})
    with pytest.raises(ConfigError, match=r"^api_plugins: expected a mapping"):
        from_mapping({"api_plugins": ["greeting"]})


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("nope", "layotto: config error: api_plugins.nope: no installed package publishes API plugin 'nope' "),
        (
            "broken",
            "layotto: config error: api_plugins.broken: cannot be loaded from missing_module_xyz:Plugin: "
            "ModuleNotFoundError: No module named 'missing_module_xyz'",
        ),
    ],
)
def test_plugin_that_cannot_load_is_one_config_error_line(tmp_path: Path, name: str, line: str) -> None:
    """A package publishing a broken entry point (its module is missing), or no package at all."""
    dist = tmp_path / "site" / "broken_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[layotto.api_plugins]\nbroken = missing_module_xyz:Plugin\n")
    path = tmp_path / "c.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            grpc_address: 127.0.0.1:0
            http_address: 127.0.0.1:0
            api_plugins:
              {name}: {{}}
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "layotto.server", "serve", "-c", str(path), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stderr
    errors = [entry for entry in done.stderr.splitlines() if "config error" in entry]
    assert len(errors) == 1 and errors[0].startswith(line), done.stderr


def test_the_examples_generated_code_matches_its_proto(tmp_path: Path) -> None:
    """examples/api-plugin commits its generated code: it must be what its .proto compiles to."""
    import layotto_greeting

    package = Path(layotto_greeting.__file__).parent
    outputs = [f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}"]
    done = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", *outputs, "layotto_greeting/greeting.proto"],
        cwd=package.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for name in ("greeting_pb2.py", "greeting_pb2_grpc.py"):
        assert (tmp_path / "layotto_greeting" / name).read_text() == (package / name).read_text(), name


RECORDER = '''
from layotto.server.plugins import ApiPlugin, PluginService
from layotto.proto.runtime.v1 import runtime_pb2
from layotto_greeting import greeting_pb2

EVENTS = []


class Recorder(ApiPlugin):
    """Records its lifecycle; its metadata chooses what it serves."""

    async def start(self, context):
        EVENTS.append(("start", self.name, context.app_id, context.names("state")))

    def services(self):
        which = self.metadata.get("serve", "greeter")
        if which == "runtime":  # a service the runtime serves itself
            return [PluginService(runtime_pb2.DESCRIPTOR.services_by_name["Runtime"], {})]
        if which == "bad-route":
            return [PluginService(greeting_pb2.DESCRIPTOR.services_by_name["Greeter"], {"Nope": self.greet})]
        return [PluginService(greeting_pb2.DESCRIPTOR.services_by_name["Greeter"], {"Greet": self.greet})]

    async def greet(self, request, context):
        return greeting_pb2.GreetResponse(message="recorded")

    async def stop(self):
        EVENTS.append(("stop", self.name))
'''


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A plugin published by a package of the test's own (a dist-info with its entry point on sys.path)."""
    import importlib

    site = tmp_path / "recorder-site"
    dist = site / "recorder_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: recorder-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[layotto.api_plugins]\nrecorder = recorder_plugin:Recorder\n")
    (site / "recorder_plugin.py").write_text(RECORDER)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    module = importlib.import_module("recorder_plugin")
    yield module
    sys.modules.pop("recorder_plugin", None)


async def test_plugin_lifecycle_and_the_api_token(
    tmp_path: Path, recorder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """start() before serving, with the components; stop() once at shutdown; the runtime's
    interceptors (here the API token) guard the plugin's service as they guard the runtime's."""
    monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
    rt = Runtime(config(tmp_path, "grpcio", {"recorder": {}}).with_overrides(api_token="s3cret"))
    await rt.start()
    try:
        assert recorder.EVENTS == [("start", "recorder", "layotto", ["greetings"])]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}") as channel:
            greeter = greeting_pb2_grpc.GreeterStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await greeter.Greet(greeting_pb2.GreetRequest(name="x"))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            answer = await greeter.Greet(greeting_pb2.GreetRequest(name="x"), metadata=(("dapr-api-token", "s3cret"),))
            assert answer.message == "recorded"
            with pytest.raises(grpc.aio.AioRpcError) as unrouted:  # left out of the routes
                await greeter.SetGreeting(greeting_pb2.SetGreetingRequest(), metadata=(("dapr-api-token", "s3cret"),))
            assert unrouted.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await rt.stop(grace=1)
    assert recorder.EVENTS[1:] == [("stop", "recorder")]


@pytest.mark.parametrize(
    ("serve", "message"),
    [
        ("runtime", r"^api_plugins\.recorder: service spec\.proto\.runtime\.v1\.Runtime is already served$"),
        ("bad-route", r"^api_plugins\.recorder: layotto\.example\.greeting\.v1\.Greeter has no RPC named Nope$"),
    ],
)
async def test_services_that_do_not_fit_stop_start_up(tmp_path: Path, recorder: Any, serve: str, message: str) -> None:
    rt = Runtime(config(tmp_path, "grpcio", {"recorder": {"serve": serve}}))
    with pytest.raises(ConfigError, match=message):
        await rt.start()
    assert recorder.EVENTS[-1] == ("stop", "recorder")  # started, so stopped again
