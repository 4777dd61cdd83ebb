"""The Dapr HTTP API's routing table matches as aiohttp's URL dispatcher does (it replaced it for
CPU): the same handler, path values and template for every path, 405 with the same ``Allow``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from layotto.server.http.errors import Call, HttpSettings
from layotto.server.http.routing import ROUTE_KEY, Routes

SETTINGS = HttpSettings(1024, lambda: True)
TABLE = [
    ("POST", "/v1.0/state/{store}/bulk"),
    ("POST", "/v1.0/state/{store}"),
    ("GET", "/v1.0/state/{store}/{key:.+}"),
    ("DELETE", "/v1.0/state/{store}/{key:.+}"),
    ("*", "/v1.0/invoke/{app_id}/method/{method:.+}"),
    ("GET", "/v1.0/metadata"),
    ("PUT", "/v1.0/metadata/{key}"),
    ("GET", "/v1.0/configuration/{store}/{id}/unsubscribe"),
]
PATHS = [
    ("GET", "/v1.0/state/s/k"),
    ("GET", "/v1.0/state/s/a/b%2Fc%25d%20e"),  # %2F and %25 stay escaped to the match, then unescaped
    ("POST", "/v1.0/state/s/bulk"),
    ("GET", "/v1.0/state/s/bulk"),  # the key "bulk": a later pattern of the same prefix
    ("POST", "/v1.0/state/s"),
    ("PUT", "/v1.0/state/s/k"),  # 405: GET, DELETE
    ("GET", "/v1.0/state/s"),  # 405: POST
    ("PATCH", "/v1.0/invoke/a/method/x/y"),
    ("GET", "/v1.0/metadata"),
    ("POST", "/v1.0/metadata"),  # 405
    ("PUT", "/v1.0/metadata/a%2Fb"),  # one segment: the escaped slash is not a separator
    ("GET", "/v1.0/configuration/c/i/unsubscribe"),
    ("GET", "/v1.0/nothing"),
    ("GET", "/"),
]


def answering(name: str) -> Any:
    async def handler(call: Call) -> web.StreamResponse:
        template = call.request[ROUTE_KEY]
        return web.json_response({"handler": name, "params": dict(call.params), "route": template})

    return handler


async def aiohttp_answer(router: web.UrlDispatcher, method: str, path: str) -> tuple[int, Any, str]:
    request = make_mocked_request(method, path)
    match = await router.resolve(request)
    error = match.http_exception
    if error is not None:
        allowed = ", ".join(sorted(error.allowed_methods)) if isinstance(error, web.HTTPMethodNotAllowed) else ""
        return error.status, None, allowed
    assert match.route.resource is not None
    route = match.route.resource.canonical
    return 200, {"handler": match.handler.__name__, "params": dict(match), "route": route}, ""


@pytest.mark.parametrize(("method", "path"), PATHS)
async def test_routes_match_as_aiohttps_dispatcher(method: str, path: str) -> None:
    routes, router = Routes(), web.UrlDispatcher()
    for i, (verb, pattern) in enumerate(TABLE):
        routes.add(verb, pattern, answering(f"h{i}"))
        handler = answering(f"h{i}")
        handler.__name__ = f"h{i}"
        router.add_route(verb, pattern, handler)
    expected = await aiohttp_answer(router, method, path)
    answer = await routes.answer(make_mocked_request(method, path), SETTINGS)
    if answer is None:
        assert expected[0] == 404
        return
    assert isinstance(answer, web.Response) and answer.body is not None
    got_body = None if answer.status == 405 else json.loads(bytes(answer.body))  # type: ignore[arg-type]
    assert (answer.status, got_body, answer.headers.get("Allow", "")) == expected


def test_a_method_routed_twice_or_a_bad_pattern_is_refused() -> None:
    routes = Routes()
    routes.add("GET", "/a/{x}", answering("a"))
    with pytest.raises(RuntimeError):
        routes.add("GET", "/a/{x}", answering("b"))
    with pytest.raises(ValueError):
        routes.add("GET", "/a/{x", answering("c"))
