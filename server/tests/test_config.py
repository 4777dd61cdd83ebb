from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from layotto.server.cli import loop_factory, main
from layotto.server.components.base import ConfigError
from layotto.server.config import ComponentConfig, embedded_defaults, from_mapping, load
from layotto.server.dapr_manifests import load_manifests


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_embedded_defaults_name_components_after_their_types() -> None:
    config = embedded_defaults()
    assert config.grpc_address == "127.0.0.1:34904"
    assert config.http_address == "127.0.0.1:34999"
    assert {n: c.type for n, c in config.components["state"].items()} == {"in-memory": "in-memory", "sqlite": "sqlite"}
    assert {n: c.type for n, c in config.components["config_store"].items()} == {"in-memory": "in-memory"}
    assert "secret_store" not in config.components


def test_yaml_config(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.yaml",
        """
app_id: shop
grpc_address: 0.0.0.0:5000
state:
  orders: {type: sqlite, metadata: {connectionString: orders.db, cleanupIntervalInSeconds: 5}}
""",
    )
    config = load(path)
    assert config.app_id == "shop"
    assert config.grpc_address == "0.0.0.0:5000"
    assert config.components["state"]["orders"] == ComponentConfig(
        "sqlite", {"connectionString": "orders.db", "cleanupIntervalInSeconds": "5"}
    )


def test_layotto_grpc_config_json(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.json",
        json.dumps(
            {
                "grpc_config": {
                    "app": {"app_id": "app1"},
                    "hellos": {"quick_start_demo": {"type": "helloworld", "hello": "greeting"}},
                    "state": {"redis-like": {"type": "in-memory", "metadata": {}}},
                }
            }
        ),
    )
    config = load(path)
    assert config.app_id == "app1"
    assert config.components["hellos"]["quick_start_demo"] == ComponentConfig("helloworld", {"hello": "greeting"})
    assert "redis-like" in config.components["state"]


