"""Runtime configuration: the embedded defaults, and YAML/JSON files.

Three shapes are accepted:

* this runtime's own file: listen addresses plus one section per building block,
  each mapping a component name to ``{type, metadata}``;
* a Layotto ``grpc_config`` object (bare or under a ``grpc_config`` key);
* a whole Layotto runtime_config.json (MOSN ``servers[].listeners[]``), from which
  the listener address and its ``grpc_config`` are taken.

Every problem is a :class:`ConfigError` with one line naming the file, the key and
the choices.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from layotto.server.app_health import AppHealthSettings, parse_app_health
from layotto.server.components.base import ConfigError, read_config_text
from layotto.server.components.nameresolution import NameResolutionSettings, parse_settings
from layotto.server.components.registry import BUILDING_BLOCKS
from layotto.server.components.secretrefs import SecretRef, layotto_secret_refs
from layotto.server.dapr_manifests import (
    load_access_control,
    load_resiliency,
    load_secret_scopes,
    load_subscriptions,
    located_manifests,
)
from layotto.server.runtime.access_control import AccessControl, parse_access_control
from layotto.server.runtime.flow_control import FlowControl, parse_flow_control
from layotto.server.runtime.resiliency.spec import ResiliencySpec, parse_resiliency, spec_to_dict
from layotto.server.runtime.secret_scopes import SecretScope, parse_scopes
from layotto.server.runtime.subscriptions import TopicSubscription
from layotto.server.traffic.settings import CaptureSettings, parse_capture_settings
from layotto.server.wasm.settings import WasmSettings, parse_wasm_settings
from layotto.tracing import TracingConfigError, TracingSettings
from layotto.tracing import from_mapping as tracing_from_mapping

DEFAULT_GRPC_ADDRESS = "127.0.0.1:34904"
DEFAULT_HTTP_ADDRESS = "127.0.0.1:34999"


GRPC_TRANSPORTS = ("auto", "native", "grpcio")
LOG_FORMATS = ("text", "json")
UNIX_PREFIX = "unix:"
DEFAULT_UNIX_SOCKET_MODE = 0o600
#: the modes a Unix socket file may be given: the owner only, or the owner and its group
UNIX_SOCKET_MODES = (0o600, 0o660)
# Options the runtime sets from its own keys; grpc_server_options may not set them again.
_OWN_GRPC_OPTIONS = ("grpc.max_receive_message_length", "grpc.max_send_message_length", "grpc.so_reuseport")


def default_grpc_transport() -> str:
    """LAYOTTO_GRPC_TRANSPORT when set (how CI runs every suite on each transport), else auto."""
    return os.environ.get("LAYOTTO_GRPC_TRANSPORT") or "auto"


def default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "layotto")


@dataclass(frozen=True)
class ComponentConfig:
    type: str
    metadata: dict[str, str] = field(default_factory=dict)
    #: metadata read from secret stores at start-up
    secret_refs: tuple[SecretRef, ...] = ()
    #: the Dapr manifest declaring it ("": the runtime config), named by its errors
    source: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "metadata": dict(self.metadata)}
        if self.secret_refs:
            out["secret_ref"] = [
                {"store_name": r.store, "key": r.secret, "sub_key": r.key, "inject_as": r.metadata_key}
                for r in self.secret_refs
            ]
        return out


@dataclass(frozen=True)
class TlsSettings:
    """The listeners' TLS: PEM files, read at start-up and again when they change (docs/security.md).

    ``client_ca_file`` set: mutual TLS, every client must present a certificate it signed.
    ``reload_seconds``: how often the files' size and modification time are compared.
    """

    cert_file: str
    key_file: str
    client_ca_file: str = ""
    reload_seconds: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cert_file": self.cert_file, "key_file": self.key_file}
        if self.client_ca_file:
            out["client_ca_file"] = self.client_ca_file
        out["reload_seconds"] = self.reload_seconds
        return out


@dataclass(frozen=True)
class RuntimeConfig:
    app_id: str = "layotto"
    grpc_address: str = DEFAULT_GRPC_ADDRESS
    http_address: str = DEFAULT_HTTP_ADDRESS
    data_dir: str = field(default_factory=default_data_dir)
    shutdown_grace_seconds: float = 10.0
    max_message_bytes: int = 16 * 1024 * 1024
    max_publish_bytes: int = 4 * 1024 * 1024  # largest event payload PublishEvent accepts
    components: dict[str, dict[str, ComponentConfig]] = field(default_factory=dict)
    components_path: str | None = None  # a directory of Dapr component manifests
    app_callback_address: str | None = None  # HOST:PORT of the app's AppCallback server
    app_callback_protocol: str = "layotto"  # whose AppCallback the app serves: layotto or dapr
    subscriptions_refresh_seconds: float = 30.0  # how often ListTopicSubscriptions is asked again
    tracing: TracingSettings = field(default_factory=TracingSettings)  # off unless an exporter is named
    event_loop: str = "auto"  # uvloop when it is installed (the default on Linux and macOS), else asyncio's
    grpc_transport: str = field(default_factory=default_grpc_transport)  # auto, native (pygrpc-native) or grpcio
    grpc_server_options: dict[str, int | str] = field(default_factory=dict)  # extra grpc.* server options
    secret_scopes: tuple[SecretScope, ...] = ()  # which secrets of which store the app may read
    app_protocol: str = "grpc"  # how invocations reach the app: grpc (OnInvoke at app_callback_address) or http
    app_port: int = 0  # the app's HTTP port on 127.0.0.1 (app_protocol http)
    name_resolution: NameResolutionSettings = field(default_factory=NameResolutionSettings)  # app id -> sidecars
    access_control: AccessControl | None = None  # which apps may invoke which methods of this app (Dapr's shape)
    invoke_token: str = field(default="", repr=False)  # shared by the deployment's sidecars: proves a hop's origin
    flow_control: FlowControl | None = None  # rate limits per gRPC method and per invoked app id
    resiliency: ResiliencySpec | None = None  # Dapr's timeouts, retries, circuit breakers per app and component
    wasm: WasmSettings | None = None  # WebAssembly functions (the wasm extra): trigger, admin, modules, limits
    metrics_enabled: bool = True  # Prometheus /metrics on the HTTP port (config: metrics: {enabled: ...})
    traffic_capture: CaptureSettings | None = None  # sampled capture of received calls into files
    api_token: str = ""  # required of callers as dapr-api-token; DAPR_API_TOKEN overrides it ("": none)
    tls: TlsSettings | None = None  # TLS (mTLS with a client CA) on the gRPC and HTTP listeners
    unix_socket_mode: int = DEFAULT_UNIX_SOCKET_MODE  # permissions of the unix: listeners' socket files
    log_format: str = "text"  # text, or json: one JSON object a line (docs/observability.md)
    app_health: AppHealthSettings = field(default_factory=AppHealthSettings)  # probe the app, hold events meanwhile
    subscriptions: tuple[TopicSubscription, ...] = ()  # declared by Subscription manifests (components_path)
    hot_reload: bool = False  # watch the config file and components_path, apply component changes live
    hot_reload_seconds: float = 1.0  # how often hot reload compares the files' size and modification time
    api_plugins: dict[str, dict[str, str]] = field(default_factory=dict)  # API plugin name -> its metadata
    pluggable_components_path: str = ""  # the pluggable components' sockets ("": $DAPR_COMPONENTS_SOCKETS_FOLDER)
    source: str = "embedded defaults"

    def with_overrides(self, **overrides: Any) -> RuntimeConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "app_id": self.app_id,
            "grpc_address": self.grpc_address,
            "http_address": self.http_address,
            "data_dir": self.data_dir,
            "shutdown_grace_seconds": self.shutdown_grace_seconds,
            "max_message_bytes": self.max_message_bytes,
            "max_publish_bytes": self.max_publish_bytes,
            "event_loop": self.event_loop,
            "grpc_transport": self.grpc_transport,
        }
        if self.grpc_server_options:
            out["grpc_server_options"] = dict(self.grpc_server_options)
        if self.components_path:
            out["components_path"] = self.components_path
        out.update(self._app_dict())
        if not self.metrics_enabled:
            out["metrics"] = {"enabled": False}
        if self.api_token:
            out["api_token"] = self.api_token  # masked by --print-config
        out.update(self._operation_entries())
        out.update(self._invocation_entries())
        if self.tracing.enabled:
            out["tracing"] = self.tracing.to_dict()
        if self.resiliency is not None:
            out["resiliency"] = spec_to_dict(self.resiliency)
        if self.wasm is not None:
            out["wasm"] = self.wasm.to_dict()
        if self.secret_scopes:
            out["secret_scopes"] = [scope.to_dict() for scope in self.secret_scopes]
        for block, components in self.components.items():
            out[block] = {name: c.to_dict() for name, c in components.items()}
        return out

    def _invocation_entries(self) -> dict[str, Any]:
        """name_resolution, invoke_token, access_control and flow_control, where they are set."""
        out: dict[str, Any] = {}
        if self.name_resolution != NameResolutionSettings():
            out["name_resolution"] = self.name_resolution.to_dict()
        if self.invoke_token:
            out["invoke_token"] = self.invoke_token  # masked by --print-config
        if self.access_control is not None:  # the config's, or a Configuration manifest's
            out["access_control"] = self.access_control.to_dict()
        if self.flow_control is not None:
            out["flow_control"] = self.flow_control.to_dict()
        return out

    def _operation_entries(self) -> dict[str, Any]:
        """tls, unix_socket_mode, log_format and traffic_capture, where they are not the defaults."""
        out: dict[str, Any] = {}
        if self.tls is not None:
            out["tls"] = self.tls.to_dict()
        if self.unix_socket_mode != DEFAULT_UNIX_SOCKET_MODE:
            out["unix_socket_mode"] = f"{self.unix_socket_mode:04o}"
        if self.log_format != "text":
            out["log_format"] = self.log_format
        if self.hot_reload:
            out["hot_reload"], out["hot_reload_seconds"] = True, self.hot_reload_seconds
        if self.pluggable_components_path:
            out["pluggable_components_path"] = self.pluggable_components_path
        if self.api_plugins:
            out["api_plugins"] = {name: dict(metadata) for name, metadata in self.api_plugins.items()}
        if self.traffic_capture is not None:
            out["traffic_capture"] = self.traffic_capture.to_dict()
        return out

    def _app_dict(self) -> dict[str, Any]:
        """The keys saying how the runtime reaches the app, those set (part of :meth:`to_dict`)."""
        out: dict[str, Any] = {}
        if self.app_callback_address:
            out["app_callback_address"] = self.app_callback_address
            out["app_callback_protocol"] = self.app_callback_protocol
            out["subscriptions_refresh_seconds"] = self.subscriptions_refresh_seconds
        if self.app_port or self.app_protocol != "grpc":
            out["app_protocol"], out["app_port"] = self.app_protocol, self.app_port
        if self.app_health != AppHealthSettings():
            out["app_health"] = self.app_health.to_dict()
        return out


def embedded_defaults() -> RuntimeConfig:
    """Every building block's embedded component, each named after its type."""
    return RuntimeConfig(
        components={
            "state": {"in-memory": ComponentConfig("in-memory"), "sqlite": ComponentConfig("sqlite")},
            "hellos": {"helloworld": ComponentConfig("helloworld")},
            "lock": {"in-memory": ComponentConfig("in-memory")},
            "sequencer": {"in-memory": ComponentConfig("in-memory")},
            "pubsub": {"in-memory": ComponentConfig("in-memory")},
            "config_store": {"in-memory": ComponentConfig("in-memory")},
            "scheduler": {"sqlite": ComponentConfig("sqlite")},
        }
    )


