"""Errors over Dapr's HTTP API: the status from the runtime's one catalog
(``error_reasons.json``, through :func:`layotto.server.api.status.http_status`) and a JSON body
``{"errorCode": "ERR_...", "message": ..., "details": [ErrorInfo]}`` as daprd answers, so Dapr's
SDKs map it as they do for daprd.

Dapr's ``errorCode`` depends on the building block and the operation (``ERR_STATE_GET`` vs
``ERR_STATE_SAVE``): :data:`DAPR_CODES` maps (block, reason) to a code, :data:`ANY_BLOCK` the
reasons that read the same in every block, and any other reason takes the operation's own code
(the one a handler is declared with). This table is the only place a reason becomes a Dapr code.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from layotto.proto.reasons import ERROR_DOMAIN
from layotto.server.api.status import bounded_message, bounded_metadata, http_status
from layotto.server.errors import (
    MAX_MESSAGE_BYTES,
    InvalidArgument,
    LayottoError,
    PayloadTooLarge,
    RuntimeShuttingDown,
    clip,
)

log = logging.getLogger(__name__)

#: a handler method of a front end: (self, call) -> response
HttpHandler = Callable[[Any, "Call"], Awaitable[web.StreamResponse]]
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"

#: reasons whose Dapr code is the same whatever the block
ANY_BLOCK = {
    "INVALID_ARGUMENT": "ERR_MALFORMED_REQUEST",
    "MALFORMED_REQUEST": "ERR_MALFORMED_REQUEST",
    "PAYLOAD_TOO_LARGE": "ERR_MALFORMED_REQUEST",
}
#: (building block, reason) -> Dapr's errorCode
DAPR_CODES: Mapping[tuple[str, str], str] = {
    ("state", "COMPONENT_NOT_FOUND"): "ERR_STATE_STORE_NOT_FOUND",
    ("state", "NO_COMPONENTS_CONFIGURED"): "ERR_STATE_STORES_NOT_CONFIGURED",
    ("state", "FEATURE_NOT_SUPPORTED"): "ERR_STATE_STORE_NOT_SUPPORTED",
    ("pubsub", "COMPONENT_NOT_FOUND"): "ERR_PUBSUB_NOT_FOUND",
    ("pubsub", "NO_COMPONENTS_CONFIGURED"): "ERR_PUBSUB_NOT_CONFIGURED",
    ("secrets", "COMPONENT_NOT_FOUND"): "ERR_SECRET_STORE_NOT_FOUND",
    ("secrets", "NO_COMPONENTS_CONFIGURED"): "ERR_SECRET_STORES_NOT_CONFIGURED",
    ("secrets", "SECRET_ACCESS_DENIED"): "ERR_PERMISSION_DENIED",
    ("configuration", "COMPONENT_NOT_FOUND"): "ERR_CONFIGURATION_STORE_NOT_FOUND",
    ("configuration", "NO_COMPONENTS_CONFIGURED"): "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
    ("lock", "COMPONENT_NOT_FOUND"): "ERR_LOCK_STORE_NOT_FOUND",
    ("lock", "NO_COMPONENTS_CONFIGURED"): "ERR_LOCK_STORE_NOT_CONFIGURED",
}


def dapr_code(block: str, reason: str, operation_code: str) -> str:
    """Dapr's errorCode for a reason met by an operation of a building block."""
    return DAPR_CODES.get((block, reason)) or ANY_BLOCK.get(reason) or operation_code


def error_response(error: LayottoError, block: str, operation_code: str) -> web.Response:
    """The HTTP answer to a domain error: the catalog's status, Dapr's body."""
    body = {
        "errorCode": dapr_code(block, error.reason, operation_code),
        "message": bounded_message(error),
        "details": [
            {
                "@type": ERROR_INFO_TYPE,
                "reason": error.reason,
                "domain": ERROR_DOMAIN,
                "metadata": bounded_metadata(error),
            }
        ],
    }
    return web.json_response(body, status=http_status(error))


