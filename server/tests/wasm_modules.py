"""proxy-wasm functions written in WAT for the tests, compiled with ``wasmtime.wat2wasm`` when used.

Each module carries what a proxy-wasm function needs: an ABI version export, ``memory``, a bump
allocator (``proxy_on_memory_allocate``, reset at every context) and Layotto's ``proxy_get_id``.
Host calls return their results through two slots: the pointer at address 0, the size at 4
(a second pair at 8 and 12). Constant strings live from address 64 on.
"""

from __future__ import annotations

from pathlib import Path

import wasmtime

_IMPORTS = {
    "get_buffer": '(import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))',
    "set_buffer": '(import "env" "proxy_set_buffer_bytes" (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))',
    "get_state": '(import "env" "proxy_get_state" (func $get_state (param i32 i32 i32 i32 i32 i32) (result i32)))',
    "invoke": '(import "env" "proxy_invoke_service" (func $invoke (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))',
    "log": '(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))',
    "header": ('(import "env" "proxy_get_header_map_value" (func $header (param i32 i32 i32 i32 i32) (result i32)))'),
    "add_header": (
        '(import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))'
    ),
    "local_response": (
        '(import "env" "proxy_send_local_response"'
        " (func $local_response (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"
    ),
}

_PRELUDE = """
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  (global $out (mut i32) (i32.const 0))
  (func $alloc (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.const 1)
        (i32.div_u (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536))) (i32.const 65536)))))))
    (local.get $p))
  (func (export "proxy_abi_version_{abi}"))
  (func (export "proxy_on_context_create") (param i32 i32)
    (global.set $heap (i32.const 8192)) (global.set $out (i32.const 0)))
  (func (export "proxy_on_request_headers") (param {header_params}) (result i32) (i32.const 0))
  (data (i32.const 32) "{function_id}")
  (func (export "proxy_get_id")
    (drop (call $set_buffer (i32.const 8) (i32.const 0) (i32.const {id_len}) (i32.const 32) (i32.const {id_len}))))
  ;; appends (ptr, len) to the response body
  (func $append (param $ptr i32) (param $len i32)
    (drop (call $set_buffer (i32.const 1) (global.get $out) (i32.const 0) (local.get $ptr) (local.get $len)))
    (global.set $out (i32.add (global.get $out) (local.get $len))))
  ;; reads the request body into slots 0/4
  (func $body (param $size i32)
    (drop (call $get_buffer (i32.const 0) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4))))
"""


def module(
    function_id: str, body: str, *, uses: tuple[str, ...] = (), abi: str = "0_2_0", extra: str = "", imports: str = ""
) -> str:
    """A function's WAT: the prelude, the imports it ``uses`` (set_buffer and get_buffer always),
    ``body`` as the statements of ``proxy_on_request_body(ctx, size, end)`` returning an Action."""
    imported = "\n  ".join([*(_IMPORTS[name] for name in ("set_buffer", "get_buffer", *uses)), imports])
    header_params = "i32 i32" if abi == "0_1_0" else "i32 i32 i32"
    prelude = (
        _PRELUDE.replace("{abi}", abi)
        .replace("{header_params}", header_params)
        .replace("{function_id}", function_id)
        .replace("{id_len}", str(len(function_id)))
    )
    on_body = f'(func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $end i32) (result i32)\n{body})'
    return f"(module\n  {imported}\n{prelude}\n{extra}\n  {on_body}\n)"


#: Layotto's function 2: reads the book named by the body from state store state_demo
INVENTORY_SERVER = module(
    "id_2",
    """
    (call $body (local.get $size))
    (drop (call $get_state (i32.const 64) (i32.const 10) (i32.load (i32.const 0)) (i32.load (i32.const 4))
      (i32.const 8) (i32.const 12)))
    (call $append (i32.load (i32.const 8)) (i32.load (i32.const 12)))
    (i32.const 0)""",
    uses=("get_state",),
    extra='(data (i32.const 64) "state_demo")',
)

#: Layotto's function 1: body name=BOOK -> invokes id_2 with BOOK -> "There are N inventories for BOOK.\\n"
INVENTORY_CLIENT = module(
    "id_1",
    """
    (local $book i32) (local $book_len i32)
    (call $body (local.get $size))
    (local.set $book (i32.add (i32.load (i32.const 0)) (i32.const 5)))
    (local.set $book_len (i32.sub (i32.load (i32.const 4)) (i32.const 5)))
    (drop (call $invoke (i32.const 64) (i32.const 4) (i32.const 64) (i32.const 0)
      (local.get $book) (local.get $book_len) (i32.const 8) (i32.const 12)))
    (call $append (i32.const 80) (i32.const 10))
    (call $append (i32.load (i32.const 8)) (i32.load (i32.const 12)))
    (call $append (i32.const 96) (i32.const 17))
    (call $append (local.get $book) (local.get $book_len))
    (call $append (i32.const 120) (i32.const 2))
    (i32.const 0)""",
    uses=("invoke",),
    extra="""(data (i32.const 64) "id_2")
  (data (i32.const 80) "There are ")
  (data (i32.const 96) " inventories for ")
  (data (i32.const 120) ".\\n")""",
)


def echo(function_id: str, prefix: str = "", abi: str = "0_2_0") -> str:
    """Answers ``prefix`` + the request body (ABI ``abi``)."""
    return module(
        function_id,
        f"""
    (call $append (i32.const 64) (i32.const {len(prefix)}))
    (call $body (local.get $size))
    (call $append (i32.load (i32.const 0)) (i32.load (i32.const 4)))
    (i32.const 0)""",
        abi=abi,
        extra=f'(data (i32.const 64) "{prefix}")',
    )


TRAP = module("trap", "(unreachable)")
LOOP = module("loop", "(loop $forever (br $forever)) (i32.const 0)")
MEMORY_HOG = module(
    "hog",
    "(loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (unreachable)",
)
#: answers 418 with header x-teapot: yes through proxy_send_local_response, and pauses
TEAPOT = module(
    "teapot",
    """
    (drop (call $local_response (i32.const 418) (i32.const 0) (i32.const 0) (i32.const 64) (i32.const 6)
      (i32.const 0) (i32.const 0) (i32.const -1)))
    (drop (call $add_header (i32.const 2) (i32.const 72) (i32.const 8) (i32.const 84) (i32.const 3)))
    (i32.const 1)""",
    uses=("local_response", "add_header"),
    extra="""(data (i32.const 64) "teapot")
  (data (i32.const 72) "x-teapot")
  (data (i32.const 84) "yes")""",
)
#: asks for the request body to be returned at an address past its memory: answers what the host said
BAD_POINTER = module(
    "bad_pointer",
    """
    (if (i32.eq (call $get_buffer (i32.const 0) (i32.const 0) (local.get $size) (i32.const -16) (i32.const 4))
          (i32.const 6))
      (then (call $append (i32.const 64) (i32.const 21))))
    (i32.const 0)""",
    extra='(data (i32.const 64) "invalid memory access")',
)
MISSING_IMPORT = module(
    "missing",
    "(i32.const 0)",
    imports='(import "env" "proxy_open_the_pod_bay_doors" (func $doors (param i32) (result i32)))',
)


def write(path: Path, wat: str) -> Path:
    """Compile ``wat`` and write the binary to ``path`` (replaced in one rename, as a deploy would)."""
    staged = path.with_suffix(".tmp")
    staged.write_bytes(wasmtime.wat2wasm(wat))
    staged.replace(path)
    return path