def test_layotto_runtime_config_json_takes_listener_address(tmp_path: Path) -> None:
    mosn = {
        "servers": [
            {
                "default_log_path": "stdout",
                "listeners": [
                    {
                        "name": "grpc",
                        "address": "127.0.0.1:34905",
                        "bind_port": True,
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "type": "grpc",
                                        "config": {
                                            "server_name": "runtime",
                                            "grpc_config": {
                                                "hellos": {
                                                    "quick_start_demo": {"type": "helloworld", "hello": "greeting"}
                                                },
                                                "state": {"in-memory": {"type": "in-memory"}},
                                            },
                                        },
                                    }
                                ]
                            }
                        ],
                    }
                ],
            }
        ]
    }
    config = load(write(tmp_path, "runtime_config.json", json.dumps(mosn)))
    assert config.grpc_address == "127.0.0.1:34905"
    assert set(config.components) == {"hellos", "state"}


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        ({"runtime": {"listeners": []}}, "servers: expected a list of mappings"),
        ([{"listeners": {"name": "grpc"}}], "servers[0].listeners: expected a list of mappings"),
        ([{"listeners": [{"filter_chains": ["grpc"]}]}], "servers[0].listeners[0].filter_chains: expected a list"),
        (
            [{"listeners": [{"filter_chains": [{"filters": [{"type": "grpc", "config": "x"}]}]}]}],
            "servers[0].listeners[0].filter_chains[0].filters[0].config: expected a mapping",
        ),
    ],
    ids=["servers-a-mapping", "listeners-a-mapping", "chain-a-string", "config-a-string"],
)
def test_a_layotto_file_of_another_shape_is_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], servers: Any, message: str
) -> None:
    """Layotto's servers tree walked with the wrong shape crashed with an AttributeError traceback."""
    path = write(tmp_path, "runtime_config.json", json.dumps({"servers": servers}))
    assert main(["serve", "--print-config", "-c", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"layotto: config error: {path}: {message}"), line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour: blue\n", "c.yaml: colour: unknown key (known: app_id, grpc_address"),
        ("state: {s: {kind: sqlite}}\n", "c.yaml: state.s.kind: unknown key (known: type, metadata, secret_ref)"),
        ("state: {s: {metadata: {}}}\n", "c.yaml: state.s.type: required"),
        ("state: [1, 2]\n", "c.yaml: state: expected a mapping"),
        ("rpcs: {p: {type: mosn}}\n", "c.yaml: rpcs: this building block is not served yet"),
        ("oss: {p: {kind: s3}}\n", "c.yaml: oss.p.kind: unknown key (known: type, metadata, secret_ref)"),
        ("max_message_bytes: lots\n", "c.yaml: max_message_bytes: expected an integer between 1024 and 2147483647"),
        ("state: {s: {type: [unclosed\n", "c.yaml: line"),
        ("event_loop: trio\n", "c.yaml: event_loop: expected one of auto, uvloop, asyncio, got 'trio'"),
        ("app_id:\n", "c.yaml: app_id: expected a string, got None"),  # was the app id "None"
        ("api_token:\n", "c.yaml: api_token: expected a string, got None"),  # was the token "None"
        ("app_id: [shop]\n", "c.yaml: app_id: expected a string, got ['shop']"),
        ("app_id: 1.50\n", "c.yaml: app_id: expected a string, got 1.5"),
        ("grpc_address: {host: x}\n", "c.yaml: grpc_address: expected a string, got {'host': 'x'}"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(write(tmp_path, "c.yaml", text))
    assert str(error.value).startswith(str(tmp_path / expected.split(":", maxsplit=1)[0]) + ":")
    assert expected.split(": ", 1)[1] in str(error.value)


def test_a_bare_number_is_taken_as_a_string_key() -> None:
    assert from_mapping({"app_id": 42}).app_id == "42"


def test_event_loop_choice() -> None:
    import uvloop

    assert loop_factory("auto") is uvloop.new_event_loop  # installed with the server on Linux
    assert loop_factory("uvloop") is uvloop.new_event_loop
    assert loop_factory("asyncio") is None


def test_serving_logs_the_event_loop_it_runs_on(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "event_loop: asyncio\n")
    for config, loop in (([], "uvloop"), (["-c", str(path)], "asyncio")):
        addresses = ["--grpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0"]
        process = subprocess.Popen(
            [sys.executable, "-m", "layotto.server", "serve", *config, "--data-dir", str(tmp_path), *addresses],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        try:
            line = next(line for line in process.stderr if "serving gRPC" in line)
        finally:
            process.terminate()
            process.wait(timeout=30)
        assert line.rstrip().endswith(f"(event loop: {loop})")


def test_version_names_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    for argv in (["--version"], ["serve", "--version"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
        assert capsys.readouterr().out == f"layotto {version('layotto-server')}\n"


def test_a_relative_config_path_is_read_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mine.yaml").write_text("grpc_address: 127.0.0.1:4321\n")
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "-c", "mine.yaml", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["grpc_address"] == "127.0.0.1:4321"


def test_print_config_prints_effective_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--print-config", "--grpc-address", "127.0.0.1:1234"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["grpc_address"] == "127.0.0.1:1234"
    assert printed["state"]["sqlite"]["type"] == "sqlite"


def test_print_config_shows_the_invocation_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Access control, its invoke token (masked) and flow control were left out of the printout, so
    whether a Configuration manifest's accessControl was applied could not be seen; they print in
    the config's own shape, which loads again to the same printout."""
    text = (
        "invoke_token: hop-secret\n"
        "access_control:\n  defaultAction: deny\n"
        "  policies: [{appId: b, defaultAction: allow, operations: [{name: /admin/*, httpVerb: [post, GET], action: deny}]}]\n"
        "flow_control: {global_switch: false, rules: [{resource: /a.B/C, threshold: 5}, {appId: b, threshold: 2, statIntervalInMs: 10}]}\n"
    )
    assert main(["serve", "--print-config", "-c", str(write(tmp_path, "c.yaml", text))]) == 0
    printed = capsys.readouterr().out
    shown = json.loads(printed)
    assert shown["invoke_token"] == "****" and "hop-secret" not in printed
    assert shown["access_control"] == {
        "defaultAction": "deny",
        "policies": [
            {
                "appId": "b",
                "defaultAction": "allow",
                "operations": [{"name": "/admin/*", "httpVerb": ["GET", "POST"], "action": "deny"}],
            }
        ],
    }
    assert shown["flow_control"] == {
        "global_switch": False,
        "rules": [
            {"resource": "/a.B/C", "threshold": 5, "statIntervalInMs": 1000},
            {"appId": "b", "threshold": 2, "statIntervalInMs": 10},
        ],
    }
    assert main(["serve", "--print-config", "-c", str(write(tmp_path, "again.json", printed))]) == 0
    assert json.loads(capsys.readouterr().out) == shown


def test_app_health_flags_turn_the_checks_on(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--print-config", "--enable-app-health-check", "--app-health-check-path", "/ready"]) == 0
    health = json.loads(capsys.readouterr().out)["app_health"]
    assert health["enabled"] is True and health["path"] == "/ready" and health["threshold"] == 3


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "state: {s: {type: cassandra}}\n",
            "state.s.type: unknown state store type 'cassandra' (available: etcd, in-memory, mysql, postgresql, redis, sqlite)",
        ),
        (
            "state: {s: {type: sqlite, metadata: {colour: red}}}\n",
            "state.s.metadata.colour: unknown metadata key for sqlite",
        ),
        (
            "state: {s: {type: in-memory, metadata: {cleanupIntervalInSeconds: soon}}}\n",
            "expected a number, got 'soon'",
        ),
        ("grpc_address: nowhere\n", "grpc_address: expected HOST:PORT"),
        (
            "state: {s: {type: sqlite, metadata: {connectionString: /proc/no/such/dir/x.db}}}\n",
            "state.s.metadata.connectionString: cannot open /proc/no/such/dir/x.db",
        ),
        ("max_message_bytes: -5\n", "max_message_bytes: must be between 1024 and 2147483647, got -5"),
        ("max_message_bytes: 0\n", "max_message_bytes: must be between 1024 and 2147483647, got 0"),
        ("shutdown_grace_seconds: .nan\n", "shutdown_grace_seconds: expected a number between 0 and 3600, got nan"),
        ("shutdown_grace_seconds: -3\n", "shutdown_grace_seconds: must be between 0 and 3600, got -3"),
        ("max_publish_bytes: -1\n", "max_publish_bytes: must be between 1 and 2147483647, got -1"),
        ("subscriptions_refresh_seconds: 0\n", "subscriptions_refresh_seconds: must be between 0.1 and 86400, got 0"),
        (
            "pubsub: {n: {type: nats, metadata: {concurrency: 0}}}\n",
            "pubsub.n.metadata.concurrency: must be between 1 and 10000, got 0",
        ),
        (
            "pubsub: {n: {type: nats, metadata: {concurrency: -5}}}\n",
            "pubsub.n.metadata.concurrency: must be between 1 and 10000, got -5",
        ),
        (
            "pubsub: {n: {type: nats, metadata: {ackWaitInSeconds: -1}}}\n",
            "pubsub.n.metadata.ackWaitInSeconds: must be between 1 and 86400, got -1.0",
        ),
        (
            "pubsub: {n: {type: nats, metadata: {maxAgeInSeconds: -3}}}\n",
            "pubsub.n.metadata.maxAgeInSeconds: must be between 0 and 315360000, got -3.0",
        ),
        (
            "pubsub: {r: {type: redis, metadata: {redisHost: '127.0.0.1:6379', poolSize: 0}}}\n",
            "pubsub.r.metadata.poolSize: must be between 1 and 10000, got 0",
        ),
        (
            "pubsub: {r: {type: redis, metadata: {redisHost: '127.0.0.1:6379', maxLenApprox: -1}}}\n",
            "pubsub.r.metadata.maxLenApprox: must be between 0 and 1000000000, got -1",
        ),
        (
            "state: {r: {type: redis, metadata: {redisHost: '127.0.0.1:6379', timeoutInSeconds: 0}}}\n",
            "state.r.metadata.timeoutInSeconds: must be between 0.1 and 3600, got 0.0",
        ),
    ],
)
def test_bad_config_exits_non_zero_with_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    addresses = [] if "address" in text else ["--grpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0"]
    done = subprocess.run(
        [sys.executable, "-m", "layotto.server", "serve", "-c", str(path), "--data-dir", str(tmp_path), *addresses],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "config error" in line]
    assert len(errors) == 1, done.stderr
    assert str(path) in errors[0] and fragment in errors[0]


DAPR_REDIS = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: redisPassword
    value: ""
  - name: actorStateStore
    value: "true"
---
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: tracing
"""


def test_dapr_component_manifests_are_loaded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    components = tmp_path / "components"
    components.mkdir()
    (components / "statestore.yaml").write_text(DAPR_REDIS)
    (components / "pg.yml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: pg}\n"
        "spec: {type: state.postgres, metadata: [{name: connectionString, value: 'host=db'}]}\n"
    )
    assert main(["serve", "--print-config", "--components-path", str(components)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["state"]["statestore"] == {
        "type": "redis",
        "metadata": {"redisHost": "localhost:6379", "redisPassword": ""},
    }
    assert printed["state"]["pg"] == {"type": "postgresql", "metadata": {"connectionString": "host=db"}}
    assert printed["state"]["sqlite"]["type"] == "sqlite"  # the embedded defaults stay


def test_a_scoped_component_manifest_loads_only_in_the_apps_it_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dapr loads a component whose scopes list app ids only in those apps (it was loaded in all)."""
    component = (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: {name}}}\nspec: {{type: state.in-memory}}\n"
    )
    (tmp_path / "orders.yaml").write_text(component.format(name="orders") + "scopes: [checkout, billing]\n")
    (tmp_path / "everyone.yaml").write_text(component.format(name="everyone"))
    (tmp_path / "bad.yaml").write_text(component.format(name="bad") + "scopes: checkout\n")
    loaded = {}
    for app_id in ("checkout", "catalog"):
        args = ["serve", "--print-config", "--components-path", str(tmp_path), "--app-id", app_id]
        assert main(args) == 2  # bad.yaml's scopes are no list
        assert f"{tmp_path / 'bad.yaml'}: scopes: expected a list of app ids" in capsys.readouterr().err
    (tmp_path / "bad.yaml").unlink()
    for app_id in ("checkout", "catalog"):
        args = ["serve", "--print-config", "--components-path", str(tmp_path), "--app-id", app_id]
        assert main(args) == 0
        loaded[app_id] = set(json.loads(capsys.readouterr().out)["state"])
    assert {"orders", "everyone"} <= loaded["checkout"]
    assert "everyone" in loaded["catalog"] and "orders" not in loaded["catalog"]


@pytest.mark.parametrize(
    ("manifest", "fragment"),
    [
        (
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: p}\nspec: {type: middleware.http.x}\n",
            "spec.type: middleware components are not served yet",
        ),
        (
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec: {type: redis}\n",
            "spec.type: expected BLOCK.TYPE",
        ),
        (
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec:\n  type: state.redis\n"
            "  metadata: [{name: redisPassword, secretKeyRef: {name: s, key: k}}]\n",
            "redisPassword).secretKeyRef: needs the manifest's auth.secretStore naming a secret store",
        ),
        (  # was loaded with no metadata at all
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec:\n  type: state.in-memory\n"
            "  metdata: [{name: keyPrefix, value: x}]\n",
            "spec.metdata: unknown key (known: ignoreErrors, initTimeout, metadata, type, version)",
        ),
    ],
)
def test_bad_dapr_manifests(tmp_path: Path, capsys: pytest.CaptureFixture[str], manifest: str, fragment: str) -> None:
    (tmp_path / "c.yaml").write_text(manifest)
    assert main(["serve", "--print-config", "--components-path", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"layotto: config error: {tmp_path / 'c.yaml'}: ") and fragment in error


def test_a_manifest_component_s_error_names_the_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It named the runtime config's file (or "embedded defaults"), where the component is not."""
    manifests = tmp_path / "components"
    manifests.mkdir()
    (manifests / "files.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: files}\n"
        "spec: {type: bindings.localstorage, metadata: [{name: rootpath, value: /tmp/x}]}\n"
    )
    config = write(tmp_path, "runtime.yaml", f"components_path: {manifests}\nstate: {{s: {{type: in-memory}}}}\n")
    listen = ["--grpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", str(tmp_path)]
    assert main(["serve", "-c", str(config), *listen]) == 2
    line = capsys.readouterr().err.splitlines()[-1]  # after the log lines of the components loaded
    assert line.startswith(f"layotto: config error: {manifests / 'files.yaml'}: bindings.files.metadata.rootpath: ")


def test_a_manifest_of_no_dapr_kind_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "c.yaml").write_text("apiVersion: dapr.io/v1alpha1\nkind: Componet\nmetadata: {name: s}\n")
    with caplog.at_level("INFO", logger="layotto.server.dapr_manifests"):
        assert load_manifests(tmp_path) == []
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "kind 'Componet' is not a Dapr manifest kind" in record.getMessage()


def test_layotto_sequencer_bigger_than_and_app_callback(tmp_path: Path) -> None:
    path = tmp_path / "runtime_config.json"
    path.write_text(
        json.dumps(
            {
                "grpc_config": {
                    "app": {"app_id": "shop", "grpc_callback_port": 9999},
                    "sequencer": {"ids": {"type": "in-memory", "biggerThan": {"orders": 1000}}},
                }
            }
        )
    )
    config = load(path)
    assert config.components["sequencer"]["ids"].metadata["biggerThan"] == '{"orders": 1000}'
    assert config.app_id == "shop" and config.app_callback_address == "127.0.0.1:9999"


SERVE = (sys.executable, "-m", "layotto.server", "serve")
LOOPBACK_ANY_PORT = ("--grpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0")


def _serve_config(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVE, "-c", str(path), "--data-dir", str(tmp_path), *LOOPBACK_ANY_PORT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p.write_bytes(b"\xff\xfe\x00a\x00p\x00p"), "not UTF-8 text (byte 0xff at offset 0)"),
        (lambda p: p.write_bytes(b"app_id: caf\xe9\n"), "not UTF-8 text (byte 0xe9 at offset 11)"),
        (lambda p: p.mkdir(), "cannot read: Is a directory"),
        (lambda p: None, "cannot read: No such file or directory"),
    ],
    ids=["utf16", "latin1", "directory", "missing"],
)
def test_an_unreadable_config_is_one_line_and_exit_2(tmp_path: Path, make: Any, fragment: str) -> None:
    path = tmp_path / "runtime.yaml"
    make(path)
    done = _serve_config(path, tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"layotto: config error: {path}: {fragment}"]


