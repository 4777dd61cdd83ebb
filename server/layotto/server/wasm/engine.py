"""wasmtime underneath the functions: compile and vet a module, and run instances of it under limits.

A module is refused at compile time (:class:`ModuleRefused`, one line) when it is not valid wasm,
exports no proxy-wasm ABI version, has no memory or allocator, or imports anything the host does
not provide (with the same type). Each :class:`FunctionInstance` owns a wasmtime store whose
memory is capped; every call it serves gets a fresh fuel budget and an epoch deadline (the
engine's epoch advances every :data:`TICK_SECONDS` on a daemon thread), so a trap, an endless loop
or a memory hog ends that call with :class:`CallFailed` and nothing else. Instances run on worker
threads: wasm code holds no Python lock while it runs.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import wasmtime

from layotto.server.wasm import abi
from layotto.server.wasm.host import Callout, Exchange, HostCalls, RuntimeBridge, signatures
from layotto.server.wasm.settings import Limits

TICK_SECONDS = 0.02
WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")


class ModuleRefused(Exception):
    """A module cannot be installed; the message is one line naming what is wrong."""


class CallFailed(Exception):
    """One call of a function failed; ``kind`` is trap, fuel, deadline, paused, host or busy."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class CompiledModule:
    """A vetted module: ``abi_version`` is the proxy-wasm version export it carries."""

    module: wasmtime.Module
    abi_version: str
    source: str

    def module_exports(self, name: str) -> bool:
        return any(export.name == name for export in self.module.exports)


class WasmEngine:
    """One wasmtime engine (fuel metering and epoch interruption on) and its epoch ticker."""

    def __init__(self, *, wasi: bool = False) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        self.wasi = wasi
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="wasm-epoch", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            self.engine.increment_epoch()

    def close(self) -> None:
        self._stop.set()

    def compile(self, data: bytes, source: str) -> CompiledModule:
        """Compile ``data`` (wasm, or WAT text) and vet it; ModuleRefused naming the first fault."""
        try:
            module = wasmtime.Module(self.engine, data)
        except wasmtime.WasmtimeError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else "invalid module"
            raise ModuleRefused(f"{source}: not a valid wasm module: {first}") from None
        exports = {export.name: export.type for export in module.exports}
        version = next((name for name in abi.ABI_VERSION_EXPORTS if name in exports), "")
        if not version:
            raise ModuleRefused(f"{source}: exports no proxy-wasm ABI version ({', '.join(abi.ABI_VERSION_EXPORTS)})")
        if not isinstance(exports.get("memory"), wasmtime.MemoryType):
            raise ModuleRefused(f"{source}: exports no memory named 'memory'")
        if not any(name in exports for name in abi.ALLOCATOR_EXPORTS):
            raise ModuleRefused(f"{source}: exports no allocator ({' or '.join(abi.ALLOCATOR_EXPORTS)})")
        if abi.ID_EXPORT not in exports:
            raise ModuleRefused(f"{source}: exports no {abi.ID_EXPORT} (which names the function)")
        self._check_imports(module, source)
        return CompiledModule(module, version, source)

    def _check_imports(self, module: wasmtime.Module, source: str) -> None:
        provided = signatures()
        for item in module.imports:
            where = f"{item.module}.{item.name}"
            if item.module in WASI_MODULES:
                if not self.wasi:
                    raise ModuleRefused(f"{source}: imports {where}, and WASI is off (wasm.wasi: false)")
                continue
            wanted = provided.get(item.name or "") if item.module == "env" else None
            if wanted is None:
                raise ModuleRefused(f"{source}: imports {where}, which this runtime does not provide")
            if not isinstance(item.type, wasmtime.FuncType) or not _same_type(item.type, wanted):
                raise ModuleRefused(
                    f"{source}: imports {where} with type {_shown(item.type)}, provided as {_shown(wanted)}"
                )


