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
    "register_queue": (
        '(import "env" "proxy_register_shared_queue" (func $register_queue (param i32 i32 i32) (result i32)))'
    ),
    "resolve_queue": (
        '(import "env" "proxy_resolve_shared_queue" (func $resolve_queue (param i32 i32 i32 i32 i32) (result i32)))'
    ),
    "enqueue": '(import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))',
    "dequeue": '(import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))',
    "set_shared": '(import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))',
    "define_metric": '(import "env" "proxy_define_metric" (func $define_metric (param i32 i32 i32 i32) (result i32)))',
    "increment_metric": (
        '(import "env" "proxy_increment_metric" (func $increment_metric (param i32 i64) (result i32)))'
    ),
    "record_metric": '(import "env" "proxy_record_metric" (func $record_metric (param i32 i64) (result i32)))',
    "get_metric": '(import "env" "proxy_get_metric" (func $get_metric (param i32 i32) (result i32)))',
    "http_call": (
        '(import "env" "proxy_http_call"'
        " (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"
    ),
    "dispatch_http_call": (
        '(import "env" "proxy_dispatch_http_call"'
        " (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"
    ),
    "tick_period": ('(import "env" "proxy_set_tick_period_milliseconds" (func $tick_period (param i32) (result i32)))'),
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
  ;; appends a host call's status as one character ("0" + status: OK "0", NOT_FOUND "1", EMPTY "7",
  ;; INTERNAL_FAILURE ":")
  (func $status (param $status i32)
    (i32.store8 (i32.const 60) (i32.add (i32.const 48) (local.get $status)))
    (call $append (i32.const 60) (i32.const 1)))
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


def _text(address: int, text: str) -> str:
    return f'(data (i32.const {address}) "{text}")'


def queue_keeper(function_id: str, queue: str, *, on_ready: bool) -> str:
    """Registers queue ``queue`` at VM start. A request dequeues one item: answers it, or the
    status ("7": empty). ``on_ready``: exports proxy_on_queue_ready, which dequeues the item and
    stores it as shared data ``last``."""
    ready = """
  (func (export "proxy_on_queue_ready") (param $root i32) (param $token i32)
    (if (i32.eqz (call $dequeue (local.get $token) (i32.const 16) (i32.const 20)))
      (then (drop (call $set_shared (i32.const 300) (i32.const 4) (i32.load (i32.const 16)) (i32.load (i32.const 20))
        (i32.const 0))))))"""
    return module(
        function_id,
        """
    (local $found i32)
    (local.set $found (call $dequeue (i32.load (i32.const 256)) (i32.const 8) (i32.const 12)))
    (if (i32.eqz (local.get $found))
      (then (call $append (i32.load (i32.const 8)) (i32.load (i32.const 12))))
      (else (call $status (local.get $found))))
    (i32.const 0)""",
        uses=("register_queue", "dequeue", "set_shared"),
        extra=f"""{_text(200, queue)}
  {_text(300, "last")}
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $register_queue (i32.const 200) (i32.const {len(queue)}) (i32.const 256)))
    (i32.const 1)){ready if on_ready else ""}""",
    )


def queue_producer(function_id: str, owner: str, queue: str) -> str:
    """A request resolves ``owner``'s queue ``queue`` and enqueues its body: answers the statuses of
    the resolve and the enqueue ("00": enqueued, "1": no such queue, "0:": the queue is full)."""
    return module(
        function_id,
        f"""
    (local $found i32)
    (call $body (local.get $size))
    (local.set $found (call $resolve_queue (i32.const 200) (i32.const {len(owner)}) (i32.const 240)
      (i32.const {len(queue)}) (i32.const 256)))
    (call $status (local.get $found))
    (if (i32.eqz (local.get $found))
      (then (call $status (call $enqueue (i32.load (i32.const 256)) (i32.load (i32.const 0)) (i32.load (i32.const 4))))))
    (i32.const 0)""",
        uses=("resolve_queue", "enqueue"),
        extra=f"{_text(200, owner)}\n  {_text(240, queue)}",
    )


#: a request defines counter "requests", histogram "sizes" and gauge "overflow" (answers their three
#: statuses), adds 1 to the counter and tries -1 (its status), records the body size in the
#: histogram, then answers the counter's value (8 bytes, little-endian)
METERED = module(
    "metered",
    """
    (call $status (call $define_metric (i32.const 0) (i32.const 200) (i32.const 8) (i32.const 256)))
    (call $status (call $define_metric (i32.const 2) (i32.const 210) (i32.const 5) (i32.const 260)))
    (call $status (call $define_metric (i32.const 1) (i32.const 220) (i32.const 8) (i32.const 264)))
    (drop (call $increment_metric (i32.load (i32.const 256)) (i64.const 1)))
    (call $status (call $increment_metric (i32.load (i32.const 256)) (i64.const -1)))
    (drop (call $record_metric (i32.load (i32.const 260)) (i64.extend_i32_u (local.get $size))))
    (drop (call $get_metric (i32.load (i32.const 256)) (i32.const 272)))
    (call $append (i32.const 272) (i32.const 8))
    (i32.const 0)""",
    uses=("define_metric", "increment_metric", "record_metric", "get_metric"),
    extra=f"{_text(200, 'requests')}\n  {_text(210, 'sizes')}\n  {_text(220, 'overflow')}",
)


