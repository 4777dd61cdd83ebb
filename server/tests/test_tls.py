"""TLS and mutual TLS on the gRPC and HTTP listeners, certificates reloaded when their files change,
and the transport chosen when TLS is configured (pygrpc-native 0.5 serves no TLS)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from server_helpers import free_port
from tls_certs import Authority, TlsFiles, write_tls_files

from layotto.client import NO_RETRY, RuntimeClient, RuntimeUnavailable, TlsConfig
from layotto.server import Runtime, embedded_defaults
from layotto.server.cli import main
from layotto.server.components.base import ConfigError
from layotto.server.config import RuntimeConfig, TlsSettings, from_mapping

pytestmark = pytest.mark.timeout(60)


def _runtime(tmp_path: Path, files: TlsFiles, *, mutual: bool) -> Runtime:
    return Runtime(_config(tmp_path, files, mutual=mutual))


def _config(tmp_path: Path, files: TlsFiles, *, mutual: bool) -> RuntimeConfig:
    tls = TlsSettings(
        str(files.cert_file), str(files.key_file), str(files.ca_file) if mutual else "", reload_seconds=0.1
    )
    config = embedded_defaults().with_overrides(
        grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", data_dir=str(tmp_path), tls=tls, grpc_transport="auto"
    )
    return config


@pytest.fixture
async def tls_runtime(tmp_path: Path) -> AsyncIterator[tuple[Runtime, TlsFiles]]:
    files = write_tls_files(tmp_path)
    async with _runtime(tmp_path, files, mutual=False) as runtime:
        yield runtime, files


@pytest.fixture
async def mtls_runtime(tmp_path: Path) -> AsyncIterator[tuple[Runtime, TlsFiles]]:
    files = write_tls_files(tmp_path)
    async with _runtime(tmp_path, files, mutual=True) as runtime:
        yield runtime, files


def _client(runtime: Runtime, tls: TlsConfig | None) -> RuntimeClient:
    return RuntimeClient(
        f"127.0.0.1:{runtime.grpc_port}",
        tls=tls,
        retry=NO_RETRY,
        timeout=5,
        channel_options=[("grpc.use_local_subchannel_pool", 1)],
    )


async def _round_trip(runtime: Runtime, tls: TlsConfig | None) -> None:
    async with _client(runtime, tls) as client:
        await client.state.save("in-memory", "k", b"over tls")
        assert (await client.state.get("in-memory", "k")).value == b"over tls"


def _https(runtime: Runtime, path: str, context: ssl.SSLContext, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"https://127.0.0.1:{runtime.http_port}{path}", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _client_context(files: TlsFiles, ca_pem: bytes | None = None, *, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=(ca_pem or files.ca.pem).decode())
    if with_cert:
        context.load_cert_chain(files.client_cert_file, files.client_key_file)
    return context


async def test_tls_serves_grpc_and_http_and_refuses_plaintext(tls_runtime: tuple[Runtime, TlsFiles]) -> None:
    runtime, files = tls_runtime
    assert runtime.grpc_transport == "grpcio"  # the native transport serves no TLS
    await _round_trip(runtime, TlsConfig(root_certificates=files.ca.pem))
    with pytest.raises(RuntimeUnavailable):
        await _round_trip(runtime, None)
    with pytest.raises(RuntimeUnavailable):  # a CA that did not sign the runtime's certificate
        await _round_trip(runtime, TlsConfig(root_certificates=Authority("another CA").pem))

    context = _client_context(files)
    body = json.dumps([{"key": "h", "value": "over https"}]).encode()
    assert (await asyncio.to_thread(_https, runtime, "/v1.0/state/in-memory", context, body))[0] == 204
    assert await asyncio.to_thread(_https, runtime, "/v1.0/state/in-memory/h", context) == (200, b'"over https"')
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP on the TLS port
        await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{runtime.http_port}/v1.0/healthz", None, 5)


async def test_mutual_tls_requires_a_client_certificate(mtls_runtime: tuple[Runtime, TlsFiles]) -> None:
    runtime, files = mtls_runtime
    with pytest.raises(RuntimeUnavailable):
        await _round_trip(runtime, TlsConfig(root_certificates=files.ca.pem))
    await _round_trip(runtime, TlsConfig.from_files(files.ca_file, files.client_cert_file, files.client_key_file))
    stranger = Authority("a stranger's CA").issue("intruder", server=False)
    with pytest.raises(RuntimeUnavailable):
        await _round_trip(runtime, TlsConfig(files.ca.pem, stranger.cert, stranger.key))

    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        await asyncio.to_thread(_https, runtime, "/v1.0/healthz", _client_context(files))
    assert (await asyncio.to_thread(_https, runtime, "/v1.0/healthz", _client_context(files, with_cert=True)))[0] == 204


async def test_tls_over_a_unix_socket(tmp_path: Path) -> None:
    files = write_tls_files(tmp_path)
    config = _config(tmp_path, files, mutual=True).with_overrides(grpc_address=f"unix:{tmp_path}/g.sock")
    async with Runtime(config):
        tls = TlsConfig.from_files(files.ca_file, files.client_cert_file, files.client_key_file)  # checks localhost
        async with RuntimeClient(f"unix:{tmp_path}/g.sock", tls=tls, retry=NO_RETRY, timeout=5) as client:
            assert (await client.say_hello("tls")).greeting
        async with RuntimeClient(f"unix:{tmp_path}/g.sock", retry=NO_RETRY, timeout=5) as plain:
            with pytest.raises(RuntimeUnavailable):
                await plain.say_hello("plain")


def _replace(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` at once (a new file renamed over it)."""
    fresh = path.with_suffix(".new")
    fresh.write_bytes(content)
    os.replace(fresh, path)


