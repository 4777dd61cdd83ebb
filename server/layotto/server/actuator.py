"""The HTTP actuator: liveness, readiness (with component health), info and log levels (``/actuator/loggers``).

Also answers Dapr's ``/v1.0/healthz`` and ``/v1.0/healthz/outbound``, which Dapr's
Python SDK polls before its first call.

Two departures from aiohttp's defaults, for what clients really send:

* a header repeated with the same value (Dapr's Java SDK sends ``Content-Type`` twice, on every
  request) counts once; aiohttp refuses any repeated singleton header (RFC 9110) with 400, and
  still does when the values differ. A connection whose first request repeats one is parsed by
  aiohttp's Python parser (which can be told to); the others keep its C parser, about a quarter
  less CPU per request (``bench/http_state.py``): a client that repeats a header only on a later
  request of its connection gets aiohttp's 400;
* a request the parser refuses is the client's fault: one DEBUG line, not an ERROR with a
  traceback (aiohttp still answers it 400).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError
from aiohttp.http_parser import SINGLETON_HEADERS, HttpRequestParserPy, RawRequestMessage
from aiohttp.http_writer import HttpVersion10, HttpVersion11

from layotto.server.api_token import http_refusal
from layotto.server.components.base import Health
from layotto.server.components.loader import ComponentSet
from layotto.server.http.errors import error_response
from layotto.server.http.routing import CANCEL_ON_DISCONNECT, ROUTE_KEY
from layotto.server.log_levels import LOGGERS_PATH, loggers_endpoint

HEALTH_TIMEOUT_SECONDS = 2.0
#: the errorCode of a request refused for lack of the API token
UNAUTHENTICATED_CODE = "ERR_UNAUTHENTICATED"
#: answers a request the actuator has no endpoint for, or None (404)
Fallback = Callable[[web.BaseRequest], Awaitable[web.StreamResponse | None]]
#: answers a GET endpoint
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)
_REQUEST_LINE_START = re.compile(rb"[A-Z]{1,16} [^ ]")  # a method, as far as the first chunk shows


def repeats_a_singleton_header(data: bytes) -> bool:
    """Whether the header block at the start of ``data`` (as much of it as ``data`` holds) names a
    singleton header (RFC 9110) twice."""
    head = data.partition(b"\r\n\r\n")[0]
    seen: set[str] = set()
    for line in head.split(b"\r\n")[1:]:
        name = line.partition(b":")[0].strip().lower().decode("latin-1")
        if name in SINGLETON_HEADERS:
            if name in seen:
                return True
            seen.add(name)
    return False


def without_repeated_headers(lines: list[bytes]) -> list[bytes]:
    """Header lines with a singleton header (RFC 9110) repeated with an identical value kept once."""
    seen: set[tuple[bytes, bytes]] = set()
    kept = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if colon and name.lower().decode("latin-1") in SINGLETON_HEADERS:
            key = (name.lower(), value.strip(b" \t"))
            if key in seen:
                continue
            seen.add(key)
        kept.append(line)
    return kept


class _RequestParser(HttpRequestParserPy):
    """aiohttp's Python request parser, with repeated identical headers counted once and only
    HTTP/1.0 and 1.1 accepted (as its C parser does)."""

    def parse_headers(self, lines: list[bytes]) -> Any:
        return super().parse_headers(without_repeated_headers(lines))

    def parse_message(self, lines: list[bytes]) -> RawRequestMessage:
        message = super().parse_message(lines)
        if message.version not in (HttpVersion10, HttpVersion11):
            raise BadHttpMessage(f"unsupported HTTP version {message.version.major}.{message.version.minor}")
        return message


class _RequestHandler(web.RequestHandler):
    """aiohttp's protocol; a connection whose first request repeats a singleton header is parsed by
    :class:`_RequestParser`, any other (anything that is not HTTP/1 included: TLS, HTTP/2, garbage,
    which it refuses at once) by aiohttp's C parser."""

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._sniffed = False
        self._auto_decompress = bool(kwargs.get("auto_decompress", True))

    def data_received(self, data: bytes) -> None:
        if not self._sniffed:
            self._sniffed = True
            if _REQUEST_LINE_START.match(data) and repeats_a_singleton_header(data):
                self._parser = self._python_parser()
            # sniffed once: the connection's later data goes straight to aiohttp's method (a frame less per read)
            self.data_received = super().data_received  # type: ignore[method-assign]
        super().data_received(data)

    def _python_parser(self) -> _RequestParser:
        return _RequestParser(
            self,
            self._loop,
            self._read_bufsize,
            max_line_size=self.max_line_size,
            max_field_size=self.max_field_size,
            max_headers=self.max_headers,
            payload_exception=web_protocol.RequestPayloadError,
            auto_decompress=self._auto_decompress,
            max_msg_queue_size=self._max_msg_queue_size,
        )

    def connection_lost(self, exc: BaseException | None) -> None:
        """aiohttp's, and a request marked :data:`CANCEL_ON_DISCONNECT` has its handler cancelled
        (aiohttp cancels no handler when its client goes away: the others run to their end)."""
        request, handler = self._current_request, self._task_handler
        super().connection_lost(exc)
        if request is not None and handler is not None and request.get(CANCEL_ON_DISCONNECT):
            handler.cancel()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        error = kw.get("exc_info")
        if isinstance(error, HttpProcessingError) and error.code < 500:
            log.debug("refused a malformed HTTP request: %s", error.message.strip())
            return
        super().log_exception(*args, **kw)