def http_caller(function_id: str, upstream: str, method: str, *, timeout_ms: int = 0, dispatch: bool = False) -> str:
    """A request calls ``upstream``'s ``method`` with its body through an HTTP callout and pauses;
    the callout's answer comes back as a 200 with its body, or a 502 "callout failed"."""
    path = "/" + method
    headers = f"\\01\\00\\00\\00\\05\\00\\00\\00\\{len(path):02x}\\00\\00\\00:path\\00{path}\\00"
    return module(
        function_id,
        f"""
    (call $body (local.get $size))
    (drop (call $http_call (i32.const 200) (i32.const {len(upstream)}) (i32.const 400) (i32.const {19 + len(path)})
      (i32.load (i32.const 0)) (i32.load (i32.const 4)) (i32.const 0) (i32.const 0) (i32.const {timeout_ms})
      (i32.const 256)))
    (i32.const 1)""",
        uses=("dispatch_http_call" if dispatch else "http_call", "local_response"),
        extra=f"""{_text(200, upstream)}
  (data (i32.const 400) "{headers}")
  {_text(300, "callout failed")}
  (func (export "proxy_on_http_call_response") (param $ctx i32) (param $token i32) (param $headers i32)
    (param $size i32) (param $trailers i32)
    (if (i32.eqz (local.get $headers))
      (then (drop (call $local_response (i32.const 502) (i32.const 0) (i32.const 0) (i32.const 300)
        (i32.const 14) (i32.const 0) (i32.const 0) (i32.const -1))))
      (else
        (drop (call $get_buffer (i32.const 4) (i32.const 0) (local.get $size) (i32.const 8) (i32.const 12)))
        (drop (call $local_response (i32.const 200) (i32.const 0) (i32.const 0) (i32.load (i32.const 8))
          (i32.load (i32.const 12)) (i32.const 0) (i32.const 0) (i32.const -1))))))""",
    )


#: sets a 20 ms tick period at VM start; each tick adds 1 to its counter "ticks"
TICKER = module(
    "ticker",
    "(i32.const 0)",
    uses=("tick_period", "define_metric", "increment_metric"),
    extra=f"""{_text(200, "ticks")}
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $tick_period (i32.const 20)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param $root i32)
    (drop (call $define_metric (i32.const 0) (i32.const 200) (i32.const 5) (i32.const 256)))
    (drop (call $increment_metric (i32.load (i32.const 256)) (i64.const 1))))""",
)


#: a proxy-wasm function in Rust with no crates (compiled by the tests with Debian's rustc for
#: wasm32): answers "rust: " + the body upper-cased + " #" + its counter "calls", incremented
RUST_FUNCTION = r"""
use std::mem::MaybeUninit;

extern "C" {
    fn proxy_get_buffer_bytes(kind: u32, start: u32, max: u32, ptr: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_set_buffer_bytes(kind: u32, start: u32, size: u32, ptr: *const u8, len: usize) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_len: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_get_metric(id: u32, value: *mut u64) -> u32;
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_0() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer: Vec<MaybeUninit<u8>> = Vec::with_capacity(size);
    let ptr = buffer.as_mut_ptr() as *mut u8;
    std::mem::forget(buffer);
    ptr
}

#[no_mangle]
pub extern "C" fn proxy_get_id() {
    let id = b"rusty";
    unsafe { proxy_set_buffer_bytes(8, 0, 0, id.as_ptr(), id.len()) };
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context: u32, _parent: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context: u32, _headers: u32, _end: u32) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(_context: u32, size: u32, _end: u32) -> u32 {
    let mut ptr: *mut u8 = std::ptr::null_mut();
    let mut len: usize = 0;
    let status = unsafe { proxy_get_buffer_bytes(0, 0, size, &mut ptr, &mut len) };
    let body = if status == 0 && len > 0 { unsafe { Vec::from_raw_parts(ptr, len, len) } } else { Vec::new() };
    let (mut id, mut calls) = (0u32, 0u64);
    let name = b"calls";
    unsafe {
        proxy_define_metric(0, name.as_ptr(), name.len(), &mut id);
        proxy_increment_metric(id, 1);
        proxy_get_metric(id, &mut calls);
    }
    let answer = format!("rust: {} #{}", String::from_utf8_lossy(&body).to_uppercase(), calls);
    unsafe { proxy_set_buffer_bytes(1, 0, 0, answer.as_ptr(), answer.len()) };
    0
}
"""
