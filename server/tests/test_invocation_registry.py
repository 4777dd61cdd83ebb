"""The etcd registry of service invocation, with real processes: `layotto serve` runtimes that
register their app ids under leases, callers that follow the registry, instances killed and
stopped, and an outage of a private etcd."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from pathlib import Path

import grpc
from backends import address, require
from server_helpers import ServerProcess, free_port, start_server

from layotto.client import AppNotFound, AppUnavailable, Invocation, RuntimeClient, SubscriberApp


def _stop(*servers: ServerProcess) -> None:
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


# -- the etcd registry ----------------------------------------------------------------------


def registry_config(prefix: str, app_id: str, app_port: int | None = None) -> str:
    app = f"app_callback_address: 127.0.0.1:{app_port}\n" if app_port else ""
    return (
        f"app_id: {app_id}\n{app}"
        "name_resolution:\n"
        "  type: etcd\n"
        f"  metadata: {{endpoints: '{address('etcd')}', keyPrefix: '{prefix}', ttlSeconds: '3'}}\n"
    )


def instance_app(name: str) -> SubscriberApp:
    app = SubscriberApp()

    @app.method("who")
    async def who(call: Invocation) -> str:
        return name

    return app


async def registered(prefix: str) -> list[str]:
    """The registry's keys under ``prefix``, read with etcdctl's protocol (aetcd's stubs)."""
    from aetcd import rpc

    async with grpc.aio.insecure_channel(address("etcd")) as channel:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        found = await rpc.KVStub(channel).Range(rpc.RangeRequest(key=prefix.encode(), range_end=end.encode()))
    return sorted(bytes(kv.key).decode()[len(prefix) :] for kv in found.kvs)


async def until(condition_coro: object, what: str, seconds: float = 20) -> None:
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    while not await condition_coro():  # type: ignore[operator]
        assert loop.time() < ends, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.2)


async def test_registry_round_robin_and_a_killed_instance_drops_out(tmp_path: Path) -> None:
    require("etcd")
    prefix = f"/layotto-test/{uuid.uuid4().hex}/"
    ports = [free_port(), free_port()]
    servers = []
    for i, port in enumerate(ports):
        (tmp_path / f"w{i}.yaml").write_text(registry_config(prefix, "worker", port))
        servers.append(start_server("-c", str(tmp_path / f"w{i}.yaml"), data_dir=tmp_path / f"w{i}"))
    (tmp_path / "caller.yaml").write_text(registry_config(prefix, "caller"))
    caller = start_server("-c", str(tmp_path / "caller.yaml"), data_dir=tmp_path / "caller")
    try:
        async with (
            instance_app("w0").serve(f"127.0.0.1:{ports[0]}"),
            instance_app("w1").serve(f"127.0.0.1:{ports[1]}"),
            RuntimeClient(caller.grpc_address) as client,
        ):
            assert len(await registered(prefix + "worker/")) == 2
            answers = {(await client.invoke("worker", "who")).text() for _ in range(4)}
            assert answers == {"w0", "w1"}  # round-robin over both instances
            servers[0].process.send_signal(signal.SIGKILL)  # no deregistration: its lease must expire
            servers[0].process.wait()
            for _ in range(4):  # a sidecar refusing connections is passed over for the next instance
                assert (await client.invoke("worker", "who")).text() == "w1"

            async def only_w1_left() -> bool:
                return await registered(prefix + "worker/") == [servers[1].grpc_address]

            await until(only_w1_left, "the killed instance's lease expired (ttl 3 s)")
            code, stderr = servers[1].terminate()  # a clean stop withdraws the entry at once
            assert code == 0, stderr
            assert await registered(prefix + "worker/") == []

            async def not_found() -> bool:
                try:
                    await client.invoke("worker", "who")
                except AppNotFound:
                    return True
                except AppUnavailable:
                    return False
                return False

            await until(not_found, "the caller saw the last instance leave (watch)")
    finally:
        _stop(caller, *servers)


def test_an_unreachable_registry_stops_start_up_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        f"name_resolution: {{type: etcd, metadata: {{endpoints: '127.0.0.1:{free_port()}', timeoutInSeconds: '1'}}}}\n"
    )
    server = start_server("-c", str(tmp_path / "r.yaml"), data_dir=tmp_path, ready=False)
    _, stderr = server.process.communicate(timeout=60)
    assert server.process.returncode == 2, stderr
    assert stderr.splitlines()[-1].startswith(
        f"layotto: config error: {tmp_path / 'r.yaml'}: name_resolution: component 'etcd' is unavailable"
    )