class _Server(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


class HttpRecorder(Protocol):
    """Records one answered HTTP request (``layotto.server.metrics_ops.HttpMetrics``)."""

    def record(self, method: str, route: str, status: int, elapsed_ms: float) -> None: ...


def _route_of(request: web.BaseRequest, own_routes: frozenset[str]) -> str:
    """The template of the route ``request`` matched: its path for the actuator's own endpoints,
    the Dapr API's template, or ``other`` (no endpoint, or refused before routing)."""
    if request.path in own_routes:
        return request.path
    if request.path == LOGGERS_PATH:
        return LOGGERS_PATH
    if request.path.startswith(f"{LOGGERS_PATH}/"):
        return f"{LOGGERS_PATH}/{{name}}"
    return str(request.get(ROUTE_KEY) or "other")


def _measured(
    dispatch: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
    recorder: HttpRecorder,
    own_routes: frozenset[str],
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    async def measured(request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await dispatch(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            recorder.record(request.method, _route_of(request, own_routes), status, elapsed_ms)

    return measured


class Actuator:
    def __init__(
        self,
        components: ComponentSet,
        info: dict[str, Any] | Callable[[], dict[str, Any]],
        fallback: Fallback | None = None,
        *,
        api_token: str = "",
        metrics: Handler | None = None,
        http_metrics: HttpRecorder | None = None,
    ) -> None:
        """``fallback`` answers the paths the actuator does not serve (the Dapr HTTP API); its None
        is a 404. A non-empty ``api_token`` is required as the ``dapr-api-token`` header of every
        request but health checks (401, reason UNAUTHENTICATED, otherwise). ``metrics`` answers
        ``GET /metrics`` when given; ``http_metrics`` records every answered request (method, route
        template, status, milliseconds)."""
        self._http_metrics = http_metrics
        self._api_token = api_token
        self._metrics = metrics
        self._components = components
        self._fallback = fallback
        self._info = info
        self.serving = False  # the gRPC server accepts calls
        self._runner: web.ServerRunner | None = None
        self.port = 0

    def routes(self) -> dict[str, Any]:
        """Path -> handler of the GET endpoints."""
        routes: dict[str, Any] = {"/metrics": self._metrics} if self._metrics is not None else {}
        return {
            **routes,
            "/actuator/health/liveness": self._liveness,
            "/actuator/health/readiness": self._readiness,
            "/actuator/info": self._info_endpoint,
            "/v1.0/healthz": self._dapr_healthz,
            "/v1.0/healthz/outbound": self._dapr_healthz,
        }

    async def start(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None) -> None:
        """Serve on HOST:PORT (port 0: a free one, then in ``port``); HTTPS with ``ssl_context``."""
        runner = await self._runner_set_up()
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        self.port = int(runner.addresses[0][1])

    async def start_unix(self, path: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
        """Serve on the Unix socket ``path`` (its file made by the caller's umask); HTTPS with ``ssl_context``."""
        runner = await self._runner_set_up()
        await web.UnixSite(runner, path, ssl_context=ssl_context).start()

    async def _runner_set_up(self) -> web.ServerRunner:
        routes = self.routes()

        async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
            refusal = http_refusal(self._api_token, request)
            if refusal is not None:
                return error_response(refusal, "", UNAUTHENTICATED_CODE)
            if request.path == LOGGERS_PATH or request.path.startswith(f"{LOGGERS_PATH}/"):
                return await loggers_endpoint(request)  # GET, and POST to change a level
            handler = routes.get(request.path)
            if handler is None:
                answer = await self._fallback(request) if self._fallback is not None else None
                if answer is not None:
                    return answer
                return web.json_response({"error": f"no such endpoint: {request.path}"}, status=404)
            if request.method not in ("GET", "HEAD"):
                return web.json_response(
                    {"error": f"{request.method} not allowed"}, status=405, headers={"Allow": "GET"}
                )
            response: web.StreamResponse = await handler(request)
            return response

        recorder = self._http_metrics
        served = dispatch if recorder is None else _measured(dispatch, recorder, frozenset(routes))
        self._runner = web.ServerRunner(_Server(served, access_log=None))
        await self._runner.setup()
        return self._runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _component_health(self) -> dict[str, Health]:
        async def one(component: Any) -> Health:
            try:
                return await asyncio.wait_for(component.health(), HEALTH_TIMEOUT_SECONDS)
            except TimeoutError:
                return Health(up=False, details={"error": f"no answer within {HEALTH_TIMEOUT_SECONDS}s"})
            except Exception as error:  # health checks report, never raise
                return Health(up=False, details={"error": str(error)})

        pairs = list(self._components)
        results = await asyncio.gather(*(one(c) for _, c in pairs))
        return {f"{block}.{c.name}": h for (block, c), h in zip(pairs, results, strict=True)}

    async def _liveness(self, request: web.BaseRequest) -> web.Response:
        return web.json_response({"status": "UP"})

    async def _readiness(self, request: web.BaseRequest) -> web.Response:
        health = await self._component_health()
        body: dict[str, Any] = {"components": {}}
        body["components"]["runtime_startup"] = {"status": "UP" if self.serving else "INIT"}
        for name, h in health.items():
            entry: dict[str, Any] = {"status": "UP" if h.up else "DOWN"}
            if h.details:
                entry["details"] = dict(h.details)
            body["components"][name] = entry
        up = self.serving and all(h.up for h in health.values())
        body["status"] = "UP" if up else ("DOWN" if self.serving else "INIT")
        return web.json_response(body, status=200 if up else 503)

    async def _info_endpoint(self, request: web.BaseRequest) -> web.Response:
        return web.json_response(self._info() if callable(self._info) else self._info)

    async def _dapr_healthz(self, request: web.BaseRequest) -> web.Response:
        return web.Response(status=204 if self.serving else 503)
