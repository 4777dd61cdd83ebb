"""The ``wasm:`` config section: where functions are served, their modules, and their limits.

Shape (Layotto's function entries are accepted as they are: ``name``, ``instance_num``,
``vm_config: {engine, path}``)::

    wasm:
      address: 127.0.0.1:2045        # the function trigger (Layotto's port); requests carry header `id`
      admin_address: 127.0.0.1:34998 # POST /wasm/install, /wasm/uninstall, /wasm/update ("": none)
      fuel: 100000000                # per call: wasm instructions (roughly) before the call is stopped
      memory_bytes: 67108864         # per instance: linear memory ceiling
      deadline_seconds: 5            # per call: wall clock, host calls included
      wasi: false                    # true: WASI with no files, sockets, environment or arguments
      watch_seconds: 1               # how often module files are checked for changes (0: never)
      queue_capacity: 1024           # items a shared queue holds (enqueueing into a full one fails)
      metrics_per_function: 32       # metrics a function may define (each one Prometheus series)
      functions:
        function1:
          name: function1
          instance_num: 1
          vm_config: {engine: wasmtime, path: demo/function_1.wasm}
          deadline_seconds: 1        # fuel, memory_bytes, deadline_seconds: this function's own limits

No wasmtime here: the section parses without the ``wasm`` extra installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from layotto.server.components.base import ConfigError

DEFAULT_ADDRESS = "127.0.0.1:2045"
DEFAULT_ADMIN_ADDRESS = "127.0.0.1:34998"
MAX_INSTANCES = 64  # per function: each instance is a thread's worth of work at most
SECTION_KEYS = (
    "address",
    "admin_address",
    "fuel",
    "memory_bytes",
    "deadline_seconds",
    "wasi",
    "watch_seconds",
    "queue_capacity",
    "metrics_per_function",
    "functions",
)
LIMIT_KEYS = ("fuel", "memory_bytes", "deadline_seconds")
FUNCTION_KEYS = ("name", "instance_num", "vm_config", "path", "root_context_id", *LIMIT_KEYS)
#: key -> (bounds, whole number)
_LIMIT_BOUNDS: dict[str, tuple[tuple[float, float], bool]] = {
    "fuel": ((1_000, 2**62), True),
    "memory_bytes": ((65536, 2**32), True),
    "deadline_seconds": ((0.01, 3600), False),
}


@dataclass(frozen=True)
class Limits:
    """What one call may spend: ``fuel`` units, ``memory_bytes`` of linear memory, ``deadline_seconds``."""

    fuel: int = 100_000_000
    memory_bytes: int = 64 * 1024 * 1024
    deadline_seconds: float = 5.0


@dataclass(frozen=True)
class FunctionSpec:
    """One module to serve: ``name`` (the install name), ``path`` of its .wasm or .wat file,
    ``instance_num`` instances (calls beyond that wait for one)."""

    name: str
    path: str
    instance_num: int = 1
    root_context_id: int = 1
    #: this function's own limits, each None for the section's
    fuel: int | None = None
    memory_bytes: int | None = None
    deadline_seconds: float | None = None

    def limits(self, defaults: Limits) -> Limits:
        """The limits of this function's calls: its own where it sets them, else ``defaults``."""
        return Limits(
            fuel=self.fuel if self.fuel is not None else defaults.fuel,
            memory_bytes=self.memory_bytes if self.memory_bytes is not None else defaults.memory_bytes,
            deadline_seconds=self.deadline_seconds if self.deadline_seconds is not None else defaults.deadline_seconds,
        )


@dataclass(frozen=True)
class WasmSettings:
    address: str = DEFAULT_ADDRESS
    admin_address: str = DEFAULT_ADMIN_ADDRESS
    limits: Limits = field(default_factory=Limits)
    wasi: bool = False
    watch_seconds: float = 1.0
    queue_capacity: int = 1024
    metrics_per_function: int = 32
    functions: tuple[FunctionSpec, ...] = ()

    def with_limits(self, **changes: Any) -> WasmSettings:
        return replace(self, limits=replace(self.limits, **changes))

    def to_dict(self) -> dict[str, Any]:
        """The section as a config file would hold it (``layotto serve --print-config``)."""
        return {
            "address": self.address,
            "admin_address": self.admin_address,
            "fuel": self.limits.fuel,
            "memory_bytes": self.limits.memory_bytes,
            "deadline_seconds": self.limits.deadline_seconds,
            "wasi": self.wasi,
            "watch_seconds": self.watch_seconds,
            "queue_capacity": self.queue_capacity,
            "metrics_per_function": self.metrics_per_function,
            "functions": {
                f.name: {
                    "name": f.name,
                    "instance_num": f.instance_num,
                    "vm_config": {"engine": "wasmtime", "path": f.path},
                    **{key: getattr(f, key) for key in LIMIT_KEYS if getattr(f, key) is not None},
                }
                for f in self.functions
            },
        }


