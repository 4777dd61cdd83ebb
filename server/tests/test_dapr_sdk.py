"""Dapr's own Python SDK (the `dapr` package) against a running `layotto serve`.

The SDK runs in a child process, as an app next to the runtime does (one process with
both is tested in test_dapr_coexistence.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from server_helpers import ServerProcess, free_port, start_server

DAPR_APP = textwrap.dedent("""
    import asyncio
    from dapr.aio.clients import DaprClient
    from dapr.clients.grpc._state import StateItem, StateOptions, Concurrency
    from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType

    async def main():
        async with DaprClient() as client:
            await client.save_state("sqlite", "order", '{"id": 1}')
            got = await client.get_state("sqlite", "order")
            assert got.data == b'{"id": 1}' and got.etag, got
            try:
                await client.save_state("sqlite", "order", "x", etag="999999")
                raise SystemExit("a stale etag was accepted")
            except Exception as error:  # the async client wraps every gRPC error in DaprInternalError
                assert "states[0].etag: etag mismatch for key 'order'" in str(error), (type(error), error)
            await client.save_state("sqlite", "order", "v2", etag=got.etag,
                                    options=StateOptions(concurrency=Concurrency.first_write))
            await client.execute_state_transaction("sqlite", [
                TransactionalStateOperation(key="a", data="1"),
                TransactionalStateOperation(key="order", operation_type=TransactionOperationType.delete),
            ])
            bulk = await client.get_bulk_state("sqlite", ["a", "order", "missing"])
            assert [(i.key, i.data) for i in bulk.items] == [("a", b"1"), ("order", b""), ("missing", b"")], bulk.items
            await client.delete_state("sqlite", "a")
            assert (await client.get_state("sqlite", "a")).data == b""
            await client.save_bulk_state("sqlite", [StateItem("q1", '{"city": "Paris", "n": 2}'),
                                                    StateItem("q2", '{"city": "Oslo", "n": 1}'),
                                                    StateItem("q3", '{"city": "Paris", "n": 1}')])
            query = '{"filter": {"EQ": {"city": "Paris"}}, "sort": [{"key": "n"}], "page": {"limit": 1}}'
            page = await client.query_state("sqlite", query)
            assert [(i.key, i.json()["n"]) for i in page.results] == [("q3", 1)] and page.token == "1", page
            meta = await client.get_metadata()
            components = {(c.name, c.type) for c in meta.registered_components}
            assert ("sqlite", "state.sqlite") in components, components
        print("dapr sdk ok")

    asyncio.run(main())