class PrivateEtcd:
    """An etcd server of this test's own on free ports, so the test may stop and restart it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.port, self.peer = data_dir, free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        client, peer = f"http://{self.endpoint}", f"http://127.0.0.1:{self.peer}"
        command = [
            "etcd",
            "--name=t",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=t={peer}",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


async def test_the_registry_outlives_an_etcd_outage(tmp_path: Path) -> None:
    """Calls go on from the cache while etcd is down; afterwards entries are renewed, a new
    instance is seen through the renewed watch, and an entry whose lease was revoked is written again."""
    from aetcd import rpc

    etcd = PrivateEtcd(tmp_path / "etcd")
    etcd.start()
    prefix = "/outage/"

    def config(app_id: str, app_port: int | None = None) -> Path:
        path = tmp_path / f"{app_id}-{app_port}.yaml"
        text = registry_config(prefix, app_id, app_port).replace(address("etcd"), etcd.endpoint)
        path.write_text(text)
        return path

    async def entries() -> list[tuple[str, int]]:
        async with grpc.aio.insecure_channel(etcd.endpoint) as channel:
            end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            found = await rpc.KVStub(channel).Range(rpc.RangeRequest(key=prefix.encode(), range_end=end.encode()))
        return sorted((bytes(kv.key).decode()[len(prefix) :], int(kv.lease)) for kv in found.kvs)

    ports = [free_port(), free_port()]
    servers: list[ServerProcess] = []
    try:

        async def etcd_up() -> bool:
            try:
                await entries()
            except grpc.aio.AioRpcError:
                return False
            return True

        await until(etcd_up, "the private etcd answers")
        servers.append(start_server("-c", str(config("worker", ports[0])), data_dir=tmp_path / "w0"))
        servers.append(start_server("-c", str(config("caller")), data_dir=tmp_path / "caller"))
        caller = servers[1]
        async with (
            instance_app("w0").serve(f"127.0.0.1:{ports[0]}"),
            instance_app("w1").serve(f"127.0.0.1:{ports[1]}"),
            RuntimeClient(caller.grpc_address) as client,
        ):
            assert (await client.invoke("worker", "who")).text() == "w0"
            etcd.stop()
            assert (await client.invoke("worker", "who")).text() == "w0"  # answered from the cache
            await asyncio.sleep(2)
            etcd.start()
            await until(etcd_up, "the private etcd answers again")
            servers.append(start_server("-c", str(config("worker", ports[1])), data_dir=tmp_path / "w1"))

            async def both_answer() -> bool:
                return {(await client.invoke("worker", "who")).text() for _ in range(4)} == {"w0", "w1"}

            await until(both_answer, "the caller follows the registry again after the outage")
            (w0_lease,) = [lease for key, lease in await entries() if key == f"worker/{servers[0].grpc_address}"]
            async with grpc.aio.insecure_channel(etcd.endpoint) as channel:
                await rpc.LeaseStub(channel).LeaseRevoke(rpc.LeaseRevokeRequest(ID=w0_lease))

            async def w0_registered_again() -> bool:
                return any(key == f"worker/{servers[0].grpc_address}" for key, _ in await entries())

            await until(w0_registered_again, "the runtime wrote its entry again under a new lease")
    finally:
        _stop(*servers)
        etcd.stop()


async def test_a_registry_entry_no_sidecar_can_have_is_ignored() -> None:
    """An entry written by hand or by a misconfigured runtime (a port over 65535) was dialled as
    another port (99999 mod 65536 = 34463); a good one beside it is kept, in the load and the watch."""
    require("etcd")
    from aetcd import rpc

    from layotto.server.components.nameresolution.etcd import EtcdRegistry

    prefix = f"/layotto-test/{uuid.uuid4().hex}/"
    registry = EtcdRegistry({"endpoints": address("etcd"), "keyPrefix": prefix, "ttlSeconds": "3"})
    async with grpc.aio.insecure_channel(address("etcd")) as channel:
        kv = rpc.KVStub(channel)
        for entry in ("b/127.0.0.1:99999", "b/127.0.0.1:7001", "b/not an address:1"):
            await kv.Put(rpc.PutRequest(key=f"{prefix}{entry}".encode()))
        await registry.start("me", "127.0.0.1:7000")
        try:
            assert list(await registry.resolve("b")) == ["127.0.0.1:7001"]
            await kv.Put(rpc.PutRequest(key=f"{prefix}c/127.0.0.1:0".encode()))
            await kv.Put(rpc.PutRequest(key=f"{prefix}c/127.0.0.1:7002".encode()))

            async def only_the_good_one() -> bool:
                return list(await registry.resolve("c")) == ["127.0.0.1:7002"]

            await until(only_the_good_one, "c's good entry, and nothing else")
        finally:
            await registry.aclose()
            await kv.DeleteRange(rpc.DeleteRangeRequest(key=prefix.encode(), range_end=prefix[:-1].encode() + b"0"))