def parse_wasm_settings(raw: Any, where: str) -> WasmSettings:
    """The ``wasm:`` section as :class:`WasmSettings`; ConfigError naming the key at fault."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping ({', '.join(SECTION_KEYS)})")
    unknown = sorted(set(raw) - set(SECTION_KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(SECTION_KEYS)})")
    limits = Limits(**{key: value for key, value in _limits(raw, where).items() if value is not None})
    wasi = raw.get("wasi", False)
    if not isinstance(wasi, bool):
        raise ConfigError(f"{where}.wasi: expected true or false, got {wasi!r}")
    functions = raw.get("functions") or {}
    if not isinstance(functions, dict):
        raise ConfigError(f"{where}.functions: expected a mapping of names to functions")
    return WasmSettings(
        address=_address(raw, "address", where, DEFAULT_ADDRESS),
        admin_address=_address(raw, "admin_address", where, DEFAULT_ADMIN_ADDRESS, empty_ok=True),
        limits=limits,
        wasi=wasi,
        watch_seconds=_number(raw, "watch_seconds", where, 1.0, (0, 3600)),
        queue_capacity=int(_number(raw, "queue_capacity", where, 1024, (1, 1_000_000), whole=True)),
        metrics_per_function=int(_number(raw, "metrics_per_function", where, 32, (0, 1000), whole=True)),
        functions=tuple(parse_function(item, f"{where}.functions.{key}", str(key)) for key, item in functions.items()),
    )


def parse_function(raw: Any, where: str, default_name: str = "") -> FunctionSpec:
    """One function entry (Layotto's shape, or ``path`` instead of ``vm_config``); ConfigError naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping ({', '.join(FUNCTION_KEYS)})")
    unknown = sorted(set(raw) - set(FUNCTION_KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(FUNCTION_KEYS)})")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name: expected a non-empty string, got {name!r}")
    path = raw.get("path")
    vm_config = raw.get("vm_config")
    if vm_config is not None:
        if not isinstance(vm_config, dict):
            raise ConfigError(f"{where}.vm_config: expected a mapping (engine, path)")
        engine = vm_config.get("engine", "wasmtime")
        if engine != "wasmtime":
            raise ConfigError(f"{where}.vm_config.engine: only wasmtime is served, got {engine!r}")
        path = vm_config.get("path", path)
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{where}.vm_config.path: required: the module file (.wasm or .wat)")
    instance_num = _number(raw, "instance_num", where, 1, (1, MAX_INSTANCES), whole=True)
    root_id = _number(raw, "root_context_id", where, 1, (1, 2**31 - 1), whole=True)
    return FunctionSpec(
        name=name, path=path, instance_num=int(instance_num), root_context_id=int(root_id), **_limits(raw, where)
    )


def _limits(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """The limit keys ``raw`` sets, checked (ConfigError naming the key); None for the others."""
    found: dict[str, Any] = {}
    for key, (bounds, whole) in _LIMIT_BOUNDS.items():
        if key not in raw:
            found[key] = None
            continue
        number = _number(raw, key, where, 0, bounds, whole=whole)
        found[key] = int(number) if whole else number
    return found


def _number(
    raw: dict[str, Any], key: str, where: str, default: float, bounds: tuple[float, float], *, whole: bool = False
) -> float:
    low, high = bounds
    value = raw.get(key, default)
    shape = "an integer" if whole else "a number"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (whole and not float(value).is_integer()) or not low <= value <= high:
        raise ConfigError(f"{where}.{key}: expected {shape} between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _address(raw: dict[str, Any], key: str, where: str, default: str, *, empty_ok: bool = False) -> str:
    value = raw.get(key, default)
    if value == "" and empty_ok:
        return ""
    host, _, port = str(value).rpartition(":")
    if not isinstance(value, str) or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}.{key}: expected HOST:PORT, got {value!r}")
    return value