def dapr_errors(block: str, operation_code: str) -> Callable[[HttpHandler], HttpHandler]:
    """Decorates a handler method: a LayottoError becomes Dapr's error answer; anything else is logged and
    answers 500 with ``operation_code``, never a traceback. Once the runtime is stopping, no call
    starts: 503 (reason RUNTIME_SHUTTING_DOWN), the client retries elsewhere or later."""

    def decorate(handler: HttpHandler) -> HttpHandler:
        @functools.wraps(handler)
        async def serve(front: Any, call: Call) -> web.StreamResponse:
            request = call.request
            try:
                if not call.settings.serving():
                    raise RuntimeShuttingDown(f"{request.method} {request.path}")
                return await handler(front, call)
            except LayottoError as error:
                return error_response(error, block, operation_code)
            except web.HTTPException:
                raise
            except Exception:
                log.exception("unexpected error in %s %s", request.method, request.path)
                message = clip(
                    f"{request.method} {request.path}: internal error in the runtime (logged)", MAX_MESSAGE_BYTES
                )
                return web.json_response({"errorCode": operation_code, "message": message}, status=500)

        return serve

    return decorate


# -- reading requests ----------------------------------------------------------------------


@dataclass(frozen=True)
class HttpSettings:
    """What every call is held to: the largest body (bytes), and whether calls may start."""

    max_body_bytes: int
    serving: Callable[[], bool]


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs every request three object.__setattr__
class Call:
    """One request to a Dapr endpoint: the request, its path parameters, the settings."""

    request: web.BaseRequest
    params: Mapping[str, str]
    settings: HttpSettings

    async def body(self) -> bytes:
        """The body, refused with PayloadTooLarge (413) past ``max_body_bytes``."""
        limit = self.settings.max_body_bytes
        declared = self.request.content_length
        if declared is not None and declared > limit:
            raise PayloadTooLarge("body", declared, limit)
        chunks: list[bytes] = []
        size = 0
        while chunk := await self.request.content.readany():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge("body", size, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def json(self) -> Any:
        """The body parsed as JSON; InvalidArgument naming ``body`` for another declared content
        type (none is taken as JSON) or bytes that are not JSON."""
        declared = self.request.headers.get("Content-Type", "")
        if declared and not is_json_type(declared):
            raise InvalidArgument("body", f"expected Content-Type application/json, got {declared[:60]!r}")
        raw = await self.body()
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as error:  # RecursionError: nested too deep
            raise InvalidArgument("body", f"is not valid JSON ({error})") from None

    def metadata(self) -> dict[str, str]:
        """The ``metadata.<name>=<value>`` query parameters, as ``{name: value}``."""
        query = self.request.query
        return {k.removeprefix("metadata."): v for k, v in query.items() if k.startswith("metadata.")}


def is_json_type(content_type: str) -> bool:
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def require_type(value: Any, kind: type | tuple[type, ...], field: str, expected: str) -> Any:
    """``value`` if it is a ``kind`` (a bool is not a number), else InvalidArgument naming ``field``."""
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _types(kind)):
        raise InvalidArgument(
            field, f"expected {expected}, got {type(value).__name__ if value is not None else 'null'}"
        )
    return value


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def field_of(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    """A member of a JSON object by its name, matched as daprd's Go decoder does: the exact name,
    else the first one equal to it ignoring case (Dapr's JS SDK sends ``entryID`` for ``entryId``)."""
    if name in obj:
        return obj[name]
    folded = name.casefold()
    return next((value for key, value in obj.items() if key.casefold() == folded), default)


def string_map(value: Any, field: str) -> dict[str, str]:
    """A JSON object of strings (absent or null: empty)."""
    if value is None:
        return {}
    require_type(value, dict, field, "an object of strings")
    for key, item in value.items():
        require_type(item, str, f"{field}.{key}", "a string")
    return dict(value)


def optional_string(value: Any, field: str) -> str:
    return "" if value is None else str(require_type(value, str, field, "a string"))