_SCALAR_KEYS: dict[str, type] = {
    "app_id": str,
    "grpc_address": str,
    "http_address": str,
    "data_dir": str,
    "shutdown_grace_seconds": float,
    "max_message_bytes": int,
    "max_publish_bytes": int,
    "components_path": str,
    "app_callback_address": str,
    "app_callback_protocol": str,
    "subscriptions_refresh_seconds": float,
    "event_loop": str,
    "grpc_transport": str,
    "app_protocol": str,
    "app_port": int,
    "invoke_token": str,
    "api_token": str,
    "log_format": str,
    "hot_reload": bool,
    "hot_reload_seconds": float,
    "pluggable_components_path": str,
}
#: the allowed range of every numeric key (docs/configuration.md lists them): a value outside,
#: NaN, infinity or a boolean stops start-up with one line naming the key
NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "shutdown_grace_seconds": (0, 3600),
    "max_message_bytes": (1024, 2**31 - 1),  # gRPC's message limits are 32-bit
    "max_publish_bytes": (1, 2**31 - 1),
    "subscriptions_refresh_seconds": (0.1, 86400),
    "app_port": (0, 65535),
    "hot_reload_seconds": (0.05, 3600),
}
APP_PROTOCOLS = ("grpc", "http")
#: top-level sections parsed by their own module: key -> parser(raw, where)
_SECTION_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "name_resolution": parse_settings,
    "access_control": parse_access_control,
    "flow_control": parse_flow_control,
    "resiliency": parse_resiliency,
    "wasm": parse_wasm_settings,
    "app_health": parse_app_health,
    "traffic_capture": parse_capture_settings,
}
NEEDS_TOKEN = (
    "an access control needs invoke_token (the secret the deployment's sidecars share),"
    " or any client could claim another app's id on a hop"
)
#: Layotto's names of building-block sections
SECTION_ALIASES = {"pub_subs": "pubsub", "cryption": "crypto"}
CALLBACK_PROTOCOLS = ("layotto", "dapr")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")
#: keys whose value is one of a few names
_CHOICES = {
    "app_callback_protocol": CALLBACK_PROTOCOLS,
    "app_protocol": APP_PROTOCOLS,
    "event_loop": EVENT_LOOPS,
    "grpc_transport": GRPC_TRANSPORTS,
    "log_format": LOG_FORMATS,
}
# Layotto sections this runtime does not serve yet: accepted by name, refused clearly.
_LAYOTTO_ONLY_SECTIONS = (
    "rpcs",
    "custom_component",
)