class FunctionInstance:
    """One instance of a module: its own store, memory and context ids; serves one call at a time."""

    _context_ids = itertools.count(2)

    def __init__(
        self, engine: WasmEngine, compiled: CompiledModule, bridge: RuntimeBridge, limits: Limits, name: str
    ) -> None:
        self.limits = limits
        self.name = name
        self.root_context_id = 1
        self.broken = False  # a failed call leaves the instance unusable: the pool replaces it
        self.store = wasmtime.Store(engine.engine)
        self.store.set_limits(memory_size=limits.memory_bytes)
        self.host = HostCalls(bridge, name)
        linker = wasmtime.Linker(engine.engine)
        for import_name, (ty, call) in self.host.table().items():
            linker.define_func("env", import_name, ty, call, access_caller=True)
        if engine.wasi:
            linker.define_wasi()
            self.store.set_wasi(wasmtime.WasiConfig())  # nothing granted: no files, env, args or stdio
        self._budget(limits.deadline_seconds)
        try:
            self.instance = linker.instantiate(self.store, compiled.module)
            self.exports = self.instance.exports(self.store)
            for start in ("_initialize", "_start"):
                self._call_optional(start)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as error:
            raise ModuleRefused(f"{compiled.source}: cannot start an instance: {_first_line(error)}") from None

    def _budget(self, seconds: float) -> None:
        self.store.set_fuel(self.limits.fuel)
        self.store.set_epoch_deadline(max(1, math.ceil(seconds / TICK_SECONDS)) + 1)

    def _export(self, name: str) -> wasmtime.Func | None:
        found = self.exports.get(name)
        return found if isinstance(found, wasmtime.Func) else None

    def _call_optional(self, name: str, *args: int) -> Any:
        func = self._export(name)
        if func is None:
            return None
        arity = len(func.type(self.store).params)
        return func(self.store, *(list(args) + [0] * arity)[:arity])

    def function_id(self) -> str:
        """The id the module names itself with through ``proxy_get_id`` (Layotto's convention)."""
        exchange = Exchange()
        self.host.exchange = exchange
        self._budget(self.limits.deadline_seconds)
        self._run(lambda: self._call_optional(abi.ID_EXPORT))
        if not exchange.call_data:
            raise ModuleRefused(f"{self.name}: {abi.ID_EXPORT} set no id (the call-data buffer stayed empty)")
        return exchange.call_data.decode("utf-8", "replace")

    def start_root(self, root_context_id: int, plugin_config: bytes = b"") -> None:
        """Create the root context and start the VM (proxy_on_context_create, _vm_start, _configure)."""
        self.host.exchange = Exchange(plugin_config=plugin_config)
        self._budget(self.limits.deadline_seconds)
        self._run(lambda: self._call_optional("proxy_on_context_create", root_context_id, 0))
        self._run(lambda: self._call_optional("proxy_on_vm_start", root_context_id, 0))
        self._run(lambda: self._call_optional("proxy_on_configure", root_context_id, len(plugin_config)))
        self.root_context_id = root_context_id

    def serve(self, exchange: Exchange) -> None:
        """Run one HTTP exchange through the module's HTTP context; CallFailed when it fails."""
        self.host.exchange = exchange
        context_id = next(self._context_ids)
        exchange.deadline = self.host.clock() + self.limits.deadline_seconds
        self._budget(self.limits.deadline_seconds)
        self._run(lambda: self._call_optional("proxy_on_context_create", context_id, self.root_context_id))
        end_of_stream = 0 if exchange.request_body else 1
        action = self._run(
            lambda: self._call_optional(
                "proxy_on_request_headers", context_id, len(exchange.request_headers), end_of_stream
            )
        )
        self._make_callouts(context_id)
        if action in (abi.CONTINUE, None) and exchange.request_body and not exchange.local_response:
            action = self._run(
                lambda: self._call_optional("proxy_on_request_body", context_id, len(exchange.request_body), 1)
            )
            self._make_callouts(context_id)
        self._run(lambda: self._call_optional("proxy_on_done", context_id))
        self._run(lambda: self._call_optional("proxy_on_delete", context_id))
        if action not in (abi.CONTINUE, None) and not exchange.local_response:
            raise CallFailed("paused", f"function {self.name!r} paused the request and sent no response")

    def root_call(self, export: str, *args: int) -> None:
        """Call ``export`` (``proxy_on_tick``, ``proxy_on_queue_ready``) on the root context with
        ``args`` after its id, under the call limits, then make the callouts it asked for."""
        self.host.exchange = Exchange(deadline=self.host.clock() + self.limits.deadline_seconds)
        self._budget(self.limits.deadline_seconds)
        self._run(lambda: self._call_optional(export, self.root_context_id, *args))
        self._make_callouts(self.root_context_id)

    def exports_function(self, name: str) -> bool:
        return self._export(name) is not None

    def _make_callouts(self, context_id: int) -> None:
        """Make the HTTP callouts the module queued, each answered through
        ``proxy_on_http_call_response`` (which may queue more, up to the per-call cap)."""
        exchange = self.host.exchange
        while exchange.callouts:
            self._answer_callout(context_id, exchange.callouts.pop(0))

    def _answer_callout(self, context_id: int, callout: Callout) -> None:
        exchange = self.host.exchange
        self._run(lambda: self.host.make_callout(callout))
        headers, body = len(exchange.call_response_headers), len(exchange.call_response_body)
        self._run(
            lambda: self._call_optional("proxy_on_http_call_response", context_id, callout.token, headers, body, 0)
        )

    def _run(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except wasmtime.Trap as trap:
            self.broken = True
            raise CallFailed(*self._classify(trap)) from None
        except CallFailed:
            self.broken = True
            raise
        except Exception as error:  # a host call that raised, or wasmtime refusing the call
            self.broken = True
            raise CallFailed("host", f"function {self.name!r} failed: {_first_line(error)}") from None

    def _classify(self, trap: wasmtime.Trap) -> tuple[str, str]:
        code = trap.trap_code
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return "fuel", f"function {self.name!r} used up its fuel ({self.limits.fuel} units per call)"
        if code == wasmtime.TrapCode.INTERRUPT:
            return "deadline", f"function {self.name!r} ran past its deadline ({self.limits.deadline_seconds:g} s)"
        memory = self.exports.get("memory")
        used = memory.data_len(self.store) if isinstance(memory, wasmtime.Memory) else 0
        return "trap", (
            f"function {self.name!r} trapped: {_trap_line(trap)}"
            f" (memory in use: {used} of {self.limits.memory_bytes} bytes)"
        )

    def close(self) -> None:
        self.store.close()


def _same_type(a: wasmtime.FuncType, b: wasmtime.FuncType) -> bool:
    return [str(t) for t in a.params] == [str(t) for t in b.params] and [str(t) for t in a.results] == [
        str(t) for t in b.results
    ]


def _shown(ty: object) -> str:
    if isinstance(ty, wasmtime.FuncType):
        return f"({', '.join(map(str, ty.params))}) -> ({', '.join(map(str, ty.results))})"
    return type(ty).__name__


def _trap_line(trap: wasmtime.Trap) -> str:
    """The trap's cause ("wasm trap: ..."), without wasmtime's backtrace."""
    lines = [line.strip() for line in str(trap.message).splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "trap" in line), lines[-1] if lines else "trap")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