""")


def run_dapr_app(server: ServerProcess, code: str, done_line: str, *args: str, **extra_env: str) -> None:
    """Run ``code`` (using Dapr's SDK) in a child process pointed at ``server``; it must print ``done_line``."""
    env = {
        **os.environ,
        "DAPR_GRPC_ENDPOINT": server.grpc_address,
        "DAPR_HTTP_ENDPOINT": f"http://{server.http_address}",
        "DAPR_HEALTH_TIMEOUT": "10",
        **extra_env,
    }
    command = [sys.executable, "-c", code, *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith(done_line)


def test_dapr_python_sdk_state_and_metadata(server_process: ServerProcess) -> None:
    run_dapr_app(server_process, DAPR_APP, "dapr sdk ok")


DAPR_SUBSCRIBER = textwrap.dedent("""
    import asyncio, json, sys, threading
    from dapr.clients import DaprClient
    from dapr.ext.grpc import App, SubscriptionMessage

    app = App()
    got = threading.Event()
    seen = []

    @app.subscribe("bus", "orders")
    def on_order(message: SubscriptionMessage) -> None:
        seen.append((message.topic(), message.data(), message.data_content_type()))
        got.set()

    threading.Thread(target=app.run, args=(int(sys.argv[1]),), daemon=True).start()
    with DaprClient() as client:
        for _ in range(300):  # until the runtime has asked this app for its subscriptions
            client.publish_event("bus", "orders", json.dumps({"id": 7}), data_content_type="application/json")
            if got.wait(0.2):
                break
    assert seen and seen[0][0] == "orders" and seen[0][1] == {"id": 7}, seen  # the SDK decodes JSON
    print("dapr app callback ok")
""")


def test_dapr_python_sdk_app_receives_events_through_its_app_callback(tmp_path: Path) -> None:
    app_port = free_port()
    config = tmp_path / "runtime.yaml"
    config.write_text(
        f"app_callback_address: 127.0.0.1:{app_port}\n"
        "app_callback_protocol: dapr\n"
        "subscriptions_refresh_seconds: 1\n"
        "pubsub: {bus: {type: in-memory}}\n"
    )
    server = start_server("-c", str(config), data_dir=tmp_path)
    try:
        run_dapr_app(server, DAPR_SUBSCRIBER, "dapr app callback ok", str(app_port))
    finally:
        code, stderr = server.terminate()
        assert code == 0, stderr


DAPR_STREAM = textwrap.dedent("""
    import json
    from dapr.clients import DaprClient

    with DaprClient() as client:
        subscription = client.subscribe(pubsub_name="in-memory", topic="stream-orders", dead_letter_topic="dead")
        client.publish_event("in-memory", "stream-orders", json.dumps({"id": 9}), data_content_type="application/json")
        message = None
        for _ in range(50):
            message = subscription.next_message()
            if message is not None:
                break
        assert message is not None and message.topic() == "stream-orders", message
        assert message.data() == {"id": 9}, message.data()
        subscription.respond_success(message)
        subscription.close()
    print("dapr stream ok")
""")


def test_dapr_python_sdk_streaming_subscription(server_process: ServerProcess) -> None:
    run_dapr_app(server_process, DAPR_STREAM, "dapr stream ok")


DAPR_SECRETS_APP = textwrap.dedent("""
    from dapr.clients import DaprClient

    with DaprClient() as client:
        assert client.get_secret("local-secrets", "conftestsecret").secret == {"conftestsecret": "abcd"}
        bulk = client.get_bulk_secret("local-secrets").secrets
        assert bulk == {"conftestsecret": {"conftestsecret": "abcd"}, "secondsecret": {"secondsecret": "efgh"}}, bulk
        try:
            client.get_secret("local-secrets", "missing")
            raise SystemExit("a missing secret was answered")
        except Exception as error:
            assert "has no secret 'missing'" in str(error), error
    print("dapr secrets ok")
""")


def test_dapr_python_sdk_secrets(tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text('{"conftestsecret": "abcd", "secondsecret": "efgh"}')
    config = tmp_path / "runtime.yaml"
    config.write_text(
        "secret_store:\n  local-secrets:\n    type: local.file\n"
        f"    metadata: {{secretsFile: {tmp_path / 'secrets.json'}}}\n"
    )
    server = start_server("-c", str(config), data_dir=tmp_path)
    try:
        run_dapr_app(server, DAPR_SECRETS_APP, "dapr secrets ok")
    finally:
        server.terminate()


DAPR_CONFIGURATION_APP = textwrap.dedent("""
    import queue, sys
    import grpc
    from dapr.clients import DaprClient
    from layotto_save import save

    seen = queue.Queue()
    with DaprClient() as client:
        got = client.get_configuration("config", ["color"])
        assert {k: v.value for k, v in got.items.items()} == {"color": "red"}, got.items
        sub = client.subscribe_configuration("config", ["color"], lambda i, r: seen.put((i, dict(r.items))))
        assert sub, "no subscription id"
        save("blue")
        sub_id, items = seen.get(timeout=10)
        assert sub_id == sub and items["color"].value == "blue", items
        assert client.unsubscribe_configuration("config", sub)
    print("dapr configuration ok")
""")


def test_dapr_python_sdk_configuration(tmp_path: Path) -> None:
    config = tmp_path / "runtime.yaml"
    config.write_text("config_store:\n  config:\n    type: in-memory\n")
    server = start_server("-c", str(config), data_dir=tmp_path)
    (tmp_path / "layotto_save.py").write_text(
        textwrap.dedent(f'''
        import grpc
        from layotto.proto.runtime.v1 import runtime_pb2 as pb, runtime_pb2_grpc

        def save(value):
            with grpc.insecure_channel("{server.grpc_address}") as channel:
                item = pb.ConfigurationItem(key="color", content=value)
                runtime_pb2_grpc.RuntimeStub(channel).SaveConfiguration(
                    pb.SaveConfigurationRequest(store_name="config", items=[item]))
        ''')
    )
    try:
        save_red = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import layotto_save; layotto_save.save('red')"
        subprocess.run([sys.executable, "-c", save_red], check=True, timeout=30)
        run_dapr_app(server, DAPR_CONFIGURATION_APP, "dapr configuration ok", PYTHONPATH=str(tmp_path))
    finally:
        server.terminate()


def test_dapr_python_sdk_with_dapr_api_token(tmp_path: Path) -> None:
    """The runtime requires a token: Dapr's SDK sends DAPR_API_TOKEN on unary calls and streams alike."""
    config = tmp_path / "runtime.yaml"
    config.write_text(
        "api_token: dapr-sdk-token\nstate: {sqlite: {type: sqlite}}\npubsub: {in-memory: {type: in-memory}}\n"
    )
    server = start_server("-c", str(config), data_dir=tmp_path)
    try:
        run_dapr_app(server, DAPR_APP, "dapr sdk ok", DAPR_API_TOKEN="dapr-sdk-token")
        run_dapr_app(server, DAPR_STREAM, "dapr stream ok", DAPR_API_TOKEN="dapr-sdk-token")
        refused = subprocess.run(
            [sys.executable, "-c", DAPR_APP],
            env={
                **os.environ,
                "DAPR_GRPC_ENDPOINT": server.grpc_address,
                "DAPR_HTTP_ENDPOINT": f"http://{server.http_address}",
                "DAPR_API_TOKEN": "wrong",
            },
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert refused.returncode != 0 and "dapr-api-token" in refused.stderr, refused.stderr
    finally:
        code, stderr = server.terminate()
        assert code == 0, stderr
