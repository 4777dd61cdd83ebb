"""Input bindings delivered to an app that speaks only HTTP (``app_protocol: http``), as Dapr does it.

Which bindings the app wants: ``OPTIONS /<binding-name>`` (the name percent-encoded) for each
configured input binding, when the runtime starts and every ``subscriptions_refresh_seconds``. A
404 means the app does not want it; a 2xx or a 405 (a route that takes POST only) means it does;
any other status, no answer within ``LIST_TIMEOUT_SECONDS`` or a refused connection leaves the
binding as it was (read or not) and it is asked again after 1 s, doubling up to 10 s.

Each event: ``POST /<binding-name>`` with the event's data as the body, ``Content-Type:
application/json`` (Dapr's), the event's metadata as headers (an entry that cannot be a header,
or that names one the runtime sets, is left out), ``traceparent`` when tracing is on and
``dapr-api-token`` when ``APP_API_TOKEN`` is set. A 2xx answer acknowledges the event (the source
may drop it); any other status, no answer within ``CALL_TIMEOUT_SECONDS`` or a broken connection
fails it (a source that can redeliver does). A 2xx body that is a JSON object is Dapr's reply::

    {"storeName": "<state store>", "state": [{"key", "value", "etag"?, "metadata"?, "options"?}],
     "to": ["<output binding>", ...], "data": <any JSON>, "concurrency": "parallel" | "sequential"}

``state`` is saved to ``storeName`` as Dapr's state API saves it (each value as its JSON), then
``data``, as its JSON (``null`` when absent), is sent to each binding of ``to`` with the
``create`` operation, all at once for ``"parallel"``, else one after another. Any other body
(empty, plain text, a JSON array) is a plain acknowledgement.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import quote

import aiohttp

from layotto.server.api_token import TOKEN_HEADER
from layotto.server.appbindings import InputBindingsKeeper
from layotto.server.components.bindings import BindingEvent
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import AppError, AppUnavailable, InvalidArgument
from layotto.server.http.errors import field_of, optional_string, require_type
from layotto.server.http.state import encode_value, to_set
from layotto.server.http_app import HttpApp
from layotto.server.runtime.bindings import EventReply, input_binding_names
from layotto.server.runtime.resiliency import Resiliency
from layotto.server.runtime.state import StateService
from layotto.server.runtime.validation import is_http_token
from layotto.tracing import current_traceparent

log = logging.getLogger(__name__)

LIST_TIMEOUT_SECONDS = 5.0
WANTED, UNWANTED = True, False
_RESERVED = {"content-type", "content-length", "transfer-encoding", "host", "connection", "traceparent", TOKEN_HEADER}


def event_headers(metadata: dict[str, str]) -> dict[str, str]:
    """The event's metadata entries that can travel as headers (a token name, a value without line
    breaks or NUL, not a header the runtime sets itself); the others are logged and left out."""
    headers: dict[str, str] = {}
    for name, value in metadata.items():
        if is_http_token(name) and name.lower() not in _RESERVED and not set(value) & {"\r", "\n", "\0"}:
            headers[name] = value
        else:
            log.debug("input binding metadata %r cannot be an HTTP header: left out", name[:60])
    return headers


def reply_of_body(body: bytes) -> EventReply | None:
    """Dapr's reply from the app's answer body (see the module); None when the body is not a JSON
    object (member names matched as Go's decoder does, ignoring case). Raises InvalidArgument
    naming the field (``state[0].key``, ``to``, ...) of a reply that cannot be done."""
    try:
        answer: Any = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(answer, dict):
        return None
    states = field_of(answer, "state") or []
    require_type(states, list, "state", "a list of {key, value}")
    fields = tuple(f"state[{i}]" for i in range(len(states)))
    targets = field_of(answer, "to") or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise InvalidArgument("to", "must be a list of output binding names")
    return EventReply(
        store_name=optional_string(field_of(answer, "storeName"), "storeName"),
        states=tuple(to_set(item, field) for item, field in zip(states, fields, strict=True)),
        fields=fields,
        to=tuple(targets),
        data=encode_value(field_of(answer, "data")),
        parallel=field_of(answer, "concurrency") == "parallel",
    )


class HttpAppBindings(InputBindingsKeeper[bytes]):
    """Input bindings of the HTTP app at ``app_port``: OPTIONS asks, POST delivers (see the module)."""

    def __init__(
        self,
        components: ComponentSet,
        state: StateService,
        *,
        app_id: str,
        app_port: int,
        refresh_seconds: float,
        app_api_token: str = "",
        resiliency: Resiliency | None = None,
    ) -> None:
        self.app = HttpApp(f"http://127.0.0.1:{app_port}", app_api_token)
        self._app_id = app_id
        super().__init__(
            components, state, address=self.app.base_url, refresh_seconds=refresh_seconds, resiliency=resiliency
        )

    def _url(self, name: str) -> str:
        return f"{self.app.base_url}/{quote(name, safe='')}"

    async def _asked(self, name: str) -> bool | None:
        """WANTED, UNWANTED, or None when the app gave no usable answer for ``name``."""
        timeout = aiohttp.ClientTimeout(total=LIST_TIMEOUT_SECONDS)
        try:
            async with self.app.session().options(self._url(name), headers=self.app.headers(), timeout=timeout) as r:
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as error:
            log.debug("OPTIONS /%s on the app: %s", name, error or type(error).__name__)
            return None
        if status == 404:
            return UNWANTED
        if 200 <= status < 300 or status == 405:
            return WANTED
        log.debug("OPTIONS /%s on the app answered %d: asked again", name, status)
        return None

    async def wanted(self) -> tuple[list[str], bool]:
        names = input_binding_names(self._components)
        answers = await asyncio.gather(*(self._asked(name) for name in names))
        reading = set(self.readers.reading)
        wanted = [n for n, a in zip(names, answers, strict=True) if a is WANTED or (a is None and n in reading)]
        return wanted, all(answer is not None for answer in answers)

    async def call_app(self, name: str, event: BindingEvent, seconds: float) -> bytes:
        headers = {**event_headers(dict(event.metadata)), **self.app.headers(**{"Content-Type": "application/json"})}
        if traceparent := current_traceparent():
            headers["traceparent"] = traceparent
        timeout = aiohttp.ClientTimeout(total=seconds)
        try:
            async with self.app.session().post(self._url(name), data=event.data, headers=headers, timeout=timeout) as r:
                status, body = r.status, await r.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise AppUnavailable(self._app_id, f"POST /{name}: {error or type(error).__name__}") from error
        if not 200 <= status < 300:
            raise AppError.from_http(self._app_id, status, body)
        return body

    def reply_of(self, answer: bytes) -> EventReply | None:
        return reply_of_body(answer)

    async def aclose(self) -> None:
        await super().aclose()
        await self.app.aclose()
