"""Dapr's ``bindings.http`` output binding: one HTTP request per InvokeBinding (aiohttp).

Operations are the HTTP methods (``create`` is ``post``, as in Dapr). Request metadata:
``path`` (appended to the component's ``url``), ``errorIfNot2XX`` (overrides the component's),
and every key starting with a capital letter is sent as a header (a key that is no HTTP header
name, or a value or path with a control character, is InvalidArgument naming it). The response's
data is the whole body (up to ``maxResponseBodySize``); its metadata holds ``statusCode``,
``status`` and every response header (several values joined with ", ").
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import aiohttp
from yarl import URL

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, Feature, MetadataField
from layotto.server.components.bindings import BindingRequest, BindingResponse, OutputBinding
from layotto.server.components.bindings.duration import parse_duration
from layotto.server.errors import BackendError, BackendUnavailable, InvalidArgument
from layotto.server.runtime.validation import has_control_characters, is_http_token
from layotto.tracing import backend_span

_TRUTHY = ("true", "1", "yes", "on", "y")
_WITH_BODY = ("POST", "PUT", "PATCH")
#: the longest responseTimeout taken: a day
MAX_RESPONSE_TIMEOUT_SECONDS = 24 * 3600


class HttpBinding(OutputBinding):
    spec = ComponentSpec(
        type="http",
        building_block="bindings",
        description="Sends an HTTP request to the component's url (plus the request's path) for each "
        "invocation, with the operation as its method, and answers the response's body, status and headers.",
        features=frozenset({Feature.OUTPUT_BINDING}),
        operations=("create", "get", "head", "post", "put", "patch", "delete", "options", "trace"),
        metadata=(
            MetadataField("url", "Base URL of the requests.", required=True, example="http://127.0.0.1:8080/api"),
            MetadataField(
                "responseTimeout",
                "Longest wait for a whole response, as a Go duration, at most 24h (Dapr waits for ever; a call "
                "here never does).",
                default="60s",
            ),
            MetadataField(
                "maxResponseBodySize",
                "Bytes of a response body read at most; a longer body fails the call.",
                type=int,
                default=100 * 1024 * 1024,
                minimum=1,
                maximum=2**31 - 1,
            ),
            MetadataField(
                "errorIfNot2XX",
                "Fail the call when the status is not 2xx (a request may override).",
                type=bool,
                default=True,
            ),
            MetadataField("securityToken", "Value of a header sent with every request.", default="", secret=True),
            MetadataField("securityTokenHeader", "Name of the header securityToken is sent in.", default=""),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._session: aiohttp.ClientSession | None = None
        self._url = ""
        self._max_body = 0
        self._error_if_not_2xx = True
        self._token: tuple[str, str] | None = None

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._url = str(metadata["url"])
        if not self._url.startswith(("http://", "https://")):
            raise ConfigError(f"bindings.{self.name}.metadata.url: expected an http:// or https:// URL")
        try:
            timeout = parse_duration(str(metadata["responseTimeout"]))
        except ValueError as error:
            raise ConfigError(f"bindings.{self.name}.metadata.responseTimeout: {error}") from None
        if timeout > MAX_RESPONSE_TIMEOUT_SECONDS:
            raise ConfigError(
                f"bindings.{self.name}.metadata.responseTimeout: {metadata['responseTimeout']!r} is over the "
                f"longest wait, {MAX_RESPONSE_TIMEOUT_SECONDS // 3600}h"
            )
        self._max_body = int(metadata["maxResponseBodySize"])
        self._error_if_not_2xx = bool(metadata["errorIfNot2XX"])
        if metadata["securityToken"] and metadata["securityTokenHeader"]:
            self._token = (str(metadata["securityTokenHeader"]), str(metadata["securityToken"]))
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _target(self, request: BindingRequest) -> str:
        path = request.metadata.get("path", "")
        if has_control_characters(path):
            raise InvalidArgument("metadata.path", "must not contain control characters (CR, LF, NUL, ...)")
        return self._url.rstrip("/") + "/" + path.lstrip("/") if path else self._url

    def _headers(self, request: BindingRequest, method: str) -> dict[str, str]:
        headers = {"Accept": "application/json; charset=utf-8"}
        if method in _WITH_BODY:
            headers["Content-Type"] = "application/json; charset=utf-8"
        if self._token is not None:
            headers[self._token[0]] = self._token[1]
        for key, value in request.metadata.items():
            if key[:1].isupper():
                headers[key] = _header_value(key, value)
        return headers

    async def invoke(self, request: BindingRequest) -> BindingResponse:
        assert self._session is not None, "init() first"
        method = "POST" if request.operation == "create" else request.operation.upper()
        url = self._target(request)
        body = request.data if method in _WITH_BODY else None
        target = URL(url)
        try:
            with backend_span("http", method, statement=url, peer=target.host, port=target.port):
                reply = await self._send(method, url, body, self._headers(request, method))
        except (aiohttp.ClientConnectionError, TimeoutError) as error:
            raise BackendUnavailable(self.name, f"{method} {url}: {error or type(error).__name__}") from error
        except aiohttp.ClientError as error:
            raise BackendError(self.name, f"{method} {url}: {error}") from error
        return self._answer(request, f"{method} {url}", reply)

    async def _send(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[bytes, dict[str, str], int]:
        assert self._session is not None, "init() first"
        async with self._session.request(method, url, data=body, headers=headers) as reply:
            data = bytearray()
            async for chunk in reply.content.iter_any():  # read() answers what has arrived, not the whole body
                data += chunk
                if len(data) > self._max_body:
                    raise BackendError(self.name, f"{method} {url}: response body over {self._max_body} bytes")
            return bytes(data), {key: ", ".join(reply.headers.getall(key)) for key in reply.headers}, reply.status

    def _answer(self, request: BindingRequest, call: str, reply: tuple[bytes, dict[str, str], int]) -> BindingResponse:
        """The binding's answer to ``reply`` (body, headers, status) of ``call`` ("GET http://...")."""
        data, metadata, status = reply
        metadata["statusCode"] = str(status)
        metadata["status"] = f"{status} {_phrase(status)}".strip()
        error_if_not_2xx = self._error_if_not_2xx
        if "errorIfNot2XX" in request.metadata:
            error_if_not_2xx = request.metadata["errorIfNot2XX"].strip().lower() in _TRUTHY
        if error_if_not_2xx and status // 100 != 2:
            raise BackendError(self.name, f"{call}: received status code {status}")
        return BindingResponse(data=data, metadata=metadata)


def _header_value(key: str, value: str) -> str:
    """``value`` of the header ``key`` (request metadata); InvalidArgument naming ``metadata.<key>`` when
    the name is not an HTTP token or the value holds a control character (header injection)."""
    if not is_http_token(key):
        raise InvalidArgument(f"metadata.{key}", "is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)")
    if has_control_characters(value.replace("\t", " ")):
        raise InvalidArgument(f"metadata.{key}", "a header value must not contain control characters (CR, LF, NUL)")
    return value


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
