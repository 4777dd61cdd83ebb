"""The Dapr endpoints' routing table: (method, path pattern) -> a handler of a :class:`Call`,
matched with aiohttp's URL dispatcher (``{key:.+}`` patterns, registration order)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.web_urldispatcher import MatchInfoError

from layotto.server.http.errors import Call, HttpSettings

CallHandler = Callable[[Call], Awaitable[web.StreamResponse]]
#: the request key under which the matched route's template (``/v1.0/state/{store}``) is kept, for metrics
ROUTE_KEY = web.RequestKey("layotto.route", str)


class Routes:
    def __init__(self) -> None:
        self._router = web.UrlDispatcher()

    def add(self, method: str, path: str, handler: CallHandler) -> None:
        self._router.add_route(method, path, cast(Any, handler))

    async def answer(self, request: web.BaseRequest, settings: HttpSettings) -> web.StreamResponse | None:
        """The answer of the endpoint ``request`` names (405 for another method); None when no
        endpoint has its path."""
        match = await self._router.resolve(cast(web.Request, request))
        if isinstance(match, MatchInfoError):
            error = match.http_exception
            if isinstance(error, web.HTTPMethodNotAllowed):
                allowed = ", ".join(sorted(error.allowed_methods))
                body = {"error": f"{request.method} not allowed", "allowed": allowed}
                return web.json_response(body, status=405, headers={"Allow": allowed})
            return None
        request[ROUTE_KEY] = match.route.resource.canonical if match.route.resource is not None else ""
        handler = cast(CallHandler, match.handler)
        return await handler(Call(request, dict(match), settings))
