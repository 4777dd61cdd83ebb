"""The dns name resolution: SRV and A/AAAA records of a real DNS server (dnsmasq, from Debian's
dnsmasq-base). The invocation path runs through real `layotto serve` processes, A calling two
instances of B that SRV records list; the resolver's own behaviour (A/AAAA records, the TTL
cache, config errors) is tested in process against a private dnsmasq."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import address, require
from dns_server import PrivateDnsmasq
from server_helpers import ServerProcess, free_port, start_server

from layotto.client import AppNotFound, BackendUnavailable, Invocation, RuntimeClient, SubscriberApp
from layotto.server.components.base import ConfigError
from layotto.server.components.nameresolution import create_resolver, parse_settings
from layotto.server.components.nameresolution.dns import DnsResolver


def _stop(*servers: ServerProcess) -> None:
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def instance_app(name: str) -> SubscriberApp:
    app = SubscriberApp()

    @app.method("who")
    async def who(call: Invocation) -> str:
        return name

    return app


def srv_records(*instances: tuple[str, ServerProcess]) -> list[str]:
    """dnsmasq options: ``_layotto._tcp.b.test`` SRV records naming each instance's gRPC port."""
    records = []
    for host, server in instances:
        port = server.grpc_address.rpartition(":")[2]
        records += [f"host-record={host}.test,127.0.0.1", f"srv-host=_layotto._tcp.b.test,{host}.test,{port}"]
    return records


async def until(condition: object, what: str, seconds: float = 15) -> None:
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    while not await condition():  # type: ignore[operator]
        assert loop.time() < ends, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.1)


async def test_a_calls_b_through_srv_records_round_robin_ttl_and_failures(tmp_path: Path) -> None:
    dns = PrivateDnsmasq(tmp_path / "dns", ttl=1)
    ports = [free_port(), free_port()]
    b = [
        start_server(
            "-c",
            _write(tmp_path / f"b{i}.yaml", f"app_id: b\napp_callback_address: 127.0.0.1:{port}\n"),
            data_dir=tmp_path / f"b{i}",
        )
        for i, port in enumerate(ports)
    ]
    a_config = (
        "app_id: a\nname_resolution:\n  type: dns\n"
        f"  metadata: {{server: '{dns.address}', domain: test, timeoutInSeconds: '0.5'}}\n"
    )
    a = start_server("-c", _write(tmp_path / "a.yaml", a_config), data_dir=tmp_path / "a")
    try:
        dns.serve(*srv_records(("b1", b[0]), ("b2", b[1])))
        async with (
            instance_app("b1").serve(f"127.0.0.1:{ports[0]}"),
            instance_app("b2").serve(f"127.0.0.1:{ports[1]}"),
            RuntimeClient(a.grpc_address) as client,
        ):

            async def answers() -> set[str]:
                return {(await client.invoke("b", "who")).text() for _ in range(4)}

            assert await answers() == {"b1", "b2"}  # round-robin over both SRV records

            dns.serve(*srv_records(("b2", b[1])))  # b1's record removed

            async def only_b2() -> bool:
                return await answers() == {"b2"}

            await until(only_b2, "the removed record was dropped after its TTL (1 s)")

            with pytest.raises(AppNotFound) as unknown:  # NXDOMAIN
                await client.invoke("nobody", "who")
            assert unknown.value.reason == "APP_NOT_FOUND" and unknown.value.code == "NOT_FOUND"
            assert "'nobody'" in str(unknown.value) and unknown.value.metadata["app_id"] == "nobody"

            dns.stop()

            async def dns_down_seen() -> bool:
                try:
                    await client.invoke("b", "who")
                except BackendUnavailable as error:
                    assert error.code == "UNAVAILABLE" and error.reason == "BACKEND_UNAVAILABLE"
                    assert f"DNS server {dns.address}" in str(error) and "'b'" in str(error)
                    return True
                return False

            await until(dns_down_seen, "the cached answer expired and the DNS server's outage was reported")
    finally:
        dns.stop()
        _stop(a, *b)


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# -- the resolver in process ------------------------------------------------------------------


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[PrivateDnsmasq]:
    server = PrivateDnsmasq(tmp_path / "dns", ttl=2)
    yield server
    server.stop()