def _components(section: Any, where: str) -> dict[str, ComponentConfig]:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a mapping of component name to {{type, metadata}}")
    out = {}
    for name, body in section.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{where}.{name}: expected {{type, metadata}}, got {type(body).__name__}")
        unknown = sorted(set(body) - {"type", "metadata", "hello", "biggerThan", "secret_ref"})
        if unknown:
            raise ConfigError(f"{where}.{name}.{unknown[0]}: unknown key (known: type, metadata, secret_ref)")
        if not isinstance(body.get("type"), str) or not body["type"]:
            raise ConfigError(f"{where}.{name}.type: required, a component type name")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ConfigError(f"{where}.{name}.metadata: expected a mapping of strings")
        metadata = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
        if "hello" in body:  # Layotto's helloworld keeps its greeting beside the type
            metadata.setdefault("hello", str(body["hello"]))
        if "biggerThan" in body:  # so do Layotto's sequencers their starting floors
            metadata.setdefault("biggerThan", json.dumps(body["biggerThan"]))
        refs = layotto_secret_refs(body["secret_ref"], f"{where}.{name}.secret_ref") if "secret_ref" in body else ()
        out[str(name)] = ComponentConfig(body["type"], metadata, refs)
    return out


def unix_path(address: str) -> str | None:
    """The socket path of a ``unix:PATH`` or ``unix:///PATH`` address, else None."""
    if not address.startswith(UNIX_PREFIX):
        return None
    path = address[len(UNIX_PREFIX) :]
    return "/" + path.lstrip("/") if path.startswith("//") else path


