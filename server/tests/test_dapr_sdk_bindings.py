"""Dapr's own Python SDK against a running `layotto serve` with bindings from Dapr manifests:
``invoke_binding`` on a redis output binding, and a cron input binding delivered to an app
built with Dapr's ``dapr.ext.grpc.App``."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

from backends import address, require
from server_helpers import free_port, start_server
from test_dapr_sdk import run_dapr_app

DAPR_BINDINGS_APP = textwrap.dedent("""
    import sys, threading
    from dapr.clients import DaprClient
    from dapr.ext.grpc import App, BindingRequest

    app = App()
    ticks = threading.Event()

    @app.binding("tick")
    def on_tick(request: BindingRequest) -> None:
        assert request.binding_metadata["timeZone"] == "Local", request.binding_metadata
        ticks.set()

    threading.Thread(target=app.run, args=(int(sys.argv[1]),), daemon=True).start()
    key = sys.argv[2]
    with DaprClient() as client:
        client.invoke_binding("cache", "create", "café", binding_metadata={"key": key})
        got = client.invoke_binding("cache", "get", binding_metadata={"key": key, "delete": "true"})
        assert got.data == "café".encode(), got.data
        try:
            client.invoke_binding("cache", "exec", binding_metadata={"key": key})
            raise SystemExit("an unknown operation was accepted")
        except Exception as error:
            assert "its operations: create, get, delete, increment" in str(error), error
        assert ticks.wait(30), "the cron binding never reached the app"
    print("dapr bindings ok")
""")


def test_dapr_python_sdk_invoke_binding_and_input_binding(tmp_path: Path) -> None:
    require("redis")
    components = tmp_path / "components"
    components.mkdir()
    (components / "cache.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: cache}\n"
        f"spec:\n  type: bindings.redis\n  version: v1\n  metadata:\n  - {{name: redisHost, value: '{address('redis')}'}}\n"
    )
    (components / "tick.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: tick}\n"
        "spec:\n  type: bindings.cron\n  version: v1\n  metadata:\n  - {name: schedule, value: '@every 1s'}\n"
        "  - {name: direction, value: input}\n"
    )
    app_port = free_port()
    config = tmp_path / "runtime.yaml"
    config.write_text(
        f"app_callback_address: 127.0.0.1:{app_port}\napp_callback_protocol: dapr\nsubscriptions_refresh_seconds: 1\n"
    )
    server = start_server("-c", str(config), "--components-path", str(components), data_dir=tmp_path)
    try:
        run_dapr_app(server, DAPR_BINDINGS_APP, "dapr bindings ok", str(app_port), f"dapr-binding-{uuid.uuid4().hex}")
    finally:
        code, stderr = server.terminate()
        assert code == 0, stderr