async def _until(check: object, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            await check()  # type: ignore[operator]
            return
        except (RuntimeUnavailable, ssl.SSLError, urllib.error.URLError, ConnectionError):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{what}: not within 10 s") from None
            await asyncio.sleep(0.05)


async def test_replaced_certificate_files_are_served_without_restart(
    tls_runtime: tuple[Runtime, TlsFiles], caplog: pytest.LogCaptureFixture
) -> None:
    runtime, files = tls_runtime
    old_ca = files.ca.pem
    await _round_trip(runtime, TlsConfig(root_certificates=old_ca))

    mismatched = Authority("new CA").issue("layotto", server=True)
    _replace(files.cert_file, mismatched.cert)  # its key is not written: refused, the old pair keeps serving
    for _ in range(200):
        if "TLS certificates not reloaded" in caplog.text:
            break
        await asyncio.sleep(0.05)
    assert "the previous ones keep serving" in caplog.text
    await _round_trip(runtime, TlsConfig(root_certificates=old_ca))

    new_ca = Authority("new CA")
    issued = new_ca.issue("layotto", server=True)
    _replace(files.key_file, issued.key)
    _replace(files.cert_file, issued.cert)

    async def grpc_new_ca() -> None:
        await _round_trip(runtime, TlsConfig(root_certificates=new_ca.pem))

    async def http_new_ca() -> None:
        status, _ = await asyncio.to_thread(_https, runtime, "/v1.0/healthz", _client_context(files, new_ca.pem))
        assert status == 204

    await _until(grpc_new_ca, "gRPC serving the new certificate")
    await _until(http_new_ca, "HTTP serving the new certificate")
    with pytest.raises(RuntimeUnavailable):  # new connections no longer get the old certificate
        await _round_trip(runtime, TlsConfig(root_certificates=old_ca))


def _serve(tmp_path: Path, files: TlsFiles, transport: str, *flags: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "layotto.server", "serve", "--grpc-transport", transport, *flags]
    command += ["--grpc-address", f"127.0.0.1:{free_port()}", "--http-address", f"127.0.0.1:{free_port()}"]
    command += ["--data-dir", str(tmp_path), "--tls-cert-file", str(files.cert_file), "--tls-key-file"]
    command += [str(files.key_file), "--tls-client-ca-file", str(files.ca_file)]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_cli_native_transport_with_tls_is_one_config_error(tmp_path: Path) -> None:
    process = _serve(tmp_path, write_tls_files(tmp_path), "native")
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert err.strip().splitlines() == [
        "layotto: config error: grpc_transport: native: tls is configured and pygrpc-native serves no TLS"
    ]


def test_cli_auto_transport_with_tls_serves_grpcio_and_says_why(tmp_path: Path) -> None:
    """With JSON logs, and a plaintext client refused: every stderr line stays one JSON object."""
    process = _serve(tmp_path, write_tls_files(tmp_path), "auto", "--log-format", "json")
    messages = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            messages.append(json.loads(line)["message"])
            if "layotto serving" in messages[-1]:
                break
        assert (
            "gRPC transport: grpcio (grpc_transport: auto, tls is configured and pygrpc-native serves no TLS)"
            in messages
        )
        assert "over TLS (mutual)" in messages[-1]
        address = messages[-1].split("gRPC on ")[1].split(" ")[0]
        with grpc.insecure_channel(address) as channel, pytest.raises(grpc.FutureTimeoutError):
            grpc.channel_ready_future(channel).result(timeout=1)  # the handshake fails
    finally:
        process.terminate()
        _, rest = process.communicate(timeout=20)
    assert [json.loads(line)["level"] for line in rest.splitlines()] == ["INFO", "INFO"]  # shutting down, stopped


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"key_file": "k.pem"}, "tls.cert_file: expected the path of a PEM file, got None"),
        ({"cert_file": "c.pem", "key_file": "k.pem", "ca": "x"}, "tls.ca: unknown key"),
        ({"cert_file": "c.pem", "key_file": "k.pem", "reload_seconds": 0}, "tls.reload_seconds: expected a number"),
        ("c.pem", "tls: expected a mapping"),
    ],
)
def test_tls_config_errors_name_the_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_mapping({"tls": raw})


async def test_unreadable_or_mismatched_files_stop_start_up_naming_the_key(tmp_path: Path) -> None:
    files = write_tls_files(tmp_path)
    missing = TlsSettings(str(tmp_path / "nowhere.crt"), str(files.key_file))
    with pytest.raises(ConfigError, match=r"^tls\.cert_file: cannot read .*nowhere\.crt"):
        await Runtime(embedded_defaults().with_overrides(tls=missing, data_dir=str(tmp_path))).start()
    stranger = Authority("other").issue("layotto", server=True)
    (tmp_path / "other.key").write_bytes(stranger.key)
    mismatched = TlsSettings(str(files.cert_file), str(tmp_path / "other.key"))
    with pytest.raises(ConfigError, match=r"^tls\.key_file: .* do not load"):
        await Runtime(embedded_defaults().with_overrides(tls=mismatched, data_dir=str(tmp_path))).start()


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (["--tls-cert-file", "c.pem"], "--tls-key-file: required with the cert file (or tls.key_file in the config)"),
        (["--tls-key-file", "k.pem"], "--tls-cert-file: required with the key file (or tls.cert_file in the config)"),
    ],
)
def test_cli_one_half_of_a_tls_pair_names_the_missing_flag(
    flags: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--print-config", *flags]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"layotto: config error: {line}"]