def unix_domain_socket_addresses(directory: str, app_id: str) -> tuple[str, str]:
    """The gRPC and HTTP addresses of Dapr's ``--unix-domain-socket DIR``: ``unix:DIR/dapr-APPID-grpc.socket``
    and ``unix:DIR/dapr-APPID-http.socket``."""
    base = os.path.join(os.path.abspath(os.path.expanduser(directory)), f"dapr-{app_id}")
    return f"{UNIX_PREFIX}{base}-grpc.socket", f"{UNIX_PREFIX}{base}-http.socket"


def check_listen_address(address: str, key: str) -> None:
    """A ConfigError naming ``key`` unless ``address`` is HOST:PORT or ``unix:PATH``."""
    path = unix_path(address)
    if path is None:
        split_address(address, key)
    elif not path or path.endswith("/"):
        raise ConfigError(f"{key}: expected unix:PATH to a socket file, got {address!r}")


def split_address(address: str, key: str) -> tuple[str, int]:
    """HOST and PORT of a listen address, or a ConfigError naming ``key``."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise ConfigError(f"{key}: expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def from_mapping(raw: Any) -> RuntimeConfig:
    """Build a config from a parsed file; the file name is added by :func:`load`."""
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping")
    values: dict[str, Any] = {}
    components: dict[str, dict[str, ComponentConfig]] = {}
    for key, value in _unwrap_layotto(raw).items():
        if key in BUILDING_BLOCKS or key in SECTION_ALIASES:
            components[SECTION_ALIASES.get(key, key)] = _components(value, key)
        else:
            values.update(_top_level_key(key, value))
    for key in ("grpc_address", "http_address"):
        if key in values:
            check_listen_address(values[key], key)
    if "app_callback_address" in values:
        split_address(values["app_callback_address"], "app_callback_address")
    for key, choices in _CHOICES.items():
        if key in values and values[key] not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {values[key]!r}")
    if values.get("access_control") is not None and not values.get("invoke_token"):
        raise ConfigError(f"access_control: {NEEDS_TOKEN}")
    return RuntimeConfig(**values, components=components)


def _grpc_server_options(raw: Any) -> dict[str, int | str]:
    """``{grpc.NAME: integer or string}``: gRPC core server options (channel arguments) passed as they are."""
    if not isinstance(raw, dict):
        raise ConfigError("grpc_server_options: expected a mapping of grpc.* option names to integers or strings")
    options: dict[str, int | str] = {}
    for name, value in raw.items():
        where = f"grpc_server_options.{name}"
        if not isinstance(name, str) or not name.startswith("grpc."):
            raise ConfigError(f"{where}: expected an option name starting with 'grpc.'")
        if name in _OWN_GRPC_OPTIONS:
            raise ConfigError(f"{where}: set by the runtime itself (max_message_bytes sets the message limits)")
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{where}: expected an integer or a string, got {value!r}")
        options[name] = value
    return options


def _number(key: str, value: Any) -> int | float:
    """A numeric key's value, range-checked (:data:`NUMBER_RANGES`); integers must be whole."""
    wanted = _SCALAR_KEYS[key]
    low, high = NUMBER_RANGES[key]
    shape = "an integer" if wanted is int else "a number"
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if not math.isfinite(number) or (wanted is int and not number.is_integer()):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {shape} between {_shown(low)} and {_shown(high)}, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{key}: must be between {_shown(low)} and {_shown(high)}, got {value!r}")
    return int(number) if wanted is int else number


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _scalar(key: str, value: Any) -> Any:
    if key in NUMBER_RANGES:
        return _number(key, value)
    if _SCALAR_KEYS[key] is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if _SCALAR_KEYS[key] is str:
        # str() would turn an empty YAML value into the text "None" (an app id, a token), a list
        # into "[1]" and 1.50 into "1.5": only a string, or a whole number written bare, is taken
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    try:
        return _SCALAR_KEYS[key](value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {_SCALAR_KEYS[key].__name__}, got {value!r}") from None


def _top_level_key(key: str, value: Any) -> dict[str, Any]:
    if key in _SCALAR_KEYS:
        return {key: _scalar(key, value)}
    if key in ("tracing", "metrics"):
        return (
            {"tracing": _tracing_section(value)} if key == "tracing" else {"metrics_enabled": _metrics_section(value)}
        )
    if key == "secret_scopes":
        return {"secret_scopes": parse_scopes(value, key)}
    if key == "grpc_server_options":
        return {key: _grpc_server_options(value)}
    if key in _SECTION_PARSERS:
        return {key: _SECTION_PARSERS[key](value, key)}
    if key == "app" and isinstance(value, dict):
        return _app_section(value)
    if key in _LAYOTTO_ONLY_SECTIONS:
        raise ConfigError(f"{key}: this building block is not served yet (served: {', '.join(BUILDING_BLOCKS)})")
    known = ", ".join(
        [
            *_SCALAR_KEYS,
            "tracing",
            "metrics",
            "secret_scopes",
            "grpc_server_options",
            "tls",
            "unix_socket_mode",
            "name_resolution",
            "access_control",
            "flow_control",
            "resiliency",
            "wasm",
            "app_health",
            "api_plugins",
            "traffic_capture",
            *BUILDING_BLOCKS,
        ]
    )
    raise ConfigError(f"{key}: unknown key (known: {known})")


def tls_settings(raw: Any, key: str) -> TlsSettings:
    """``{cert_file, key_file, client_ca_file?, reload_seconds?}`` -> TlsSettings; a ConfigError names the key."""
    known = ("cert_file", "key_file", "client_ca_file", "reload_seconds")
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected a mapping ({', '.join(known)})")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key (known: {', '.join(known)})")
    files: dict[str, str] = {}
    for name in known[:3]:
        value = raw.get(name) or ""
        if not isinstance(value, str) or (not value and name != "client_ca_file"):
            raise ConfigError(f"{key}.{name}: expected the path of a PEM file, got {raw.get(name)!r}")
        files[name] = value
    seconds = raw.get("reload_seconds", 1.0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0.1 <= seconds <= 3600:
        raise ConfigError(f"{key}.reload_seconds: expected a number between 0.1 and 3600, got {seconds!r}")
    return TlsSettings(**files, reload_seconds=float(seconds))


def socket_mode(raw: Any, key: str) -> int:
    """``"0600"`` or ``"0660"`` (an octal string, or the integer) -> the mode; a ConfigError names the key."""
    try:
        mode = int(raw, 8) if isinstance(raw, str) else int(raw)
    except (TypeError, ValueError):
        mode = -1
    if isinstance(raw, bool) or mode not in UNIX_SOCKET_MODES:
        choices = ", ".join(f"{m:04o}" for m in UNIX_SOCKET_MODES)
        raise ConfigError(f"{key}: expected one of {choices} (octal), got {raw!r}")
    return mode


def api_plugins_section(raw: Any, key: str) -> dict[str, dict[str, str]]:
    """``{plugin name: {metadata key: value} or null}`` -> name -> string metadata; a ConfigError names the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected a mapping of plugin names to their metadata")
    plugins: dict[str, dict[str, str]] = {}
    for name, given in raw.items():
        metadata = {} if given is None else given
        if not isinstance(name, str) or not name or not isinstance(metadata, dict):
            raise ConfigError(f"{key}.{name}: expected a mapping of metadata keys to values")
        for item, value in metadata.items():
            if isinstance(value, dict | list) or value is None:
                raise ConfigError(f"{key}.{name}.{item}: expected a string, number or boolean, got {value!r}")
        plugins[name] = {str(item): str(value) for item, value in metadata.items()}
    return plugins


_SECTION_PARSERS.update(tls=tls_settings, unix_socket_mode=socket_mode, api_plugins=api_plugins_section)


def _metrics_section(raw: Any) -> bool:
    """``metrics: {enabled: true|false}`` -> whether /metrics is served."""
    if not isinstance(raw, dict) or set(raw) - {"enabled"}:
        raise ConfigError("metrics: expected a mapping with one key, enabled: true or false")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"metrics.enabled: expected true or false, got {enabled!r}")
    return enabled


def _tracing_section(raw: Any) -> TracingSettings:
    if not isinstance(raw, dict):
        raise ConfigError("tracing: expected a mapping (exporters, service_name, sampling_ratio, ...)")
    try:
        return tracing_from_mapping(raw)
    except TracingConfigError as error:
        raise ConfigError(str(error)) from None


def _app_section(app: dict[str, Any]) -> dict[str, Any]:
    """Layotto's ``app`` block: app_id, and the callback at grpc_callback_host:grpc_callback_port."""
    values: dict[str, Any] = {"app_id": str(app.get("app_id", "layotto"))}
    port = app.get("grpc_callback_port") or 0
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"app.grpc_callback_port: expected a port number, got {port!r}")
    if port:
        values["app_callback_address"] = f"{app.get('grpc_callback_host') or '127.0.0.1'}:{port}"
    return values