def test_an_unreadable_dapr_manifest_is_one_line_and_exit_2(tmp_path: Path) -> None:
    manifests = tmp_path / "components"
    manifests.mkdir()
    (manifests / "state.yaml").write_bytes(b"\xff\xfekind: Component\n")
    config = write(tmp_path, "runtime.yaml", f"components_path: {manifests}\n")
    done = _serve_config(config, tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"layotto: config error: components_path: {manifests / 'state.yaml'}: not UTF-8 text (byte 0xff at offset 0)"
    ]


def test_every_numeric_component_metadata_field_declares_its_range() -> None:
    """Every number a component reads from its metadata is range-checked at start-up (docs/limits.md)."""
    from layotto.server.components.nameresolution.etcd import METADATA as ETCD_RESOLVER_METADATA
    from layotto.server.components.registry import BUILDING_BLOCKS, registry_for

    fields = [(f"name_resolution.etcd.{f.name}", f) for f in ETCD_RESOLVER_METADATA]
    for block in BUILDING_BLOCKS:
        registry = registry_for(block)
        fields += [(f"{block}.{t}.{f.name}", f) for t in registry.types() for f in registry.spec(t).metadata]
    numeric = [(where, f) for where, f in fields if f.type in (int, float) or f.value_type in (int, float)]
    assert len(numeric) > 30
    unbounded = [where for where, f in numeric if f.minimum is None or f.maximum is None]
    assert unbounded == []
    outside = [where for where, f in numeric if f.type is not dict and not f.minimum <= f.default <= f.maximum]
    assert outside == [], "a default outside its own range"


@pytest.mark.parametrize(
    ("options", "cause"),
    [
        ("host=127.0.0.1 sslmode=bogus", 'invalid sslmode value: "bogus"'),
        ("host=127.0.0.1 port=1", 'connection to server at "127.0.0.1", port 1 failed: Connection refused'),
    ],
)
def test_a_bad_postgresql_dsn_names_its_real_cause_in_one_line(tmp_path: Path, options: str, cause: str) -> None:
    dsn = f"{options} user=layotto password=pw-secret dbname=layotto connect_timeout=2"
    config = write(
        tmp_path, "pg.yaml", f"state: {{pg: {{type: postgresql, metadata: {{connectionString: '{dsn}'}}}}}}\n"
    )
    done = _serve_config(config, tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # no psycopg.pool warnings, no traceback
    assert lines[0].startswith(
        f"layotto: config error: {config}: state.pg: component 'pg' is unavailable: cannot connect"
    )
    assert cause in lines[0] and "pool initialization incomplete" not in lines[0]