async def test_a_and_aaaa_records_with_the_configured_port_name_format_and_domain(dnsmasq: PrivateDnsmasq) -> None:
    dnsmasq.serve("host-record=b-dapr.ns.test,127.0.0.2,::1", "host-record=c-dapr.ns.test,127.0.0.3")
    resolver = create_resolver(
        parse_settings(
            {
                "type": "dns",
                "metadata": {
                    "server": dnsmasq.address,
                    "recordType": "A",
                    "port": "50002",
                    "nameFormat": "{appid}-dapr",
                    "domain": "ns.test",
                },
            },
            "name_resolution",
        )
    )
    assert isinstance(resolver, DnsResolver)
    assert resolver.name_of("b") == "b-dapr.ns.test."
    assert await resolver.resolve("b") == ("127.0.0.2:50002", "[::1]:50002")
    assert await resolver.resolve("c") == ("127.0.0.3:50002",)
    assert await resolver.resolve("nobody") == ()  # NXDOMAIN: no instance
    assert await resolver.resolve("x" * 64) == ()  # no DNS label: no instance, no crash


async def test_answers_are_cached_until_their_ttl(dnsmasq: PrivateDnsmasq) -> None:
    dnsmasq.serve("host-record=w1.test,127.0.0.1", "srv-host=_grpc._tcp.w.test,w1.test,7001")
    resolver = DnsResolver({"server": dnsmasq.address, "domain": "test", "srvPrefix": "_grpc._tcp"})
    loop = asyncio.get_running_loop()
    asked = loop.time()
    concurrent = await asyncio.gather(*(resolver.resolve("w") for _ in range(20)))  # share one lookup
    assert set(concurrent) == {("127.0.0.1:7001",)}
    dnsmasq.serve("host-record=w2.test,127.0.0.1", "srv-host=_grpc._tcp.w.test,w2.test,7002")
    cached = await resolver.resolve("w")
    if loop.time() - asked < 1.5:  # well inside the TTL (2 s) of the first answer
        assert cached == ("127.0.0.1:7001",)

    async def changed() -> bool:
        return await resolver.resolve("w") == ("127.0.0.1:7002",)

    await until(changed, "the new record was asked for once the TTL passed")


async def test_the_cache_is_bounded_and_keeps_no_empty_answer(
    dnsmasq: PrivateDnsmasq, monkeypatch: pytest.MonkeyPatch
) -> None:
    """App ids a client makes up cannot grow the cache (no leak)."""
    import layotto.server.components.nameresolution.dns as dns_module

    monkeypatch.setattr(dns_module, "MAX_CACHED", 2)
    dnsmasq.serve(*(f"host-record=w{i}.test,127.0.0.{i}" for i in (1, 2, 3)))
    resolver = DnsResolver({"server": dnsmasq.address, "domain": "test", "recordType": "A"})
    for i in range(20):
        assert await resolver.resolve(f"made-up-{i}") == ()
    for i in (1, 2, 3):
        assert await resolver.resolve(f"w{i}") == (f"127.0.0.{i}:34904",)
    assert len(resolver._cache) <= 2  # the oldest answer went first


async def test_the_shared_dns_server_of_scripts_backends() -> None:
    require("dns")
    resolver = DnsResolver({"server": address("dns"), "domain": "layotto.test"})
    assert await resolver.resolve("echo") == ("127.0.0.1:34904",)
    assert await resolver.resolve("nobody") == ()


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"recordType": "MX"}, r"recordType: expected SRV or A, got 'MX'"),
        ({"nameFormat": "svc"}, r"nameFormat: must contain \{appid\}"),
        ({"server": "127.0.0.1:99999"}, r"server: expected IP or IP:PORT, got '127.0.0.1:99999'"),
        ({"server": "kube-dns.kube-system:53"}, r"server: expected IP or IP:PORT, got 'kube-dns.kube-system:53'"),
        ({"port": "0"}, r"metadata.port: must be between 1 and 65535"),
        ({"servers": "x"}, r"metadata.servers: unknown key"),
    ],
)
def test_bad_metadata_is_a_config_error_naming_the_key(metadata: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_resolver(parse_settings({"type": "dns", "metadata": metadata}, "name_resolution"))


def test_without_dnspython_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dns.asyncresolver", None)  # import dns.asyncresolver fails
    with pytest.raises(ConfigError, match=r"needs dnspython: pip install 'layotto-server\[dns\]'"):
        DnsResolver({})


def test_server_addresses() -> None:
    assert DnsResolver({"server": "10.0.0.10"}).server == "10.0.0.10:53"
    assert DnsResolver({"server": "[fd00::a]:5353"}).server == "[fd00::a]:5353"
    assert DnsResolver({"server": "fd00::a"}).server == "[fd00::a]:53"
