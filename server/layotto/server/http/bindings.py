"""Dapr's output bindings API over HTTP: ``POST`` or ``PUT /v1.0/bindings/{name}`` with the JSON
body ``{"operation": ..., "data": <any JSON>, "metadata": {name: value}}``, calling
:func:`~layotto.server.runtime.bindings.invoke_binding` as the gRPC InvokeBinding does.

As daprd does, ``data`` reaches the binding as its JSON text (a string keeps its quotes; an
absent ``data`` is sent as no bytes, where daprd sends ``null``); the binding's answer is the body
(200, ``application/json``) with each response metadata entry as a ``metadata.<name>`` header, or
204 when the binding answered neither data nor metadata.
"""

from __future__ import annotations

import json

from aiohttp import web

from layotto.server.components.loader import ComponentSet
from layotto.server.http.errors import Call, dapr_errors, field_of, optional_string, require_type, string_map
from layotto.server.http.routing import Routes
from layotto.server.runtime.bindings import invoke_binding
from layotto.server.runtime.validation import has_control_characters

INVOKE_CODE = "ERR_INVOKE_OUTPUT_BINDING"


class BindingsHttp:
    def __init__(self, components: ComponentSet) -> None:
        self._components = components

    def add_routes(self, routes: Routes) -> None:
        routes.add("POST", "/v1.0/bindings/{name}", self.invoke)
        routes.add("PUT", "/v1.0/bindings/{name}", self.invoke)

    @dapr_errors("bindings", INVOKE_CODE)
    async def invoke(self, call: Call) -> web.Response:
        body = require_type(await call.json(), dict, "body", "an object with operation, data and metadata")
        operation = optional_string(field_of(body, "operation"), "operation")
        metadata = string_map(field_of(body, "metadata"), "metadata")
        data = field_of(body, "data")
        raw = b"" if data is None else json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        result = await invoke_binding(self._components, call.params["name"], operation, raw, metadata)
        if not result.data and not result.metadata:
            return web.Response(status=204)
        headers = {
            f"metadata.{key}": value
            for key, value in result.metadata.items()
            if not has_control_characters(key) and not has_control_characters(value)  # a header cannot carry them
        }
        return web.Response(status=200, body=result.data, content_type="application/json", headers=headers)