def _layotto_list(value: Any, where: str) -> list[dict[str, Any]]:
    """A list of mappings of Layotto's ``servers`` tree (None: empty); else a ConfigError naming ``where``."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(f"{where}: expected a list of mappings, as in Layotto's runtime_config.json")
    return value


def _unwrap_layotto(raw: dict[str, Any]) -> dict[str, Any]:
    if "grpc_config" in raw and isinstance(raw["grpc_config"], dict):
        return dict(raw["grpc_config"])
    if "servers" not in raw:
        return raw
    for s, server in enumerate(_layotto_list(raw.get("servers"), "servers")):
        for n, listener in enumerate(_layotto_list(server.get("listeners"), f"servers[{s}].listeners")):
            chains = _layotto_list(listener.get("filter_chains"), f"servers[{s}].listeners[{n}].filter_chains")
            for c, chain in enumerate(chains):
                where = f"servers[{s}].listeners[{n}].filter_chains[{c}].filters"
                for f, flt in enumerate(_layotto_list(chain.get("filters"), where)):
                    filter_config = flt.get("config") or {}
                    if not isinstance(filter_config, dict):
                        raise ConfigError(f"{where}[{f}].config: expected a mapping")
                    grpc_config = filter_config.get("grpc_config")
                    if flt.get("type") == "grpc" and isinstance(grpc_config, dict):
                        unwrapped = dict(grpc_config)
                        if listener.get("address") and listener.get("network", "tcp") == "tcp":
                            unwrapped.setdefault("grpc_address", listener["address"])
                        return unwrapped
    raise ConfigError("servers: no listener with a grpc filter carrying grpc_config")


def with_dapr_components(config: RuntimeConfig) -> RuntimeConfig:
    """The config plus the components of its Dapr manifests directory, if any."""
    if not config.components_path:
        return config
    directory = Path(config.components_path).expanduser()
    components = {block: dict(named) for block, named in config.components.items()}
    for where, (block, name, type_name, metadata, refs) in located_manifests(directory, config.app_id):
        if name in components.get(block, {}):
            raise ConfigError(f"components_path: {block} component {name!r} is defined twice")
        components.setdefault(block, {})[name] = ComponentConfig(type_name, metadata, refs, where)
    scopes = {scope.store: scope for scope in config.secret_scopes}
    for where, raw in load_secret_scopes(directory):
        for scope in parse_scopes(raw, where):
            if scope.store in scopes:
                raise ConfigError(f"{where}: secret store {scope.store!r} has a scope already")
            scopes[scope.store] = scope
    access = config.access_control
    for where, raw in load_access_control(directory):
        if access is not None:
            raise ConfigError(f"{where}: the app has an access control already (one per runtime)")
        access = parse_access_control(raw, where)
    if access is not None and not config.invoke_token:
        raise ConfigError(f"components_path: {NEEDS_TOKEN}")
    resiliency = config.resiliency
    for where, raw in load_resiliency(directory, config.app_id):
        spec = parse_resiliency(raw, where)
        resiliency = spec if resiliency is None else resiliency.merged(spec, where)
    subscriptions = (*config.subscriptions, *load_subscriptions(directory))
    return replace(
        config,
        components=components,
        secret_scopes=tuple(scopes.values()),
        access_control=access,
        resiliency=resiliency,
        subscriptions=subscriptions,
    )


def load(path: str | Path) -> RuntimeConfig:
    """The config of a YAML or JSON file; a :class:`ConfigError` (one line naming the file) when
    it cannot be read (missing, a directory, permission denied, not UTF-8) or is not valid."""
    path = Path(path)
    text = read_config_text(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML or JSON: {getattr(error, 'problem', error)}") from None
    try:
        return replace(from_mapping(raw), source=str(path))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
