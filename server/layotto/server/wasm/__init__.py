"""WebAssembly functions in the sidecar (Layotto's FaaS model) on wasmtime.

``settings`` parses the ``wasm:`` config section and needs nothing extra; ``engine``, ``host``,
``manager`` and ``trigger`` need the ``wasm`` extra (the ``wasmtime`` package).
"""
