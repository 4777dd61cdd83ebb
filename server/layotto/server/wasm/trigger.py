"""The HTTP faces of the functions: the trigger (Layotto's port 2045) and the admin API.

Trigger: any method and path; header ``id`` names the function; the body is the request body, or
the query string when there is none (as Layotto does). The function's response is sent as it
built it (status 200 unless it sent a local response). Errors are JSON ``{"error", "id", "kind"}``:
400 without ``id``, 404 for an unknown id, 500 when the call failed (kind: trap, fuel, deadline,
paused, host), 503 when no instance freed up in time (kind: busy).

Admin (Layotto's shapes): ``POST /wasm/install`` with a function entry
``{"name", "instance_num", "vm_config": {"engine": "wasmtime", "path"}}`` answers
``{"name", "id"}``; ``POST /wasm/uninstall`` ``{"name"}``; ``POST /wasm/update``
``{"name", "instance_num"}``. Refusals are JSON ``{"error"}`` with 400 (bad request or module),
404 (unknown name) or 409 (already installed). When the runtime has an API token, admin calls need it
as the ``dapr-api-token`` header (401 otherwise); the trigger, like an app's own port, does not.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from layotto.server.api_token import http_refusal
from layotto.server.components.base import ConfigError
from layotto.server.wasm.engine import CallFailed, ModuleRefused
from layotto.server.wasm.host import Exchange
from layotto.server.wasm.manager import AlreadyInstalled, FunctionManager, FunctionNotFound
from layotto.server.wasm.settings import MAX_INSTANCES, parse_function

#: response headers the server sets itself
_OWN_HEADERS = {"content-length", "transfer-encoding", "connection", "date", "server"}
MAX_BODY_BYTES = 4 * 1024 * 1024


class WasmListeners:
    """The trigger and admin listeners of one :class:`FunctionManager`; ports once started."""

    def __init__(self, manager: FunctionManager, api_token: str = "") -> None:
        """``api_token``: required of admin calls as the ``dapr-api-token`` header ("": none)."""
        self.manager = manager
        self._api_token = api_token
        self.port = 0
        self.admin_port = 0
        self._runners: list[web.AppRunner] = []

    async def start(self, address: str, admin_address: str) -> None:
        """Listen on ``address`` (and ``admin_address`` unless ""); OSError when a port is taken."""
        trigger = web.Application(client_max_size=MAX_BODY_BYTES)
        trigger.router.add_route("*", "/{tail:.*}", self.trigger)
        self.port = await self._serve(trigger, address)
        if admin_address:
            admin = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._token_guard])
            admin.router.add_post("/wasm/install", self.install)
            admin.router.add_post("/wasm/uninstall", self.uninstall)
            admin.router.add_post("/wasm/update", self.update)
            self.admin_port = await self._serve(admin, admin_address)

    async def _serve(self, app: web.Application, address: str) -> int:
        host, _, port = address.rpartition(":")
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, host.strip("[]"), int(port)).start()
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    @web.middleware
    async def _token_guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = http_refusal(self._api_token, request)
        if refusal is not None:
            return web.json_response({"error": refusal.message}, status=401)
        return await handler(request)

    async def trigger(self, request: web.Request) -> web.StreamResponse:
        function_id = request.headers.get("id", "")
        if not function_id:
            return _error(400, "header id: required: the id of the function to call", function_id, "request")
        body = await request.read() or request.query_string.encode()
        headers = [(":method", request.method), (":path", request.path_qs), (":authority", request.host)]
        exchange = Exchange(
            request_headers=headers + [(k.lower(), v) for k, v in request.headers.items()],
            request_body=body,
            properties={
                "request.path": request.path_qs.encode(),
                "request.url_path": request.path.encode(),
                "request.method": request.method.encode(),
                "request.query": request.query_string.encode(),
                "request.host": request.host.encode(),
            },
        )
        try:
            trace_headers = {k.lower(): v for k, v in request.headers.items()}
            await self.manager.call(function_id, exchange, trace_headers)
        except FunctionNotFound as error:
            return _error(404, str(error), function_id, "not_found")
        except CallFailed as failure:
            return _error(503 if failure.kind == "busy" else 500, failure.message, function_id, failure.kind)
        response = web.Response(status=exchange.status, body=exchange.response_body)
        for key, value in exchange.response_headers:
            if not key.startswith(":") and key.lower() not in _OWN_HEADERS:
                response.headers.add(key, value)
        return response

    async def install(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        if isinstance(body, web.Response):
            return body
        try:
            spec = parse_function(body, "body")
            function_id = await self.manager.install(spec)
        except (ConfigError, ModuleRefused) as error:
            return web.json_response({"error": str(error)}, status=400)
        except AlreadyInstalled as error:
            return web.json_response({"error": str(error)}, status=409)
        return web.json_response({"name": spec.name, "id": function_id})

    async def uninstall(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        if isinstance(body, web.Response):
            return body
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return web.json_response({"error": "name: required: the function to uninstall"}, status=400)
        try:
            function_id = await self.manager.uninstall(name)
        except FunctionNotFound as error:
            return web.json_response({"error": str(error)}, status=404)
        return web.json_response({"name": name, "id": function_id})

    async def update(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        if isinstance(body, web.Response):
            return body
        name, count = body.get("name"), body.get("instance_num")
        if not isinstance(name, str) or not name:
            return web.json_response({"error": "name: required: the function to update"}, status=400)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_INSTANCES:
            return web.json_response(
                {"error": f"instance_num: expected an integer between 1 and {MAX_INSTANCES}, got {count!r}"},
                status=400,
            )
        try:
            await self.manager.update(name, count)
        except FunctionNotFound as error:
            return web.json_response({"error": str(error)}, status=404)
        return web.json_response({"name": name, "instance_num": count})


async def _json(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError as error:
        return web.json_response({"error": f"body: not JSON: {error}"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "body: expected a JSON object"}, status=400)
    return body


def _error(status: int, message: str, function_id: str, kind: str) -> web.Response:
    return web.json_response({"error": message, "id": function_id, "kind": kind}, status=status)
