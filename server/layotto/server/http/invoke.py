"""Dapr's service invocation over HTTP: ``/v1.0/invoke/{app-id}/method/{method...}`` with any verb
of HTTPExtension, and the ``dapr-app-id`` header form (any other path, the path being the method),
as daprd serves them.

The request's verb, querystring, headers (less HTTP's and the runtimes' own), body and
``Content-Type`` become a runtime :class:`~layotto.server.runtime.invocation.InvokeRequest`
answered by the same :class:`~layotto.server.runtime.invocation.Invoker` as the gRPC
``InvokeService``. The app's answer comes back as it was: its status code (a 404 of an HTTP app
is a 404 here, with the app's body), headers, body and content type. Errors of the runtime
(unknown app id, app down, ...) answer Dapr's error body with ``errorCode`` ``ERR_DIRECT_INVOKE``.
"""

from __future__ import annotations

from aiohttp import web

from layotto.server.api.invoke import PASSED_RESERVED_HEADERS, app_headers
from layotto.server.http.errors import Call, HttpSettings, dapr_errors
from layotto.server.http.routing import CANCEL_ON_DISCONNECT, Routes
from layotto.server.runtime.invocation import HTTP_STATUS_HEADER, Invoker, InvokeRequest, InvokeResponse

INVOKE_CODE = "ERR_DIRECT_INVOKE"
INVOKE_PREFIX = "/v1.0/invoke/"
METHOD_MARK = "/method/"
#: the header naming the target app on any path (Dapr's alternative to /v1.0/invoke/...)
APP_ID_HEADER = "dapr-app-id"
#: request headers that address daprd itself: never passed to the app
SIDECAR_HEADERS = frozenset({APP_ID_HEADER, "dapr-api-token"})
#: answer headers aiohttp sets for itself, or that only meant something on the hop
ANSWER_HEADERS_DROPPED = frozenset(
    {"content-type", "content-length", "transfer-encoding", "connection", "date", "server", HTTP_STATUS_HEADER}
)


def answer_of(reply: InvokeResponse, *, head: bool = False) -> web.Response:
    """The HTTP answer carrying an app's ``reply`` as it came; ``head``: the answer to a HEAD, whose
    Content-Length (the GET's body's, the body being empty) is the app's."""
    dropped = ANSWER_HEADERS_DROPPED - {"content-length"} if head else ANSWER_HEADERS_DROPPED
    headers = [(k, v) for k, v in reply.headers if k.lower() not in dropped]
    response = web.Response(status=reply.status, body=reply.data, headers=headers)
    if reply.content_type:
        response.headers["Content-Type"] = reply.content_type
    return response


def raw_method(request: web.BaseRequest, decoded: str) -> str:
    """The method of ``/v1.0/invoke/{app-id}/method/{method...}`` as the caller's request target
    spells it, its escapes kept (``a%2Fb`` is one segment, ``%3F`` no query), as daprd passes it
    on; ``decoded`` (the route's) if the target is not of that form."""
    raw = request.rel_url.raw_path
    if not raw.startswith(INVOKE_PREFIX):
        return decoded
    mark = raw.find(METHOD_MARK, len(INVOKE_PREFIX))
    return raw[mark + len(METHOD_MARK) :] if mark > 0 else decoded


def connection_options(request: web.BaseRequest) -> frozenset[str]:
    """The headers the request's ``Connection`` header names: its connection's own (RFC 9110 7.6.1)."""
    return frozenset(
        option.strip().lower() for value in request.headers.getall("Connection", ()) for option in value.split(",")
    )


class InvokeHttp:
    """The invoke endpoints over one :class:`Invoker`."""

    def __init__(self, invoker: Invoker) -> None:
        self._invoker = invoker

    def add_routes(self, routes: Routes) -> None:
        # [\s\S], not ".": a method holding a newline (%0A) is served, not a 404 "no such endpoint"
        routes.add("*", "/v1.0/invoke/{app_id}/method/{method:[\\s\\S]+}", self.by_path)

    async def by_path(self, call: Call) -> web.StreamResponse:
        """Answer ``/v1.0/invoke/{app-id}/method/{method...}``: the method as the caller spelled it."""
        params = {"app_id": call.params["app_id"], "method": raw_method(call.request, call.params["method"])}
        return await self.invoke(Call(call.request, params, call.settings))

    @staticmethod
    def addressed_by_header(request: web.BaseRequest) -> bool:
        """Whether ``request`` names its target app in the ``dapr-app-id`` header."""
        return bool(request.headers.get(APP_ID_HEADER))

    async def by_header(self, request: web.BaseRequest, settings: HttpSettings) -> web.StreamResponse:
        """Answer a request whose ``dapr-app-id`` header names the app: its path is the method."""
        params = {"app_id": request.headers[APP_ID_HEADER], "method": request.rel_url.raw_path.lstrip("/")}
        return await self.invoke(Call(request, params, settings))

    @dapr_errors("invoke", INVOKE_CODE)
    async def invoke(self, call: Call) -> web.StreamResponse:
        request = call.request
        request[CANCEL_ON_DISCONNECT] = True  # a caller that goes away cancels the call, down to the app
        dropped = SIDECAR_HEADERS | connection_options(request)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in dropped]
        invoke = InvokeRequest(
            app_id=call.params["app_id"],
            method=call.params["method"],
            data=await call.body(),
            content_type=request.headers.get("Content-Type", ""),
            verb=request.method.upper(),
            querystring=request.rel_url.raw_query_string,
            headers=app_headers(headers, passed=PASSED_RESERVED_HEADERS),  # Accept-Encoding too, as daprd
            raw_http_status=True,
        )
        return answer_of(await self._invoker.invoke(invoke, None), head=invoke.verb == "HEAD")
